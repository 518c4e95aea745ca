using System.Text;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

[Collection("containers")]
public class ContainerLifecycleTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Client => fx.Client;

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_busybox_container_is_isolated_and_its_files_persist_across_restarts()
    {
        var name = ContainerFixture.UniqueName("iso");
        var created = await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Hostname = "iso-host", Resources = new ContainerResources { DiskSpace = ByteSize.Parse("256M") } });
        created.State.Should().Be(VeState.Stopped);
        File.Exists(Path.Combine(fx.Root.Path, "private", created.Id.ToString(), "root.qcow2")).Should().BeTrue();

        var started = await Client.StartAsync(name);
        started.State.Should().Be(VeState.Running);

        var ps = await Client.ExecAsync(name, new VeExecOptions { Command = ["ps", "-o", "pid,comm"] });
        ps.ExitCode.Should().Be(0, ps.StandardError);
        var pids = ps.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => int.Parse(l.Trim().Split(' ')[0])).ToList();
        pids.Should().Contain(1, "the container has its own PID 1");
        pids.Should().OnlyContain(p => p < 100, "no host process is visible inside");
        (await Client.ExecAsync(name, new VeExecOptions { Command = ["hostname"] })).StandardOutput.Trim().Should().Be("iso-host");
        (await Client.ExecAsync(name, new VeExecOptions { Command = ["cat", "/proc/1/cmdline"] })).StandardOutput.Should().Contain("vzinit");
        (await Client.ExecAsync(name, new VeExecOptions { Command = ["ls", "/root-of-host-should-not-exist"] })).ExitCode.Should().NotBe(0);

        var write = await Client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "echo kept > /root/file && sync"] });
        write.ExitCode.Should().Be(0, write.StandardError);
        (await Client.StopAsync(name)).Should().Be(VeStopMethod.Signal, "busybox's init exits on its stop signal");
        (await Client.GetAsync(name)).State.Should().Be(VeState.Stopped);
        await Client.StartAsync(name);
        (await Client.ExecAsync(name, new VeExecOptions { Command = ["cat", "/root/file"] })).StandardOutput.Should().Be("kept\n");

        (await Client.DeleteAsync(name)).Should().BeTrue();
        (await Client.DeleteAsync(name)).Should().BeFalse("delete is idempotent");
        Directory.Exists(Path.Combine(fx.Root.Path, "private", created.Id.ToString())).Should().BeFalse();
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "fsfreeze", Root = true)]
    public async Task A_container_whose_root_was_left_frozen_stops_without_a_hung_process_and_starts_writable()
    {
        var name = ContainerFixture.UniqueName("frozen");
        var created = await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        await Client.StartAsync(name);
        var root = Path.Combine(fx.Root.Path, "root", created.Id.ToString());
        try
        {
            // what a backup leaves when it dies together with the guardian that would thaw the root
            await TestGuest.RunAsync("fsfreeze", "-f", root);
            var writer = Client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "echo late > /root/late; sync"] });
            (await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(1)))).Should().NotBe(writer, "a write to a frozen file system waits");

            await Client.StopAsync(name, new VeStopOptions { Timeout = TimeSpan.FromSeconds(2) }).WaitAsync(TimeSpan.FromSeconds(60));
            (await Client.GetAsync(name)).State.Should().Be(VeState.Stopped);
            (await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(30)))).Should().Be(writer, "the stop thawed the root, so the writer could finish or be killed instead of hanging in uninterruptible sleep");
            File.ReadAllText("/proc/self/mountinfo").Should().NotContain($" {root} ", "the root was unmounted, not detached with a frozen superblock still in use");

            await Client.StartAsync(name);
            var after = await Client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "echo again > /root/after && cat /root/after"] });
            after.StandardOutput.Should().Be("again\n", after.StandardError);
        }
        finally
        {
            try { await TestGuest.RunAsync("fsfreeze", "-u", root); }
            catch (InvalidOperationException) { } // not frozen, or not mounted: the expected case
            await Client.DeleteAsync(name);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Exec_passes_stdin_environment_working_directory_and_exit_codes()
    {
        var name = ContainerFixture.UniqueName("exec");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        await Client.StartAsync(name);
        try
        {
            var cat = await Client.ExecAsync(name, new VeExecOptions { Command = ["cat"], StandardInput = new MemoryStream(Encoding.UTF8.GetBytes("from stdin")) });
            cat.StandardOutput.Should().Be("from stdin");
            var env = await Client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "echo $A; pwd"], Environment = new Dictionary<string, string> { ["A"] = "b c" }, WorkingDirectory = "/tmp" });
            env.StandardOutput.Should().Be("b c\n/tmp\n");
            (await Client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "exit 42"] })).ExitCode.Should().Be(42);
            (await Client.ExecAsync(name, new VeExecOptions { Command = ["/no/such/program"] })).ExitCode.Should().Be(127);
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }
}
