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
}
