using System.Text.Json;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

public class MemCliTests
{
    [IntegrationFact(Root = true)]
    public async Task Mem_policy_switches_and_status_json_reports_the_host_account_under_a_budget()
    {
        using var root = new TempDirectory("vzsdk-memcli");
        (await VzsdkTool.RunAsync("mem", "policy", "--data-root", root.Path)).StandardOutput.Trim().Should().Be("density");
        var set = await VzsdkTool.RunAsync("mem", "policy", "senpai", "--data-root", root.Path);
        set.ExitCode.Should().Be(0, set.StandardError);
        (await VzsdkTool.RunAsync("mem", "policy", "--data-root", root.Path)).StandardOutput.Trim().Should().Be("senpai");
        var bad = await VzsdkTool.RunAsync("mem", "policy", "fastest", "--data-root", root.Path);
        bad.ExitCode.Should().Be(2);
        bad.StandardError.Should().Contain("static, performance, density, wfb, senpai");

        var r = await VzsdkTool.RunAsync("mem", "status", "--json", "--budget", "3G", "--data-root", root.Path);
        r.ExitCode.Should().Be(0, r.StandardError);
        using var doc = JsonDocument.Parse(r.StandardOutput);
        var s = doc.RootElement;
        s.GetProperty("policy").GetString().Should().Be("senpai");
        s.GetProperty("available").GetInt64().Should().Be(3L << 30);
        s.GetProperty("total").GetInt64().Should().BeGreaterThan(s.GetProperty("reserve").GetInt64());
        s.GetProperty("guaranteed").GetInt64().Should().Be(0);
        s.GetProperty("ves").GetArrayLength().Should().Be(0);
    }

    [IntegrationFact(Root = true)]
    public async Task Mem_ksm_status_reports_the_kernel_figures()
    {
        if (!File.Exists("/sys/kernel/mm/ksm/run"))
            return;
        using var root = new TempDirectory("vzsdk-memcli");
        var r = await VzsdkTool.RunAsync("mem", "ksm", "status", "--json", "--data-root", root.Path);
        r.ExitCode.Should().Be(0, r.StandardError);
        using var doc = JsonDocument.Parse(r.StandardOutput);
        doc.RootElement.GetProperty("mode").GetString().Should().Be("auto");
        doc.RootElement.GetProperty("pages_sharing").GetInt64().Should().BeGreaterThanOrEqualTo(0);
        doc.RootElement.GetProperty("saved_bytes").GetInt64().Should().Be(doc.RootElement.GetProperty("pages_sharing").GetInt64() * 4096);
        (await VzsdkTool.RunAsync("mem", "ksm", "sometimes", "--data-root", root.Path)).ExitCode.Should().Be(2);
    }
}
