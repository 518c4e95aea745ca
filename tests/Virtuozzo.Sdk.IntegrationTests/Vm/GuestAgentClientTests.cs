using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Vm;

/// <summary>Core's guest agent client against the real qemu-guest-agent of the shared guest.</summary>
[Collection("shared-guest")]
public class GuestAgentClientTests(SharedGuestFixture env)
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10);

    private string Socket => Path.Combine(env.Root.Path, "run", env.Vm.Id.ToString(), "ga");

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task A_reply_that_arrives_after_its_timeout_is_never_taken_for_the_next_commands()
    {
        await using var agent = await GuestAgentClient.ConnectAsync(Socket, T, default);
        // a TCG guest usually needs more than a millisecond to answer, but not always: try until one reply is late
        int timedOut = 0;
        for (int attempt = 0; attempt < 50 && timedOut == 0; attempt++)
        {
            try
            {
                await agent.ExecuteAsync("guest-get-fsinfo", null, TimeSpan.FromTicks(1), default);
            }
            catch (GuestAgentUnavailableException)
            {
                timedOut++;
            }
        }
        timedOut.Should().Be(1, "one of fifty replies, each allowed a tick, came after its timeout");
        (await agent.ExecuteAsync("guest-ping", null, T, default))!.AsObject().Should().BeEmpty("the late osinfo reply was discarded by the resync");
        (await agent.GetOsInfoAsync(T, default)).Id.Should().Be("vzsdk-guest");
        (await agent.PingAsync(T, default)).Should().BeTrue();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Os_info_and_vcpus_are_reported()
    {
        await using var agent = await GuestAgentClient.ConnectAsync(Socket, T, default);
        var os = await agent.GetOsInfoAsync(T, default);
        os.KernelRelease.Should().EndWith("cloud-amd64");
        os.Machine.Should().Be("x86_64");
        var vcpus = await agent.GetVcpusAsync(T, default);
        vcpus.Should().NotBeEmpty().And.Contain(v => v.LogicalId == 0 && v.Online);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task File_systems_freeze_report_frozen_and_thaw()
    {
        await using var agent = await GuestAgentClient.ConnectAsync(Socket, T, default);
        (await agent.AreFileSystemsFrozenAsync(T, default)).Should().BeFalse();
        try
        {
            (await agent.FreezeFileSystemsAsync(T, default)).Should().BeGreaterThanOrEqualTo(1, "the ext4 data disk is mounted");
            (await agent.AreFileSystemsFrozenAsync(T, default)).Should().BeTrue();
        }
        finally
        {
            await agent.ThawFileSystemsAsync(T, default);
        }
        (await agent.AreFileSystemsFrozenAsync(T, default)).Should().BeFalse();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task An_agent_error_is_a_typed_exception_and_the_channel_stays_usable()
    {
        await using var agent = await GuestAgentClient.ConnectAsync(Socket, T, default);
        var bad = () => agent.ExecuteAsync("guest-no-such-command", null, T, default);
        (await bad.Should().ThrowAsync<GuestAgentException>()).Which.ErrorClass.Should().Be("CommandNotFound");
        var missing = () => agent.ExecAsync("/no/such/program", [], null, null, T, default);
        await missing.Should().ThrowAsync<GuestAgentException>();
        (await agent.ExecAsync("/bin/echo", ["ok"], new Dictionary<string, string> { ["X"] = "1" }, null, T, default)).StandardOutput.Should().Equal("ok\n"u8.ToArray());
    }
}
