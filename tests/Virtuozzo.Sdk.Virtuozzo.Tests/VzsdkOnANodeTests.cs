using System.Diagnostics;
using System.Text.Json;
using Virtuozzo.Sdk.Testing;
using static Virtuozzo.Sdk.Virtuozzo.Tests.PrlctlFixtures;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// <c>vzsdk --host local host info</c> and <c>ct compact</c> (the built tool, as users run it) on a "node" whose tools are
/// test doubles first on PATH: <c>prlctl</c>, <c>vzctl</c> and <c>criu</c> print their versions (prlctl also the verbatim
/// provirted container of <see cref="PrlctlFixtures.ProvirtedContainer"/>; vzctl accepts <c>compact 132694</c>), <c>cat</c> answers
/// <c>/etc/virtuozzo-release</c>, <c>test</c> answers the prl_disk_tool and /dev/kvm probes; anything else they are
/// asked exits 99. Version and release lines are SYNTHETIC (see <see cref="NodeCapabilitiesTests"/>).
/// </summary>
public sealed class VzsdkOnANodeTests : IDisposable
{
    private readonly TempDirectory _dir = new("vzsdk-on-node");

    public void Dispose() => _dir.Dispose();

    private static string Vzsdk()
    {
        var testDir = AppContext.BaseDirectory.TrimEnd('/');
        var framework = Path.GetFileName(testDir);
        var configuration = Path.GetFileName(Path.GetDirectoryName(testDir)!);
        var repo = Path.GetFullPath(Path.Combine(testDir, "../../../../.."));
        return Path.Combine(repo, "samples", "Vzsdk", "bin", configuration, framework, "vzsdk.dll");
    }

    private string FakeNodeTools()
    {
        var bin = Path.Combine(_dir.Path, "bin");
        Directory.CreateDirectory(bin);
        void Script(string name, string body)
        {
            var path = Path.Combine(bin, name);
            File.WriteAllText(path, "#!/bin/sh\n# Test double of a Virtuozzo node's tool (VzsdkOnANodeTests).\n" + body.Replace("\r", string.Empty));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        const string Unknown = """  *) echo "test double: no recording for: $*" >&2; exit 99 ;;""";
        File.WriteAllText(Path.Combine(_dir.Path, "ct.json"), ProvirtedContainer);
        File.WriteAllText(Path.Combine(_dir.Path, "commands.log"), string.Empty);
        var log = $"echo \"$0 $*\" >> '{_dir.Path}/commands.log'\n";
        Script("prlctl", log + $"case \"$*\" in\n  \"--version\") echo 'prlctl version 7.0.253' ;;\n  \"list -i -f -j 132694\") cat '{_dir.Path}/ct.json' ;;\n{Unknown}\nesac\n");
        Script("vzctl", log + $"case \"$*\" in\n  \"--version\") echo 'vzctl version 7.0.222' ;;\n  \"compact 132694\") exit 0 ;;\n{Unknown}\nesac\n");
        Script("criu", $"case \"$*\" in\n  \"--version\") echo 'Version: 3.15' ;;\n  \"check\") echo 'Looks good.' ;;\n{Unknown}\nesac\n");
        Script("cat", "case \"$*\" in\n  \"/etc/virtuozzo-release\") echo 'Virtuozzo Hybrid Server release 7.5.4 (31)' ;;\n  *) exec /bin/cat \"$@\" ;;\nesac\n");
        Script("test", $"case \"$*\" in\n  \"-x /usr/sbin/prl_disk_tool\") exit 0 ;;\n  \"-c /dev/kvm\") exit 1 ;;\n{Unknown}\nesac\n");
        return bin;
    }

    private async Task<(int ExitCode, string StandardOutput, string StandardError)> RunAsync(params string[] args)
    {
        var tool = Vzsdk();
        File.Exists(tool).Should().BeTrue("vzsdk is built before these tests ({0})", tool);
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(tool);
        foreach (var a in args)
            start.ArgumentList.Add(a);
        start.Environment["PATH"] = FakeNodeTools() + ":" + Environment.GetEnvironmentVariable("PATH");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    [Fact]
    public async Task Host_info_json_on_a_node_carries_its_runtime_product_tool_versions_and_features()
    {
        var r = await RunAsync("--host", "local", "--data-root", Path.Combine(_dir.Path, "data"), "host", "info", "--json");
        r.ExitCode.Should().Be(0, r.StandardError);
        using var doc = JsonDocument.Parse(r.StandardOutput);
        var root = doc.RootElement;
        root.GetProperty("runtime").GetString().Should().Be("virtuozzo");
        root.GetProperty("product").GetString().Should().Be("Virtuozzo Hybrid Server release 7.5.4 (31)");
        root.GetProperty("kernel").GetString().Should().NotBeNullOrEmpty();
        var tools = root.GetProperty("tools");
        tools.GetProperty("prlctl").GetString().Should().Be("7.0.253");
        tools.GetProperty("vzctl").GetString().Should().Be("7.0.222");
        tools.GetProperty("prl_disk_tool").GetString().Should().Be("unknown");
        tools.GetProperty("criu").GetString().Should().Be("3.15");
        root.GetProperty("kvm").GetProperty("usable").GetBoolean().Should().BeFalse();
        root.GetProperty("criu").GetProperty("usable").GetBoolean().Should().BeTrue();
        var features = root.GetProperty("features");
        features.GetProperty("vms").GetProperty("usable").GetBoolean().Should().BeFalse();
        features.GetProperty("backups").GetProperty("usable").GetBoolean().Should().BeTrue();
        features.GetProperty("json_escaping").GetProperty("reason").GetString().Should().Contain("7.0.253");
    }

    [Fact]
    public async Task Host_info_text_on_a_node_names_the_product_and_the_features()
    {
        var r = await RunAsync("--host", "local", "--data-root", Path.Combine(_dir.Path, "data"), "host", "info");
        r.ExitCode.Should().Be(0, r.StandardError);
        var lines = r.StandardOutput.Split('\n');
        lines.Should().Contain("Runtime:  virtuozzo");
        lines.Should().Contain("Product:  Virtuozzo Hybrid Server release 7.5.4 (31)");
        lines.Should().Contain(l => l.StartsWith("  prlctl ", StringComparison.Ordinal) && l.EndsWith("7.0.253", StringComparison.Ordinal));
        lines.Should().Contain(l => l.StartsWith("  disk_compaction ", StringComparison.Ordinal) && l.Contains("yes (", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Ct_compact_on_a_node_runs_vzctl_compact_with_the_containers_EnvID()
    {
        var r = await RunAsync("--host", "local", "--data-root", Path.Combine(_dir.Path, "data"), "ct", "compact", "132694");
        r.ExitCode.Should().Be(0, r.StandardError);
        r.StandardOutput.Should().Contain("compacted");
        File.ReadAllLines(Path.Combine(_dir.Path, "commands.log")).Select(l => l[(l.LastIndexOf('/') + 1)..])
            .Should().Contain("vzctl compact 132694");
    }

    [Fact]
    public async Task Ct_compact_on_the_local_runtime_refuses_by_name_with_exit_1()
    {
        var r = await RunAsync("--data-root", Path.Combine(_dir.Path, "data"), "ct", "compact", "web1");
        r.ExitCode.Should().Be(1, r.StandardOutput);
        r.StandardError.Should().Contain("Disk compaction (CompactDiskAsync)").And.Contain("local runtime");
    }
}
