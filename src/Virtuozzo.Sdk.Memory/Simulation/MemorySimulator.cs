using System.Globalization;
using System.Text;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory.Simulation;

/// <summary>The shape of a simulated VE's memory demand over time.</summary>
public enum WorkloadShape
{
    /// <summary>Uses a tenth of its limit; starts holding 60 % (boot leftovers and cache it could give back).</summary>
    Idle,

    /// <summary>Uses half of its limit, all the time.</summary>
    Steady,

    /// <summary>Uses a fifth of its limit, with bursts to 80 % for 20 s of every minute.</summary>
    Bursty,

    /// <summary>Grows from a fifth to 90 % of its limit over the run.</summary>
    Growing,

    /// <summary>Leaks: grows without bound from a fifth of its limit, reaching the limit two thirds into the run.</summary>
    Leak,
}

/// <summary>One VE of a simulated host.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Kind">Container or VM.</param>
/// <param name="LimitBytes">Its configured memory size.</param>
/// <param name="GuaranteePercent">Its guarantee in percent of the limit.</param>
/// <param name="Shape">Its workload.</param>
public sealed record SimulatedVe(string Name, VeKind Kind, long LimitBytes, int GuaranteePercent, WorkloadShape Shape);

/// <summary>The host and the physics of a simulation.</summary>
public sealed record SimulationOptions
{
    /// <summary>Memory available to VEs. Default 8 GiB.</summary>
    public long HostAvailableBytes { get; init; } = 8 * ByteSize.GiB;

    /// <summary>How many ticks (of one second) the run lasts. Default 600 (ten minutes).</summary>
    public int Ticks { get; init; } = 600;

    /// <summary>How fast the kernel reclaims from a VE whose target is below what it holds. Default 256 MiB/s.</summary>
    public long ReclaimBytesPerSecond { get; init; } = 256 * ByteSize.MiB;

    /// <summary>How fast a VE faults memory in when it needs it. Default 256 MiB/s.</summary>
    public long FaultInBytesPerSecond { get; init; } = 256 * ByteSize.MiB;

    /// <summary>How much a memory shortfall stalls: stall fraction = factor × shortfall / demand. Default 4.</summary>
    public double ThrashFactor { get; init; } = 4;

    /// <summary>Seeds the bursty workloads' phases, so runs are repeatable. Default 1.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Keep every tick's figures in <see cref="SimulationResult.Trace"/>. Default false.</summary>
    public bool RecordTrace { get; init; }
}

/// <summary>One VE at one tick of a simulation.</summary>
/// <param name="Tick">The tick (seconds from the start).</param>
/// <param name="Name">The VE.</param>
/// <param name="DemandBytes">What the workload wants resident.</param>
/// <param name="ResidentBytes">What it has resident.</param>
/// <param name="TargetBytes">Its target.</param>
/// <param name="ProtectionBytes">Its protection.</param>
/// <param name="StallMicroseconds">How long it stalled during the tick.</param>
public sealed record SimulationSample(int Tick, string Name, long DemandBytes, long ResidentBytes, long TargetBytes, long ProtectionBytes, long StallMicroseconds);

/// <summary>What a policy did with a simulated host.</summary>
/// <param name="Policy">The policy's name.</param>
/// <param name="VeCount">How many VEs ran.</param>
/// <param name="GuaranteeViolations">VE-ticks with a target below the guarantee, plus ticks with Σ protection above what the host has. Must be 0.</param>
/// <param name="BusyStallSeconds">Total stall time of the VEs that are not idle.</param>
/// <param name="BusyStallShare">That stall time as a share of the busy VEs' run time.</param>
/// <param name="ReclaimedFromIdleBytes">Memory taken back from idle VEs by the end of the run.</param>
/// <param name="TargetChangesPerVeMinute">Target changes of 4 MiB or more, per VE per minute (oscillation).</param>
/// <param name="PeakResidentBytes">The most memory the VEs held at once.</param>
/// <param name="Trace">Every tick's figures, when recorded.</param>
public sealed record SimulationResult(string Policy, int VeCount, long GuaranteeViolations, double BusyStallSeconds, double BusyStallShare,
    long ReclaimedFromIdleBytes, double TargetChangesPerVeMinute, long PeakResidentBytes, IReadOnlyList<SimulationSample> Trace)
{
    /// <summary>The trace as CSV (tick, name, demand, resident, target, protection, stall_us).</summary>
    public string TraceCsv()
    {
        var sb = new StringBuilder("tick,name,demand,resident,target,protection,stall_us\n");
        foreach (var s in Trace)
            sb.Append(CultureInfo.InvariantCulture, $"{s.Tick},{s.Name},{s.DemandBytes},{s.ResidentBytes},{s.TargetBytes},{s.ProtectionBytes},{s.StallMicroseconds}\n");
        return sb.ToString();
    }
}

/// <summary>
/// A deterministic host simulator: it replays workload traces (idle, steady, bursty, growing, leaking) for a host of N
/// VEs through a policy, with a model of reclaim (a VE above its target loses memory at a fixed rate, idle memory first)
/// and of stalls (a VE whose demand exceeds what it holds stalls in proportion to the shortfall), and measures what the
/// policy did. The same inputs always give the same result.
/// </summary>
public static class MemorySimulator
{
    /// <summary>The mixed fleet the benchmark uses: VEs of 1 GiB cycling through idle VMs, busy containers and the other shapes.</summary>
    public static IReadOnlyList<SimulatedVe> MixedFleet(int count)
    {
        (VeKind Kind, WorkloadShape Shape)[] cycle =
        [
            (VeKind.Vm, WorkloadShape.Idle), (VeKind.Container, WorkloadShape.Steady), (VeKind.Vm, WorkloadShape.Bursty),
            (VeKind.Container, WorkloadShape.Idle), (VeKind.Vm, WorkloadShape.Growing), (VeKind.Vm, WorkloadShape.Idle),
            (VeKind.Container, WorkloadShape.Bursty), (VeKind.Container, WorkloadShape.Leak),
        ];
        return Enumerable.Range(0, count).Select(i =>
        {
            var (kind, shape) = cycle[i % cycle.Length];
            return new SimulatedVe($"{(kind == VeKind.Vm ? "vm" : "ct")}{i}-{shape.ToString().ToLowerInvariant()}", kind, ByteSize.GiB, kind == VeKind.Vm ? 25 : 0, shape);
        }).ToList();
    }

    /// <summary>Runs <paramref name="ves"/> through <paramref name="policy"/> (normalized by <see cref="MemoryBalancer"/>).</summary>
    /// <exception cref="ArgumentException">The VEs' guarantees do not fit the host (admission would refuse them).</exception>
    public static SimulationResult Run(IMemoryPolicy policy, IReadOnlyList<SimulatedVe> ves, SimulationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(ves);
        var o = options ?? new SimulationOptions();
        var n = ves.Count;
        var ids = Enumerable.Range(0, n).Select(i => new VeId(new Guid(i + 1, 0, 0, new byte[8]))).ToArray();
        var guarantee = ves.Select(v => MemoryAccounting.GuaranteeBytes(v.LimitBytes, v.GuaranteePercent)).ToArray();
        var overhead = ves.Select(v => MemoryAccounting.Overhead(v.Kind, v.LimitBytes)).ToArray();
        if (guarantee.Sum() + overhead.Sum() > o.HostAvailableBytes)
            throw new ArgumentException($"The VEs' guarantees and overheads ({guarantee.Sum() + overhead.Sum()} bytes) do not fit the host's {o.HostAvailableBytes} bytes.", nameof(ves));
        var random = new Random(o.Seed);
        var phase = ves.Select(_ => random.Next(60)).ToArray();
        var resident = ves.Select((v, i) => Math.Min(v.LimitBytes, Demand(v, 0, o.Ticks, phase[i]) + (v.Shape == WorkloadShape.Idle ? v.LimitBytes / 2 : 0))).ToArray();
        var initial = (long[])resident.Clone();
        var target = new long?[n];
        var stall = new long[n];
        var state = MemoryPolicyState.Empty;
        var trace = new List<SimulationSample>();
        long violations = 0, changes = 0, peak = 0;
        double busyStall = 0;
        var interval = TimeSpan.FromSeconds(1);
        var host = new HostMemoryTelemetry(o.HostAvailableBytes, 0, o.HostAvailableBytes, 0);
        for (var tick = 0; tick < o.Ticks; tick++)
        {
            var telemetry = new MemoryTelemetry(host with { FreeBytes = o.HostAvailableBytes - resident.Sum() - overhead.Sum() }, ves.Select((v, i) => new VeMemoryTelemetry
            {
                Id = ids[i], Name = v.Name, Kind = v.Kind, LimitBytes = v.LimitBytes, GuaranteeBytes = guarantee[i], OverheadBytes = overhead[i],
                UsageBytes = resident[i], TargetBytes = target[i], StallMicroseconds = stall[i],
            }).ToList(), interval);
            var plan = MemoryBalancer.Decide(policy, telemetry, state);
            state = plan.State;
            if (plan.Targets.Sum(t => t.ProtectionBytes) > o.HostAvailableBytes)
                violations++;
            var free = o.HostAvailableBytes - overhead.Sum() - resident.Sum();
            for (var i = 0; i < n; i++)
            {
                var t = plan.For(ids[i])!;
                if (t.TargetBytes < guarantee[i] || t.TargetBytes > ves[i].LimitBytes)
                    violations++;
                if (target[i] is { } previous && Math.Abs(previous - t.TargetBytes) >= MemoryBalancer.AlignmentBytes)
                    changes++;
                target[i] = t.TargetBytes;
                var demand = Math.Min(Demand(ves[i], tick, o.Ticks, phase[i]), ves[i].LimitBytes);
                if (resident[i] > t.TargetBytes)
                {
                    var cut = Math.Min(resident[i] - t.TargetBytes, o.ReclaimBytesPerSecond);
                    resident[i] -= cut;
                    free += cut;
                }
                else if (demand > resident[i])
                {
                    var grow = Math.Min(Math.Min(demand, t.TargetBytes) - resident[i], o.FaultInBytesPerSecond);
                    grow = Math.Max(0, Math.Min(grow, free));
                    resident[i] += grow;
                    free -= grow;
                }
                var shortfall = Math.Max(0, demand - resident[i]);
                var fraction = demand == 0 ? 0 : Math.Min(1, o.ThrashFactor * shortfall / demand);
                stall[i] = (long)(fraction * 1_000_000);
                if (ves[i].Shape != WorkloadShape.Idle)
                    busyStall += fraction;
                if (o.RecordTrace)
                    trace.Add(new SimulationSample(tick, ves[i].Name, demand, resident[i], t.TargetBytes, t.ProtectionBytes, stall[i]));
            }
            peak = Math.Max(peak, resident.Sum());
        }
        var busy = ves.Count(v => v.Shape != WorkloadShape.Idle);
        var reclaimed = ves.Select((v, i) => v.Shape == WorkloadShape.Idle ? Math.Max(0, initial[i] - resident[i]) : 0).Sum();
        return new SimulationResult(policy.Name, n, violations, busyStall, busy == 0 ? 0 : busyStall / (busy * (double)o.Ticks), reclaimed,
            n == 0 ? 0 : changes / (double)n / (o.Ticks / 60.0), peak, trace);
    }

    /// <summary>
    /// Density: the most VEs of <see cref="MixedFleet"/> the host runs under <paramref name="policy"/> with the busy VEs
    /// stalling at most <paramref name="stallBudget"/> of their time (and no guarantee violated); admission of the
    /// guarantees bounds it too.
    /// </summary>
    public static int Density(Func<IMemoryPolicy> policy, double stallBudget = 0.01, SimulationOptions? options = null, int maxVes = 64)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var o = options ?? new SimulationOptions();
        var best = 0;
        for (var n = 1; n <= maxVes; n++)
        {
            var fleet = MixedFleet(n);
            if (fleet.Sum(v => MemoryAccounting.GuaranteeBytes(v.LimitBytes, v.GuaranteePercent) + MemoryAccounting.Overhead(v.Kind, v.LimitBytes)) > o.HostAvailableBytes)
                break;
            var r = Run(policy(), fleet, o);
            if (r.GuaranteeViolations > 0 || r.BusyStallShare > stallBudget)
                break;
            best = n;
        }
        return best;
    }

    /// <summary>What a workload wants resident at a tick.</summary>
    internal static long Demand(SimulatedVe ve, int tick, int ticks, int phase)
    {
        var l = ve.LimitBytes;
        return ve.Shape switch
        {
            WorkloadShape.Idle => l / 10,
            WorkloadShape.Steady => l / 2,
            WorkloadShape.Bursty => (tick + phase) % 60 < 20 ? l * 8 / 10 : l / 5,
            WorkloadShape.Growing => l / 5 + (long)(l * 0.7 * tick / Math.Max(1, ticks - 1)),
            WorkloadShape.Leak => l / 5 + (long)(l * 0.8 * tick / Math.Max(1, ticks * 2 / 3)),
            _ => 0,
        };
    }
}
