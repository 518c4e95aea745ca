using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Tests;

public class QemuCommandLineTests
{
    private static readonly VmPaths Paths = new("/data/private/id", "/data/run/id");

    private static VmConfig Config(Func<VmCreateOptions, VmCreateOptions>? change = null)
    {
        var o = new VmCreateOptions { Name = new VeName("web"), Cpus = 2, MaxCpus = 4, Network = VmNetworkMode.User };
        return VmConfigRules.FromCreateOptions(change?.Invoke(o) ?? o, Guid.Parse("11111111-2222-3333-4444-555555555555"), DateTimeOffset.UnixEpoch, 2, ByteSize.FromGiB(16).Bytes)
            with { Name = "web,1", Disks = [new VmDiskConfig("hdd0", "hdd0.qcow2", ByteSize.GiB)] };
    }

    private static string After(List<string> args, string flag) => args[args.IndexOf(flag) + 1];

    private static IEnumerable<string> AllAfter(List<string> args, string flag)
        => args.Select((a, i) => (a, i)).Where(x => x.a == flag).Select(x => args[x.i + 1]);

    [Fact]
    public void The_vm_runs_daemonized_without_display_with_a_serial_log_two_monitors_and_a_guest_tools_channel()
    {
        var a = QemuCommandLine.Build(Config(), Paths, new QemuLaunch { Software = true });
        a.Should().Contain("-daemonize").And.Contain("-nodefaults").And.NotContain("-nographic");
        After(a, "-display").Should().Be("none");
        After(a, "-serial").Should().Be("file:/data/private/id/console.log");
        After(a, "-pidfile").Should().Be("/data/run/id/pid");
        After(a, "-accel").Should().Be("tcg");
        After(a, "-uuid").Should().Be("11111111-2222-3333-4444-555555555555");
        After(a, "-name").Should().Be("guest=web,,1,debug-threads=on", "commas are escaped for the option syntax");
        AllAfter(a, "-mon").Should().HaveCount(2).And.OnlyContain(m => m.EndsWith("mode=control"));
        AllAfter(a, "-chardev").Should().Contain(c => c.Contains("path=/data/run/id/qmp,")).And.Contain(c => c.Contains("path=/data/run/id/ev,")).And.Contain(c => c.Contains("path=/data/run/id/ga,"));
        AllAfter(a, "-device").Should().Contain("virtserialport,bus=vser0.0,chardev=ga0,name=org.qemu.guest_agent.0").And.Contain("virtio-balloon-pci,id=balloon0,addr=0x3");
    }

    [Fact]
    public void Hardware_acceleration_uses_kvm_and_the_host_cpu()
    {
        var a = QemuCommandLine.Build(Config(), Paths, new QemuLaunch { Software = false });
        After(a, "-accel").Should().Be("kvm");
        After(a, "-cpu").Should().Be("host");
    }

    [Fact]
    public void Cpus_and_memory_map_to_smp_and_m_with_slots_only_for_hotplug()
    {
        var plain = QemuCommandLine.Build(Config(), Paths, new QemuLaunch { Software = true });
        After(plain, "-smp").Should().Be("2,maxcpus=4");
        After(plain, "-m").Should().Be("size=1024M");
        var hot = QemuCommandLine.Build(Config(o => o with { MemorySize = ByteSize.FromGiB(2), MemoryHotplug = true }), Paths, new QemuLaunch { Software = true });
        After(hot, "-m").Should().Be("size=2048M,slots=8,maxmem=8192M");
    }

    [Fact]
    public void Disks_are_qcow2_block_nodes_on_virtio_and_the_first_disk_boots_first()
    {
        var a = QemuCommandLine.Build(Config(), Paths, new QemuLaunch { Software = true });
        AllAfter(a, "-blockdev").Should().Equal(
            "driver=file,node-name=hdd0-file,filename=/data/private/id/hdd0.qcow2,cache.direct=off",
            "driver=qcow2,node-name=hdd0-fmt,file=hdd0-file");
        AllAfter(a, "-device").Should().Contain("virtio-blk-pci,drive=hdd0-fmt,id=hdd0,addr=0x6,bootindex=1");
    }

    [Fact]
    public void Direct_kernel_boot_passes_kernel_initrd_and_append_and_drops_boot_indexes()
    {
        var c = Config() with { KernelPath = "/k", InitrdPath = "/i", KernelCommandLine = "console=ttyS0 quiet" };
        var a = QemuCommandLine.Build(c, Paths, new QemuLaunch { Software = true });
        (After(a, "-kernel"), After(a, "-initrd"), After(a, "-append")).Should().Be(("/k", "/i", "console=ttyS0 quiet"));
        a.Should().NotContain(x => x.Contains("bootindex"));
    }

    [Fact]
    public void Networking_is_user_mode_a_tap_or_nothing()
    {
        var user = QemuCommandLine.Build(Config(), Paths, new QemuLaunch { Software = true });
        After(user, "-netdev").Should().Be("user,id=net0");
        AllAfter(user, "-device").Should().Contain(d => d.StartsWith("virtio-net-pci,netdev=net0,id=nic0,mac=52:54:00:"));
        var tap = QemuCommandLine.Build(Config(o => o with { Network = VmNetworkMode.Bridged }), Paths, new QemuLaunch { Software = true, TapDevice = "vzt1" });
        After(tap, "-netdev").Should().Be("tap,id=net0,ifname=vzt1,script=no,downscript=no");
        var none = QemuCommandLine.Build(Config(o => o with { Network = VmNetworkMode.None }), Paths, new QemuLaunch { Software = true });
        none.Should().NotContain("-netdev");
        ((Action)(() => QemuCommandLine.Build(Config(o => o with { Network = VmNetworkMode.Bridged }), Paths, new QemuLaunch { Software = true })))
            .Should().Throw<InvalidOperationException>();
    }

    [Fact]
    public void Resuming_from_a_saved_state_reads_it_through_the_exec_transport_with_the_path_quoted()
    {
        var a = QemuCommandLine.Build(Config(), Paths, new QemuLaunch { Software = true, IncomingStateFile = "/data/it's.sav", Paused = true });
        After(a, "-incoming").Should().Be("exec:cat '/data/it'\\''s.sav'");
        a.Should().Contain("-S");
    }

    [Fact]
    public void A_cdrom_is_a_read_only_raw_node_on_ide()
    {
        var iso = Path.GetTempFileName();
        try
        {
            var a = QemuCommandLine.Build(Config() with { CdromImagePath = iso, BootOrder = [VmBootDevice.Cdrom, VmBootDevice.Disk] }, Paths, new QemuLaunch { Software = true });
            AllAfter(a, "-blockdev").Should().Contain($"driver=file,node-name=cd0-file,filename={iso},read-only=on");
            AllAfter(a, "-device").Should().Contain("ide-cd,drive=cd0,id=cdrom0,bootindex=1").And.Contain("virtio-blk-pci,drive=hdd0-fmt,id=hdd0,addr=0x6,bootindex=2");
        }
        finally
        {
            File.Delete(iso);
        }
    }

    [Fact]
    public void Devices_sit_in_fixed_pci_slots_so_hotplugged_disks_land_where_a_restart_puts_them()
    {
        QemuCommandLine.DiskSlot("hdd0").Should().Be("0x6");
        QemuCommandLine.DiskSlot("hdd25").Should().Be("0x1f");
        ((Action)(() => QemuCommandLine.DiskSlot("hdd26"))).Should().Throw<ArgumentOutOfRangeException>();
        var a = QemuCommandLine.Build(Config(), Paths, new QemuLaunch { Software = true });
        AllAfter(a, "-device").Should().Contain("virtio-serial-pci,id=vser0,addr=0x4").And.Contain(d => d.StartsWith("virtio-net-pci,") && d.EndsWith(",addr=0x5"));
    }

    [Fact]
    public void A_resume_recreates_hotplugged_dimms_and_vcpus_on_the_command_line()
    {
        var c = Config(o => o with { MemorySize = ByteSize.FromGiB(1), MemoryHotplug = true });
        var a = QemuCommandLine.Build(c, Paths, new QemuLaunch
        {
            Software = true,
            IncomingStateFile = "/s",
            BaseMemoryBytes = ByteSize.GiB,
            Dimms = [new VmDimm("dimm0", 256 * ByteSize.MiB)],
            Cpus = 3,
        });
        After(a, "-smp").Should().Be("3,maxcpus=4");
        After(a, "-object").Should().Be("memory-backend-ram,id=mem-dimm0,size=268435456");
        AllAfter(a, "-device").Should().Contain("pc-dimm,id=dimm0,memdev=mem-dimm0");
    }
}
