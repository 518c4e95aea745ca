using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Core.Tests;

/// <summary>The memory manager's cgroup writes, on directories laid out like a hybrid host's and a v2 host's /sys/fs/cgroup.</summary>
public class CgroupMemoryTests
{
    private static (VeCgroup Cgroup, string Memory, string Unified) Hybrid(TempDirectory dir)
    {
        foreach (var h in new[] { "memory", "unified" })
            Directory.CreateDirectory(Path.Combine(dir.Path, h));
        File.WriteAllText(Path.Combine(dir.Path, "unified", "cgroup.procs"), "");
        var manager = new CgroupManager(CgroupLayout.Hybrid, dir.Path, "vzsdk-test");
        var id = VeId.New();
        var dirs = manager.Directories(id, CgroupRole.Payload);
        foreach (var d in dirs.Values)
            Directory.CreateDirectory(d);
        var memory = dirs["memory"];
        File.WriteAllText(Path.Combine(memory, "memory.limit_in_bytes"), "536870912\n");
        File.WriteAllText(Path.Combine(memory, "memory.memsw.limit_in_bytes"), "536870912\n");
        File.WriteAllText(Path.Combine(memory, "memory.soft_limit_in_bytes"), "9223372036854771712\n");
        return (manager.Open(id), memory, dirs[CgroupManager.Unified]);
    }

    [Fact]
    public void A_hybrid_host_gives_every_ve_a_cgroup_in_the_unified_hierarchy_for_its_pressure()
    {
        using var dir = new TempDirectory();
        var (cg, _, unified) = Hybrid(dir);
        File.WriteAllText(Path.Combine(unified, "memory.pressure"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n");
        cg.MemoryPressureTotal().Should().Be(123456);
        cg.ProcsFiles(CgroupRole.Payload).Should().Contain(Path.Combine(unified, "cgroup.procs"));
    }

    [Fact]
    public void On_v1_the_target_caps_the_limit_with_memsw_kept_above_it_and_the_protection_is_the_soft_limit()
    {
        using var dir = new TempDirectory();
        var (cg, memory, _) = Hybrid(dir);
        cg.SetMemoryTarget(128L << 20, 256L << 20, capAtTarget: true, swapBytes: 0).Should().Be(2);
        File.ReadAllText(Path.Combine(memory, "memory.limit_in_bytes")).Should().Be((256L << 20).ToString());
        File.ReadAllText(Path.Combine(memory, "memory.memsw.limit_in_bytes")).Should().Be((256L << 20).ToString());
        File.ReadAllText(Path.Combine(memory, "memory.soft_limit_in_bytes")).Should().Be((128L << 20).ToString());
        cg.SetMemoryTarget(128L << 20, 256L << 20, capAtTarget: true, swapBytes: 0).Should().Be(0, "nothing changed, so nothing is written");
        cg.SetMemoryTarget(128L << 20, 384L << 20, capAtTarget: true, swapBytes: 64L << 20).Should().Be(1);
        File.ReadAllText(Path.Combine(memory, "memory.memsw.limit_in_bytes")).Should().Be((448L << 20).ToString());
    }

    [Fact]
    public void On_v2_the_protection_is_memory_min_and_the_target_memory_high()
    {
        using var dir = new TempDirectory();
        var manager = new CgroupManager(CgroupLayout.V2, dir.Path, "vzsdk-test");
        var id = VeId.New();
        var ve = manager.Directories(id, CgroupRole.Payload)[""];
        Directory.CreateDirectory(ve);
        File.WriteAllText(Path.Combine(ve, "memory.min"), "0\n");
        File.WriteAllText(Path.Combine(ve, "memory.high"), "max\n");
        var cg = manager.Open(id);
        cg.SetMemoryTarget(64L << 20, 200L << 20, capAtTarget: false, 0).Should().Be(2);
        File.ReadAllText(Path.Combine(ve, "memory.min")).Should().Be((64L << 20).ToString());
        File.ReadAllText(Path.Combine(ve, "memory.high")).Should().Be((200L << 20).ToString());
        cg.SetMemoryTarget(64L << 20, 200L << 20, capAtTarget: false, 0).Should().Be(0);
    }

    [Fact]
    public async Task Raising_a_limit_needs_no_reclaim_and_writes_memsw_first()
    {
        using var dir = new TempDirectory();
        var (cg, memory, _) = Hybrid(dir);
        File.WriteAllText(Path.Combine(memory, "memory.usage_in_bytes"), (300L << 20).ToString());
        await cg.ApplyMemoryLimitAsync(1L << 30, 0, TimeSpan.FromSeconds(1), CancellationToken.None);
        File.ReadAllText(Path.Combine(memory, "memory.limit_in_bytes")).Should().Be((1L << 30).ToString());
        File.ReadAllText(Path.Combine(memory, "memory.memsw.limit_in_bytes")).Should().Be((1L << 30).ToString());
    }
}
