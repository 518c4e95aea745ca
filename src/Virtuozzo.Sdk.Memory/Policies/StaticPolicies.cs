using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory;

/// <summary>
/// <c>static</c>: every VE's target is its limit and its protection is its <c>mem_min</c>; nothing moves. When the
/// limits overcommit the host, the normalizer shares what there is in proportion to what each has above its guarantee.
/// VCMMD's former <c>StaticPolicy</c> and the public <c>Density</c> of 2021 ("set quotas to configured limits and let
/// the kernel do the rest").
/// </summary>
public sealed class StaticMemoryPolicy : IMemoryPolicy
{
    /// <inheritdoc />
    public string Name => "static";

    /// <inheritdoc />
    public MemoryPlan Decide(MemoryTelemetry telemetry, MemoryPolicyState state)
    {
        ArgumentNullException.ThrowIfNull(telemetry);
        return new MemoryPlan(telemetry.Ves.Where(v => v.Active).Select(v => new VeMemoryTarget(v.Id, v.MinimumBytes, v.LimitBytes, v.LimitBytes)).ToList(), state);
    }
}

/// <summary>
/// <c>performance</c>: no overcommit. VMs are protected for at least <see cref="VmGuaranteePercent"/> % of their RAM
/// (Virtuozzo's performance policy guarantees VMs 80 %), containers for their own guarantee, and every target is the limit.
/// Protection falls back to <c>mem_min</c> when the host cannot cover 80 % of every VM.
/// </summary>
public sealed class PerformanceMemoryPolicy : IMemoryPolicy
{
    /// <summary>The share of a VM's RAM this policy protects, in percent: 80.</summary>
    public const int VmGuaranteePercent = 80;

    /// <inheritdoc />
    public string Name => "performance";

    /// <inheritdoc />
    public MemoryPlan Decide(MemoryTelemetry telemetry, MemoryPolicyState state)
    {
        ArgumentNullException.ThrowIfNull(telemetry);
        var active = telemetry.Ves.Where(v => v.Active).ToList();
        long Protect(VeMemoryTelemetry v) => v.Kind == VeKind.Vm
            ? Math.Max(v.GuaranteeBytes, MemoryAccounting.GuaranteeBytes(v.LimitBytes, VmGuaranteePercent)) + v.OverheadBytes + v.VramBytes
            : v.MinimumBytes;
        var fits = active.Sum(Protect) <= telemetry.Host.AvailableBytes;
        return new MemoryPlan(active.Select(v => new VeMemoryTarget(v.Id, fits ? Protect(v) : v.MinimumBytes, v.LimitBytes, v.LimitBytes)).ToList(), state);
    }
}
