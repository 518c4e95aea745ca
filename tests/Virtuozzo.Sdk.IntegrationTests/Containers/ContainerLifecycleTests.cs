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
        created.State.Should().Be(ContainerState.Stopped);
        File.Exists(Path.Combine(fx.Root.Path, "private", created.Id.ToString(), "root.qcow2")).Should().BeTrue();

        var started = await Client.StartAsync(name);
        started.State.Should().Be(ContainerState.Running);

        var ps = await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["ps", "-o", "pid,comm"] });
        ps.ExitCode.Should().Be(0, ps.StandardError);
        var pids = ps.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => int.Parse(l.Trim().Split(' ')[0])).ToList();
        pids.Should().Contain(1, "the container has its own PID 1");
        pids.Should().OnlyContain(p => p < 100, "no host process is visible inside");
        (await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["hostname"] })).StandardOutput.Trim().Should().Be("iso-host");
        (await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["cat", "/proc/1/cmdline"] })).StandardOutput.Should().Contain("vzinit");
        (await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["ls", "/root-of-host-should-not-exist"] })).ExitCode.Should().NotBe(0);

        var write = await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["sh", "-c", "echo kept > /root/file && sync"] });
        write.ExitCode.Should().Be(0, write.StandardError);
        var stopped = await Client.StopAsync(name);
        stopped.State.Should().Be(ContainerState.Stopped);
        await Client.StartAsync(name);
        (await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["cat", "/root/file"] })).StandardOutput.Should().Be("kept\n");

        (await Client.DeleteAsync(name)).Should().BeTrue();
        (await Client.DeleteAsync(name)).Should().BeFalse("delete is idempotent");
        Directory.Exists(Path.Combine(fx.Root.Path, "private", created.Id.ToString())).Should().BeFalse();
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Exec_passes_stdin_environment_working_directory_and_exit_codes()
    {
        var name = ContainerFixture.UniqueName("exec");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        await Client.StartAsync(name);
        try
        {
            var cat = await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["cat"], StandardInput = new MemoryStream(Encoding.UTF8.GetBytes("from stdin")) });
            cat.StandardOutput.Should().Be("from stdin");
            var env = await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["sh", "-c", "echo $A; pwd"], Environment = new Dictionary<string, string> { ["A"] = "b c" }, WorkingDirectory = "/tmp" });
            env.StandardOutput.Should().Be("b c\n/tmp\n");
            (await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["sh", "-c", "exit 42"] })).ExitCode.Should().Be(42);
            (await Client.ExecAsync(name, new ContainerExecOptions { Arguments = ["/no/such/program"] })).ExitCode.Should().Be(127);
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }
}
