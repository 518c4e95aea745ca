using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>What a node is and supports: product release, prlctl/vzctl versions and the features the runtime drives there.</summary>
public class NodeCapabilitiesTests
{
    [Fact]
    public async Task A_node_reports_its_product_tool_versions_and_features()
    {
        var host = new RecordedSessionHost()
            .Expect(["prlctl", "--version"], "prlctl version 7.0.253\n")
            .Expect(["vzctl", "--version"], "vzctl version 7.0.222\n")
            .Expect(["cat", "/etc/virtuozzo-release"], "Virtuozzo Hybrid Server release 7.5.4 (31)\n");
        var caps = await new VirtuozzoNode(host).GetCapabilitiesAsync(CancellationToken.None);
        caps.Product.Should().Be("Virtuozzo Hybrid Server release 7.5.4 (31)");
        caps.PrlctlVersion.Should().Be("7.0.253");
        caps.VzctlVersion.Should().Be("7.0.222");
        caps.Features["json escaping"].Usable.Should().BeTrue();
        caps.Features["usage statistics"].Usable.Should().BeFalse();
        host.VerifyAllReplayed();
    }

    [Fact]
    public async Task An_OpenVZ_node_without_vzctl_and_with_an_old_prlctl_says_so()
    {
        var host = new RecordedSessionHost()
            .Expect(["prlctl", "--version"], "prlctl version 7.0.150\n")
            .Expect(["vzctl", "--version"], "", "bash: vzctl: command not found\n", 127)
            .Expect(["cat", "/etc/virtuozzo-release"], "", "cat: /etc/virtuozzo-release: No such file or directory\n", 1)
            .Expect(["cat", "/etc/vzlinux-release"], "VzLinux release 7.9\n");
        var caps = await new VirtuozzoNode(host).GetCapabilitiesAsync(CancellationToken.None);
        caps.Product.Should().Be("VzLinux release 7.9");
        caps.VzctlVersion.Should().BeNull();
        caps.Features["json escaping"].Usable.Should().BeFalse();
        caps.Features["json escaping"].Reason.Should().Contain("7.0.150");
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
        var host = new RecordedSessionHost().Expect(["prlctl", "--version"], "", "bash: prlctl: command not found\n", 127);
        await ((Func<Task>)(() => new VirtuozzoNode(host).GetVersionAsync(CancellationToken.None))).Should().ThrowAsync<Core.ToolNotFoundException>();
    }
}
