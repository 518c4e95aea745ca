using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Vm;

/// <summary>An image the SDK did not create is checked before a VM gets it (issue 15: an external data file could name any host file).</summary>
public class VmImageImportTests
{
    private static Task QemuImg(params string[] args) => new LocalHost().ExecuteAsync(new Command("qemu-img").WithArguments(args));

    [IntegrationFact("qemu-img")]
    public async Task An_image_that_names_a_host_file_as_its_data_is_refused_and_a_plain_one_is_taken()
    {
        using var dir = new TempDirectory();
        var evil = Path.Combine(dir.Path, "evil.qcow2");
        await QemuImg("create", "-q", "-f", "qcow2", "-o", "data_file=/etc/hostname", evil, "1M");
        var plain = Path.Combine(dir.Path, "plain.qcow2");
        await QemuImg("create", "-q", "-f", "qcow2", plain, "16M");
        var vms = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = Path.Combine(dir.Path, "root") }));

        var act = () => vms.CreateAsync(new VmCreateOptions { Name = new VeName("imported"), Network = VmNetworkMode.User, Disks = [new VmDiskOptions { SourceImagePath = evil }] });
        (await act.Should().ThrowAsync<ArgumentException>()).WithMessage("*evil.qcow2*");
        (await vms.ListAsync()).Should().BeEmpty("a refused create leaves nothing");

        var vm = await vms.CreateAsync(new VmCreateOptions { Name = new VeName("imported"), Network = VmNetworkMode.User, Disks = [new VmDiskOptions { SourceImagePath = plain }] });
        vm.Disks.Should().ContainSingle().Which.Size.Should().Be(ByteSize.FromMiB(16));
    }
}
