using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Tests;

public class CommandTests
{
    [Fact]
    public void With_methods_return_copies_and_leave_the_original_unchanged()
    {
        var a = new Command("prog");
        var b = a.WithArguments("x", "y").WithTimeout(TimeSpan.FromSeconds(3)).WithWorkingDirectory("/tmp")
            .WithEnvironmentVariables(new Dictionary<string, string?> { ["A"] = "1" }).WithSecrets("s3cret");
        a.Arguments.Should().BeEmpty();
        a.Timeout.Should().BeNull();
        a.WorkingDirectory.Should().BeNull();
        a.EnvironmentVariables.Should().BeEmpty();
        a.Secrets.Should().BeEmpty();
        b.Arguments.Should().Equal("x", "y");
        b.Timeout.Should().Be(TimeSpan.FromSeconds(3));
        b.EnvironmentVariables.Should().ContainKey("A");
    }

    [Fact]
    public void The_command_line_is_quoted_and_secrets_are_redacted()
    {
        var c = new Command("prlctl").WithArguments("set", "web 01", "--userpasswd", "root:hunter2", "it's").WithSecrets("hunter2");
        c.ToString().Should().Be("prlctl set 'web 01' --userpasswd root:*** 'it'\\''s'");
        c.Redact("failed for root:hunter2").Should().Be("failed for root:***");
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("a\0b")]
    public void A_bad_program_path_is_a_caller_mistake(string path)
    {
        var act = () => new Command(path);
        act.Should().Throw<ArgumentException>();
    }

    [Fact]
    public void Arguments_with_nul_characters_and_bad_timeouts_are_refused()
    {
        var c = new Command("x");
        c.Invoking(x => x.WithArguments("a\0")).Should().Throw<ArgumentException>();
        c.Invoking(x => x.WithTimeout(TimeSpan.Zero)).Should().Throw<ArgumentOutOfRangeException>();
        c.Invoking(x => x.WithEnvironmentVariables(new Dictionary<string, string?> { ["A=B"] = "1" })).Should().Throw<ArgumentException>();
    }

    [Fact]
    public void A_remote_command_line_quotes_every_word_so_the_remote_shell_passes_them_as_is()
    {
        var c = new Command("printf").WithArguments("%s\n", "$(reboot)", "a'b", "; rm -rf /")
            .WithWorkingDirectory("/var/lib/my dir")
            .WithEnvironmentVariables(new Dictionary<string, string?> { ["LANG"] = "C", ["HOME"] = null });
        SshHost.RemoteCommandLine(c).Should().Be(
            "cd '/var/lib/my dir' && exec env -u 'HOME' 'LANG=C' 'printf' '%s\n' '$(reboot)' 'a'\\''b' '; rm -rf /'");
    }
}
