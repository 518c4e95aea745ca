using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Tests;

public class DiskImageAndRegistrationTests
{
    [Fact]
    public async Task A_new_disk_is_an_empty_qcow2_image_of_the_requested_size_that_is_never_overwritten()
    {
        using var dir = new TempDirectory();
        var images = new Qcow2DiskImages();
        var path = dir.File("a.qcow2");
        await images.CreateAsync(path, 3 * ByteSize.GiB, null, default);
        await using (var image = await Qcow2Image.OpenAsync(path, new Qcow2OpenOptions { ReadOnly = true }))
        {
            image.Size.Should().Be(3 * ByteSize.GiB);
            image.BackingFile.Should().BeNull();
            var buffer = new byte[4096];
            await image.ReadAsync(ByteSize.GiB, buffer);
            buffer.Should().OnlyContain(b => b == 0);
        }
        (await images.GetVirtualSizeAsync(path, default)).Should().Be(3 * ByteSize.GiB);
        var again = () => images.CreateAsync(path, ByteSize.GiB, null, default);
        await again.Should().ThrowAsync<AlreadyExistsException>();
        (await images.GetVirtualSizeAsync(path, default)).Should().Be(3 * ByteSize.GiB);
    }

    [Fact]
    public async Task An_overlay_records_its_backing_file_and_format_and_a_resize_grows_the_image()
    {
        using var dir = new TempDirectory();
        var images = new Qcow2DiskImages();
        await images.CreateAsync(dir.File("base.qcow2"), ByteSize.GiB, null, default);
        var path = dir.File("top.qcow2");
        await images.CreateAsync(path, ByteSize.GiB, dir.File("base.qcow2"), default);
        await using (var image = await Qcow2Image.OpenAsync(path, new Qcow2OpenOptions { ReadOnly = true }))
        {
            image.BackingFile.Should().Be(dir.File("base.qcow2"));
            image.BackingFormat.Should().Be("qcow2");
        }
        await images.ResizeAsync(path, 2 * ByteSize.GiB, default);
        (await images.GetVirtualSizeAsync(path, default)).Should().Be(2 * ByteSize.GiB);
    }

    [Fact]
    public async Task A_file_that_is_not_qcow2_is_reported_as_unusable()
    {
        using var dir = new TempDirectory();
        await File.WriteAllTextAsync(dir.File("x"), "not an image");
        var size = () => new Qcow2DiskImages().GetVirtualSizeAsync(dir.File("x"), default);
        await size.Should().ThrowAsync<InvalidStateException>().WithMessage("*not a usable QCOW2 image*");
    }

    [Fact]
    public void AddVirtualMachines_registers_one_client_and_is_idempotent()
    {
        using var dir = new TempDirectory();
        var services = new ServiceCollection();
        services.AddVirtuozzoSdk(o => o.DataRoot = dir.Path).AddVirtualMachines().AddVirtualMachines(o => o.StartTimeout = TimeSpan.FromSeconds(5));
        services.Count(s => s.ServiceType == typeof(VirtualMachineClient)).Should().Be(1);
        using var sp = services.BuildServiceProvider();
        sp.GetRequiredService<VirtualMachineClient>().Should().BeSameAs(sp.GetRequiredService<VirtualMachineClient>());
    }

    [Fact]
    public async Task Operations_on_an_unknown_vm_throw_not_found()
    {
        using var dir = new TempDirectory();
        var client = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = dir.Path }));
        await ((Func<Task>)(() => client.GetAsync("nope"))).Should().ThrowAsync<NotFoundException>();
        await ((Func<Task>)(() => client.StartAsync(Guid.NewGuid().ToString()))).Should().ThrowAsync<NotFoundException>();
        (await client.ListAsync()).Should().BeEmpty();
    }

    [Fact]
    public async Task A_created_vm_is_persisted_and_listed_by_a_second_client()
    {
        using var dir = new TempDirectory();
        var options = new VirtuozzoSdkOptions { DataRoot = dir.Path };
        var vm = await new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(options)).CreateAsync(new VmCreateOptions { Name = new VeName("db"), Cpus = 2, MemorySize = ByteSize.FromGiB(2), Disks = [new VmDiskOptions { Size = ByteSize.FromGiB(1) }] });
        File.Exists(Path.Combine(dir.Path, "private", vm.Id.ToString(), "vm.json")).Should().BeTrue();
        var listed = (await new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(options)).ListAsync()).Should().ContainSingle().Subject;
        listed.Should().BeEquivalentTo(vm, o => o.Excluding(v => v.CreatedAt));
        listed.State.Should().Be(VeState.Stopped);
        listed.Disks.Single().Size.Should().Be(ByteSize.FromGiB(1));
    }
}
