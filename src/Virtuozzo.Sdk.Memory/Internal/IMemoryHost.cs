namespace Virtuozzo.Sdk.Memory.Internal;

/// <summary>Where the manager reads telemetry and applies plans: the local runtime, or a fake in unit tests.</summary>
internal interface IMemoryHost
{
    /// <summary>The host and every running or paused VE, with the stall since the previous read.</summary>
    Task<MemoryTelemetry> ReadAsync(CancellationToken cancellationToken);

    /// <summary>Applies one VE's target; returns how many settings it changed (0 when all were already so).</summary>
    Task<int> ApplyAsync(VeMemoryTelemetry ve, VeMemoryTarget target, CancellationToken cancellationToken);

    /// <summary>
    /// Claims the host for one running manager loop (one per data root, as VCMMD is one daemon per host), so that two
    /// managers never write each other's targets and budgets; released on dispose or when the process dies.
    /// </summary>
    /// <exception cref="Virtuozzo.Sdk.Core.InvalidStateException">Another manager's loop holds the claim.</exception>
    Task<IDisposable> ClaimAsync(CancellationToken cancellationToken);

    /// <summary>Records the manager's budget (null: none) where admission reads it: the runtime's resource ledger.</summary>
    Task RecordBudgetAsync(long? budgetBytes, CancellationToken cancellationToken);
}
