using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory;

/// <summary>Options of the <see cref="MemoryManager"/>.</summary>
public sealed class MemoryManagerOptions
{
    /// <summary>The policy used until one is chosen with <see cref="MemoryManager.SetPolicyAsync(string, CancellationToken)"/>. Default <c>density</c>.</summary>
    public string Policy { get; set; } = MemoryPolicies.DefaultName;

    /// <summary>How often the manager balances: 1 to 5 s. Default 2 s.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The memory the host keeps for itself. Default <see cref="HostMemoryReserve.Default"/>.</summary>
    public HostMemoryReserve Reserve { get; set; } = HostMemoryReserve.Default;

    /// <summary>
    /// Caps the memory available to VEs (run a host as if it were smaller, e.g. to overcommit a test host); null for
    /// no cap. The manager balances within it and, at its first tick, records it in the runtime's resource ledger, which
    /// from then on refuses any start or change whose Σ mem_min would exceed it (in every process using the data root).
    /// A manager without a budget clears one recorded earlier.
    /// </summary>
    public ByteSize? Budget { get; set; }

    /// <summary>Run the KSM controller with the manager (ksmtuned's rules, unless KSM is switched on or off by hand). Default true.</summary>
    public bool ManageKsm { get; set; } = true;

    /// <summary>Where KSM is controlled. Default <c>/sys/kernel/mm/ksm</c>.</summary>
    public string KsmPath { get; set; } = KsmController.DefaultPath;

    /// <summary>Returns the problems with these options (empty when valid).</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Interval < TimeSpan.FromSeconds(1) || Interval > TimeSpan.FromSeconds(5))
            errors.Add($"Interval must be between 1 and 5 seconds (got {Interval.TotalSeconds} s).");
        if (!MemoryPolicies.Names.Contains(Policy?.ToLowerInvariant()))
            errors.Add($"Policy must be one of {string.Join(", ", MemoryPolicies.Names)} (got '{Policy}').");
        if (Reserve is null)
            errors.Add("Reserve must be set.");
        else if (Reserve.Share is < 0 or > 1 || Reserve.MinBytes < 0 || Reserve.MaxBytes < Reserve.MinBytes)
            errors.Add("Reserve: Share must be in [0, 1] and 0 ≤ MinBytes ≤ MaxBytes.");
        if (Budget is { Bytes: <= 0 })
            errors.Add("Budget must be positive.");
        return errors;
    }
}
