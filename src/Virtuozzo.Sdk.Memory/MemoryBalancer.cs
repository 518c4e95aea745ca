namespace Virtuozzo.Sdk.Memory;

/// <summary>The invariants every plan is held to, whichever policy made it.</summary>
public static class MemoryBalancer
{
    /// <summary>Targets are aligned down to this (4 MiB, the balloon's and the free-page reporting's granularity).</summary>
    public const long AlignmentBytes = 4 * 1024 * 1024;

    /// <summary>
    /// Runs <paramref name="policy"/> and normalizes its plan (<see cref="Normalize"/>), dropping state of VEs that are
    /// gone.
    /// </summary>
    public static MemoryPlan Decide(IMemoryPolicy policy, MemoryTelemetry telemetry, MemoryPolicyState state)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(telemetry);
        ArgumentNullException.ThrowIfNull(state);
        var plan = policy.Decide(telemetry, state.Retain(telemetry.Ves.Select(v => v.Id)));
        return Normalize(telemetry, plan);
    }

    /// <summary>
    /// Makes a plan safe: one target per active VE (a missing one gets the static default: target = limit); the limit is
    /// the configured size; guarantee ≤ target ≤ limit; Σ targets ≤ <see cref="MemoryTelemetry.BalanceBytes"/> by
    /// taking, in proportion, from what each target has above its guarantee; protection at most the target plus
    /// overhead, and Σ protection ≤ available (falling back to <c>mem_min</c>, then scaled, when it is not).
    /// </summary>
    public static MemoryPlan Normalize(MemoryTelemetry telemetry, MemoryPlan plan)
    {
        ArgumentNullException.ThrowIfNull(telemetry);
        ArgumentNullException.ThrowIfNull(plan);
        var active = telemetry.Ves.Where(v => v.Active).ToList();
        var targets = new long[active.Count];
        var protections = new long[active.Count];
        for (var i = 0; i < active.Count; i++)
        {
            var v = active[i];
            var t = plan.For(v.Id);
            var guarantee = Math.Min(v.GuaranteeBytes, v.LimitBytes);
            targets[i] = Math.Clamp(t?.TargetBytes ?? v.LimitBytes, guarantee, v.CeilingBytes);
            protections[i] = Math.Max(0, t?.ProtectionBytes ?? v.MinimumBytes);
        }

        // Σ targets within what the host has: take from what is above each guarantee, in proportion.
        var balance = telemetry.BalanceBytes;
        var sum = targets.Sum();
        if (sum > balance)
        {
            var floors = active.Select(v => Math.Min(v.GuaranteeBytes, v.LimitBytes)).ToArray();
            var above = sum - floors.Sum();
            var excess = sum - balance;
            if (above <= excess)
            {
                Array.Copy(floors, targets, targets.Length); // guarantees win: they were admitted
            }
            else
            {
                var keep = (double)(above - excess) / above;
                for (var i = 0; i < targets.Length; i++)
                    targets[i] = Math.Max(floors[i], floors[i] + (long)((targets[i] - floors[i]) * keep));
            }
        }
        for (var i = 0; i < targets.Length; i++)
        {
            var v = active[i];
            var floor = Math.Min(v.GuaranteeBytes, v.LimitBytes);
            var aligned = targets[i] / AlignmentBytes * AlignmentBytes;
            targets[i] = aligned >= floor ? aligned : targets[i];
            protections[i] = Math.Min(protections[i], targets[i] + v.OverheadBytes + v.VramBytes);
        }

        // Σ protection ≤ available: never protect more than exists.
        var available = telemetry.Host.AvailableBytes;
        if (protections.Sum() > available)
        {
            for (var i = 0; i < protections.Length; i++)
                protections[i] = Math.Min(protections[i], active[i].MinimumBytes);
            var total = protections.Sum();
            if (total > available && total > 0)
            {
                var scale = (double)available / total;
                for (var i = 0; i < protections.Length; i++)
                    protections[i] = (long)(protections[i] * scale);
            }
        }
        var result = active.Select((v, i) => new VeMemoryTarget(v.Id, protections[i], targets[i], v.LimitBytes)).ToList();
        return new MemoryPlan(result, plan.State);
    }

    /// <summary>Rounds down to <see cref="AlignmentBytes"/>.</summary>
    public static long Align(long bytes) => bytes / AlignmentBytes * AlignmentBytes;
}
