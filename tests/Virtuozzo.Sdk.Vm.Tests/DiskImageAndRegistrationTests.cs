using System.Buffers.Binary;
using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Tests;

public class DiskImageAndRegistrationTests
{
    [Fact]
    public async Task An_empty_disk_image_has_a_qcow2_v3_header_with_its_size_and_room_for_4_TiB_in_one_l1_cluster()
    {
        using var dir = new TempDirectory();
        var images = new InterimDiskImages(new LocalHost());
        var path = dir.File("a.qcow2");
        await images.CreateAsync(path, 3 * ByteSize.GiB, null, default);
        var bytes = await File.ReadAllBytesAsync(path);
        bytes.Length.Should().Be(4 * 65536);
        BinaryPrimitives.ReadUInt32BigEndian(bytes).Should().Be(0x514649FB);
        BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(4)).Should().Be(3);
        BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(36)).Should().Be(6, "3 GiB needs six 512 MiB L2 tables");
        (await images.GetVirtualSizeAsync(path, default)).Should().Be(3 * ByteSize.GiB);
        var create = () => images.CreateAsync(path, ByteSize.GiB, null, default);
        await create.Should().ThrowAsync<IOException>("an existing image is never overwritten");
    }

    [Fact]
    public async Task An_overlay_records_its_backing_file_and_format()
    {
        using var dir = new TempDirectory();
        var images = new InterimDiskImages(new LocalHost());
        var path = dir.File("b.qcow2");
        await images.CreateAsync(path, ByteSize.GiB, "/base/disk.qcow2", default);
        var bytes = await File.ReadAllBytesAsync(path);
        var offset = (int)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(8));
        var length = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(16));
        System.Text.Encoding.UTF8.GetString(bytes, offset, length).Should().Be("/base/disk.qcow2");
        BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(104)).Should().Be(0xE2792ACA);
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
        var client = new VirtualMachineClient(new VirtuozzoSdkOptions { DataRoot = dir.Path });
        await ((Func<Task>)(() => client.GetAsync("nope"))).Should().ThrowAsync<NotFoundException>();
        await ((Func<Task>)(() => client.StartAsync(Guid.NewGuid().ToString()))).Should().ThrowAsync<NotFoundException>();
        (await client.ListAsync()).Should().BeEmpty();
    }

    [Fact]
    public async Task A_created_vm_is_persisted_and_listed_by_a_second_client()
    {
        using var dir = new TempDirectory();
        var options = new VirtuozzoSdkOptions { DataRoot = dir.Path };
        var vm = await new VirtualMachineClient(options).CreateAsync(new CreateVmOptions { Name = "db", Cpus = 2, MemorySize = ByteSize.FromGiB(2), Disks = [new VmDiskOptions { Size = ByteSize.FromGiB(1) }] });
        File.Exists(Path.Combine(dir.Path, "private", vm.Id.ToString(), "vm.json")).Should().BeTrue();
        var listed = (await new VirtualMachineClient(options).ListAsync()).Should().ContainSingle().Subject;
        listed.Should().BeEquivalentTo(vm, o => o.Excluding(v => v.CreatedAt));
        listed.State.Should().Be(VmState.Stopped);
        listed.Disks.Single().Size.Should().Be(ByteSize.FromGiB(1));
    }
}
