using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Memory.Internal;

namespace Virtuozzo.Sdk.Memory;

/// <summary>What one tick of the manager did.</summary>
/// <param name="Policy">The policy that decided.</param>
/// <param name="Telemetry">What the manager read.</param>
/// <param name="Plan">What it decided (normalized).</param>
/// <param name="Writes">Settings it changed (0 when everything already was as decided).</param>
/// <param name="Errors">VEs it could not apply to this tick (they stopped or are being deleted), by name.</param>
public sealed record MemoryTickResult(string Policy, MemoryTelemetry Telemetry, MemoryPlan Plan, int Writes, IReadOnlyList<string> Errors);

/// <summary>One VE in <see cref="MemoryStatus"/>.</summary>
/// <param name="Id">The VE.</param>
/// <param name="Name">Its name.</param>
/// <param name="Kind">Container or VM.</param>
/// <param name="Active">False while it is paused.</param>
/// <param name="GuaranteeBytes">Its guarantee.</param>
/// <param name="TargetBytes">The target in force (balloon size of a VM; the container's target).</param>
/// <param name="LimitBytes">Its configured memory size.</param>
/// <param name="UsageBytes">What it has resident.</param>
/// <param name="StallMicroseconds">Memory stall during the sampling interval (PSI some).</param>
public sealed record VeMemoryStatus(VeId Id, string Name, VeKind Kind, bool Active, long GuaranteeBytes, long? TargetBytes, long LimitBytes, long UsageBytes, long StallMicroseconds);

/// <summary>The host's memory account (<c>vzsdk mem status</c>).</summary>
/// <param name="Policy">The policy in force.</param>
/// <param name="TotalBytes">Host RAM.</param>
/// <param name="ReserveBytes">Kept for the host.</param>
/// <param name="AvailableBytes">Available to VEs (total − reserve, capped by any budget).</param>
/// <param name="GuaranteedBytes">Σ mem_min of active VEs plus the charge of inactive ones.</param>
/// <param name="FreeBytes">What the kernel reports available.</param>
/// <param name="Ves">Every running or paused VE.</param>
public sealed record MemoryStatus(string Policy, long TotalBytes, long ReserveBytes, long AvailableBytes, long GuaranteedBytes, long FreeBytes, IReadOnlyList<VeMemoryStatus> Ves);

/// <summary>
/// The memory manager: every tick it reads what each running VE uses and how much it stalls, asks the policy in force for
/// targets, holds the plan to the invariants (<see cref="MemoryBalancer"/>) and applies it — cgroup protection, targets
/// and limits, VM balloons, DIMM hotplug through the VM package — writing only what changes, and runs the KSM controller.
/// VEs that start, stop or are deleted while it runs are picked up or dropped at the next tick. Admission stays with the
/// runtime's <see cref="Core.Resources.ResourceLedger"/>: at its first tick the manager records its
/// <see cref="MemoryManagerOptions.Budget"/> there (or clears a budget recorded before, when it has none), and from then on
/// every start or raise on the host whose Σ mem_min would exceed the budget is refused.
/// </summary>
/// <remarks>The equivalent of Virtuozzo's <c>vcmmd</c> daemon; <see cref="SetPolicyAsync(string, CancellationToken)"/> is <c>vcmmdctl set-policy</c>.</remarks>
public class MemoryManager
{
    private readonly IMemoryHost _host;
    private readonly ILogger _logger;
    private readonly string? _policyFile;
    private readonly KsmController? _ksm;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private IMemoryPolicy _policy;
    private MemoryPolicyState _state = MemoryPolicyState.Empty;
    private DateTime _policyFileTime;
    private bool _budgetRecorded;

    /// <summary>A manager of <paramref name="runtime"/>'s VEs.</summary>
    /// <exception cref="ArgumentException">The options are invalid; the message lists every problem.</exception>
    /// <exception cref="UnsupportedOnHostException">The runtime is a Virtuozzo node, whose own memory manager (VCMMD) balances its VEs.</exception>
    public MemoryManager(VirtuozzoRuntime runtime, MemoryManagerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        if (runtime.Kind == RuntimeKind.Virtuozzo)
            throw new UnsupportedOnHostException(
                "The SDK's memory manager is not supported by the Virtuozzo runtime: the node's VCMMD balances memory itself. " +
                "Set guarantees with the clients' SetAsync (MemoryGuaranteePercent) and the policy with 'prlsrvctl set --vcmmd-policy' on the node.");
        if (runtime.Kind == RuntimeKind.Libvirt)
            throw new UnsupportedOnHostException(
                "The SDK's memory manager is not supported by the libvirt runtime: it acts on the local runtime's cgroups and QMP sockets, which libvirt owns there. " +
                "Set a VM's memory with VirtualMachineClient.SetAsync (balloon and DIMM hotplug through libvirt).");
        Options = options ?? new MemoryManagerOptions();
        var errors = Options.Validate();
        if (errors.Count > 0)
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        _logger = runtime.CreateLogger<MemoryManager>();
        // Both kinds' drivers, so that the manager sees every VE even when the host made no client of a kind.
        _ = new Containers.ContainerClient(runtime);
        _ = new Vm.VirtualMachineClient(runtime);
        _host = new LocalMemoryHost(runtime, Options, _logger);
        _policyFile = Path.Combine(runtime.Options.DataRoot, "memory", "policy");
        _policy = MemoryPolicies.Create(Options.Policy);
        if (Options.ManageKsm)
        {
            var ksm = new KsmController(Path.Combine(runtime.Options.DataRoot, "memory", "ksm"), Options.KsmPath);
            _ksm = ksm.IsAvailable ? ksm : null;
        }
    }

    internal MemoryManager(IMemoryHost host, MemoryManagerOptions options, string? policyFile = null, ILogger? logger = null)
    {
        _host = host;
        Options = options;
        _logger = logger ?? NullLogger.Instance;
        _policyFile = policyFile;
        _policy = MemoryPolicies.Create(options.Policy);
    }

    /// <summary>Protected constructor for mocking.</summary>
    protected MemoryManager()
    {
        _host = null!;
        _logger = NullLogger.Instance;
        Options = new MemoryManagerOptions();
        _policy = new StaticMemoryPolicy();
    }

    /// <summary>The options the manager runs with.</summary>
    public MemoryManagerOptions Options { get; }

    /// <summary>The policy in force.</summary>
    public virtual IMemoryPolicy Policy => _policy;

    /// <summary>The KSM controller, or null when KSM is not managed or the kernel has none.</summary>
    public virtual KsmController? Ksm => _ksm;

    /// <summary>
    /// Switches to <paramref name="policy"/> from the next tick (its state starts empty). Affects this manager only; use
    /// <see cref="SetPolicyAsync(string, CancellationToken)"/> to switch a built-in policy for every manager of the host.
    /// </summary>
    public virtual void SetPolicy(IMemoryPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        _policy = policy;
        _state = MemoryPolicyState.Empty;
        _logger.LogInformation("Memory policy: {Policy}", policy.Name);
    }

    /// <summary>
    /// Switches to the built-in policy <paramref name="name"/> and records it in the data root, so that a manager running
    /// in another process (<c>vzsdk mem daemon</c>) switches at its next tick.
    /// </summary>
    /// <remarks>The equivalent of <c>vcmmdctl set-policy NAME</c> and <c>vzsdk mem policy NAME</c>.</remarks>
    /// <exception cref="ArgumentException">No built-in policy has that name.</exception>
    public virtual async Task SetPolicyAsync(string name, CancellationToken cancellationToken = default)
    {
        var policy = MemoryPolicies.Create(name);
        if (_policyFile is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_policyFile)!);
            var tmp = _policyFile + ".tmp";
            await File.WriteAllTextAsync(tmp, policy.Name + "\n", cancellationToken).ConfigureAwait(false);
            File.Move(tmp, _policyFile, overwrite: true);
            _policyFileTime = File.GetLastWriteTimeUtc(_policyFile);
        }
        SetPolicy(policy);
    }

    /// <summary>The name of the policy recorded for the host (<see cref="SetPolicyAsync(string, CancellationToken)"/>), or the options' policy when none is.</summary>
    public virtual async Task<string> GetPolicyNameAsync(CancellationToken cancellationToken = default)
        => _policyFile is not null && File.Exists(_policyFile)
            ? (await File.ReadAllTextAsync(_policyFile, cancellationToken).ConfigureAwait(false)).Trim()
            : Options.Policy.ToLowerInvariant();

    /// <summary>
    /// One tick: read, decide, apply (the first tick also records the budget in the ledger). VEs that fail to apply (they stopped meanwhile) are reported in
    /// <see cref="MemoryTickResult.Errors"/> and retried at the next tick; the tick itself does not fail for them.
    /// </summary>
    public virtual async Task<MemoryTickResult> TickAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_budgetRecorded)
            {
                // The ledger (Core) stays the one admission authority; the manager supplies its budget once, at its first tick.
                await _host.RecordBudgetAsync(Options.Budget?.Bytes, cancellationToken).ConfigureAwait(false);
                _budgetRecorded = true;
            }
            await FollowPolicyFileAsync(cancellationToken).ConfigureAwait(false);
            var telemetry = await _host.ReadAsync(cancellationToken).ConfigureAwait(false);
            var plan = MemoryBalancer.Decide(_policy, telemetry, _state);
            _state = plan.State;
            var writes = 0;
            var errors = new List<string>();
            foreach (var target in plan.Targets)
            {
                var ve = telemetry.Ves.First(v => v.Id == target.Id);
                try
                {
                    writes += await _host.ApplyAsync(ve, target, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException or TimeoutException)
                {
                    errors.Add(ve.Name);
                    _logger.LogDebug("Memory: could not apply the target of {Name}: {Error}", ve.Name, ex.Message);
                }
            }
            if (_ksm is not null)
            {
                try
                {
                    await _ksm.TickAsync(new KsmInputs(telemetry.Host.TotalBytes, telemetry.Host.FreeBytes, telemetry.Ves.Sum(v => v.LimitBytes + v.OverheadBytes)), cancellationToken).ConfigureAwait(false);
                }
                catch (IOException ex)
                {
                    _logger.LogWarning("KSM: {Error}", ex.Message);
                }
            }
            if (writes > 0)
                _logger.LogDebug("Memory tick ({Policy}): {Writes} settings changed", _policy.Name, writes);
            return new MemoryTickResult(_policy.Name, telemetry, plan, writes, errors);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Ticks every <see cref="MemoryManagerOptions.Interval"/> until cancelled; then returns (stopping cleanly is not an error).</summary>
    /// <remarks>The loop of <c>vzsdk mem daemon</c>.</remarks>
    /// <exception cref="InvalidStateException">Another manager's loop runs on the same data root (in this process or another).</exception>
    public virtual async Task RunAsync(CancellationToken cancellationToken = default)
    {
        using var claim = await _host.ClaimAsync(cancellationToken).ConfigureAwait(false);
        using var timer = new PeriodicTimer(Options.Interval);
        try
        {
            do
            {
                try
                {
                    await TickAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException)
                {
                    _logger.LogWarning("Memory tick failed: {Error}", ex.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>The host's memory account, sampling stalls over <paramref name="sample"/> (default 1 s).</summary>
    /// <remarks>The equivalent of <c>vzsdk mem status</c> (and VCMMD's <c>GetFree</c>).</remarks>
    public virtual async Task<MemoryStatus> GetStatusAsync(TimeSpan? sample = null, CancellationToken cancellationToken = default)
    {
        await _host.ReadAsync(cancellationToken).ConfigureAwait(false);
        await Task.Delay(sample ?? TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
        var t = await _host.ReadAsync(cancellationToken).ConfigureAwait(false);
        var guaranteed = t.Ves.Sum(v => MemoryAccounting.Charge(v.MinimumBytes, v.UsageBytes, v.Active));
        return new MemoryStatus(await GetPolicyNameAsync(cancellationToken).ConfigureAwait(false), t.Host.TotalBytes, t.Host.ReserveBytes, t.Host.AvailableBytes, guaranteed, t.Host.FreeBytes,
            t.Ves.Select(v => new VeMemoryStatus(v.Id, v.Name, v.Kind, v.Active, v.GuaranteeBytes, v.TargetBytes, v.LimitBytes, v.UsageBytes, v.StallMicroseconds)).ToList());
    }

    private async Task FollowPolicyFileAsync(CancellationToken ct)
    {
        if (_policyFile is null || !File.Exists(_policyFile))
            return;
        var time = File.GetLastWriteTimeUtc(_policyFile);
        if (time == _policyFileTime)
            return;
        _policyFileTime = time;
        var name = (await File.ReadAllTextAsync(_policyFile, ct).ConfigureAwait(false)).Trim();
        if (!string.Equals(name, _policy.Name, StringComparison.OrdinalIgnoreCase))
        {
            try { SetPolicy(MemoryPolicies.Create(name)); }
            catch (ArgumentException ex) { _logger.LogWarning("Memory: ignoring the recorded policy: {Error}", ex.Message); }
        }
    }
}
