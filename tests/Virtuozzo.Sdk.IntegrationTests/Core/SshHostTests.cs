using System.Text;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Core;

public class SshHostTests(SshServerFixture server) : IClassFixture<SshServerFixture>
{
    private SshHost TrustingHost()
    {
        server.StartError.Should().BeNull("the test sshd must start");
        return new SshHost(server.Options(server.WriteTrustingKnownHosts()));
    }

    [IntegrationFact("sshd", "ssh", "ssh-keygen")]
    public async Task I_can_run_commands_on_a_remote_host_with_arguments_passed_exactly()
    {
        await using var host = TrustingHost();
        var r = await host.ExecuteBufferedAsync(new Command("printf").WithArguments("%s|", "$(id)", "a b", "it's", ";ls"));
        r.StandardOutput.Should().Be("$(id)|a b|it's|;ls|");

        var env = await host.ExecuteBufferedAsync(new Command("sh").WithArguments("-c", "echo \"$VZ_X\"; pwd")
            .WithEnvironmentVariables(new Dictionary<string, string?> { ["VZ_X"] = "x y" }).WithWorkingDirectory("/tmp"));
        env.StandardOutput.Should().Be("x y\n/tmp\n");

        var failed = () => host.ExecuteAsync(new Command("sh").WithArguments("-c", "echo oops >&2; exit 5"));
        var ex = (await failed.Should().ThrowAsync<CommandFailedException>()).Which;
        ex.ExitCode.Should().Be(5);
        ex.StandardErrorTail.Should().Be("oops");

        var missing = () => host.ExecuteAsync(new Command("vzsdk-no-such-tool"));
        (await missing.Should().ThrowAsync<ToolNotFoundException>()).Which.Tool.Should().Be("vzsdk-no-such-tool");
    }

    [IntegrationFact("sshd", "ssh", "ssh-keygen")]
    public async Task Files_round_trip_byte_for_byte_and_missing_files_are_reported()
    {
        await using var host = TrustingHost();
        var path = Path.Combine(server.Directory, "remote file.bin");
        var content = new byte[300_000];
        new Random(3).NextBytes(content);
        await host.WriteFileAsync(path, content);
        (await host.ReadFileAsync(path)).Should().Equal(content);
        (await host.FileExistsAsync(path)).Should().BeTrue();
        Directory.GetFiles(server.Directory, "*vzsdk-tmp*").Should().BeEmpty("the atomic write renames its temp file");
        await host.DeleteFileAsync(path);
        (await host.FileExistsAsync(path)).Should().BeFalse();
        await host.Invoking(h => h.ReadFileAsync(path)).Should().ThrowAsync<FileNotFoundException>();
        var stdin = await host.ExecuteBufferedAsync(new Command("cat").WithStandardInput("from stdin\n"));
        stdin.StandardOutput.Should().Be("from stdin\n");
    }

    [IntegrationFact("sshd", "ssh", "ssh-keygen")]
    public async Task An_unknown_host_key_is_refused_and_nothing_is_run()
    {
        server.StartError.Should().BeNull();
        var empty = Path.Combine(server.Directory, $"empty_known_hosts_{Guid.NewGuid():N}");
        await File.WriteAllTextAsync(empty, "");
        var marker = Path.Combine(server.Directory, $"marker-{Guid.NewGuid():N}");
        await using var host = new SshHost(server.Options(empty));
        var act = () => host.ExecuteAsync(new Command("touch").WithArguments(marker));
        var ex = (await act.Should().ThrowAsync<HostKeyVerificationException>()).Which;
        ex.IsTransient.Should().BeFalse();
        ex.Message.Should().Contain(empty);
        File.Exists(marker).Should().BeFalse();
        (await File.ReadAllTextAsync(empty)).Should().BeEmpty("a refused key is not recorded");
    }

    [IntegrationFact("sshd", "ssh", "ssh-keygen")]
    public async Task A_changed_host_key_is_refused_even_when_new_keys_are_accepted()
    {
        server.StartError.Should().BeNull();
        var wrong = Path.Combine(server.Directory, $"wrong_known_hosts_{Guid.NewGuid():N}");
        // A different ed25519 key for the same host:port.
        await File.WriteAllTextAsync(wrong, $"[127.0.0.1]:{server.Port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n");
        await using var host = new SshHost(server.Options(wrong, acceptNew: true));
        await host.Invoking(h => h.ExecuteAsync(new Command("true"))).Should().ThrowAsync<HostKeyVerificationException>();
    }

    [IntegrationFact("sshd", "ssh", "ssh-keygen")]
    public async Task Accepting_new_host_keys_is_an_explicit_opt_in_that_records_the_key()
    {
        server.StartError.Should().BeNull();
        var knownHosts = Path.Combine(server.Directory, $"new_known_hosts_{Guid.NewGuid():N}");
        await using var host = new SshHost(server.Options(knownHosts, acceptNew: true));
        var r = await host.ExecuteBufferedAsync(new Command("echo").WithArguments("hi"));
        r.StandardOutput.Should().Be("hi\n");
        (await File.ReadAllTextAsync(knownHosts)).Should().Contain(server.HostPublicKey.Split(' ')[1]);
    }

    [IntegrationFact("sshd", "ssh", "ssh-keygen")]
    public async Task Commands_share_one_multiplexed_connection_and_report_capabilities()
    {
        await using var host = TrustingHost();
        await host.ExecuteAsync(new Command("true"));
        Directory.GetFileSystemEntries(server.ControlDirectory).Should().NotBeEmpty("a control master socket is kept open");
        var caps = await host.GetCapabilitiesAsync(new CapabilityProbeOptions { SkipProbes = true });
        caps.Kernel.Should().Be((await File.ReadAllTextAsync("/proc/sys/kernel/osrelease")).Trim());
        caps.MemoryBytes.Should().BeGreaterThan(0);
        caps.Tools.Should().ContainKey("qemu-img");
    }

    [IntegrationFact("sshd", "ssh", "ssh-keygen")]
    public async Task A_remote_command_that_outlives_its_timeout_is_stopped()
    {
        await using var host = TrustingHost();
        var act = () => host.ExecuteAsync(new Command("sleep").WithArguments("60").WithTimeout(TimeSpan.FromSeconds(1)).WithGracePeriod(TimeSpan.FromMilliseconds(200)));
        await act.Should().ThrowAsync<CommandTimeoutException>();
    }
}
