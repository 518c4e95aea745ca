using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Containers;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Migration;

/// <summary>Live migration of a container to a second host (CRIU, P.Haul's order of steps), over SSH and the network only.</summary>
[Collection("containers")]
public class ContainerMigrationTests : IAsyncLifetime
{
    private readonly TempDirectory _root = new("vzsdk-ctmig");
    private VirtuozzoRuntime _runtime = null!;
    private ContainerClient _containers = null!;
    private SecondHost _host2 = null!;

    public async Task InitializeAsync()
    {
        _runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _root.Path, LockTimeout = TimeSpan.FromMinutes(2) });
        _containers = new ContainerClient(_runtime);
        _host2 = await SecondHost.StartAsync(VzsdkTool.StartLine(), _root.Path);
    }

    public async Task DisposeAsync()
    {
        try
        {
            foreach (var c in await _containers.ListAsync(all: true))
                await _containers.DeleteAsync(c.Id.ToString());
            var there = await _host2.RunAsync(_host2.Vzsdk, "ct", "list", "-a", "--json");
            foreach (var line in there.StandardOutput.Split('"').Where(t => t.StartsWith("ctmig-", StringComparison.Ordinal)).Distinct())
                await _host2.RunAsync(_host2.Vzsdk, "ct", "delete", line);
        }
        finally
        {
            await _host2.DisposeAsync();
            _root.Dispose();
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "ping", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task A_running_container_migrates_live_with_the_same_process_its_files_and_its_address()
    {
        var name = ContainerFixture.UniqueName("ctmig");
        const string ip = "10.209.0.246";
        await _containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") }, IpAddresses = [ip + "/24"], Security = ContainerFixture.CheckpointableSecurity });
        await _containers.StartAsync(name);
        var pid = await ContainerFixture.ShAsync(_containers, name, "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done' </dev/null >/dev/null 2>&1 & echo $!");
        await ContainerFixture.ShAsync(_containers, name, "echo written-before > /root-file && sync");
        await Task.Delay(700);
        var before = long.Parse(await ContainerFixture.ShAsync(_containers, name, "cat /tmp/counter"));

        var phases = new List<MigrationPhase>();
        var result = await new MigrationClient(_runtime).MigrateAsync(name, MigrationDestination.OverSsh(_host2.Ssh, _host2.DataRoot, _host2.Vzsdk),
            progress: new SyncProgress<MigrationProgress>(p => phases.Add(p.Phase)));

        result.Kind.Should().Be(VeKind.Container);
        result.Mode.Should().Be(MigrationMode.Online, result.Reason);
        result.Downtime.Should().BePositive().And.BeLessThan(TimeSpan.FromSeconds(10), "the container is frozen from the dump to the restore");
        result.MemoryBytes.Should().BePositive("the CRIU images were sent");
        phases.Should().Contain(MigrationPhase.CopyingDisks);
        // Pre-dump rounds run only where the kernel tracks dirtied memory (the probe's answer, not an assumption).
        var support = await _containers.GetCheckpointSupportAsync();
        if (support.MemoryDirtyTracking)
        {
            result.PreCopyRounds.Should().BeInRange(1, 8, result.Reason);
            phases.Should().Contain(MigrationPhase.CopyingMemory, "the pre-dumps copy the memory while the container runs");
        }
        else
        {
            result.PreCopyRounds.Should().Be(0, "this kernel has no memory dirty tracking: one dump, no pre-dump rounds");
            result.Reason.Should().Contain("no pre-dump");
        }
        (await _containers.ListAsync(all: true)).Should().BeEmpty("the source's copy is removed");

        var there = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        (await there.GetAsync(name)).State.Should().Be(VeState.Running);
        (await ContainerFixture.ShAsync(there, name, $"kill -0 {pid} && echo alive")).Should().Be("alive", "the same process (same PID) runs on the second host");
        await Task.Delay(500);
        long.Parse(await ContainerFixture.ShAsync(there, name, "cat /tmp/counter")).Should().BeGreaterThan(before, "the counter continued without a restart");
        (await ContainerFixture.ShAsync(there, name, "cat /root-file")).Should().Be("written-before");
        SecondHost.RunInNetwork(_host2.Namespace, "ping", "-c", "1", "-W", "3", ip).Should().Be(0, "the container answers at its address on the second host's bridge");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task A_stopped_container_moves_offline_and_arrives_stopped_with_its_files()
    {
        var name = ContainerFixture.UniqueName("ctmig");
        await _containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        await _containers.StartAsync(name);
        await ContainerFixture.ShAsync(_containers, name, "echo kept > /kept && sync");
        await _containers.StopAsync(name);

        var live = () => new MigrationClient(_runtime).MigrateAsync(name, MigrationDestination.OverSsh(_host2.Ssh, _host2.DataRoot, _host2.Vzsdk), new MigrationOptions { RequireLive = true });
        await live.Should().ThrowAsync<InvalidStateException>("a stopped container has nothing to migrate live");

        var result = await new MigrationClient(_runtime).MigrateAsync(name, MigrationDestination.OverSsh(_host2.Ssh, _host2.DataRoot, _host2.Vzsdk));
        result.Mode.Should().Be(MigrationMode.Offline);
        result.Reason.Should().Contain("stopped");
        result.DiskBytes.Should().BePositive();
        (await _containers.ListAsync(all: true)).Should().BeEmpty();

        var there = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        (await there.GetAsync(name)).State.Should().Be(VeState.Stopped, "it arrives as it left");
        (await _host2.RunAsync(_host2.Vzsdk, "ct", "start", name)).ExitCode.Should().Be(0);
        (await ContainerFixture.ShAsync(there, name, "cat /kept")).Should().Be("kept");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task A_running_unprivileged_container_moves_by_a_restart_keeping_its_ids_and_files_and_refuses_RequireLive()
    {
        var name = ContainerFixture.UniqueName("ctmig");
        var created = await _containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        created.HostIdStart.Should().NotBeNull("new containers are unprivileged");
        await _containers.StartAsync(name);
        await ContainerFixture.ShAsync(_containers, name, "echo kept > /kept && chown 7:7 /kept && sync");

        var live = () => new MigrationClient(_runtime).MigrateAsync(name, MigrationDestination.OverSsh(_host2.Ssh, _host2.DataRoot, _host2.Vzsdk), new MigrationOptions { RequireLive = true });
        (await live.Should().ThrowAsync<UnsupportedOnHostException>()).Which.Message.Should().Contain("unprivileged");
        (await _containers.GetAsync(name)).State.Should().Be(VeState.Running, "a refused migration leaves the container as it was");

        var result = await new MigrationClient(_runtime).MigrateAsync(name, MigrationDestination.OverSsh(_host2.Ssh, _host2.DataRoot, _host2.Vzsdk));
        result.Mode.Should().NotBe(MigrationMode.Online);
        result.Reason.Should().Contain("user namespace");
        (await _containers.ListAsync(all: true)).Should().BeEmpty();

        var there = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        var arrived = await there.GetAsync(name);
        arrived.State.Should().Be(VeState.Running, "a restart migration starts it again on the destination");
        arrived.HostIdStart.Should().NotBeNull("it stays unprivileged");
        (await ContainerFixture.ShAsync(there, name, "stat -c %u:%g /kept && cat /kept")).Should().Be("7:7\nkept");
    }

    [IntegrationFact("debootstrap", "runc", "qemu-storage-daemon", "mkfs.ext4", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task A_running_systemd_container_migrates_and_boots_again_on_the_destination()
    {
        await DebianTemplate.ImportIntoAsync(_containers);
        var name = ContainerFixture.UniqueName("ctmig");
        await _containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Template = "debian-12", Resources = new ContainerResources { DiskSpace = ByteSize.Parse("1G") } });
        await _containers.StartAsync(name);
        (await ContainerFixture.ShAsync(_containers, name, "systemctl is-system-running")).Should().Be("running");
        await ContainerFixture.ShAsync(_containers, name, "useradd -m bob && echo note > /home/bob/note && chown bob: /home/bob/note && sync");

        var result = await new MigrationClient(_runtime).MigrateAsync(name, MigrationDestination.OverSsh(_host2.Ssh, _host2.DataRoot, _host2.Vzsdk));
        result.Mode.Should().NotBe(MigrationMode.Online, "systemd containers are unprivileged: they move by a restart");

        var there = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        (await there.GetAsync(name)).State.Should().Be(VeState.Running);
        (await ContainerFixture.ShAsync(there, name, "systemctl is-system-running")).Should().Be("running", "systemd booted again on the destination");
        (await ContainerFixture.ShAsync(there, name, "stat -c %U /home/bob/note && cat /home/bob/note")).Should().Be("bob\nnote");
        (await there.StopAsync(name)).Should().Be(VeStopMethod.Signal);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task A_live_migration_killed_after_the_dump_is_brought_back_on_the_source_by_reconcile_and_leaves_nothing_on_the_second_host()
    {
        var (name, created, pid) = await StartCheckpointableAsync("128M", "echo kept > /kept && sync");

        // vzsdk migrate, SIGKILLed as soon as the source's dump is complete (the processes are dumped and gone here)
        var checkpoint = Path.Combine(_root.Path, "private", created.Id.ToString(), "checkpoint");
        await MigrateAndKillWhenAsync(name, () => Directory.Exists(checkpoint), "the dump completed");

        // the second host's agent loses its source and removes what it received (or restored)
        await SecondHostEndsEmptyAsync();

        // the next reconcile on the source finds the interrupted migration and restores the container from its images
        (await _containers.ReconcileAsync()).Should().BeGreaterThanOrEqualTo(1);
        (await _containers.GetAsync(name)).State.Should().Be(VeState.Running);
        (await ContainerFixture.ShAsync(_containers, name, $"kill -0 {pid} && echo alive")).Should().Be("alive", "the same process runs again on the source");
        (await ContainerFixture.ShAsync(_containers, name, "cat /kept")).Should().Be("kept");
        File.Exists(Path.Combine(_root.Path, "private", created.Id.ToString(), ".migrating-out")).Should().BeFalse("the journal is done");

        var mounts = File.ReadAllText("/proc/self/mountinfo");
        mounts.Should().NotContain(".criu.cgyard").And.NotContain("criu-root").And.NotContain(_host2.DataRoot, "no stale mounts on either side");
    }

    /// <summary>Creates and starts a privileged container with a sleeping process (its pid returned) and runs <paramref name="setup"/> in it.</summary>
    private async Task<(string Name, ContainerInfo Created, string Pid)> StartCheckpointableAsync(string disk, string setup)
    {
        var name = ContainerFixture.UniqueName("ctmig");
        var created = await _containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse(disk) }, Security = ContainerFixture.CheckpointableSecurity });
        await _containers.StartAsync(name);
        var pid = await ContainerFixture.ShAsync(_containers, name, "setsid sh -c 'while true; do sleep 0.1; done' </dev/null >/dev/null 2>&1 & echo $!");
        await ContainerFixture.ShAsync(_containers, name, setup);
        return (name, created, pid);
    }

    /// <summary>Starts <c>vzsdk migrate NAME</c> to the second host (live required) and SIGKILLs it as soon as <paramref name="when"/> holds.</summary>
    private async Task MigrateAndKillWhenAsync(string name, Func<bool> when, string what)
    {
        var line = VzsdkTool.StartLine("--data-root", _root.Path, "migrate", name, "ssh://root@" + _host2.Address, "--remote-data-root", _host2.DataRoot,
            "--remote-vzsdk", _host2.Vzsdk, "-i", _host2.ClientKey, "--known-hosts", _host2.KnownHosts, "--require-live");
        var psi = new System.Diagnostics.ProcessStartInfo(line[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in line.Skip(1))
            psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!when() && !p.HasExited && DateTime.UtcNow < deadline)
            await Task.Delay(5);
        p.HasExited.Should().BeFalse("the kill lands before the migration ends (it exited with {0}: {1})",
            p.HasExited ? p.ExitCode : 0, p.HasExited ? await p.StandardError.ReadToEndAsync() : "");
        when().Should().BeTrue(what);
        p.Kill();
        await p.WaitForExitAsync();
    }

    /// <summary>Waits until the second host's agent has removed what it received, then checks nothing is left there.</summary>
    private async Task SecondHostEndsEmptyAsync()
    {
        var privateThere = Path.Combine(_host2.DataRoot, "private");
        var until = DateTime.UtcNow.AddSeconds(60);
        while (Directory.Exists(privateThere) && Directory.GetFileSystemEntries(privateThere).Length > 0 && DateTime.UtcNow < until)
            await Task.Delay(200);
        var there = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        (await there.ReconcileAsync()).Should().BeGreaterThanOrEqualTo(0);
        (await there.ListAsync(all: true)).Should().BeEmpty("nothing is left on the second host");
        Directory.GetFileSystemEntries(privateThere).Should().BeEmpty();
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task A_live_migration_killed_during_the_disk_copy_leaves_the_container_running_on_the_source_and_the_next_migration_succeeds()
    {
        // 64 MiB of data, so that the copy lasts long enough to be killed in
        var (name, created, pid) = await StartCheckpointableAsync("512M", "head -c 67108864 /dev/urandom > /data && md5sum /data | cut -d' ' -f1 > /data.md5 && sync");

        // SIGKILLed once the second host has prepared the container and before the source freezes it
        var there = Path.Combine(_host2.DataRoot, "private", created.Id.ToString());
        var journal = Path.Combine(_root.Path, "private", created.Id.ToString(), ".migrating-out");
        await MigrateAndKillWhenAsync(name, () => Directory.Exists(there), "the second host prepared the container");
        File.Exists(journal).Should().BeFalse("the kill landed before the freeze");

        await SecondHostEndsEmptyAsync();
        (await _containers.ReconcileAsync()).Should().BeGreaterThanOrEqualTo(0);
        (await _containers.GetAsync(name)).State.Should().Be(VeState.Running, "the source's container never stopped");
        (await ContainerFixture.ShAsync(_containers, name, $"kill -0 {pid} && echo alive")).Should().Be("alive", "the same process runs on");

        // the next migration removes what the killed one left in the source's storage daemon and moves the container;
        // a reconcile on the second host while it receives leaves the receive alone
        var client = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        Task<int>? reconcileThere = null;
        var result = await new MigrationClient(_runtime).MigrateAsync(name, MigrationDestination.OverSsh(_host2.Ssh, _host2.DataRoot, _host2.Vzsdk),
            progress: new SyncProgress<MigrationProgress>(p => reconcileThere ??= p.Phase == MigrationPhase.CopyingDisks ? client.ReconcileAsync() : null));
        result.Mode.Should().Be(MigrationMode.Online, result.Reason);
        reconcileThere.Should().NotBeNull("the copy was reported");
        await reconcileThere!;
        (await ContainerFixture.ShAsync(client, name, $"kill -0 {pid} && echo alive")).Should().Be("alive");
        (await ContainerFixture.ShAsync(client, name, "md5sum /data | cut -d' ' -f1")).Should().Be(await ContainerFixture.ShAsync(client, name, "cat /data.md5"), "the disk arrived whole");
        File.ReadAllText("/proc/self/mountinfo").Should().NotContain(".criu.cgyard").And.NotContain("criu-root");
    }
}
