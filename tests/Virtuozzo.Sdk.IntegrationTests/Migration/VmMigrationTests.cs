using System.Collections.Concurrent;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.IntegrationTests.Vm;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Migration;

/// <summary>
/// Live migration of the test guest between two local runtimes with separate data roots: disks and memory travel over
/// TCP (NBD and the emulator's migration stream), never through the file system.
/// </summary>
public class VmMigrationTests() : TwoLocalRuntimes("vzsdk-mig-dst")
{
    private async Task<(MigrationClient Migrations, VirtualMachineClient Vms)> BootAsync(string name)
    {
        var runtime = VirtuozzoRuntime.CreateLocal(_source.SdkOptions);
        var vms = new VirtualMachineClient(runtime);
        var disk = await TestGuest.MakeExt4DiskAsync(_source.Root.Path, "data-" + name, 64, new Dictionary<string, string> { ["hello.txt"] = "hello from the data disk\n" });
        await vms.CreateAsync(_source.GuestVm(name) with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        await vms.StartAsync(name);
        await vms.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        return (new MigrationClient(runtime), vms);
    }

    /// <summary>Starts a counter in the guest's memory (tmpfs), ten increments a second, and returns its PID.</summary>
    private static async Task<string> StartCounterAsync(VirtualMachineClient vms, string name)
    {
        const string script = "i=0; while true; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done";
        var r = await vms.ExecAsync(name, new VeExecOptions
        {
            Command = ["setsid sh -c '" + script + "' >/dev/null 2>&1 </dev/null & echo $!"],
            Shell = true,
            Timeout = TimeSpan.FromSeconds(30),
        });
        r.ExitCode.Should().Be(0, r.StandardError);
        return r.StandardOutput.Trim();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", Root = true)]
    public async Task A_running_VM_migrates_live_with_its_memory_and_disk_and_leaves_the_source()
    {
        const string name = "mig-live";
        var (migrations, source) = await BootAsync(name);
        var pid = await StartCounterAsync(source, name);
        await ShAsync(source, name, "echo written-before-migration > /mnt/data/before.txt && sync");
        await Task.Delay(500);
        var before = long.Parse((await ShAsync(source, name, "cat /run/counter")).Trim());
        before.Should().BeGreaterThan(0, "the counter runs");

        var phases = new ConcurrentBag<MigrationPhase>();
        var spans = new ConcurrentBag<System.Diagnostics.Activity>();
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = s => s.Name == VirtuozzoSdkTelemetry.ActivitySourceName,
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { if (a.OperationName == VirtuozzoSdkTelemetry.MigrateOperation && (string?)a.GetTagItem(VirtuozzoSdkTelemetry.VeNameTag) == name) spans.Add(a); },
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        var result = await migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime), progress: new SyncProgress<MigrationProgress>(p => phases.Add(p.Phase)));
        var span = spans.Should().ContainSingle("the migration is one span").Subject;
        span.GetTagItem(VirtuozzoSdkTelemetry.VeKindTag).Should().Be("vm");
        span.GetTagItem(VirtuozzoSdkTelemetry.BytesCopiedInstrument).Should().Be(result.DiskBytes + result.MemoryBytes);

        result.Name.Value.Should().Be(name);
        result.Kind.Should().Be(VeKind.Vm);
        result.Mode.Should().Be(MigrationMode.Online);
        result.Downtime.Should().BePositive().And.BeLessThanOrEqualTo(MigrationOptions.DefaultDowntimeLimit, "the switch-over waited until the rest fit in the limit");
        result.MemoryBytes.Should().BeGreaterThan(1 << 20, "the guest's memory was sent");
        result.DiskBytes.Should().BeGreaterThan(0);
        result.PreCopyRounds.Should().BeGreaterThanOrEqualTo(1, "QEMU passed over the dirty memory at least once while the VM ran");
        phases.Should().Contain([MigrationPhase.Preparing, MigrationPhase.CopyingDisks, MigrationPhase.CopyingMemory, MigrationPhase.CleaningUp]);

        (await source.ListAsync()).Should().BeEmpty("the source's copy is deleted after a successful migration");
        Directory.GetFileSystemEntries(Path.Combine(_source.Root.Path, "private")).Should().BeEmpty();
        var moved = await _destination.GetAsync(name);
        moved.State.Should().Be(VeState.Running);
        moved.Id.Should().Be(result.Id);

        // the same process, still counting: it never restarted
        (await ShAsync(_destination, name, $"kill -0 {pid} && echo alive")).Trim().Should().Be("alive");
        await Task.Delay(500);
        long.Parse((await ShAsync(_destination, name, "cat /run/counter")).Trim()).Should().BeGreaterThan(before);
        // the disk came along, including what was written just before
        (await ShAsync(_destination, name, "cat /mnt/data/hello.txt /mnt/data/before.txt")).Should().Be("hello from the data disk\nwritten-before-migration\n");
        await ShAsync(_destination, name, "echo after > /mnt/data/after.txt && sync");
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", Root = true)]
    public async Task Refused_or_cancelled_migrations_leave_the_VM_running_on_the_source_and_nothing_on_the_destination()
    {
        const string name = "mig-fail";
        var (migrations, source) = await BootAsync(name);
        var pid = await StartCounterAsync(source, name);

        // a destination that cannot guarantee the memory refuses before anything moves
        var total = Virtuozzo.Sdk.Core.Internal.HostProber.ParseMemTotal(File.ReadAllText("/proc/meminfo"));
        using (var smallRoot = new TempDirectory("vzsdk-mig-small"))
        {
            var small = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = smallRoot.Path, HostMemoryReserve = new ByteSize(total - 256 * ByteSize.MiB) });
            var refused = () => migrations.MigrateAsync(name, MigrationDestination.ToRuntime(small));
            (await refused.Should().ThrowAsync<InsufficientResourcesException>()).Which.Message.Should().Contain(name);
            Directory.GetFileSystemEntries(Path.Combine(smallRoot.Path, "private")).Should().BeEmpty("nothing was created on the destination");
        }

        // a destination that already has the name refuses it
        await _destination.CreateAsync(_source.GuestVm(name));
        var taken = () => migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime));
        await taken.Should().ThrowAsync<AlreadyExistsException>();
        (await _destination.DeleteAsync(name)).Should().BeTrue();

        // cancelled while the memory is being copied (slowly: 4 MiB/s)
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress<MigrationProgress>(p =>
        {
            if (p.Phase == MigrationPhase.CopyingMemory && p.BytesTransferred > 8 << 20)
                cts.Cancel();
        });
        var cancelled = () => migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime),
            new MigrationOptions { MaxBandwidthPerSecond = ByteSize.FromMiB(4) }, progress, cts.Token);
        await cancelled.Should().ThrowAsync<OperationCanceledException>();

        (await _destination.ListAsync()).Should().BeEmpty("the destination removed the VM it was receiving");
        DestinationPrivateEntries().Should().BeEmpty();
        var still = await source.GetAsync(name);
        still.State.Should().Be(VeState.Running, "the source resumes after a cancelled migration");
        (await ShAsync(source, name, $"kill -0 {pid} && echo alive")).Trim().Should().Be("alive");
        var a = long.Parse((await ShAsync(source, name, "cat /run/counter")).Trim());
        await Task.Delay(500);
        long.Parse((await ShAsync(source, name, "cat /run/counter")).Trim()).Should().BeGreaterThan(a, "the guest runs on the source");

        // and it can still migrate afterwards
        var result = await migrations.MigrateAsync(name, MigrationDestination.ToRuntime(_destinationRuntime), new MigrationOptions { KeepSource = true });
        (await _destination.GetAsync(name)).State.Should().Be(VeState.Running);
        (await source.GetAsync(name)).State.Should().Be(VeState.Stopped, "KeepSource leaves the source's copy, stopped");
        result.Id.Should().Be(still.Id);
    }
}

/// <summary>Live migration to a second host (its own network and mount namespaces, reached over SSH) with the tool.</summary>
public class VmMigrationToSecondHostTests : IAsyncLifetime
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

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task vzsdk_migrate_moves_a_running_VM_to_another_host_over_ssh_and_the_network_only()
    {
        const string name = "mig-ssh";
        var disk = await TestGuest.MakeExt4DiskAsync(_source.Root.Path, "data", 64, new Dictionary<string, string> { ["hello.txt"] = "hello from the data disk\n" });
        await _source.Client.CreateAsync(_source.GuestVm(name) with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        await _source.Client.StartAsync(name);
        await _source.Client.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        var pid = (await _source.ShAsync(name, "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done' >/dev/null 2>&1 </dev/null & echo $!")).Trim();
        await Task.Delay(500);
        var before = long.Parse((await _source.ShAsync(name, "cat /run/counter")).Trim());

        var r = await VzsdkTool.RunAsync("--data-root", _source.Root.Path, "migrate", name, "ssh://root@" + _host2.Address,
            "--remote-data-root", _host2.DataRoot, "--remote-vzsdk", _host2.Vzsdk, "-i", _host2.ClientKey, "--known-hosts", _host2.KnownHosts, "--json");
        r.ExitCode.Should().Be(0, r.StandardError);
        using (var doc = System.Text.Json.JsonDocument.Parse(r.StandardOutput))
        {
            doc.RootElement.GetProperty("name").GetString().Should().Be(name);
            doc.RootElement.GetProperty("type").GetString().Should().Be("vm");
            doc.RootElement.GetProperty("mode").GetString().Should().Be("online");
            doc.RootElement.GetProperty("downtime_ms").GetInt64().Should().BePositive();
            doc.RootElement.GetProperty("memory_bytes").GetInt64().Should().BeGreaterThan(1 << 20);
        }

        (await _source.Client.ListAsync()).Should().BeEmpty("the VM left the source");
        var there = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        (await there.GetAsync(name)).State.Should().Be(VeState.Running);
        var exec = await there.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", $"kill -0 {pid} && cat /run/counter /mnt/data/hello.txt"] });
        exec.ExitCode.Should().Be(0, exec.StandardError);
        var lines = exec.StandardOutput.Split('\n');
        long.Parse(lines[0]).Should().BeGreaterThan(before, "the same process counts on, on the second host");
        lines[1].Should().Be("hello from the data disk");
    }
}

/// <summary>A migration whose source process is killed, with a second host over SSH.</summary>
public class VmMigrationKillTests : IAsyncLifetime
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
                await there.KillAsync(vm.Id.ToString());
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

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task Killing_the_migrating_process_leaves_the_VM_running_on_the_source_and_nothing_on_the_destination()
    {
        const string name = "mig-kill";
        await _source.Client.CreateAsync(_source.GuestVm(name));
        await _source.Client.StartAsync(name);
        await _source.Client.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(90));
        var pid = (await _source.ShAsync(name, "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done' >/dev/null 2>&1 </dev/null & echo $!")).Trim();

        // slow enough (2 MiB/s of memory) that the kill lands while disks or memory are being copied
        await VzsdkTool.RunAndKillAfterAsync(TimeSpan.FromSeconds(6), MigrateArgs(name, "--max-bandwidth", "2M"));

        var there = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2.DataRoot }));
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((await there.ListAsync()).Count > 0 && DateTime.UtcNow < deadline)
            await Task.Delay(200);
        (await there.ListAsync()).Should().BeEmpty("the destination's agent removed the VM it was receiving when the source went away");
        Directory.GetFileSystemEntries(Path.Combine(_host2.DataRoot, "private")).Should().BeEmpty();

        (await _source.ShAsync(name, $"kill -0 {pid} && echo alive")).Trim().Should().Be("alive", "the VM ran on on the source");
        (await _source.Client.GetAsync(name)).State.Should().Be(VeState.Running);

        // and the leftovers of the killed migration do not stop the next one
        var r = await VzsdkTool.RunAsync(MigrateArgs(name, "--json"));
        r.ExitCode.Should().Be(0, r.StandardError);
        (await there.GetAsync(name)).State.Should().Be(VeState.Running);
        (await there.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", $"kill -0 {pid}"] })).ExitCode.Should().Be(0);
    }
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool, too late for assertions).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
