using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// What a node is and supports, through the public <see cref="VirtuozzoRuntime.GetHostCapabilitiesAsync"/>: product
/// release, prlctl/vzctl versions, the node's tools and the features probed from them.
/// </summary>
/// <remarks>
/// Sources (/work/shared/reference/virtuozzo-cli-and-sdk.md): JSON escaping from prlctl 7.0.190 (§6, commit e457201);
/// prl_disk_tool at <c>/usr/sbin/prl_disk_tool</c> (§4); VMs run by the dispatcher through QEMU/KVM (§1); online container
/// migration through CRIU/p.haul (§6). The exact version lines (<c>prlctl version 7.0.253</c>) and release lines are
/// SYNTHETIC: the reference names the versions (7.0.253 is the last vz7-u22 prlctl, §0) but quotes no capture of the lines.
/// </remarks>
public class NodeCapabilitiesTests
{
    /// <summary>The node's own facts (kernel, cgroups, CPUs, memory) as the host probe reads them; the runtime replaces tools, KVM and CRIU.</summary>
    private static readonly HostCapabilities NodeBasics = new(
        "node1", "3.10.0-1160.80.1.vz7.191.4", CgroupLayout.V1, 16, 64L << 30,
        new FeatureStatus(false, "not probed"),
        new Dictionary<string, string?> { ["runc"] = null, ["qemu-system-x86_64"] = null, ["qemu-img"] = "2.12.0", ["qemu-storage-daemon"] = null, ["criu"] = "3.15" },
        new FeatureStatus(false, "not probed"));

    private static RecordedSessionHost FullNode() => new RecordedSessionHost()
        .WithCapabilities(NodeBasics)
        .Expect(["prlctl", "--version"], "prlctl version 7.0.253\n")
        .Expect(["vzctl", "--version"], "vzctl version 7.0.222\n")
        .Expect(["cat", "/etc/virtuozzo-release"], "Virtuozzo Hybrid Server release 7.5.4 (31)\n")
        .Expect(["test", "-x", "/usr/sbin/prl_disk_tool"])
        .Expect(["test", "-c", "/dev/kvm"])
        .Expect(["criu", "--version"], "Version: 3.15\n");

    [Fact]
    public async Task A_node_reports_its_product_tool_versions_and_features_through_the_public_API()
    {
        var host = FullNode();
        var caps = await VirtuozzoRuntime.CreateVirtuozzo(host).GetHostCapabilitiesAsync(new CapabilityProbeOptions { SkipProbes = true });

        caps.Runtime.Should().Be(RuntimeKind.Virtuozzo);
        caps.Product.Should().Be("Virtuozzo Hybrid Server release 7.5.4 (31)");
        caps.Kernel.Should().Be("3.10.0-1160.80.1.vz7.191.4");
        caps.Cpus.Should().Be(16);
        caps.Tools.Should().Equal(new Dictionary<string, string?>
        {
            ["prlctl"] = "7.0.253",
            ["vzctl"] = "7.0.222",
            ["prl_disk_tool"] = "unknown",
            ["criu"] = "3.15",
        });
        caps.Kvm.Usable.Should().BeTrue();
        caps.Criu.Reason.Should().Be("not probed");
        caps.Features.Keys.Should().Contain(["containers", "vms", "snapshots", "backups", "live_migration", "memory_guarantees", "memory_hotplug", "disk_compaction"]);
        caps.Features["json_escaping"].Usable.Should().BeTrue();
        caps.Features["memory_hotplug"].Usable.Should().BeTrue();
        caps.Features["disk_compaction"].Should().Be(new FeatureStatus(true, "prl_disk_tool compact (VMs), vzctl compact (containers)"));
        caps.Features["live_migration"].Reason.Should().Contain("CRIU");
        caps.Features["usage_statistics"].Usable.Should().BeFalse();
        host.VerifyAllReplayed();
    }

    [Fact]
    public async Task Unless_probes_are_skipped_criu_check_runs_on_the_node()
    {
        var host = FullNode().Expect(["criu", "check"], "Looks good.\n");
        var caps = await VirtuozzoRuntime.CreateVirtuozzo(host).GetHostCapabilitiesAsync();
        caps.Criu.Should().Be(new FeatureStatus(true, "criu check passed"));
        host.VerifyAllReplayed();
    }

    [Fact]
    public async Task An_OpenVZ_node_without_vzctl_prl_disk_tool_kvm_or_criu_and_with_an_old_prlctl_says_so()
    {
        var host = new RecordedSessionHost()
            .WithCapabilities(NodeBasics)
            .Expect(["prlctl", "--version"], "prlctl version 7.0.150\n")
            .Expect(["vzctl", "--version"], "", "bash: vzctl: command not found\n", 127)
            .Expect(["cat", "/etc/virtuozzo-release"], "", "cat: /etc/virtuozzo-release: No such file or directory\n", 1)
            .Expect(["cat", "/etc/vzlinux-release"], "VzLinux release 7.9\n")
            .Expect(["test", "-x", "/usr/sbin/prl_disk_tool"], exitCode: 1)
            .Expect(["test", "-c", "/dev/kvm"], exitCode: 1)
            .Expect(["criu", "--version"], "", "bash: criu: command not found\n", 127);
        var caps = await VirtuozzoRuntime.CreateVirtuozzo(host).GetHostCapabilitiesAsync();

        caps.Product.Should().Be("VzLinux release 7.9");
        caps.Tools["vzctl"].Should().BeNull();
        caps.Tools["prl_disk_tool"].Should().BeNull();
        caps.Tools["criu"].Should().BeNull();
        caps.Kvm.Usable.Should().BeFalse();
        caps.Criu.Should().Be(new FeatureStatus(false, "criu is not installed on the node"));
        caps.Features["vms"].Usable.Should().BeFalse();
        caps.Features["memory_hotplug"].Usable.Should().BeFalse();
        caps.Features["disk_compaction"].Usable.Should().BeFalse();
        caps.Features["disk_compaction"].Reason.Should().Contain("/usr/sbin/prl_disk_tool");
        caps.Features["live_migration"].Reason.Should().Contain("running containers cannot migrate live");
        caps.Features["json_escaping"].Usable.Should().BeFalse();
        caps.Features["json_escaping"].Reason.Should().Contain("7.0.150");
        host.VerifyAllReplayed();
    }

    [Fact]
    public async Task A_node_without_a_release_file_has_no_product()
    {
        var host = new RecordedSessionHost()
            .WithCapabilities(NodeBasics)
            .Expect(["prlctl", "--version"], "prlctl version 7.0.253\n")
            .Expect(["vzctl", "--version"], "vzctl version 7.0.222\n")
            .Expect(["cat", "/etc/virtuozzo-release"], "", "No such file or directory\n", 1)
            .Expect(["cat", "/etc/vzlinux-release"], "", "No such file or directory\n", 1)
            .Expect(["test", "-x", "/usr/sbin/prl_disk_tool"])
            .Expect(["test", "-c", "/dev/kvm"])
            .Expect(["criu", "--version"], "Version: 3.15\n");
        var caps = await VirtuozzoRuntime.CreateVirtuozzo(host).GetHostCapabilitiesAsync(new CapabilityProbeOptions { SkipProbes = true });
        caps.Product.Should().BeNull();
    }

    [Fact]
    public void The_local_runtime_reports_the_same_feature_names_from_its_own_tools()
    {
        var caps = NodeBasics with { Kvm = new FeatureStatus(true, "booted"), Criu = new FeatureStatus(false, "criu check failed: x"),
            Tools = new Dictionary<string, string?> { ["runc"] = "1.1.12", ["qemu-system-x86_64"] = "8.2.2", ["criu"] = null } };
        var features = VirtuozzoRuntime.LocalFeatures(caps);
        features.Keys.Should().Contain(["containers", "vms", "snapshots", "backups", "live_migration", "memory_guarantees", "memory_hotplug", "disk_compaction"]);
        features["containers"].Usable.Should().BeTrue();
        features["vms"].Should().Be(new FeatureStatus(true, "QEMU with KVM"));
        features["live_migration"].Reason.Should().Contain("containers cannot migrate live: criu check failed: x");
        features["disk_compaction"].Usable.Should().BeFalse();
    }

    [Fact]
    public async Task The_prlctl_version_is_asked_once()
    {
        var host = new RecordedSessionHost().Expect(["prlctl", "--version"], "prlctl version 7.0.253\n");
        var node = new VirtuozzoNode(host);
        (await node.GetVersionAsync(CancellationToken.None)).Should().Be(new PrlctlVersion(7, 0, 253));
        (await node.GetVersionAsync(CancellationToken.None)).Should().Be(new PrlctlVersion(7, 0, 253));
        host.Commands.Should().ContainSingle();
    }

    [Fact]
    public async Task A_node_without_prlctl_is_a_missing_tool()
    {
        var host = new RecordedSessionHost().WithCapabilities(NodeBasics).Expect(["prlctl", "--version"], "", "bash: prlctl: command not found\n", 127);
        await ((Func<Task>)(() => VirtuozzoRuntime.CreateVirtuozzo(host).GetHostCapabilitiesAsync())).Should().ThrowAsync<ToolNotFoundException>();
    }
}
