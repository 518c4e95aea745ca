using System.Diagnostics;
using Virtuozzo.Sdk.Testing;
using static Virtuozzo.Sdk.Virtuozzo.Tests.PrlctlFixtures;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// The getting-started sample (samples/GettingStarted, unchanged: the same build CI runs against the local runtime)
/// pointed at a Virtuozzo node with <c>VZSDK_NODE=local</c>, where the node's <c>prlctl</c> is a test double: a script
/// first on PATH that replays the documented outputs (<see cref="PrlctlFixtures"/>) and fails on any other command.
/// </summary>
public sealed class GettingStartedOnANodeTests : IDisposable
{
    private readonly TempDirectory _dir = new("vzsdk-gs-node");

    public void Dispose() => _dir.Dispose();

    /// <summary>The sample's build beside this test's build (same configuration).</summary>
    private static string SampleAssembly()
    {
        var testDir = AppContext.BaseDirectory.TrimEnd('/');
        var framework = Path.GetFileName(testDir);
        var configuration = Path.GetFileName(Path.GetDirectoryName(testDir)!);
        var repo = Path.GetFullPath(Path.Combine(testDir, "../../../../.."));
        return Path.Combine(repo, "samples", "GettingStarted", "bin", configuration, framework, "GettingStarted.dll");
    }

    /// <summary>A replaying prlctl: each known argument vector prints its recorded output; anything else exits 99.</summary>
    private string FakePrlctl()
    {
        var bin = Path.Combine(_dir.Path, "bin");
        var outputs = Path.Combine(_dir.Path, "outputs");
        Directory.CreateDirectory(bin);
        Directory.CreateDirectory(outputs);
        File.WriteAllText(Path.Combine(outputs, "version"), "prlctl version 7.0.253\n");
        File.WriteAllText(Path.Combine(outputs, "ct"), ProvirtedContainer);
        File.WriteAllText(Path.Combine(outputs, "vm"), RosplatformaVm);
        File.WriteAllText(Path.Combine(_dir.Path, "commands.log"), string.Empty);
        var script = Path.Combine(bin, "prlctl");
        File.WriteAllText(script, $$"""
            #!/bin/sh
            # Test double of a Virtuozzo node's prlctl (GettingStartedOnANodeTests).
            echo "$*" >> '{{_dir.Path}}/commands.log'
            case "$*" in
              "--version") cat '{{outputs}}/version' ;;
              "list -a -i -f -j --vmtype ct") cat '{{outputs}}/ct' ;;
              "list -a -i -f -j --vmtype vm") cat '{{outputs}}/vm' ;;
              *) echo "prlctl test double: no recording for: $*" >&2; exit 99 ;;
            esac
            """.Replace("\r", string.Empty));
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return bin;
    }

    [Fact]
    public async Task The_unchanged_getting_started_program_lists_a_nodes_containers_and_vms_through_prlctl()
    {
        var sample = SampleAssembly();
        File.Exists(sample).Should().BeTrue("the sample is built with the solution ({0})", sample);
        var bin = FakePrlctl();
        var dataRoot = Path.Combine(_dir.Path, "data");
        Directory.CreateDirectory(dataRoot);
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(sample);
        start.ArgumentList.Add(dataRoot);
        start.Environment["VZSDK_NODE"] = "local";
        start.Environment["PATH"] = bin + ":" + Environment.GetEnvironmentVariable("PATH");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);

        process.ExitCode.Should().Be(0, "the sample runs; stderr: {0}", await stderr);
        var lines = (await stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines.Should().Contain($"2 VEs in {dataRoot}");
        lines.Should().Contain("  Container 132694 Running").And.Contain("  Vm ts-app-stg-nih-01 Running");
        File.ReadAllLines(Path.Combine(_dir.Path, "commands.log")).Should().Contain("list -a -i -f -j --vmtype ct", "the listing came from the node's prlctl");
    }
}
