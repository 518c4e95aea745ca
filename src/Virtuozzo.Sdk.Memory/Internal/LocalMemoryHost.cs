using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.Memory.Internal;

/// <summary>
/// The local runtime as the memory manager sees it: VEs from the runtime's drivers, usage from their cgroups, stalls from
/// their v2 cgroup's <c>memory.pressure</c> (the <c>unified</c> hierarchy on hybrid hosts), balloon sizes over QMP; plans
/// applied to cgroup files and balloons, writing only what changes.
/// </summary>
internal sealed class LocalMemoryHost(VirtuozzoRuntime runtime, MemoryManagerOptions options, ILogger logger) : IMemoryHost
{
    private readonly Dictionary<VeId, long> _pressure = [];
    private readonly Dictionary<VeId, long> _balloon = [];
    private readonly Dictionary<VeId, long> _plugged = [];
    private DateTime _lastRead;

    public async Task<MemoryTelemetry> ReadAsync(CancellationToken cancellationToken)
    {
        var meminfo = await File.ReadAllTextAsync("/proc/meminfo", cancellationToken).ConfigureAwait(false);
        var total = HostProber.ParseMemTotal(meminfo);
        var free = ParseMeminfo(meminfo, "MemAvailable:") ?? total;
        var reserve = options.Reserve.For(total);
        // The budget is the smallest of the manager's own, the SDK options' and the one a manager recorded in the ledger
        // (so that 'vzsdk mem status' in another process reports what the running daemon balances within).
        var recorded = (await runtime.Ledger.GetSnapshotAsync(cancellationToken).ConfigureAwait(false)).BudgetBytes;
        long? budget = new[] { options.Budget?.Bytes, runtime.Options.HostMemoryBudget?.Bytes, recorded }.Where(b => b is not null).Min();
        var available = MemoryAccounting.Available(total, options.Reserve, budget);
        var now = DateTime.UtcNow;
        var interval = _lastRead == default ? options.Interval : now - _lastRead;
        _lastRead = now;
        var ves = new List<VeMemoryTelemetry>();
        foreach (var driver in runtime.Drivers)
        {
            IReadOnlyList<VeInfo> list;
            try { list = await driver.ListVesAsync(cancellationToken).ConfigureAwait(false); }
            catch (VirtuozzoException ex) { logger.LogWarning("Memory: cannot list {Kind}s: {Error}", driver.Kind, ex.Message); continue; }
            foreach (var info in list.Where(i => i.State is VeState.Running or VeState.Paused))
            {
                try
                {
                    if (await ReadVeAsync(info, cancellationToken).ConfigureAwait(false) is { } t)
                        ves.Add(t);
                }
                catch (Exception ex) when (ex is VirtuozzoException or IOException or FormatException or UnauthorizedAccessException)
                {
                    logger.LogDebug("Memory: skipping {Name} this tick: {Error}", info.Name, ex.Message); // it stopped or is being deleted
                }
            }
        }
        foreach (var gone in _pressure.Keys.Except(ves.Select(v => v.Id)).ToList())
        {
            _pressure.Remove(gone);
            _balloon.Remove(gone);
            _plugged.Remove(gone);
        }
        return new MemoryTelemetry(new HostMemoryTelemetry(total, reserve, available, free), ves, interval);
    }

    private async Task<VeMemoryTelemetry?> ReadVeAsync(VeInfo info, CancellationToken ct)
    {
        var limit = info.MemorySize.Bytes;
        var guarantee = MemoryAccounting.GuaranteeBytes(limit, info.MemoryGuaranteePercent);
        var overhead = MemoryAccounting.Overhead(info.Kind, limit);
        var cg = runtime.Cgroups.Exists(info.Id) ? runtime.Cgroups.Open(info.Id) : null;
        long stall = 0;
        if (cg?.MemoryPressureTotal() is { } totalStall)
        {
            stall = _pressure.TryGetValue(info.Id, out var previous) ? Math.Max(0, totalStall - previous) : 0;
            _pressure[info.Id] = totalStall;
        }
        else
        {
            _pressure[info.Id] = 0;
        }
        long usage, target;
        long? max = null, guestAvailable = null;
        if (info.Kind == VeKind.Vm)
        {
            if (Vm() is not { } vm || await vm.GetMemoryStatusAsync(info.Id, ct).ConfigureAwait(false) is not { } status)
                return null;
            _plugged[info.Id] = status.PluggedBytes;
            limit = Math.Max(limit, status.PluggedBytes);
            max = status.HotplugMaxBytes > limit ? status.HotplugMaxBytes : null; // hotplug-enabled: may grow to its maximum memory
            // What the guest uses: from its own report when it sends the balloon's statistics (QEMU's resident memory only
            // grows: pages the guest freed stay resident), else what QEMU has resident beyond its overhead.
            var inUse = status.Guest is { } g ? Math.Max(0, g.TotalBytes - g.AvailableBytes)
                : cg is null ? status.BalloonBytes : Math.Max(0, cg.MemoryUsage() - overhead);
            usage = Math.Min(status.BalloonBytes, inUse);
            guestAvailable = status.Guest?.AvailableBytes;
            target = _balloon.TryGetValue(info.Id, out var set) ? set : status.BalloonBytes;
        }
        else
        {
            if (cg is null)
                return null;
            usage = cg.MemoryUsage();
            var current = runtime.Cgroups.IsV2 ? cg.ReadMemorySetting("memory.high") ?? limit : cg.MemoryLimit();
            target = Math.Min(current, limit);
        }
        return new VeMemoryTelemetry
        {
            Id = info.Id, Name = info.Name.ToString(), Kind = info.Kind, Active = info.State == VeState.Running,
            HardTarget = info.Kind == VeKind.Container && !runtime.Cgroups.IsV2,
            LimitBytes = limit, MaxBytes = max, GuaranteeBytes = guarantee, OverheadBytes = overhead, UsageBytes = usage, TargetBytes = target, StallMicroseconds = stall,
            GuestAvailableBytes = guestAvailable,
        };
    }

    public async Task<int> ApplyAsync(VeMemoryTelemetry ve, VeMemoryTarget target, CancellationToken cancellationToken)
    {
        var cg = runtime.Cgroups.Exists(ve.Id) ? runtime.Cgroups.Open(ve.Id) : null;
        if (ve.Kind == VeKind.Container)
        {
            if (cg is null)
                return 0;
            var swap = Math.Max(0, (cg.MemorySwapLimit() ?? cg.MemoryLimit()) - cg.MemoryLimit());
            return cg.SetMemoryTarget(target.ProtectionBytes, target.TargetBytes, capAtTarget: !runtime.Cgroups.IsV2, swap);
        }
        var writes = 0;
        if (cg is not null)
            writes += cg.SetMemoryTarget(target.ProtectionBytes, target.TargetBytes + ve.OverheadBytes + ve.VramBytes, capAtTarget: false, 0);
        if (Vm() is not { } vm)
            return writes;
        if (_plugged.TryGetValue(ve.Id, out var plugged) && DimmFor(plugged, target.TargetBytes, ve.CeilingBytes) is > 0 and var dimm)
        {
            // The target needs more RAM than is plugged: memory hotplug stays in the VM package (it plugs a DIMM and sets the balloon).
            await vm.SetAsync(ve.Id.ToString(), new VmSetOptions { MemorySize = ByteSize.FromBytes(plugged + dimm) }, cancellationToken).ConfigureAwait(false);
            _plugged[ve.Id] = plugged + dimm;
            writes++;
        }
        if (!_balloon.TryGetValue(ve.Id, out var previous) || previous != target.TargetBytes)
        {
            await vm.SetBalloonTargetAsync(ve.Id, target.TargetBytes, cancellationToken).ConfigureAwait(false);
            _balloon[ve.Id] = target.TargetBytes;
            writes++;
        }
        return writes;
    }

    public async Task<IDisposable> ClaimAsync(CancellationToken cancellationToken)
    {
        runtime.Store.EnsureUsable();
        var path = Path.Combine(runtime.Store.LocksDirectory, "memory-manager.lock");
        try
        {
            return await FileLock.AcquireAsync(path, "the memory manager's claim on the host", TimeSpan.Zero, cancellationToken).ConfigureAwait(false);
        }
        catch (LockTimeoutException ex)
        {
            throw new InvalidStateException(
                $"Another memory manager runs on the data root {runtime.Store.DataRoot} (it holds {path}): one manager balances a host, " +
                "as VCMMD is one daemon. Stop it first, or change its policy with 'vzsdk mem policy NAME' rather than starting a second one.", ex);
        }
    }

    public async Task RecordBudgetAsync(long? budgetBytes, CancellationToken cancellationToken)
    {
        await runtime.Ledger.SetBudgetAsync(budgetBytes, cancellationToken).ConfigureAwait(false);
        if (budgetBytes is { } b)
            logger.LogInformation("Memory: admission is capped at the budget of {Budget}", new ByteSize(b).ToHumanString());
    }

    /// <summary>
    /// The DIMM to plug (through the VM package) when a VM's target needs more than is plugged:
    /// <c>roundup(target − plugged, 128 MiB)</c> (VCMMD's grain), never past <paramref name="maxBytes"/>; 0 for none.
    /// </summary>
    internal static long DimmFor(long pluggedBytes, long targetBytes, long maxBytes = long.MaxValue)
    {
        if (targetBytes <= pluggedBytes)
            return 0;
        var grain = MemoryAccounting.HotplugGrainBytes;
        var dimm = (targetBytes - pluggedBytes + grain - 1) / grain * grain;
        return Math.Max(0, Math.Min(dimm, (maxBytes - pluggedBytes) / grain * grain));
    }

    private LocalVmDriver? Vm() => runtime.Drivers.OfType<LocalVmDriver>().FirstOrDefault();

    private static long? ParseMeminfo(string text, string key)
    {
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith(key, StringComparison.Ordinal))
                continue;
            var f = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return null;
    }
}
