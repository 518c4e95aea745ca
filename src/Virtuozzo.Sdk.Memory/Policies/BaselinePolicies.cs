namespace Virtuozzo.Sdk.Memory;

/// <summary>
/// <c>wfb</c>: VCMMD's weighted-feedback balancer (the default policy of 2016, later moved to a closed repository),
/// reimplemented from its public history as a baseline. Each VE has a quota that starts at its guarantee; a VE that is
/// short of memory (unused ≤ MEM_LOW) and thrashing gets a tenth of its limit more; then the memory left over is handed
/// out in proportion to a grant weight (high for VEs that use all they have and stall) and any excess is taken back in
/// proportion to a reclaim weight. The page-fault and I/O rates of the original are replaced by the VE's memory stall
/// (PSI), which measures the same thing directly.
/// </summary>
public sealed class WfbMemoryPolicy : IMemoryPolicy
{
    private const double QuotaIncrease = 0.1;
    private const double StallThreshold = DensityMemoryPolicy.StallThreshold;
    private const long Epsilon = 16L * 1024 * 1024;

    /// <inheritdoc />
    public string Name => "wfb";

    /// <inheritdoc />
    public MemoryPlan Decide(MemoryTelemetry telemetry, MemoryPolicyState state)
    {
        ArgumentNullException.ThrowIfNull(telemetry);
        ArgumentNullException.ThrowIfNull(state);
        var active = telemetry.Ves.Where(v => v.Active).ToList();
        var interval = Math.Max(1, telemetry.Interval.TotalMicroseconds);
        var quota = new double[active.Count];
        var grant = new double[active.Count];
        var reclaim = new double[active.Count];
        for (var i = 0; i < active.Count; i++)
        {
            var v = active[i];
            var limit = (double)v.LimitBytes;
            var q = state.Get(v.Id, "quota", v.GuaranteeBytes);
            var stall = v.StallMicroseconds / interval;
            var stallAvg = (stall + 10 * state.Get(v.Id, "stall_avg")) / 11;
            state = state.Set(v.Id, "stall_avg", stallAvg);
            q = Math.Max(q, Math.Min(v.UsageBytes, limit)); // don't squeeze a VE that can't shrink
            var unused = Math.Clamp(q - v.UsageBytes, 0, q);
            var memLow = Math.Clamp(0.1 * limit, 192.0 * 1024 * 1024, 768.0 * 1024 * 1024);
            if (unused <= memLow && stall > StallThreshold)
                q += QuotaIncrease * limit;
            q = Math.Clamp(q, v.GuaranteeBytes, limit);
            var w = 10 - 8 * unused / (q + 1) + (stall > StallThreshold ? 8 : 0) + (stallAvg > StallThreshold ? 4 : 0);
            w = Math.Clamp(w, 1, 20);
            grant[i] = q >= limit ? 0 : w / (q + 1);
            reclaim[i] = q <= v.GuaranteeBytes ? 0 : q / w;
            quota[i] = q;
        }
        var avail = (double)telemetry.BalanceBytes;
        for (var round = 0; round < 16; round++)
        {
            var sum = quota.Sum();
            if (Math.Abs(sum - avail) <= Epsilon)
                break;
            var weights = sum < avail ? grant : reclaim;
            var activeWeights = Enumerable.Range(0, quota.Length).Where(i => weights[i] > 0 && (sum < avail ? quota[i] < active[i].LimitBytes : quota[i] > active[i].GuaranteeBytes)).ToList();
            var wsum = activeWeights.Sum(i => weights[i]);
            if (wsum <= 0)
                break;
            var delta = avail - sum;
            foreach (var i in activeWeights)
                quota[i] = Math.Clamp(quota[i] + delta * weights[i] / wsum, active[i].GuaranteeBytes, active[i].LimitBytes);
        }
        if (quota.Sum() > avail && quota.Sum() > 0)
        {
            var scale = avail / quota.Sum();
            for (var i = 0; i < quota.Length; i++)
                quota[i] *= scale;
        }
        var fits = quota.Sum() <= avail;
        var targets = new List<VeMemoryTarget>(active.Count);
        for (var i = 0; i < active.Count; i++)
        {
            var v = active[i];
            state = state.Set(v.Id, "quota", quota[i]);
            var target = (long)quota[i];
            targets.Add(new VeMemoryTarget(v.Id, fits ? target + v.OverheadBytes + v.VramBytes : v.MinimumBytes, target, v.LimitBytes));
        }
        return new MemoryPlan(targets, state);
    }
}

/// <summary>
/// <c>senpai</c>: Meta's senpai PSI controller, per VE, as a baseline. Every tick the VE's memory stall is added to an
/// integral; above the budget (10 ms) the target is loosened by up to 100 % and the controller waits 5 ticks; otherwise,
/// after the grace period, it probes by tightening the target by up to 1 %. It finds each VE's smallest working set at
/// the stall budget, knows nothing of the host, and leaves the host's budget to the normalizer.
/// </summary>
public sealed class SenpaiMemoryPolicy : IMemoryPolicy
{
    /// <summary>The stall budget per adjustment, in microseconds (senpai's <c>pressure</c>: 10 000).</summary>
    public const double PressureMicroseconds = 10_000;

    private const double CoeffBackoff = 20, MaxBackoff = 1.0, CoeffProbe = 10, MaxProbe = 0.01;
    private const int Interval = 6;
    private const long MinSize = 100L * 1024 * 1024;

    /// <inheritdoc />
    public string Name => "senpai";

    /// <inheritdoc />
    public MemoryPlan Decide(MemoryTelemetry telemetry, MemoryPolicyState state)
    {
        ArgumentNullException.ThrowIfNull(telemetry);
        ArgumentNullException.ThrowIfNull(state);
        var targets = new List<VeMemoryTarget>();
        foreach (var v in telemetry.Ves.Where(v => v.Active))
        {
            var high = state.Get(v.Id, "high", v.TargetBytes ?? Math.Max(v.UsageBytes, v.GuaranteeBytes));
            var integral = state.Get(v.Id, "integral") + v.StallMicroseconds;
            var grace = state.Get(v.Id, "grace");
            if (integral > PressureMicroseconds)
            {
                var adj = Math.Min(Math.Pow(integral / PressureMicroseconds / CoeffBackoff, 2) * MaxBackoff, MaxBackoff);
                high *= 1 + adj;
                integral = 0;
                grace = Interval - 1;
            }
            else if (grace > 0)
            {
                grace--;
            }
            else
            {
                var adj = Math.Min(Math.Pow(PressureMicroseconds / Math.Max(integral, 1) / CoeffProbe, 2) * MaxProbe, MaxProbe);
                high *= 1 - adj;
                integral = 0;
                grace = Interval - 1;
            }
            high = Math.Clamp(high, Math.Max(v.GuaranteeBytes, Math.Min(MinSize, v.LimitBytes)), v.LimitBytes);
            state = state.Set(v.Id, "high", high).Set(v.Id, "integral", integral).Set(v.Id, "grace", grace);
            targets.Add(new VeMemoryTarget(v.Id, v.MinimumBytes, (long)high, v.LimitBytes));
        }
        return new MemoryPlan(targets, state);
    }
}

/// <summary>The policies the SDK ships, by name.</summary>
public static class MemoryPolicies
{
    /// <summary>The names of the built-in policies: static, performance, density, wfb, senpai.</summary>
    public static IReadOnlyList<string> Names { get; } = ["static", "performance", "density", "wfb", "senpai"];

    /// <summary>The default policy's name (<c>density</c>, as on Virtuozzo Hybrid Server).</summary>
    public const string DefaultName = "density";

    /// <summary>A new instance of the built-in policy <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No built-in policy has that name; the message lists them.</exception>
    public static IMemoryPolicy Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.ToLowerInvariant() switch
        {
            "static" => new StaticMemoryPolicy(),
            "performance" => new PerformanceMemoryPolicy(),
            "density" => new DensityMemoryPolicy(),
            "wfb" => new WfbMemoryPolicy(),
            "senpai" => new SenpaiMemoryPolicy(),
            _ => throw new ArgumentException($"There is no memory policy '{name}'; the policies are: {string.Join(", ", Names)}.", nameof(name)),
        };
    }
}
