using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;
using static Virtuozzo.Sdk.Virtuozzo.Tests.PrlctlFixtures;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// Disk compaction: <c>prl_disk_tool compact --hdd IMAGE</c> for a VM's disk and <c>vzctl compact CTID</c> for a
/// container (/work/shared/reference/virtuozzo-cli-and-sdk.md §4: prl_disk_tool's <c>compact --hdd &lt;img&gt;</c>, vzctl's
/// <c>compact</c> action; §6: ploop disks grow but do not shrink by themselves). The image path and the CTID come from
/// the VE's <c>prlctl list -i -f -j</c> (the verbatim captures of §3.3). The local runtime refuses by name.
/// </summary>
public sealed class DiskCompactionTests : IDisposable
{
    private const string Vm = "56850624-9fd8-441a-b24f-00131f7f79ca";
    private const string Ct = "ccefa40c-5c72-4e17-94c7-d68034a1c1a5";
    private const string Hdd1 = "/mnt/vstorage/vols/datastores/Datastore/56850624-9fd8-441a-b24f-00131f7f79ca/harddisk1.hdd";

    private readonly TempDirectory _dir = new("vzsdk-compact");

    public void Dispose() => _dir.Dispose();

    /// <summary>The flask-aggregator VM capture (verbatim but for its state, changed from running to stopped).</summary>
    private static string StoppedVm() => RosplatformaVm.Replace("\"State\": \"running\"", "\"State\": \"stopped\"", StringComparison.Ordinal);

    private static RecordedSessionHost Node() => new RecordedSessionHost().Always(["prlctl", "--version"], "prlctl version 7.0.253\n");

    [Fact]
    public void The_compact_commands_are_the_documented_argument_vectors()
    {
        Prlctl.CompactImage(Hdd1).ToString().Should().Be($"prl_disk_tool compact --hdd {Hdd1}");
        Prlctl.CompactContainer("132694").ToString().Should().Be("vzctl compact 132694");
    }

    [Fact]
    public async Task A_stopped_VMs_disk_is_compacted_with_prl_disk_tool_on_its_image()
    {
        var node = Node()
            .Expect(["prlctl", "list", "-i", "-f", "-j", "vm1"], StoppedVm())
            .Expect(["prl_disk_tool", "compact", "--hdd", Hdd1])
            .Expect(["prlctl", "list", "-i", "-f", "-j", Vm], StoppedVm());
        var disk = await new VirtualMachineClient(VirtuozzoRuntime.CreateVirtuozzo(node)).CompactDiskAsync("vm1", "hdd1");
        disk.Name.Should().Be("hdd1");
        disk.ImagePath.Should().Be(Hdd1);
        node.VerifyAllReplayed();
    }

    [Fact]
    public async Task A_running_VMs_disk_is_not_compacted()
    {
        var node = Node().Expect(["prlctl", "list", "-i", "-f", "-j", "vm1"], RosplatformaVm);
        var act = () => new VirtualMachineClient(VirtuozzoRuntime.CreateVirtuozzo(node)).CompactDiskAsync("vm1", "hdd1");
        (await act.Should().ThrowAsync<InvalidStateException>()).WithMessage("*running*stop it*");
        node.Commands.Should().NotContain(c => c[0] == "prl_disk_tool");
    }

    [Fact]
    public async Task A_disk_the_VM_lacks_is_not_found_and_a_bad_disk_name_is_a_caller_mistake()
    {
        var node = Node().Expect(["prlctl", "list", "-i", "-f", "-j", "vm1"], StoppedVm());
        var vms = new VirtualMachineClient(VirtuozzoRuntime.CreateVirtuozzo(node));
        await ((Func<Task>)(() => vms.CompactDiskAsync("vm1", "hdd7"))).Should().ThrowAsync<NotFoundException>().WithMessage("*hdd7*");
        await ((Func<Task>)(() => vms.CompactDiskAsync("vm1", "../etc"))).Should().ThrowAsync<ArgumentException>();
    }

    [Fact]
    public async Task A_node_without_prl_disk_tool_is_a_missing_tool()
    {
        var node = Node()
            .Expect(["prlctl", "list", "-i", "-f", "-j", "vm1"], StoppedVm())
            .Expect(["prl_disk_tool", "compact", "--hdd", Hdd1], "", "bash: prl_disk_tool: command not found\n", 127);
        var act = () => new VirtualMachineClient(VirtuozzoRuntime.CreateVirtuozzo(node)).CompactDiskAsync("vm1", "hdd1");
        (await act.Should().ThrowAsync<ToolNotFoundException>()).WithMessage("*prl_disk_tool*");
    }

    [Fact]
    public async Task A_containers_disk_is_compacted_with_vzctl_by_its_EnvID()
    {
        var node = Node()
            .Expect(["prlctl", "list", "-i", "-f", "-j", "132694"], ProvirtedContainer)
            .Expect(["vzctl", "compact", "132694"]);
        await new ContainerClient(VirtuozzoRuntime.CreateVirtuozzo(node)).CompactDiskAsync("132694");
        node.VerifyAllReplayed();
        node.Commands.Select(c => string.Join(' ', c)).Should().ContainInOrder("prlctl list -i -f -j 132694", "vzctl compact 132694");
    }

    [Fact]
    public async Task A_missing_container_is_not_found_before_vzctl_runs()
    {
        var node = Node().Expect(["prlctl", "list", "-i", "-f", "-j", "nope"], EmptyList);
        var act = () => new ContainerClient(VirtuozzoRuntime.CreateVirtuozzo(node)).CompactDiskAsync("nope");
        await act.Should().ThrowAsync<NotFoundException>();
        node.Commands.Should().NotContain(c => c[0] == "vzctl");
    }

    [Fact]
    public async Task The_local_runtime_refuses_disk_compaction_by_name()
    {
        var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _dir.Path });
        (await ((Func<Task>)(() => new VirtualMachineClient(runtime).CompactDiskAsync("vm1", "hdd0"))).Should().ThrowAsync<UnsupportedOnHostException>())
            .WithMessage("Disk compaction (CompactDiskAsync)*local runtime*");
        (await ((Func<Task>)(() => new ContainerClient(runtime).CompactDiskAsync("ct1"))).Should().ThrowAsync<UnsupportedOnHostException>())
            .WithMessage("Disk compaction (CompactDiskAsync)*local runtime*");
    }
}
