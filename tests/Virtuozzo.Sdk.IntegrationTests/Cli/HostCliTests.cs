using System.Text.Json;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

public class HostCliTests
{
    [IntegrationFact("qemu-system-x86_64")]
    public async Task Host_info_json_carries_the_documented_keys_in_snake_case()
    {
        var r = await VzsdkTool.RunAsync("host", "info", "--json");
        r.ExitCode.Should().Be(0, r.StandardError);
        using var doc = JsonDocument.Parse(r.StandardOutput);
        var root = doc.RootElement;
        root.GetProperty("kernel").GetString().Should().Be((await File.ReadAllTextAsync("/proc/sys/kernel/osrelease")).Trim());
        root.GetProperty("cgroup").GetString().Should().BeOneOf("v1", "hybrid", "v2");
        root.GetProperty("cpus").GetInt32().Should().Be(Environment.ProcessorCount);
        root.GetProperty("memory").GetInt64().Should().BeGreaterThan(0);
        root.GetProperty("kvm").GetProperty("usable").ValueKind.Should().BeOneOf(JsonValueKind.True, JsonValueKind.False);
        root.GetProperty("kvm").GetProperty("reason").GetString().Should().NotBeNullOrEmpty();
        root.GetProperty("criu").GetProperty("reason").GetString().Should().NotBeNullOrEmpty();
        var tools = root.GetProperty("tools");
        foreach (var tool in new[] { "runc", "qemu-system-x86_64", "qemu-img", "qemu-storage-daemon", "criu" })
            tools.TryGetProperty(tool, out _).Should().BeTrue($"tools lists {tool}");
        tools.GetProperty("qemu-system-x86_64").GetString().Should().MatchRegex(@"^\d+\.\d+");
    }

    [Fact]
    public async Task Usage_errors_exit_2_with_one_line_on_standard_error()
    {
        foreach (var args in new[] { new[] { "host", "info", "--no-such-flag" }, new[] { "frobnicate" }, new[] { "host" } })
        {
            var r = await VzsdkTool.RunAsync(args);
            r.ExitCode.Should().Be(2, string.Join(' ', args));
            r.StandardError.Trim().Split('\n').Should().ContainSingle();
            r.StandardError.Should().StartWith("vzsdk: ");
        }
    }

    [Fact]
    public async Task Help_exits_0()
    {
        var r = await VzsdkTool.RunAsync("--help");
        r.ExitCode.Should().Be(0);
        r.StandardOutput.Should().Contain("host");
    }
}
