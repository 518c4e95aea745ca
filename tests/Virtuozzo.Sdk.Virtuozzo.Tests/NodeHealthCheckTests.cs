using Microsoft.Extensions.Diagnostics.HealthChecks;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Testing;
using static Virtuozzo.Sdk.Virtuozzo.Tests.PrlctlFixtures;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// <see cref="VirtuozzoHostHealthCheck"/> on the Virtuozzo runtime checks the node's tools and service, not the local
/// runtime's tools. Exit 253 = prlctl cannot reach the dispatcher (/work/shared/reference/virtuozzo-cli-and-sdk.md §3.1,
/// <c>prlerr2exitcode</c>); the empty list <c>[\n\n]\n</c> is §3.2's; version lines are SYNTHETIC (see <see cref="NodeCapabilitiesTests"/>).
/// </summary>
public class NodeHealthCheckTests
{
    private static readonly string[] Inventory = ["prlctl", "list", "-a", "-j", "-o", "uuid,status,type,name"];

    private static readonly HostCapabilities Basics = new(
        "node1", "3.10.0-1160.80.1.vz7.191.4", CgroupLayout.V1, 16, 64L << 30, new FeatureStatus(false, "not probed"),
        new Dictionary<string, string?> { ["runc"] = null, ["qemu-system-x86_64"] = null }, new FeatureStatus(false, "not probed"));

    private static RecordedSessionHost Node(bool kvm = true, bool vzctl = true) => new RecordedSessionHost()
        .WithCapabilities(Basics)
        .Always(["prlctl", "--version"], "prlctl version 7.0.253\n")
        .Expect(["vzctl", "--version"], vzctl ? "vzctl version 7.0.222\n" : "", vzctl ? "" : "bash: vzctl: command not found\n", vzctl ? 0 : 127)
        .Expect(["cat", "/etc/virtuozzo-release"], "Virtuozzo Hybrid Server release 7.5.4 (31)\n")
        .Expect(["test", "-x", "/usr/sbin/prl_disk_tool"])
        .Expect(["test", "-c", "/dev/kvm"], exitCode: kvm ? 0 : 1)
        .Expect(["criu", "--version"], "Version: 3.15\n");

    private static Task<HealthCheckResult> CheckAsync(RecordedSessionHost host, VirtuozzoHostHealthCheckOptions? options = null)
        => new VirtuozzoHostHealthCheck(VirtuozzoRuntime.CreateVirtuozzo(host), options ?? new VirtuozzoHostHealthCheckOptions { ProbeKvmAndCriu = false })
            .CheckHealthAsync(new HealthCheckContext());

    [Fact]
    public async Task A_node_with_prlctl_and_an_answering_service_is_healthy_without_the_local_runtimes_tools()
    {
        var host = Node().Expect(Inventory, Rows(Row("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "running", "CT", "132694")));
        var r = await CheckAsync(host);
        r.Status.Should().Be(HealthStatus.Healthy, r.Description);
        r.Data["runtime"].Should().Be("virtuozzo");
        r.Data["tool:prlctl"].Should().Be("7.0.253");
        r.Data["dispatcher"].Should().Be("answering");
        r.Data["ves"].Should().Be(1);
        r.Data.Should().NotContainKey("tool:runc").And.NotContainKey("data_root");
        host.VerifyAllReplayed();
    }

    [Fact]
    public async Task A_node_whose_service_does_not_answer_is_unhealthy_naming_prl_disp_service()
    {
        var host = Node().Expect(Inventory, "", "Failed to get VM list: Unable to connect to Virtuozzo. You may experience a connection problem or the server may be down.\n", 253);
        var r = await CheckAsync(host);
        r.Status.Should().Be(HealthStatus.Unhealthy);
        r.Description.Should().Contain("prl-disp-service");
        r.Data["dispatcher"].Should().Be("not answering");
    }

    [Fact]
    public async Task A_node_without_prlctl_is_unhealthy_and_the_service_is_not_asked()
    {
        var host = new RecordedSessionHost().WithCapabilities(Basics).Expect(["prlctl", "--version"], "", "bash: prlctl: command not found\n", 127);
        var r = await CheckAsync(host);
        r.Status.Should().Be(HealthStatus.Unhealthy);
        r.Description.Should().Contain("prlctl");
        host.Commands.Should().ContainSingle();
    }

    [Fact]
    public async Task Required_node_tools_are_checked_on_the_node()
    {
        var host = Node(vzctl: false).Expect(Inventory, EmptyList);
        var r = await CheckAsync(host, new VirtuozzoHostHealthCheckOptions { ProbeKvmAndCriu = false, RequiredTools = ["prlctl", "vzctl"] });
        r.Status.Should().Be(HealthStatus.Unhealthy);
        r.Description.Should().Be("missing tools on the node: vzctl");
    }

    [Fact]
    public async Task A_node_without_dev_kvm_is_degraded_when_probing_and_unhealthy_when_KVM_is_required()
    {
        var degraded = await CheckAsync(Node(kvm: false).Expect(["criu", "check"], "Looks good.\n").Expect(Inventory, EmptyList), new VirtuozzoHostHealthCheckOptions());
        degraded.Status.Should().Be(HealthStatus.Degraded);
        degraded.Description.Should().Contain("/dev/kvm");
        var unhealthy = await CheckAsync(Node(kvm: false).Expect(["criu", "check"], "Looks good.\n"), new VirtuozzoHostHealthCheckOptions { RequireKvm = true });
        unhealthy.Status.Should().Be(HealthStatus.Unhealthy);
    }
}
