using System.Collections.Concurrent;
using System.Security.Cryptography;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.IntegrationTests.Vm;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Migration;

/// <summary>
/// Offline migration of a stopped VM between two local runtimes with separate data roots: its disk images travel over
/// TCP, never through the file system, and it arrives stopped.
/// </summary>
public class VmOfflineMigrationTests() : TwoLocalRuntimes("vzsdk-omig-dst")
{
    private async Task<VirtualMachineClient> CreateWithDataDiskAsync(string name, int noiseMiB = 0)
    {
        var files = new Dictionary<string, string> { ["hello.txt"] = "hello from the data disk\n" };
        if (noiseMiB > 0)
            files["noise.txt"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(noiseMiB * 3 << 18)); // incompressible, noiseMiB MiB
        var disk = await TestGuest.MakeExt4DiskAsync(_source.Root.Path, "data-" + name, 64, files);
        await _source.Client.CreateAsync(_source.GuestVm(name) with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        return _source.Client;
    }

    private static async Task BootAndRunAsync(VirtualMachineClient vms, string name, string script)
    {
        await vms.StartAsync(name);
        await vms.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        await ShAsync(vms, name, script);
        (await vms.StopAsync(name)).Should().NotBe(VeStopMethod.Killed, "the guest shuts down cleanly");
    }

    private static Dictionary<string, string> Digests(VmInfo vm)
        => vm.Disks.ToDictionary(d => d.Name, d => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(d.ImagePath))));

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", Root = true)]
    public async Task A_stopped_VM_migrates_offline_with_its_disks_and_snapshots_and_starts_on_the_destination()
    {
        const string name = "omig-ok";
        var source = await CreateWithDataDiskAsync(name);
        await BootAndRunAsync(source, name, "echo v1 > /mnt/data/state.txt && sync");
        await source.CreateSnapshotAsync(name, "s1");
        await BootAndRunAsync(source, name, "echo v2 > /mnt/data/state.txt && sync");
        var before = await source.GetAsync(name);
        var imageBytes = before.Disks.Sum(d => new FileInfo(d.ImagePath).Length);

        var phases = new ConcurrentBag<MigrationPhase>();
        var result = await new MigrationClient(VirtuozzoRuntime.CreateLocal(_source.SdkOptions)).MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime),
            progress: new SyncProgress<MigrationProgress>(p => phases.Add(p.Phase)));

        result.Mode.Should().Be(MigrationMode.Offline, "Auto moves a stopped VM offline");
        result.Reason.Should().Contain("stopped");
        result.Kind.Should().Be(VeKind.Vm);
        result.Id.Should().Be(before.Id);
        result.DiskBytes.Should().Be(imageBytes, "every image file was sent whole, snapshots included");
        result.MemoryBytes.Should().Be(0);
        result.Downtime.Should().Be(TimeSpan.Zero, "the VM was not running");
        result.TotalTime.Should().BePositive();
        phases.Should().Contain([MigrationPhase.Preparing, MigrationPhase.CopyingDisks, MigrationPhase.CleaningUp]);

        (await source.ListAsync()).Should().BeEmpty("the source's copy is deleted once the destination has the VM");
        Directory.GetFileSystemEntries(Path.Combine(_source.Root.Path, "private")).Should().BeEmpty();
        var moved = await _destination.GetAsync(name);
        moved.State.Should().Be(VeState.Stopped, "an offline migration registers the VM stopped");
        moved.Id.Should().Be(before.Id);
        moved.Disks.Select(d => d.Name).Should().Equal(before.Disks.Select(d => d.Name));
        moved.Disks.Select(d => d.Size).Should().Equal(before.Disks.Select(d => d.Size));
        (await _destination.ListSnapshotsAsync(name)).Select(s => s.Name).Should().Equal(["s1"], "the internal snapshots travel inside the images");

        await _destination.StartAsync(name);
        await _destination.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        (await ShAsync(_destination, name, "cat /mnt/data/hello.txt /mnt/data/state.txt")).Should().Be("hello from the data disk\nv2\n");
        await _destination.StopAsync(name);
        await _destination.SwitchSnapshotAsync(name, "s1");
        await _destination.StartAsync(name);
        await _destination.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        (await ShAsync(_destination, name, "cat /mnt/data/state.txt")).Should().Be("v1\n", "the snapshot taken on the source is usable on the destination");
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", Root = true)]
    public async Task Refused_or_cancelled_offline_migrations_leave_the_VM_intact_on_the_source_and_nothing_on_the_destination()
    {
        const string name = "omig-fail";
        var source = await CreateWithDataDiskAsync(name, noiseMiB: 4);
        var migrations = new MigrationClient(VirtuozzoRuntime.CreateLocal(_source.SdkOptions));
        var original = await source.GetAsync(name);
        var digests = Digests(original);

        // a destination that already has the name refuses it
        var squatter = await _destination.CreateAsync(_source.GuestVm(name));
        var taken = () => migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime));
        (await taken.Should().ThrowAsync<AlreadyExistsException>()).Which.Message.Should().Contain(name);
        (await _destination.ListAsync()).Select(v => v.Id).Should().Equal([squatter.Id], "only the VM that had the name is there");
        (await _destination.DeleteAsync(name)).Should().BeTrue();

        // a destination that cannot guarantee the memory refuses before anything moves
        var total = Virtuozzo.Sdk.Core.Internal.HostProber.ParseMemTotal(File.ReadAllText("/proc/meminfo"));
        using (var smallRoot = new TempDirectory("vzsdk-omig-small"))
        {
            var small = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = smallRoot.Path, HostMemoryReserve = new ByteSize(total - 256 * ByteSize.MiB) });
            var refused = () => migrations.MigrateAsync(name, MigrationDestination.ToRuntime(small), new MigrationOptions { Mode = MigrationMode.Offline });
            (await refused.Should().ThrowAsync<InsufficientResourcesException>()).Which.Message.Should().Contain(name);
            Directory.GetFileSystemEntries(Path.Combine(smallRoot.Path, "private")).Should().BeEmpty("nothing was created on the destination");
        }

        // a running VM does not migrate offline
        await source.StartAsync(name);
        var running = () => migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime), new MigrationOptions { Mode = MigrationMode.Offline });
        (await running.Should().ThrowAsync<InvalidStateException>()).Which.Message.Should().Contain("Stop it first");
        await source.KillAsync(name);
        digests = Digests(await source.GetAsync(name)); // the boot changed the images

        // cancelled half-way through the images (sent slowly: 2 MiB/s)
        using var cts = new CancellationTokenSource();
        long sentAtCancel = 0, imagesTotal = 0;
        var progress = new SyncProgress<MigrationProgress>(p =>
        {
            if (p.Phase == MigrationPhase.CopyingDisks && p.BytesTransferred > 1 << 20 && !cts.IsCancellationRequested)
            {
                (sentAtCancel, imagesTotal) = (p.BytesTransferred, p.BytesTransferred + p.BytesRemaining);
                cts.Cancel();
            }
        });
        var cancelled = () => migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime),
            new MigrationOptions { Mode = MigrationMode.Offline, MaxBandwidthPerSecond = ByteSize.FromMiB(2) }, progress, cts.Token);
        await cancelled.Should().ThrowAsync<OperationCanceledException>();
        sentAtCancel.Should().BePositive().And.BeLessThan(imagesTotal, "the cancellation came while the images were on their way");
        (await _destination.ListAsync()).Should().BeEmpty("the destination removed the VM it was receiving");
        DestinationPrivateEntries().Should().BeEmpty("no half-received image is left");
        (await _destinationRuntime.Ledger.GetSnapshotAsync()).Reservations.Should().BeEmpty("the guarantee admitted for the transfer was released");
        var still = await source.GetAsync(name);
        still.State.Should().Be(VeState.Stopped);
        Digests(still).Should().Equal(digests, "the source's images are untouched");

        // and it can still migrate afterwards, keeping the source's copy when asked
        var result = await migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime), new MigrationOptions { Mode = MigrationMode.Offline, KeepSource = true });
        result.Mode.Should().Be(MigrationMode.Offline);
        (await source.GetAsync(name)).State.Should().Be(VeState.Stopped, "KeepSource leaves the source's copy, stopped");
        var there = await _destination.GetAsync(name);
        there.State.Should().Be(VeState.Stopped);
        Digests(there).Should().Equal(digests, "the images arrived byte for byte");
    }
}

/// <summary>Offline migration of a stopped VM to a second host (its own network and mount namespaces, reached over SSH) with the tool.</summary>
public class VmOfflineMigrationToSecondHostTests : IAsyncLifetime
{
    private readonly VmTestEnvironment _source = new();
    private SecondHost _host2 = null!;

    public async Task InitializeAsync()
    {
        await _source.InitializeAsync();
        _host2 = await SecondHost.StartAsync(VzsdkTool.StartLine(), _source.Root.Path);
    }

    public async Task DisposeAsync()
    {
        try
        {
            var there = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
            foreach (var vm in await there.ListAsync())
            {
                if (vm.State != VeState.Stopped)
                    await there.KillAsync(vm.Id.ToString());
            }
        }
        finally
        {
            await _host2.DisposeAsync();
            await _source.DisposeAsync();
        }
    }

    private string[] MigrateArgs(string name, params string[] more)
        => ["--data-root", _source.Root.Path, "migrate", name, "ssh://root@" + _host2.Address, "--remote-data-root", _host2.DataRoot,
            "--remote-vzsdk", _host2.Vzsdk, "-i", _host2.ClientKey, "--known-hosts", _host2.KnownHosts, .. more];

    /// <summary>Starts <c>vzsdk migrate NAME --offline</c> at 1 MiB/s and returns once the second host holds part of an image.</summary>
    private async Task<System.Diagnostics.Process> StartMigrationUntilReceivingAsync(string name, string privateDir)
    {
        var line = VzsdkTool.StartLine(MigrateArgs(name, "--offline", "--max-bandwidth", "1M"));
        var psi = new System.Diagnostics.ProcessStartInfo(line[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in line.Skip(1))
            psi.ArgumentList.Add(a);
        var p = System.Diagnostics.Process.Start(psi)!;
        var seen = DateTime.UtcNow.AddSeconds(30);
        bool Receiving() => Directory.Exists(privateDir) && Directory.EnumerateFiles(privateDir, "*.partial", SearchOption.AllDirectories).Any(f => new FileInfo(f).Length > 0);
        while (!Receiving() && !p.HasExited && DateTime.UtcNow < seen)
            await Task.Delay(50);
        Receiving().Should().BeTrue("the second host was receiving the images");
        return p;
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task Killing_an_offline_migration_leaves_the_VM_intact_on_the_source_and_nothing_on_the_second_host()
    {
        const string name = "omig-kill";
        var noise = Convert.ToBase64String(RandomNumberGenerator.GetBytes(6 << 20)); // 8 MiB, incompressible
        var disk = await TestGuest.MakeExt4DiskAsync(_source.Root.Path, "data", 64, new Dictionary<string, string> { ["noise.txt"] = noise });
        await _source.Client.CreateAsync(_source.GuestVm(name) with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(16) }, new VmDiskOptions { SourceImagePath = disk }] });
        var before = await _source.Client.GetAsync(name);
        var digests = before.Disks.ToDictionary(d => d.Name, d => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(d.ImagePath))));

        // 1 MiB/s: the kill lands while the images are on their way (a half-received image is there)
        var privateDir = Path.Combine(_host2.DataRoot, "private");
        using (var p = await StartMigrationUntilReceivingAsync(name, privateDir))
        {
            p.Kill();
            await p.WaitForExitAsync();
        }

        var there = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (Directory.Exists(privateDir) && Directory.GetFileSystemEntries(privateDir).Length > 0 && DateTime.UtcNow < deadline)
            await Task.Delay(200);
        Directory.GetFileSystemEntries(privateDir).Should().BeEmpty("the second host's agent removed the VM it was receiving when the source went away");
        (await there.ListAsync()).Should().BeEmpty();
        var still = await _source.Client.GetAsync(name);
        still.State.Should().Be(VeState.Stopped);
        still.Disks.ToDictionary(d => d.Name, d => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(d.ImagePath)))).Should().Equal(digests, "the source's images are untouched");

        // and the next migration goes through
        var r = await VzsdkTool.RunAsync(MigrateArgs(name, "--json"));
        r.ExitCode.Should().Be(0, r.StandardError);
        (await there.GetAsync(name)).State.Should().Be(VeState.Stopped);
        (await _source.Client.ListAsync()).Should().BeEmpty();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "sshd", "ssh", "nsenter", "unshare", "pgrep", Root = true)]
    public async Task A_destination_agent_killed_mid_receive_leaves_a_registration_that_reconcile_removes_with_its_reservation()
    {
        const string name = "omig-agent";
        var noise = Convert.ToBase64String(RandomNumberGenerator.GetBytes(6 << 20));
        var disk = await TestGuest.MakeExt4DiskAsync(_source.Root.Path, "data", 64, new Dictionary<string, string> { ["noise.txt"] = noise });
        await _source.Client.CreateAsync(_source.GuestVm(name) with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        var privateDir = Path.Combine(_host2.DataRoot, "private");
        using (var p = await StartMigrationUntilReceivingAsync(name, privateDir))
        {
            // SIGKILL the destination's agent (the vzsdk the source started over SSH on the second host): nothing of it runs on.
            var agents = await TestGuest.RunAsync("pgrep", "-f", "--", "data-root " + _host2.DataRoot + " migrate-agent");
            var pids = agents.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToList();
            pids.Should().NotBeEmpty();
            foreach (var pid in pids)
                System.Diagnostics.Process.GetProcessById(pid).Kill();
            (await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token).ContinueWith(t => t.IsCompletedSuccessfully)).Should().BeTrue("the source's migrate ends when its destination is gone");
            p.ExitCode.Should().NotBe(0);
        }

        // What the killed agent left: a registration without a configuration, its reservation, a half-received image.
        var runtime2 = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot });
        var left = Directory.GetDirectories(privateDir).Should().ContainSingle().Subject;
        var vmId = Path.GetFileName(left);
        File.ReadAllText(Path.Combine(_host2.DataRoot, "ledger.json")).Should().Contain(vmId.Trim('{', '}'));

        var there = new VirtualMachineClient(runtime2);
        (await there.ReconcileAsync()).Should().BeGreaterThanOrEqualTo(1);
        Directory.GetFileSystemEntries(privateDir).Should().BeEmpty("reconcile removed the VM whose receiving process is gone");
        File.ReadAllText(Path.Combine(_host2.DataRoot, "ledger.json")).Should().NotContain(vmId.Trim('{', '}'), "and released its reservation");
        (await there.ListAsync()).Should().BeEmpty();
        (await _source.Client.GetAsync(name)).State.Should().Be(VeState.Stopped, "the source keeps its VM");

        // The name is free again: the next migration goes through.
        var r = await VzsdkTool.RunAsync(MigrateArgs(name, "--json"));
        r.ExitCode.Should().Be(0, r.StandardError);
        (await there.GetAsync(name)).State.Should().Be(VeState.Stopped);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task vzsdk_migrate_moves_a_stopped_VM_to_another_host_where_it_starts_with_its_disk_intact()
    {
        const string name = "omig-ssh";
        var disk = await TestGuest.MakeExt4DiskAsync(_source.Root.Path, "data", 64, new Dictionary<string, string> { ["hello.txt"] = "hello from the data disk\n" });
        await _source.Client.CreateAsync(_source.GuestVm(name) with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        await _source.Client.StartAsync(name);
        await _source.Client.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        await _source.ShAsync(name, "echo written-before-migration > /mnt/data/before.txt && sync");
        await _source.Client.StopAsync(name);
        var id = (await _source.Client.GetAsync(name)).Id;

        // the second host refuses a name it already has, and keeps nothing of the attempt
        var there = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        var squatter = await there.CreateAsync(_source.GuestVm(name));
        var refused = await VzsdkTool.RunAsync(MigrateArgs(name, "--offline"));
        refused.ExitCode.Should().NotBe(0);
        refused.StandardError.Should().Contain(name).And.Contain(_host2.Address);
        (await there.ListAsync()).Select(v => v.Id).Should().Equal([squatter.Id]);
        (await _source.Client.GetAsync(name)).State.Should().Be(VeState.Stopped, "the VM stays on the source");
        (await there.DeleteAsync(name)).Should().BeTrue();

        var r = await VzsdkTool.RunAsync(MigrateArgs(name, "--json"));
        r.ExitCode.Should().Be(0, r.StandardError);
        using (var doc = System.Text.Json.JsonDocument.Parse(r.StandardOutput))
        {
            doc.RootElement.GetProperty("name").GetString().Should().Be(name);
            doc.RootElement.GetProperty("type").GetString().Should().Be("vm");
            doc.RootElement.GetProperty("mode").GetString().Should().Be("offline", "a stopped VM moves offline");
            doc.RootElement.GetProperty("disk_bytes").GetInt64().Should().BeGreaterThan(1 << 20);
        }
        (await _source.Client.ListAsync()).Should().BeEmpty("the VM left the source");
        Directory.GetFileSystemEntries(Path.Combine(_source.Root.Path, "private")).Should().BeEmpty();

        var moved = await there.GetAsync(name);
        moved.State.Should().Be(VeState.Stopped);
        moved.Id.Should().Be(id);
        // started by the second host's own tool, over SSH, inside its namespaces
        var start = await _host2.RunAsync(_host2.Vzsdk, "start", name);
        start.ExitCode.Should().Be(0, start.StandardError);
        await there.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        var exec = await there.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", "cat /mnt/data/hello.txt /mnt/data/before.txt"] });
        exec.ExitCode.Should().Be(0, exec.StandardError);
        exec.StandardOutput.Should().Be("hello from the data disk\nwritten-before-migration\n");
    }
}

public sealed class MigrationSampleTests
{
    [IntegrationFact("qemu-system-x86_64", "qemu-img", Root = true)]
    public async Task The_migration_sample_moves_its_vm_live_and_back_offline_then_deletes_it()
    {
        var guest = await TestGuest.GetAsync();
        using var source = new TempDirectory("vzsdk-migsample-src");
        using var destination = new TempDirectory("vzsdk-migsample-dst");
        var r = await new Virtuozzo.Sdk.Core.Hosts.LocalHost().ExecuteBufferedAsync(new Virtuozzo.Sdk.Core.Processes.Command("dotnet")
            .WithArguments(Path.Combine(AppContext.BaseDirectory, "MigrationSample.dll"), source.Path, destination.Path, guest.Directory)
            .WithValidation(Virtuozzo.Sdk.Core.Processes.CommandResultValidation.None).WithTimeout(TimeSpan.FromMinutes(3)));
        r.ExitCode.Should().Be(0, r.StandardError);
        r.StandardOutput.Should().MatchRegex(@"web1 moved Online in [0-9:.]+; paused for \d+ ms");
        r.StandardOutput.Should().MatchRegex(@"web1 moved Offline in [0-9.]+ s: [0-9,]+ bytes of disk images");
        r.StandardOutput.Should().Contain("web1 is Stopped on the source again").And.Contain("Deleted web1");
        Directory.GetFileSystemEntries(Path.Combine(source.Path, "private")).Should().BeEmpty();
        Directory.GetFileSystemEntries(Path.Combine(destination.Path, "private")).Should().BeEmpty("the VM left the destination when it moved back");
    }
}
