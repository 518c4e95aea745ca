using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;

namespace Virtuozzo.Sdk.Core.Tests;

public class ParsingTests
{
    [Fact]
    public void Proc_stat_is_parsed_even_when_the_command_name_holds_spaces_and_parentheses()
    {
        var line = "4242 (my (odd) prog) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        ProcessTree.ParseStat(line).Should().Be((17, 987654L));
        ProcessTree.ParseStat("garbage").Should().BeNull();
    }

    [Fact]
    public void The_cgroup_layout_is_read_from_the_mount_table()
    {
        const string hybrid = "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";
        const string v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        const string v1 = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        HostProber.ParseCgroupLayout(hybrid).Should().Be(CgroupLayout.Hybrid);
        HostProber.ParseCgroupLayout(v2).Should().Be(CgroupLayout.V2);
        HostProber.ParseCgroupLayout(v1).Should().Be(CgroupLayout.V1);
        HostProber.ParseCgroupLayout("proc /proc proc rw 0 0\n").Should().Be(CgroupLayout.None);
    }

    [Theory]
    [InlineData("0-1\n", 2)]
    [InlineData("0,2-5,7", 6)]
    [InlineData("0", 1)]
    public void The_online_cpu_list_is_counted(string list, int count)
        => HostProber.ParseCpuList(list).Should().Be(count);

    [Fact]
    public void Memory_and_tool_versions_are_parsed()
    {
        HostProber.ParseMemTotal("MemTotal:       24684096 kB\nMemFree: 1 kB").Should().Be(24684096L * 1024);
        HostProber.ParseVersion("runc version 1.1.5\ncommit: v1.1.5-0-gf19387a").Should().Be("1.1.5");
        HostProber.ParseVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u16)").Should().Be("7.2.22");
        HostProber.ParseVersion("Version: 3.17.1").Should().Be("3.17.1");
        HostProber.ParseVersion("no digits").Should().BeNull();
    }

    [Fact]
    public void The_probe_guest_is_a_valid_boot_sector_that_exits_through_the_debug_port()
    {
        var guest = HostProber.ProbeGuest(hang: false);
        guest.Should().HaveCount(512);
        guest[510..].Should().Equal(0x55, 0xAA);
        guest.Should().ContainInOrder(0xE6, 0xF4); // out 0xf4, al
        HostProber.ProbeGuest(hang: true).Should().NotContain(0xF4, "the hanging guest never reaches the exit port");
    }
}
