namespace Virtuozzo.Sdk.Memory;

/// <summary>
/// <c>density</c>: overcommit by following each VE's working set. A VE that does not stall gives memory back: its
/// target is probed down by <see cref="ProbeShare"/> of it per tick (idle VMs through the balloon, containers through
/// their target) but not below the level where it last stalled plus a headroom, which the policy remembers and lets decay slowly. A VE
/// that stalls (or a VM whose guest reports it is short, <see cref="IsGuestShort"/>) gets half of its limit more at once and is left alone for <see cref="GraceTicks"/> ticks: growth is
/// immediate, reclaim gradual (the hysteresis of VCMMD's WSS balloon policy, with senpai's PSI signal). When the targets
/// do not fit the host, memory is taken first from VEs above what they were seen to need, then from VEs that do not
/// stall, never below a guarantee. A hard target (a container on cgroup v1, where going past the target is an OOM kill)
/// is never probed: it stays one <see cref="HardStep"/> above what the VE uses, growing and shrinking with it. What no VE
/// needs stays free, so more VEs fit.
/// </summary>
public sealed class DensityMemoryPolicy : IMemoryPolicy
{
    /// <summary>A VE stalling more than this share of a tick (1 %: 10 ms per second) is under pressure.</summary>
    public const double StallThreshold = 0.01;

    /// <summary>The share of its target a VE that does not stall gives back per tick: 5 %.</summary>
    public const double ProbeShare = 0.05;

    /// <summary>The decay per tick of the remembered stall level: 0.2 % (it halves in about six minutes).</summary>
    public const double FloorDecay = 0.002;

    /// <summary>Ticks a VE is left alone after it stalled: 10.</summary>
    public const int GraceTicks = 10;

    /// <summary>The least headroom kept above a VE's use: 32 MiB.</summary>
    public const long MinHeadroomBytes = 32L * 1024 * 1024;

    /// <inheritdoc />
    public string Name => "density";

    /// <summary>
    /// True when a VM's guest reports less available memory than twice the headroom of what it uses
    /// (<see cref="VeMemoryTelemetry.GuestAvailableBytes"/>): the guest is short, and the policy treats it as stalling
    /// (a guest's reclaim happens inside it, invisible to the host's PSI). Always false without the guest's report.
    /// </summary>
    public static bool IsGuestShort(VeMemoryTelemetry ve)
    {
        ArgumentNullException.ThrowIfNull(ve);
        return ve.GuestAvailableBytes is { } available && available < 2 * Headroom(ve.UsageBytes);
    }

    /// <summary>The headroom kept above a VE's use: a tenth of its use, at least <see cref="MinHeadroomBytes"/>.</summary>
    public static long Headroom(long usageBytes) => Math.Max(MinHeadroomBytes, usageBytes / 10);

    /// <summary>
    /// The margin kept above a hard target's use: twice the headroom, at least a tenth of the limit (a VE growing by less
    /// than that per tick never reaches its target between two ticks).
    /// </summary>
    public static long HardStep(VeMemoryTelemetry ve)
    {
        ArgumentNullException.ThrowIfNull(ve);
        return Math.Max(2 * Headroom(ve.UsageBytes), ve.LimitBytes / 10);
    }

    /// <inheritdoc />
    public MemoryPlan Decide(MemoryTelemetry telemetry, MemoryPolicyState state)
    {
        ArgumentNullException.ThrowIfNull(telemetry);
        ArgumentNullException.ThrowIfNull(state);
        var active = telemetry.Ves.Where(v => v.Active).ToList();
        var interval = Math.Max(1, telemetry.Interval.TotalMicroseconds);
        var desired = new long[active.Count];
        var need = new long[active.Count];
        var pressured = new bool[active.Count];
        for (var i = 0; i < active.Count; i++)
        {
            var v = active[i];
            var current = v.TargetBytes ?? v.LimitBytes;
            var floor = state.Get(v.Id, "floor");
            var grace = state.Get(v.Id, "grace");
            pressured[i] = v.StallMicroseconds / interval > StallThreshold || IsGuestShort(v);
            double next;
            if (pressured[i])
            {
                floor = Math.Max(current, v.UsageBytes) + Headroom(v.UsageBytes);
                next = floor + Math.Max(v.LimitBytes / 2, 2 * Headroom(v.UsageBytes));
                grace = GraceTicks;
            }
            else if (v.HardTarget)
            {
                // A hard target (cgroup v1) OOMs instead of stalling: keep a growth step above use at all times, and give
                // back at once what is more than two steps above it (nothing is probed, so nothing stalls).
                var step = HardStep(v);
                next = current < v.UsageBytes + step || current > v.UsageBytes + 2 * step ? v.UsageBytes + step : current;
            }
            else if (grace > 0)
            {
                next = current;
                grace--;
            }
            else if (current <= floor + MemoryBalancer.AlignmentBytes && v.UsageBytes >= current - MemoryBalancer.AlignmentBytes)
            {
                // At the level it needs and using all of it: it is growing; grow with it before it stalls.
                next = current + Headroom(v.UsageBytes);
                floor = next;
            }
            else
            {
                next = Math.Max(floor, current - Math.Max(MemoryBalancer.AlignmentBytes, current * ProbeShare));
            }
            if (v.HardTarget)
                next = Math.Max(next, v.UsageBytes + HardStep(v)); // never below what is in use plus a step
            floor *= 1 - FloorDecay;
            state = state.Set(v.Id, "floor", floor).Set(v.Id, "grace", grace);
            // A VM that can grow by hotplug grows past its plugged RAM up to its maximum (the manager plugs a DIMM).
            need[i] = (long)Math.Min(v.CeilingBytes, v.HardTarget ? Math.Max(floor, v.UsageBytes + HardStep(v)) : floor);
            desired[i] = Math.Clamp((long)next, Math.Min(v.GuaranteeBytes, v.LimitBytes), v.CeilingBytes);
        }

        // Fit the host: first what is above what each VE was seen to need, then anything above the guarantee of VEs not under pressure.
        var excess = desired.Sum() - telemetry.BalanceBytes;
        if (excess > 0)
            excess = Take(active, desired, i => Math.Max(active[i].GuaranteeBytes, need[i]), excess);
        if (excess > 0)
            Take(active, desired, i => pressured[i] || active[i].HardTarget ? Math.Max(active[i].GuaranteeBytes, need[i]) : active[i].GuaranteeBytes, excess);
        var targets = active.Select((v, i) => new VeMemoryTarget(v.Id, v.MinimumBytes, desired[i], v.LimitBytes)).ToList();
        return new MemoryPlan(targets, state);
    }

    private static long Take(List<VeMemoryTelemetry> active, long[] desired, Func<int, long> floor, long excess)
    {
        var room = active.Select((_, i) => Math.Max(0, desired[i] - Math.Min(floor(i), desired[i]))).ToArray();
        var total = room.Sum();
        if (total == 0)
            return excess;
        var take = Math.Min(total, excess);
        for (var i = 0; i < desired.Length; i++)
            desired[i] -= (long)Math.Ceiling((double)room[i] * take / total);
        return excess - take;
    }
}
