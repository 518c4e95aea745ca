using System.Diagnostics;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

public class CliRobustnessTests
{
    public static TheoryData<string[]> BadInvocations() => new()
    {
        new[] { "ct", "info", "" },
        new[] { "ct", "info", "../../etc" },
        new[] { "ct", "create", "-rf" },
        new[] { "ct", "create", "ok1", "--memsize", "-5" },
        new[] { "ct", "create", "ok2", "--diskspace", "99999999999T" },
        new[] { "ct", "create", "ok3", "--cpulimit", "abc" },
        new[] { "ct", "create", "0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44" },
        new[] { "ct", "exec", "nope" },
        new[] { "ct", "set", "nope", "--memguarantee", "150" },
        new[] { "backup", "restore", "../../x" },
        new[] { "backup", "delete", "" },
        new[] { "backup", "prune", "nope", "--keep-last", "-1" },
        new[] { "disk", "info", "/etc" },
        new[] { "disk", "info", "/no/such/file" },
        new[] { "disk", "create", "-f", "qcow2", "/tmp/vzsdk-bad.qcow2", "-1" },
        new[] { "disk", "check", "/dev/null" },
        new[] { "vm", "info", "nope" },
        new[] { "--data-root", "/proc/version", "ct", "list" },
    };

    [Theory]
    [MemberData(nameof(BadInvocations))]
    public async Task Bad_input_gets_a_one_line_error_and_never_crashes_the_tool(string[] args)
    {
        using var root = new TempDirectory();
        string[] full = args.Length > 0 && args[0] == "--data-root" ? args : ["--data-root", root.Path, .. args];
        var r = await VzsdkTool.RunAsync(full);
        r.ExitCode.Should().BeInRange(1, 123, $"'vzsdk {string.Join(' ', args)}' fails cleanly: {r.StandardError}");
        r.StandardError.Should().StartWith("vzsdk: ").And.NotContain("   at ", "no stack trace without --verbose");
    }

    // `vzsdk disk VERB` builds a lean command tree (only that verb, no help option unless asked for): its
    // errors must read like everyone else's, and help must still work
    public static TheoryData<string[]> BadDiskInvocations() => new()
    {
        new[] { "disk", "info", "/etc" },
        new[] { "disk", "info" },
        new[] { "disk", "convert" },
        new[] { "disk", "convert", "--bogus", "a", "b" },
        new[] { "disk", "convert", "-O", "vmdk", "/no/such/a", "/tmp/b" },
        new[] { "disk", "nosuchverb", "x" },
        new[] { "disk", "check", "/dev/null", "extra" },
    };

    [Theory]
    [MemberData(nameof(BadDiskInvocations))]
    public async Task Bad_disk_verb_input_gets_a_one_line_error_too(string[] args)
    {
        var r = await VzsdkTool.RunAsync(args);
        r.ExitCode.Should().BeInRange(1, 2, $"'vzsdk {string.Join(' ', args)}' fails cleanly: {r.StandardError}");
        r.StandardError.Should().StartWith("vzsdk: ").And.NotContain("   at ", "no stack trace without --verbose");
    }

    [Theory]
    [InlineData("disk", "convert", "--help")]
    [InlineData("disk", "info", "-h")]
    [InlineData("disk", "--help")]
    public async Task Disk_verbs_still_answer_help(params string[] args)
    {
        var r = await VzsdkTool.RunAsync(args);
        r.ExitCode.Should().Be(0, r.StandardError);
        r.StandardOutput.Should().Contain("Usage:").And.Contain("vzsdk disk");
    }

    [Fact]
    public async Task Ctrl_C_stops_a_convert_and_leaves_neither_the_output_nor_a_temporary_file()
    {
        using var dir = new TempDirectory();
        var src = dir.File("src.raw");
        using (var fs = File.Create(src))
        {
            // 512 MiB of random data: compressing it with zlib takes seconds
            var rnd = new Random(7);
            var buf = new byte[1 << 20];
            for (int i = 0; i < 512; i++)
            {
                rnd.NextBytes(buf);
                fs.Write(buf);
            }
        }
        var dst = dir.File("out.qcow2");
        // env --default-signal=INT: a test host started in the background by a non-interactive shell has
        // SIGINT ignored, and a child would inherit that
        var psi = new ProcessStartInfo("env") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--default-signal=INT" }.Concat(VzsdkTool.StartLine("disk", "convert", "-c", "-O", "qcow2", src, dst)))
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        // the temporary output appears once the conversion runs
        var until = DateTime.UtcNow.AddSeconds(60);
        while (Directory.GetFiles(dir.Path, ".out.qcow2.*.tmp").Length == 0)
        {
            p.HasExited.Should().BeFalse("the convert should still be running: {0}", await Task.WhenAny(stderr, Task.Delay(1)) == stderr ? await stderr : "");
            DateTime.UtcNow.Should().BeBefore(until, "vzsdk should start converting within a minute");
            await Task.Delay(20);
        }
        using (var kill = Process.Start("kill", ["-INT", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(timeout.Token);
        await stdout;
        p.ExitCode.Should().Be(1, "a cancelled verb fails (CLI.md): {0}", await stderr);
        (await stderr).Should().StartWith("vzsdk: ").And.Contain("cancel");
        File.Exists(dst).Should().BeFalse("a cancelled convert publishes nothing");
        Directory.GetFiles(dir.Path, "*.tmp").Should().BeEmpty("the temporary output is removed");
    }
}
