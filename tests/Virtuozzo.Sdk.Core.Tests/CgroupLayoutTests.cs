using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Core.Tests;

/// <summary>The SDK's cgroup tree, on a directory laid out like a hybrid host's /sys/fs/cgroup.</summary>
public class CgroupLayoutTests
{
    private static readonly string[] Hierarchies = ["blkio", "cpu,cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd", "unified", "net_cls,net_prio"];

    private static string FakeRoot(TempDirectory dir)
    {
        foreach (var h in Hierarchies)
            Directory.CreateDirectory(Path.Combine(dir.Path, h));
        // co-mounted controllers appear twice, as symbolic links
        Directory.CreateSymbolicLink(Path.Combine(dir.Path, "cpu"), "cpu,cpuacct");
        Directory.CreateSymbolicLink(Path.Combine(dir.Path, "cpuacct"), "cpu,cpuacct");
        return dir.Path;
    }

    [Fact]
    public void Each_data_root_has_its_own_parent_and_the_default_keeps_the_plain_name()
    {
        CgroupManager.ParentFor("/var/lib/vzsdk").Should().Be("vzsdk");
        CgroupManager.ParentFor("/var/lib/vzsdk/").Should().Be("vzsdk");
        var a = CgroupManager.ParentFor("/srv/a");
        a.Should().MatchRegex("^vzsdk-[0-9a-f]{8}$");
        CgroupManager.ParentFor("/srv/b").Should().NotBe(a);
        CgroupManager.ParentFor("/srv/a/").Should().Be(a, "the same directory is the same data root");
    }

    [Fact]
    public async Task Deleting_a_ve_removes_its_cgroups_from_every_hierarchy_the_oci_runtime_used()
    {
        using var dir = new TempDirectory();
        var root = FakeRoot(dir);
        var cgroups = new CgroupManager(CgroupLayout.Hybrid, root, "vzsdk-test");
        var id = VeId.New();
        // what the OCI runtime leaves: the VE's cgroup in every hierarchy, with its payload below
        foreach (var h in Hierarchies)
            Directory.CreateDirectory(Path.Combine(root, h, "vzsdk-test", id.ToString(), "ve", "nested"));

        cgroups.Exists(id).Should().BeTrue();
        await cgroups.DeleteAsync(id, CancellationToken.None);

        foreach (var h in Hierarchies)
            Directory.Exists(Path.Combine(root, h, "vzsdk-test", id.ToString())).Should().BeFalse($"the {h} hierarchy is cleaned too");
        cgroups.Exists(id).Should().BeFalse();
    }

    [Fact]
    public void Reconciliation_sees_a_ve_left_only_in_a_hierarchy_the_sdk_never_creates_in_and_only_under_its_own_parent()
    {
        using var dir = new TempDirectory();
        var root = FakeRoot(dir);
        var mine = new CgroupManager(CgroupLayout.Hybrid, root, "vzsdk-mine");
        var leftover = VeId.New();
        var theirs = VeId.New();
        Directory.CreateDirectory(Path.Combine(root, "devices", "vzsdk-mine", leftover.ToString()));
        Directory.CreateDirectory(Path.Combine(root, "memory", "vzsdk-theirs", theirs.ToString()));

        mine.ListVeIds().Should().Equal(leftover);
        mine.Exists(leftover).Should().BeTrue();
        mine.Exists(theirs).Should().BeFalse("another data root's VE is not this one's to reconcile");
    }
}
