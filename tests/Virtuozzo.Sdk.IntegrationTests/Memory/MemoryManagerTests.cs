using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Memory;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;
using Xunit.Abstractions;

namespace Virtuozzo.Sdk.IntegrationTests.Memory;

/// <summary>
/// The memory manager on this machine, for real: three VMs of the test guest (with the balloon) and three containers,
/// overcommitted by a 1.75 GiB budget, and a hotplug VM whose guest fills its memory. Everything is asserted from cgroup
/// files, QMP and the guest, not from the manager.
/// </summary>
[Collection("containers")]
public sealed class MemoryManagerTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int VmGuaranteePercent = 40;
    private static readonly long VmSize = 512 * ByteSize.MiB;
    private static readonly long BusyLimit = ByteSize.GiB;
    private const int AllocateMiB = 700;

    private readonly TempDirectory _root = new("vzsdk-mem");
    private VirtuozzoRuntime _runtime = null!;
    private ContainerClient _cts = null!;
    private VirtualMachineClient _vms = null!;

    public async Task InitializeAsync()
    {
        _runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _root.Path, LockTimeout = TimeSpan.FromMinutes(2) });
        _cts = new ContainerClient(_runtime);
        _vms = new VirtualMachineClient(_runtime);
        await Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        try
        {
            foreach (var vm in await _vms.ListAsync())
            {
                if (vm.State is VeState.Running or VeState.Paused or VeState.Busy)
                    await _vms.KillAsync(vm.Id.ToString());
            }
            foreach (var c in await _cts.ListAsync(all: true))
                await _cts.DeleteAsync(c.Id.ToString());
        }
        finally
        {
            _root.Dispose();
        }
    }

    private async Task<VmInfo> StartVmAsync(string name, Func<VmCreateOptions, VmCreateOptions>? edit = null)
    {
        var guest = await TestGuest.GetAsync();
        var options = new VmCreateOptions
        {
            Name = new VeName(name), MemorySize = ByteSize.FromBytes(VmSize), MemoryGuaranteePercent = VmGuaranteePercent,
            KernelPath = guest.KernelPath, InitrdPath = guest.InitrdPath, KernelCommandLine = TestGuest.CommandLine,
            Acceleration = VmAcceleration.Auto, Network = VmNetworkMode.User,
        };
        await _vms.CreateAsync(edit is null ? options : edit(options));
        var vm = await _vms.StartAsync(name);
        await _vms.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(120));
        return vm;
    }

    private async Task<ContainerInfo> StartContainerAsync(string name, long limit, string disk = "128M", int guaranteePercent = 0)
    {
        await CreateContainerAsync(name, limit, disk, guaranteePercent);
        return await _cts.StartAsync(name);
    }

    private Task<ContainerInfo> CreateContainerAsync(string name, long limit, string disk = "128M", int guaranteePercent = 0)
        => _cts.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName(name),
            Resources = new ContainerResources { MemorySize = ByteSize.FromBytes(limit), DiskSpace = ByteSize.Parse(disk), MemoryGuaranteePercent = guaranteePercent },
        });

    private string MemoryDir(VeId id) => CgroupManager.Detect(_root.Path).Directories(id, CgroupRole.Payload)["memory"];

    private long ReadCgroup(VeId id, string file) => long.Parse(File.ReadAllText(Path.Combine(MemoryDir(id), file)).Trim(), CultureInfo.InvariantCulture);

    private long OomKills(VeId id)
        => long.Parse(File.ReadAllLines(Path.Combine(MemoryDir(id), "memory.oom_control")).Single(l => l.StartsWith("oom_kill ", StringComparison.Ordinal))[9..], CultureInfo.InvariantCulture);

    /// <summary>The balloon as QEMU reports it, over the VM's own monitor.</summary>
    private async Task<long> BalloonAsync(VeId id)
    {
        var qmp = await QmpClient.ConnectAsync(Path.Combine(_root.Path, "run", id.ToString(), "qmp"), TimeSpan.FromSeconds(30), CancellationToken.None);
        await using (qmp)
            return (await qmp.ExecuteAsync("query-balloon", null, TimeSpan.FromSeconds(30), CancellationToken.None))!["actual"]!.GetValue<long>();
    }

    /// <summary>Allocates <see cref="AllocateMiB"/> MiB in 10 MiB steps, one per 0.4 s, and holds it until the script ends.</summary>
    private Task<VeExecResult> AllocateAsync(ContainerInfo busy)
        => _cts.ExecAsync(busy.Id.ToString(), new VeExecOptions
        {
            Command = ["sh", "-c", $"i=0; while [ $i -lt {AllocateMiB / 10} ]; do eval \"v$i=\\$(head -c 10485760 /dev/zero | tr '\\\\0' a)\"; i=$((i+1)); sleep 0.4; done; echo allocated"],
            Timeout = TimeSpan.FromMinutes(4),
        });

    /// <summary>Ticks every second while <paramref name="work"/> runs, checking every VE against its guarantee from the files.</summary>
    private async Task<(int Ticks, long MinBalloon, long MaxBusyLimit)> TickWhileAsync(MemoryManager manager, Task work, IReadOnlyList<VmInfo> vms, ContainerInfo busy, TimeSpan max)
    {
        var guarantee = VmSize * VmGuaranteePercent / 100;
        long minBalloon = long.MaxValue, maxBusy = 0;
        var ticks = 0;
        var clock = Stopwatch.StartNew();
        while (!work.IsCompleted && clock.Elapsed < max)
        {
            await manager.TickAsync();
            ticks++;
            foreach (var vm in vms)
            {
                var balloon = await BalloonAsync(vm.Id);
                balloon.Should().BeGreaterThanOrEqualTo(guarantee - 4 * ByteSize.MiB, "no VM goes below its guarantee ({0} MiB)", guarantee >> 20);
                minBalloon = Math.Min(minBalloon, balloon);
            }
            maxBusy = Math.Max(maxBusy, ReadCgroup(busy.Id, "memory.limit_in_bytes"));
            output.WriteLine($"  t={clock.Elapsed.TotalSeconds:F1}s busy usage {ReadCgroup(busy.Id, "memory.usage_in_bytes") >> 20} MiB limit {ReadCgroup(busy.Id, "memory.limit_in_bytes") >> 20} MiB; balloons {string.Join(", ", await Task.WhenAll(vms.Select(async v => (await BalloonAsync(v.Id)) >> 20)))} MiB");
            await Task.WhenAny(work, Task.Delay(1000));
        }
        return (ticks, minBalloon, maxBusy);
    }

    [IntegrationFact("qemu-system-x86_64", "runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Density_moves_memory_from_idle_vms_to_a_busy_container_that_static_leaves_to_hit_its_limit_and_ksm_merges_identical_vms()
    {
        var vms = (await Task.WhenAll(StartVmAsync("mem-vm1"), StartVmAsync("mem-vm2"), StartVmAsync("mem-vm3"))).ToList();
        var busy = await StartContainerAsync("mem-busy", BusyLimit);
        var idle = new[] { await StartContainerAsync("mem-idle1", 256 * ByteSize.MiB), await StartContainerAsync("mem-idle2", 256 * ByteSize.MiB) };

        // KSM: two idle VMs booted from the same files hold identical pages. The host-wide counters also count other
        // processes' pages (and drop when they exit), so the VMs' own figures come from their QEMU's /proc/PID/ksm_merging_pages.
        long Merging() => vms.Sum(vm => File.ReadAllLines(Path.Combine(MemoryDir(vm.Id), "cgroup.procs"))
            .Select(pid => Path.Combine("/proc", pid.Trim(), "ksm_merging_pages"))
            .Where(File.Exists).Sum(f => long.Parse(File.ReadAllText(f).Trim(), CultureInfo.InvariantCulture)));
        var ksmRoot = new KsmController(Path.Combine(_root.Path, "memory", "ksm"));
        var ksmBefore = await ksmRoot.GetStatusAsync();
        await ksmRoot.SetModeAsync(KsmMode.On);
        try
        {
            var clock = Stopwatch.StartNew();
            while (Merging() < 1000 && clock.Elapsed < TimeSpan.FromSeconds(120))
                await Task.Delay(1000);
            var ksm = await ksmRoot.GetStatusAsync();
            output.WriteLine($"KSM: the three VMs merge {Merging()} pages ({Merging() * 4096 >> 20} MiB) after {clock.Elapsed.TotalSeconds:F0} s; host-wide {ksm.PagesShared} shared, {ksm.PagesSharing} sharing ({ksm.SavedBytes >> 20} MiB saved)");
            ksm.Running.Should().BeTrue();
            Merging().Should().BeGreaterThanOrEqualTo(1000, "identical idle guests share pages once KSM runs");
        }
        finally
        {
            await ksmRoot.SetModeAsync(ksmBefore.Running ? KsmMode.On : KsmMode.Off);
            await ksmRoot.SetModeAsync(KsmMode.Auto);
        }

        // Density: idle VMs' balloons inflate, the busy container's target rises, its allocation completes without an OOM kill.
        var manager = new MemoryManager(_runtime, new MemoryManagerOptions { Policy = "density", Budget = ByteSize.Parse("1792M"), ManageKsm = false, Interval = TimeSpan.FromSeconds(1) });
        var settle = Stopwatch.StartNew();
        for (var i = 0; i < 5; i++)
        {
            await manager.TickAsync();
            await Task.Delay(1000);
        }
        var reclaimStart = Stopwatch.StartNew();
        var work = AllocateAsync(busy);
        var clockDensity = Stopwatch.StartNew();
        var (ticks, minBalloon, maxBusy) = await TickWhileAsync(manager, work, vms, busy, TimeSpan.FromMinutes(4));
        var result = await work;
        var densityTime = clockDensity.Elapsed;
        output.WriteLine($"density: {ticks} ticks, allocation of {AllocateMiB} MiB done in {densityTime.TotalSeconds:F1} s (exit {result.ExitCode}); smallest balloon {minBalloon >> 20} MiB; busy limit up to {maxBusy >> 20} MiB; oom kills {OomKills(busy.Id)}");
        result.ExitCode.Should().Be(0, "the busy container completes its allocation under density; stderr: {0}", result.StandardError);
        result.StandardOutput.Should().Contain("allocated");
        OomKills(busy.Id).Should().Be(0);
        minBalloon.Should().BeLessThan(VmSize - 128 * ByteSize.MiB, "density inflates the idle VMs' balloons");
        maxBusy.Should().BeGreaterThan(AllocateMiB * ByteSize.MiB, "density raises the busy container's target past what it allocates");
        foreach (var c in idle)
            ReadCgroup(c.Id, "memory.limit_in_bytes").Should().BeLessThan(256 * ByteSize.MiB, "density takes back the idle containers' unused allowance");
        (await manager.TickAsync()).Errors.Should().BeEmpty();

        // Static: the same workload hits the container's share of the overcommitted budget.
        manager.SetPolicy(new StaticMemoryPolicy());
        for (var i = 0; i < 3; i++)
        {
            await manager.TickAsync();
            await Task.Delay(1000);
        }
        var staticLimit = ReadCgroup(busy.Id, "memory.limit_in_bytes");
        staticLimit.Should().BeLessThan(AllocateMiB * ByteSize.MiB, "static shares the budget in proportion to the limits");
        var clockStatic = Stopwatch.StartNew();
        var staticWork = AllocateAsync(busy);
        await TickWhileAsync(manager, staticWork, vms, busy, TimeSpan.FromMinutes(4));
        var staticResult = await staticWork;
        output.WriteLine($"static: busy limit {staticLimit >> 20} MiB; allocation ended after {clockStatic.Elapsed.TotalSeconds:F1} s with exit {staticResult.ExitCode}; oom kills {OomKills(busy.Id)}");
        staticResult.StandardOutput.Should().NotContain("allocated");
        OomKills(busy.Id).Should().BePositive("under static the allocation hits the container's limit");
        _ = reclaimStart;
        _ = settle;
    }

    /// <summary>QEMU's DIMMs, over the VM's own monitor.</summary>
    private async Task<IReadOnlyList<long>> DimmsAsync(VeId id)
    {
        var qmp = await QmpClient.ConnectAsync(Path.Combine(_root.Path, "run", id.ToString(), "qmp"), TimeSpan.FromSeconds(30), CancellationToken.None);
        await using (qmp)
            return (await qmp.ExecuteAsync("query-memory-devices", null, TimeSpan.FromSeconds(30), CancellationToken.None))!.AsArray()
                .Where(d => d!["type"]?.GetValue<string>() == "dimm").Select(d => d!["data"]!["size"]!.GetValue<long>()).ToList();
    }

    private async Task<string> GuestShAsync(string vm, string script)
    {
        var r = await _vms.ExecAsync(vm, new VeExecOptions { Command = ["sh", "-c", script], Timeout = TimeSpan.FromMinutes(1) });
        r.ExitCode.Should().Be(0, "'{0}' in the guest; stderr: {1}", script, r.StandardError);
        return r.StandardOutput;
    }

    private static long MemTotal(string meminfo) => long.Parse(Regex.Match(meminfo, @"MemTotal:\s+(\d+) kB").Groups[1].Value, CultureInfo.InvariantCulture) * 1024;

    [IntegrationFact("qemu-system-x86_64", "runc", Root = true)]
    public async Task Under_density_a_hotplug_vm_whose_guest_fills_its_memory_gets_dimms_plugged_and_its_fill_completes_without_an_oom()
    {
        const string name = "mem-grow";
        var plugged = ByteSize.GiB; // the least a hotplug VM may have
        const int fillMiB = 1200; // more than the VM has plugged: only hotplug lets it finish
        var vm = await StartVmAsync(name, o => o with { MemorySize = ByteSize.FromBytes(plugged), MemoryHotplug = true, MaxMemory = ByteSize.FromGiB(2) });
        var before = MemTotal(await GuestShAsync(name, "cat /proc/meminfo"));
        var manager = new MemoryManager(_runtime, new MemoryManagerOptions { Policy = "density", Budget = ByteSize.Parse("3G"), ManageKsm = false, Interval = TimeSpan.FromSeconds(1) });
        for (var i = 0; i < 5; i++) // the first ticks turn the balloon's statistics on; the idle guest is probed down
        {
            (await manager.TickAsync()).Errors.Should().BeEmpty();
            await Task.Delay(1000);
        }
        var settled = await BalloonAsync(vm.Id);
        (await DimmsAsync(vm.Id)).Should().BeEmpty("nothing needed a DIMM while the guest was idle");

        // The guest fills a tmpfs 20 MiB a second: memory it cannot give back, invisible to the host's PSI.
        var fill = _vms.ExecAsync(name, new VeExecOptions
        {
            Command = ["sh", "-c", $"mkdir -p /fill && mount -t tmpfs -o size=2g fill /fill && i=0; while [ $i -lt {fillMiB / 20} ]; do dd if=/dev/zero of=/fill/f$i bs=1M count=20 2>/dev/null || exit 3; i=$((i+1)); sleep 1; done; echo filled"],
            Timeout = TimeSpan.FromMinutes(5),
        });
        var guarantee = plugged * VmGuaranteePercent / 100;
        var clock = Stopwatch.StartNew();
        while (!fill.IsCompleted && clock.Elapsed < TimeSpan.FromMinutes(5))
        {
            (await manager.TickAsync()).Errors.Should().BeEmpty();
            var balloon = await BalloonAsync(vm.Id);
            balloon.Should().BeGreaterThanOrEqualTo(guarantee - 4 * ByteSize.MiB, "the VM never goes below its guarantee");
            output.WriteLine($"  t={clock.Elapsed.TotalSeconds:F1}s balloon {balloon >> 20} MiB, DIMMs [{string.Join(", ", (await DimmsAsync(vm.Id)).Select(d => d >> 20))}] MiB");
            await Task.WhenAny(fill, Task.Delay(1000));
        }
        var result = await fill;
        var dimms = await DimmsAsync(vm.Id);
        var after = MemTotal(await GuestShAsync(name, "cat /proc/meminfo"));
        var ooms = await GuestShAsync(name, "dmesg | grep -c 'Out of memory' || true");
        output.WriteLine($"settled balloon {settled >> 20} MiB; fill of {fillMiB} MiB: exit {result.ExitCode} after {clock.Elapsed.TotalSeconds:F0} s; DIMMs plugged: {string.Join(", ", dimms.Select(d => d >> 20))} MiB; guest MemTotal {before >> 20} → {after >> 20} MiB; guest OOM messages {ooms.Trim()}");
        result.ExitCode.Should().Be(0, "the fill completes; stderr: {0}", result.StandardError);
        result.StandardOutput.Should().Contain("filled");
        dimms.Should().NotBeEmpty("density plugs a DIMM when the guest is short and the VM can grow");
        dimms.Sum().Should().BeGreaterThanOrEqualTo(fillMiB * ByteSize.MiB - plugged, "enough was plugged for the fill");
        after.Should().BeGreaterThan(before + 100 * ByteSize.MiB, "the guest sees the plugged memory");
        ooms.Trim().Should().Be("0", "the guest never ran out of memory");
        (await _vms.GetAsync(name)).MemorySize.Bytes.Should().Be(plugged + dimms.Sum(), "the plugged memory is the VM's memory now");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_running_container_s_memory_is_lowered_through_reclaim_and_a_cut_that_cannot_be_reclaimed_is_refused_without_a_kill()
    {
        var c = await StartContainerAsync("mem-live", 512 * ByteSize.MiB, "512M");
        var id = c.Id.ToString();
        // 200 MiB of page cache (reclaimable) plus a shell holding 100 MiB of anonymous memory (not reclaimable without swap).
        (await _cts.ExecAsync(id, new VeExecOptions { Command = ["sh", "-c", "dd if=/dev/zero of=/cache bs=1M count=200 2>/dev/null && sync"], Timeout = TimeSpan.FromMinutes(1) })).ExitCode.Should().Be(0);
        var holder = _cts.ExecAsync(id, new VeExecOptions { Command = ["sh", "-c", "x=$(head -c 104857600 /dev/zero | tr '\\0' a); touch /held; sleep 40; echo survived"], Timeout = TimeSpan.FromMinutes(2) });
        for (var i = 0; i < 60 && (await _cts.ExecAsync(id, new VeExecOptions { Command = ["test", "-f", "/held"] })).ExitCode != 0; i++)
            await Task.Delay(500);
        var before = ReadCgroup(c.Id, "memory.usage_in_bytes");
        before.Should().BeGreaterThan(280 * ByteSize.MiB);

        await _cts.SetAsync(id, new ContainerSetOptions { MemorySize = ByteSize.Parse("256M") });
        ReadCgroup(c.Id, "memory.limit_in_bytes").Should().Be(256 * ByteSize.MiB);
        ReadCgroup(c.Id, "memory.memsw.limit_in_bytes").Should().BeGreaterThanOrEqualTo(256 * ByteSize.MiB);
        ReadCgroup(c.Id, "memory.usage_in_bytes").Should().BeLessThanOrEqualTo(256 * ByteSize.MiB, "the page cache was reclaimed");

        var refused = () => _cts.SetAsync(id, new ContainerSetOptions { MemorySize = ByteSize.Parse("48M") });
        await refused.Should().ThrowAsync<InsufficientResourcesException>().WithMessage("*cannot be limited to 48 MiB*");
        ReadCgroup(c.Id, "memory.limit_in_bytes").Should().Be(256 * ByteSize.MiB, "a refused cut puts the limit back");
        (await _cts.GetAsync(id)).MemorySize.Should().Be(ByteSize.Parse("256M"));
        OomKills(c.Id).Should().Be(0);
        var held = await holder;
        held.StandardOutput.Should().Contain("survived", "the process holding memory survived both changes (exit {0}, stderr {1})", held.ExitCode, held.StandardError);
        OomKills(c.Id).Should().Be(0);

        await _cts.SetAsync(id, new ContainerSetOptions { MemorySize = ByteSize.Parse("768M") });
        ReadCgroup(c.Id, "memory.limit_in_bytes").Should().Be(768 * ByteSize.MiB);
    }
    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task The_running_loop_picks_up_a_container_that_starts_and_carries_on_when_it_is_stopped_and_deleted()
    {
        var manager = new MemoryManager(_runtime, new MemoryManagerOptions { Policy = "density", Interval = TimeSpan.FromSeconds(1), ManageKsm = false, Budget = ByteSize.Parse("2G") });
        using var stop = new CancellationTokenSource();
        var loop = manager.RunAsync(stop.Token);
        var c = await StartContainerAsync("mem-loop", 512 * ByteSize.MiB);
        var limit = 512 * ByteSize.MiB;
        for (var i = 0; i < 20 && limit == 512 * ByteSize.MiB; i++)
        {
            await Task.Delay(500);
            limit = ReadCgroup(c.Id, "memory.limit_in_bytes");
        }
        limit.Should().BeLessThan(512 * ByteSize.MiB, "the loop found the new container and gave back its unused allowance");
        await _cts.StopAsync(c.Id.ToString());
        await Task.Delay(1500);
        await _cts.DeleteAsync(c.Id.ToString());
        await Task.Delay(1500);
        loop.IsCompleted.Should().BeFalse("the loop survives a VE stopping and being deleted under it");
        var after = await StartContainerAsync("mem-loop2", 256 * ByteSize.MiB);
        var limit2 = 256 * ByteSize.MiB;
        for (var i = 0; i < 20 && limit2 == 256 * ByteSize.MiB; i++)
        {
            await Task.Delay(500);
            limit2 = ReadCgroup(after.Id, "memory.limit_in_bytes");
        }
        limit2.Should().BeLessThan(256 * ByteSize.MiB);
        await stop.CancelAsync();
        await loop.WaitAsync(TimeSpan.FromSeconds(30));
        loop.IsCompletedSuccessfully.Should().BeTrue("cancelling stops the loop cleanly");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_container_start_beyond_the_manager_s_budget_is_refused_by_the_ledger_in_any_process_and_nothing_starts()
    {
        // The manager's budget (384 MiB) caps admission from its first tick: 256 MiB guaranteed fits, a second 256 MiB does not.
        var manager = new MemoryManager(_runtime, new MemoryManagerOptions { Policy = "static", Budget = ByteSize.Parse("384M"), ManageKsm = false, Interval = TimeSpan.FromSeconds(1) });
        await manager.TickAsync();
        var first = await StartContainerAsync("mem-budget1", 512 * ByteSize.MiB, guaranteePercent: 50);
        var second = await CreateContainerAsync("mem-budget2", 512 * ByteSize.MiB, guaranteePercent: 50);

        var act = () => _cts.StartAsync("mem-budget2");
        var refused = (await act.Should().ThrowAsync<InsufficientResourcesException>()).Which;
        output.WriteLine(refused.Message);
        refused.Message.Should().Contain("container mem-budget2").And.Contain("256 MiB").And.Contain("only 128 MiB").And.Contain("budget of 384 MiB");
        refused.RequestedBytes.Should().Be(256 * ByteSize.MiB);
        refused.AvailableBytes.Should().Be(128 * ByteSize.MiB);
        (await _cts.GetAsync("mem-budget2")).State.Should().Be(VeState.Stopped, "a refused start starts nothing");
        _runtime.Cgroups.Exists(second.Id).Should().BeFalse("no cgroup was made for the refused container");
        Directory.Exists(Path.Combine(_root.Path, "run", second.Id.ToString())).Should().BeFalse("no run state was made for it");
        (await _runtime.Ledger.GetSnapshotAsync()).Reservations.Select(r => r.VeId).Should().Equal(first.Id);

        // Another process (the tool, as an operator would run it) is refused too: the budget lives in the data root's ledger.
        var cli = await VzsdkTool.RunAsync("start", "mem-budget2", "--data-root", _root.Path);
        cli.ExitCode.Should().Be(1, cli.StandardError);
        cli.StandardError.Should().Contain("mem-budget2").And.Contain("budget of 384 MiB");
        (await _cts.GetAsync("mem-budget2")).State.Should().Be(VeState.Stopped);

        // A manager with a larger budget records it, and the same start is admitted.
        await new MemoryManager(_runtime, new MemoryManagerOptions { Policy = "static", Budget = ByteSize.Parse("1G"), ManageKsm = false }).TickAsync();
        (await _cts.StartAsync("mem-budget2")).State.Should().Be(VeState.Running);
        (await _runtime.Ledger.GetSnapshotAsync()).ReservedBytes.Should().Be(512 * ByteSize.MiB);
    }

    /// <summary>Polls <paramref name="condition"/> every 0.5 s for up to <paramref name="max"/>; returns whether it held.</summary>
    private static async Task<bool> EventuallyAsync(Func<bool> condition, TimeSpan max)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > max)
                return false;
            await Task.Delay(500);
        }
        return true;
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Vzsdk_mem_daemon_applies_targets_to_a_running_container_follows_a_policy_switch_and_exits_cleanly_on_sigterm()
    {
        var limit = 512 * ByteSize.MiB;
        var c = await StartContainerAsync("mem-daemon", limit);
        ReadCgroup(c.Id, "memory.limit_in_bytes").Should().Be(limit);

        // The real tool, in its own process (the published Native AOT tool under CI), as an operator runs it.
        var line = VzsdkTool.StartLine("mem", "daemon", "--policy", "density", "--interval", "1", "--budget", "2G", "--data-root", _root.Path);
        var psi = new ProcessStartInfo(line[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in line.Skip(1))
            psi.ArgumentList.Add(a);
        var log = new System.Text.StringBuilder();
        using var daemon = Process.Start(psi)!;
        daemon.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        daemon.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        daemon.BeginOutputReadLine();
        daemon.BeginErrorReadLine();
        string Log() { lock (log) return log.ToString(); }
        try
        {
            // Density gives back the idle container's unused allowance: the daemon writes a lower target into its cgroup.
            (await EventuallyAsync(() => ReadCgroup(c.Id, "memory.limit_in_bytes") < limit, TimeSpan.FromSeconds(60)))
                .Should().BeTrue("the daemon lowers the idle container's target under density; daemon output: {0}", Log());
            var applied = ReadCgroup(c.Id, "memory.limit_in_bytes");
            output.WriteLine($"density: the daemon set the container's target to {applied >> 20} MiB");

            // 'vzsdk mem status' in a third process reports what the daemon applied, and the budget it recorded.
            var status = await VzsdkTool.RunAsync("mem", "status", "--json", "--data-root", _root.Path);
            status.ExitCode.Should().Be(0, status.StandardError);
            output.WriteLine(status.StandardOutput);
            using (var doc = JsonDocument.Parse(status.StandardOutput))
            {
                var s = doc.RootElement;
                s.GetProperty("policy").GetString().Should().Be("density");
                s.GetProperty("available").GetInt64().Should().Be(2 * ByteSize.GiB, "status reports the budget the daemon recorded in the ledger");
                var ve = s.GetProperty("ves").EnumerateArray().Should().ContainSingle().Which;
                ve.GetProperty("name").GetString().Should().Be("mem-daemon");
                ve.GetProperty("limit").GetInt64().Should().Be(limit);
                var target = ve.GetProperty("target").GetInt64();
                target.Should().BeLessThan(limit, "status reads the lowered target from the cgroup the daemon wrote");
                target.Should().BeCloseTo(ReadCgroup(c.Id, "memory.limit_in_bytes"), 64 * (ulong)ByteSize.MiB, "the daemon may have moved it a little since");
            }

            // Switch the policy from another process: the daemon follows at its next tick; static gives the container its whole limit.
            var policy = await VzsdkTool.RunAsync("mem", "policy", "static", "--data-root", _root.Path);
            policy.ExitCode.Should().Be(0, policy.StandardError);
            (await EventuallyAsync(() => ReadCgroup(c.Id, "memory.limit_in_bytes") == limit, TimeSpan.FromSeconds(30)))
                .Should().BeTrue("the daemon switched to static and restored the container's limit; daemon output: {0}", Log());
            (await VzsdkTool.RunAsync("mem", "policy", "--data-root", _root.Path)).StandardOutput.Trim().Should().Be("static");
            daemon.HasExited.Should().BeFalse("the daemon keeps running across the switch; output: {0}", Log());
        }
        finally
        {
            if (!daemon.HasExited)
                Virtuozzo.Sdk.Core.Internal.Native.TrySignal(daemon.Id, Virtuozzo.Sdk.Core.Internal.Native.SIGTERM);
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try { await daemon.WaitForExitAsync(wait.Token); }
            catch (OperationCanceledException) { daemon.Kill(); }
        }
        output.WriteLine(Log());
        daemon.ExitCode.Should().Be(0, "SIGTERM stops the daemon cleanly; output: {0}", Log());
        Log().Should().Contain("vzsdk mem daemon: stopped").And.NotContain("Exception");
    }
}
