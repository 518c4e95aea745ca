namespace Virtuozzo.Sdk.Memory;

/// <summary>
/// A memory balancing policy: a pure function from what the VEs use and how much they stall to each VE's protection,
/// target and limit. It must not read files, clocks or random numbers — whatever it remembers between ticks goes into
/// <see cref="MemoryPlan.State"/> — so that the same inputs always give the same plan, and a policy can be replayed in
/// the <see cref="Simulation.MemorySimulator"/> before it runs a host.
/// </summary>
/// <remarks>
/// The manager passes every plan through <see cref="MemoryBalancer.Normalize"/>, so a policy cannot break the invariants
/// (guarantee ≤ target ≤ limit, Σ targets within what the host has, Σ protection ≤ available) even when it is wrong. The
/// equivalent of a VCMMD policy selected with <c>vcmmdctl set-policy NAME</c>.
/// </remarks>
public interface IMemoryPolicy
{
    /// <summary>The policy's name, as <c>vzsdk mem policy NAME</c> takes it (lowercase).</summary>
    string Name { get; }

    /// <summary>Decides every active VE's protection, target and limit.</summary>
    /// <param name="telemetry">The host and its VEs at this tick.</param>
    /// <param name="state">What the policy returned at the previous tick (<see cref="MemoryPolicyState.Empty"/> at the first).</param>
    MemoryPlan Decide(MemoryTelemetry telemetry, MemoryPolicyState state);
}
