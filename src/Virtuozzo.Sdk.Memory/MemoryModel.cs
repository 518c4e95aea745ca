using System.Collections.Immutable;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory;

/// <summary>What the manager knows of one VE at a tick: its configuration, what it uses, and how much it stalls.</summary>
public sealed record VeMemoryTelemetry
{
    /// <summary>The VE.</summary>
    public required VeId Id { get; init; }

    /// <summary>The VE's name.</summary>
    public required string Name { get; init; }

    /// <summary>Container or VM.</summary>
    public required VeKind Kind { get; init; }

    /// <summary>
    /// True while the VE runs and is balanced; false while it is paused or otherwise held (it then charges
    /// <c>max(mem_min, resident)</c>, see <see cref="MemoryAccounting.Charge"/>).
    /// </summary>
    public bool Active { get; init; } = true;

    /// <summary>
    /// The configured memory size: the container's limit, or the VM's RAM (what is plugged). No policy gives it more,
    /// except a VM that can grow by memory hotplug (<see cref="MaxBytes"/>).
    /// </summary>
    public required long LimitBytes { get; init; }

    /// <summary>
    /// The most a hotplug-enabled VM may be given (its maximum memory; the manager plugs a DIMM through the VM package when
    /// a target exceeds what is plugged); null (the default) when the VE cannot grow past <see cref="LimitBytes"/>. Only a
    /// policy that grows VEs under load (<c>density</c>) goes above <see cref="LimitBytes"/>; the others stay within it.
    /// </summary>
    public long? MaxBytes { get; init; }

    /// <summary>The most any target may be: <see cref="MaxBytes"/> when it is above <see cref="LimitBytes"/>, else the limit.</summary>
    public long CeilingBytes => Math.Max(LimitBytes, MaxBytes ?? LimitBytes);

    /// <summary>The guaranteed memory. No policy may take a VE below it.</summary>
    public long GuaranteeBytes { get; init; }

    /// <summary>The host memory the VE costs besides its RAM (a VM's QEMU; 0 for a container).</summary>
    public long OverheadBytes { get; init; }

    /// <summary>Video memory of a VM (0 when not known).</summary>
    public long VramBytes { get; init; }

    /// <summary>What the VE has resident now: the container's cgroup usage, or a VM's guest memory in use.</summary>
    public long UsageBytes { get; init; }

    /// <summary>The target in force now (the balloon size of a VM, <c>memory.high</c> of a container); null before the first decision.</summary>
    public long? TargetBytes { get; init; }

    /// <summary>
    /// True when the target is enforced as a hard limit (a container on cgroup v1, which cannot throttle): going past it
    /// means an OOM kill rather than a stall, so a policy must not probe it below what the VE uses.
    /// </summary>
    public bool HardTarget { get; init; }

    /// <summary>Time some of the VE's tasks stalled on memory during the last tick (PSI <c>some</c>), in microseconds.</summary>
    public long StallMicroseconds { get; init; }

    /// <summary>
    /// For a VM whose guest reports the balloon's statistics: what the guest's programs could still get (its
    /// <c>MemAvailable</c>); null when not known (containers, guests that do not report). A guest short of memory stalls
    /// inside itself, where the host's PSI does not see it, so a policy reads this as the VM's pressure signal
    /// (<see cref="DensityMemoryPolicy.IsGuestShort"/>).
    /// </summary>
    public long? GuestAvailableBytes { get; init; }

    /// <summary><c>mem_min</c>: guarantee + vram + overhead.</summary>
    public long MinimumBytes => MemoryAccounting.Minimum(GuaranteeBytes, VramBytes, OverheadBytes);
}

/// <summary>What the manager knows of the host at a tick.</summary>
/// <param name="TotalBytes">Host RAM.</param>
/// <param name="ReserveBytes">Memory kept for the host itself.</param>
/// <param name="AvailableBytes">Memory available to VEs: total − reserve, capped by any budget.</param>
/// <param name="FreeBytes">Memory the kernel reports available now (<c>MemAvailable</c>).</param>
public sealed record HostMemoryTelemetry(long TotalBytes, long ReserveBytes, long AvailableBytes, long FreeBytes);

/// <summary>The input of a policy: the host, every VE, and how long a tick is.</summary>
/// <param name="Host">The host.</param>
/// <param name="Ves">Every managed VE.</param>
/// <param name="Interval">The time since the previous tick.</param>
public sealed record MemoryTelemetry(HostMemoryTelemetry Host, IReadOnlyList<VeMemoryTelemetry> Ves, TimeSpan Interval)
{
    /// <summary>
    /// The memory the active VEs' targets share: available − Σ overhead of active VEs − Σ charge of inactive VEs
    /// (VCMMD's balance loop), never negative.
    /// </summary>
    public long BalanceBytes
        => Math.Max(0, Host.AvailableBytes
            - Ves.Where(v => v.Active).Sum(v => v.OverheadBytes + v.VramBytes)
            - Ves.Where(v => !v.Active).Sum(v => MemoryAccounting.Charge(v.MinimumBytes, v.UsageBytes, active: false)));
}

/// <summary>A policy's decision for one VE.</summary>
/// <param name="Id">The VE.</param>
/// <param name="ProtectionBytes">
/// Memory the kernel must not reclaim from the VE (<c>memory.min</c> on cgroup v2). At least the guarantee when the
/// host can afford it.
/// </param>
/// <param name="TargetBytes">
/// What the VE should have: a VM's balloon size; a container's <c>memory.high</c> on v2, or its hard limit on v1 (which
/// cannot throttle). Between the guarantee and the limit.
/// </param>
/// <param name="LimitBytes">The hard limit: the configured memory size.</param>
public sealed record VeMemoryTarget(VeId Id, long ProtectionBytes, long TargetBytes, long LimitBytes);

/// <summary>A policy's decision for every VE, and the state it keeps for the next tick.</summary>
/// <param name="Targets">One entry per active VE.</param>
/// <param name="State">What the policy remembers (EWMAs, integrals); passed back at the next tick.</param>
public sealed record MemoryPlan(IReadOnlyList<VeMemoryTarget> Targets, MemoryPolicyState State)
{
    /// <summary>The target of one VE, or null when the plan has none.</summary>
    public VeMemoryTarget? For(VeId id) => Targets.FirstOrDefault(t => t.Id == id);
}

/// <summary>
/// What a policy carries from one tick to the next, kept outside the policy so that a policy is a pure function
/// <c>(telemetry, state) → (targets, state)</c> that can be replayed and simulated. Immutable: every change returns a copy.
/// </summary>
public sealed class MemoryPolicyState
{
    private readonly ImmutableDictionary<string, double> _values;

    private MemoryPolicyState(ImmutableDictionary<string, double> values) => _values = values;

    /// <summary>The empty state (the first tick, or a policy just switched to).</summary>
    public static MemoryPolicyState Empty { get; } = new(ImmutableDictionary<string, double>.Empty.WithComparers(StringComparer.Ordinal));

    /// <summary>The number of stored values.</summary>
    public int Count => _values.Count;

    /// <summary>A value stored for a VE, or <paramref name="fallback"/>.</summary>
    public double Get(VeId id, string key, double fallback = 0) => _values.TryGetValue(Key(id, key), out var v) ? v : fallback;

    /// <summary>True when a value is stored for the VE under <paramref name="key"/>.</summary>
    public bool Has(VeId id, string key) => _values.ContainsKey(Key(id, key));

    /// <summary>A copy with a value stored for a VE.</summary>
    public MemoryPolicyState Set(VeId id, string key, double value) => new(_values.SetItem(Key(id, key), value));

    /// <summary>A copy without the values of VEs not in <paramref name="keep"/> (VEs that stopped or were deleted).</summary>
    public MemoryPolicyState Retain(IEnumerable<VeId> keep)
    {
        var prefixes = keep.Select(k => k + "/").ToList();
        return new(_values.RemoveRange(_values.Keys.Where(k => !prefixes.Any(p => k.StartsWith(p, StringComparison.Ordinal))).ToList()));
    }

    private static string Key(VeId id, string key) => id + "/" + key;
}
