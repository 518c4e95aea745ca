using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

/// <summary>Suspending containers to disk with CRIU (./build.sh installs CRIU 4 into /opt/vzsdk/criu) and restoring them.</summary>
[Collection("containers")]
public class ContainerCheckpointTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Client => fx.Client;

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "ping", Root = true)]
    public async Task CRIU_is_found_and_probed_on_this_host()
    {
        var support = await Client.GetCheckpointSupportAsync();
        support.Usable.Should().BeTrue(support.Reason);
        support.CriuVersion.Should().StartWith("4.", "CRIU 3 fails its own check on current kernels");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "ping", Root = true)]
    public async Task A_container_suspended_to_disk_resumes_with_the_same_processes_memory_and_address()
    {
        var name = ContainerFixture.UniqueName("ckpt");
        const string ip = "10.209.0.241";
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") }, IpAddresses = [ip + "/24"], Security = ContainerFixture.CheckpointableSecurity });
        await Client.StartAsync(name);
        try
        {
            // a counter held in a shell's memory, written to the container's disk ten times a second
            var pid = await ContainerFixture.ShAsync(Client, name, "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done' </dev/null >/dev/null 2>&1 & echo $!");
            await Task.Delay(700);
            var before = long.Parse(await ContainerFixture.ShAsync(Client, name, "cat /tmp/counter"));
            before.Should().BeGreaterThan(0);
            (await ContainerFixture.PingAsync(ip)).Should().BeTrue("the container answers on the bridge");

            var suspended = await Client.SuspendToDiskAsync(name);
            suspended.State.Should().Be(VeState.Suspended);
            (await ContainerFixture.PingAsync(ip)).Should().BeFalse("a container suspended to disk has no process and no network");
            Directory.Exists(Path.Combine(fx.Root.Path, "private", suspended.Id.ToString(), "checkpoint")).Should().BeTrue("the processes are saved beside the disk");

            var resumed = await Client.ResumeAsync(name);
            resumed.State.Should().Be(VeState.Running);
            (await ContainerFixture.ShAsync(Client, name, $"kill -0 {pid} && echo alive")).Should().Be("alive", "the same process, with the same PID, was restored");
            await Task.Delay(500);
            long.Parse(await ContainerFixture.ShAsync(Client, name, "cat /tmp/counter")).Should().BeGreaterThan(before, "the counter continued from where it was, it did not restart");
            (await ContainerFixture.PingAsync(ip)).Should().BeTrue("the container answers at its address again");

            // stopping a container suspended to disk discards what was saved: the next start is a fresh boot
            await Client.SuspendToDiskAsync(name);
            (await Client.StopAsync(name)).Should().Be(VeStopMethod.Killed);
            (await Client.GetAsync(name)).State.Should().Be(VeState.Stopped);
            await Client.StartAsync(name);
            (await Client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", $"kill -0 {pid}"] })).ExitCode.Should().NotBe(0, "the saved processes were discarded");
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Snapshots_of_a_running_container_bring_back_its_processes_and_disk_and_stopped_ones_its_disk()
    {
        var name = ContainerFixture.UniqueName("snap");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") }, Security = ContainerFixture.CheckpointableSecurity });
        await Client.StartAsync(name);
        try
        {
            var pid = await ContainerFixture.ShAsync(Client, name, "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done' </dev/null >/dev/null 2>&1 & echo $!");
            await ContainerFixture.ShAsync(Client, name, "echo a > /a && sync");
            await Task.Delay(500);
            var running = await Client.CreateSnapshotAsync(name, "running", "with processes");
            running.IncludesMemory.Should().BeTrue("CRIU saved the processes");
            var atSnapshot = long.Parse(await ContainerFixture.ShAsync(Client, name, "cat /tmp/counter"));
            await ContainerFixture.ShAsync(Client, name, "echo b > /b && sync");
            await Task.Delay(1500);
            var later = long.Parse(await ContainerFixture.ShAsync(Client, name, "cat /tmp/counter"));
            later.Should().BeGreaterThan(atSnapshot + 5);

            await Client.SwitchSnapshotAsync(name, "running");
            (await Client.GetAsync(name)).State.Should().Be(VeState.Running, "a snapshot with processes resumes them");
            (await ContainerFixture.ShAsync(Client, name, $"kill -0 {pid} && echo alive")).Should().Be("alive");
            var back = long.Parse(await ContainerFixture.ShAsync(Client, name, "cat /tmp/counter"));
            back.Should().BeLessThan(later, "the counter went back to the snapshot's instant");
            (await ContainerFixture.ShAsync(Client, name, "cat /a; ls /b 2>/dev/null || echo no-b")).Should().Be("a\nno-b", "the disk is the snapshot's: /b was written after it");

            await Client.StopAsync(name, new VeStopOptions { Kill = true });
            var stopped = await Client.CreateSnapshotAsync(name, "stopped");
            stopped.IncludesMemory.Should().BeFalse();
            stopped.ParentId.Should().Be(running.Id);
            await Client.StartAsync(name);
            await ContainerFixture.ShAsync(Client, name, "echo c > /c && sync");
            await Client.SwitchSnapshotAsync(name, stopped.Id.ToString());
            (await Client.GetAsync(name)).State.Should().Be(VeState.Stopped, "a snapshot of a stopped container leaves it stopped");
            await Client.StartAsync(name);
            (await ContainerFixture.ShAsync(Client, name, "ls /c 2>/dev/null || echo no-c")).Should().Be("no-c");

            var list = await Client.ListSnapshotsAsync(name);
            list.Select(s => s.Name).Should().Equal("running", "stopped");
            list.Single(s => s.IsCurrent).Id.Should().Be(stopped.Id);
            await Client.DeleteSnapshotAsync(name, "running");
            (await Client.ListSnapshotsAsync(name)).Should().ContainSingle().Which.ParentId.Should().BeNull("its parent was deleted");
            var switchToDeleted = () => Client.SwitchSnapshotAsync(name, "running");
            await switchToDeleted.Should().ThrowAsync<NotFoundException>();
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }
}
