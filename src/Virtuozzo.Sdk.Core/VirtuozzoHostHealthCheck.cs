using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Resources;

namespace Virtuozzo.Sdk.Core;

/// <summary>Options of <see cref="VirtuozzoHostHealthCheck"/>.</summary>
public sealed record VirtuozzoHostHealthCheckOptions
{
    /// <summary>The local runtime's tools, the default of <see cref="RequiredTools"/>.</summary>
    internal static readonly IReadOnlyList<string> LocalRuntimeTools = ["runc", "qemu-system-x86_64", "qemu-img", "qemu-storage-daemon"];

    /// <summary>What a Virtuozzo node must have when <see cref="RequiredTools"/> is left at its default.</summary>
    internal static readonly IReadOnlyList<string> NodeTools = ["prlctl"];

    /// <summary>
    /// Programs that must be installed; a missing one makes the host unhealthy. Default: the runtime's own tools —
    /// <c>runc</c>, <c>qemu-system-x86_64</c>, <c>qemu-img</c>, <c>qemu-storage-daemon</c> on the local runtime;
    /// <c>prlctl</c> on a Virtuozzo node (where the names refer to the node's tools: <c>prlctl</c>, <c>vzctl</c>,
    /// <c>prl_disk_tool</c>, <c>criu</c>).
    /// </summary>
    public IReadOnlyList<string> RequiredTools { get; init; } = LocalRuntimeTools;

    /// <summary>When true, a host where KVM guests do not run is unhealthy; otherwise it is degraded (VMs fall back to TCG). Default false.</summary>
    public bool RequireKvm { get; init; }

    /// <summary>When true, a host where <c>criu check</c> fails is unhealthy; otherwise CRIU's state is only reported. Default false.</summary>
    public bool RequireCriu { get; init; }

    /// <summary>
    /// Probe KVM and CRIU (the KVM probe boots a tiny guest once per host boot and is cached; <c>criu check</c> runs each
    /// time). Default true; false reports them as not probed and ignores <see cref="RequireKvm"/> and <see cref="RequireCriu"/>.
    /// </summary>
    public bool ProbeKvmAndCriu { get; init; } = true;
}

/// <summary>
/// A health check of the host an SDK runtime manages, in the <c>Microsoft.Extensions.Diagnostics.HealthChecks</c> model:
/// the required tools are installed, KVM and CRIU work (or how they do not), the data root is writable, and the resource
/// ledger is consistent (no guarantee reserved for a VE the host does not have, no more guaranteed than the host can give).
/// On the Virtuozzo runtime it checks the node instead: the node's tools (<c>prlctl</c> reachable), the Virtuozzo
/// service answering (<c>prlctl list -a -j</c>), <c>/dev/kvm</c> and <c>criu check</c> on the node; the node keeps its
/// own state and VCMMD its own guarantees, so the data root and the ledger are not checked there.
/// </summary>
/// <remarks>
/// Unhealthy (or the registration's failure status): a required tool is missing, the data root cannot be written, or a
/// required KVM/CRIU does not work; on a Virtuozzo node also prlctl cannot be run or the Virtuozzo service does not answer. Degraded: KVM does not work (and is not required), or the ledger is inconsistent.
/// The result's data carries the kernel, cgroup layout, tool versions, KVM and CRIU states and the ledger's totals — what
/// <c>vzsdk host info</c> shows. Register it with
/// <see cref="VirtuozzoHealthChecksBuilderExtensions.AddVirtuozzoHost"/>.
/// </remarks>
public sealed class VirtuozzoHostHealthCheck : IHealthCheck
{
    private readonly IVirtuozzoHost _host;
    private readonly string _dataRoot;
    private readonly ResourceLedger _ledger;
    private readonly Func<CancellationToken, Task<IReadOnlyCollection<VeId>>> _knownVes;
    private readonly VirtuozzoHostHealthCheckOptions _options;
    private readonly VirtuozzoRuntime? _node;

    /// <summary>Checks the host, data root and ledger of <paramref name="runtime"/> (on the Virtuozzo runtime: the node's tools and service).</summary>
    public VirtuozzoHostHealthCheck(VirtuozzoRuntime runtime, VirtuozzoHostHealthCheckOptions? options = null)
        : this(
            (runtime ?? throw new ArgumentNullException(nameof(runtime))).Host,
            runtime.Options.DataRoot,
            runtime.Ledger,
            async ct => (await runtime.Inventory.ListAsync(ct).ConfigureAwait(false)).Select(v => v.VeId).ToList(),
            options)
    {
        if (runtime.Kind == RuntimeKind.Virtuozzo)
            _node = runtime;
    }

    /// <summary>For tests: any host (a test double), data root, ledger and set of VEs.</summary>
    internal VirtuozzoHostHealthCheck(IVirtuozzoHost host, string dataRoot, ResourceLedger ledger,
        Func<CancellationToken, Task<IReadOnlyCollection<VeId>>> knownVes, VirtuozzoHostHealthCheckOptions? options)
    {
        _host = host;
        _dataRoot = dataRoot;
        _ledger = ledger;
        _knownVes = knownVes;
        _options = options ?? new VirtuozzoHostHealthCheckOptions();
    }

    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var failureStatus = context?.Registration?.FailureStatus ?? HealthStatus.Unhealthy;
        if (_node is not null)
            return await CheckNodeAsync(_node, failureStatus, cancellationToken).ConfigureAwait(false);
        var failures = new List<string>();
        var degradations = new List<string>();
        var data = new Dictionary<string, object>();
        try
        {
            var caps = await _host.GetCapabilitiesAsync(new CapabilityProbeOptions { SkipProbes = !_options.ProbeKvmAndCriu }, cancellationToken).ConfigureAwait(false);
            data["host"] = _host.Name;
            data["kernel"] = caps.Kernel;
            data["cgroup"] = caps.Cgroup.ToString();
            foreach (var (tool, version) in caps.Tools)
                data["tool:" + tool] = version ?? "missing";
            var missing = _options.RequiredTools.Where(t => !caps.Tools.TryGetValue(t, out var v) || v is null).ToList();
            if (missing.Count > 0)
                failures.Add($"missing tools: {string.Join(", ", missing)}");

            data["kvm"] = caps.Kvm.Usable ? "usable" : "unusable: " + caps.Kvm.Reason;
            data["criu"] = caps.Criu.Usable ? "usable" : "unusable: " + caps.Criu.Reason;
            if (_options.ProbeKvmAndCriu)
            {
                if (!caps.Kvm.Usable)
                    (_options.RequireKvm ? failures : degradations).Add("KVM does not work (" + caps.Kvm.Reason + ")");
                if (!caps.Criu.Usable && _options.RequireCriu)
                    failures.Add("CRIU does not work (" + caps.Criu.Reason + ")");
            }
        }
        catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException)
        {
            failures.Add("the host's capabilities cannot be read: " + ex.Message);
        }

        await CheckDataRootAsync(failures, data, cancellationToken).ConfigureAwait(false);
        await CheckLedgerAsync(degradations, data, cancellationToken).ConfigureAwait(false);

        if (failures.Count > 0)
            return new HealthCheckResult(failureStatus, string.Join("; ", failures.Concat(degradations)), data: data);
        if (degradations.Count > 0)
            return HealthCheckResult.Degraded(string.Join("; ", degradations), data: data);
        return HealthCheckResult.Healthy($"{_host.Name}: tools present, data root writable, ledger consistent", data);
    }

    /// <summary>
    /// The Virtuozzo runtime's check: the node's capabilities (prlctl reachable and its version, vzctl, prl_disk_tool,
    /// criu, /dev/kvm), then the Virtuozzo service answering an inventory (<c>prlctl list -a -j</c>; exit 253 means
    /// prl-disp-service does not answer).
    /// </summary>
    private async Task<HealthCheckResult> CheckNodeAsync(VirtuozzoRuntime runtime, HealthStatus failureStatus, CancellationToken cancellationToken)
    {
        var failures = new List<string>();
        var degradations = new List<string>();
        var data = new Dictionary<string, object> { ["host"] = _host.Name, ["runtime"] = "virtuozzo" };
        try
        {
            var caps = await runtime.GetHostCapabilitiesAsync(new CapabilityProbeOptions { SkipProbes = !_options.ProbeKvmAndCriu }, cancellationToken).ConfigureAwait(false);
            data["kernel"] = caps.Kernel;
            if (caps.Product is not null)
                data["product"] = caps.Product;
            foreach (var (tool, version) in caps.Tools)
                data["tool:" + tool] = version ?? "missing";
            var required = ReferenceEquals(_options.RequiredTools, VirtuozzoHostHealthCheckOptions.LocalRuntimeTools)
                ? VirtuozzoHostHealthCheckOptions.NodeTools : _options.RequiredTools;
            var missing = required.Where(t => !caps.Tools.TryGetValue(t, out var v) || v is null).ToList();
            if (missing.Count > 0)
                failures.Add($"missing tools on the node: {string.Join(", ", missing)}");
            data["kvm"] = caps.Kvm.Usable ? "usable" : "unusable: " + caps.Kvm.Reason;
            data["criu"] = caps.Criu.Usable ? "usable" : "unusable: " + caps.Criu.Reason;
            if (_options.ProbeKvmAndCriu && !caps.Kvm.Usable)
                (_options.RequireKvm ? failures : degradations).Add("KVM does not work on the node (" + caps.Kvm.Reason + ")");
            if (_options.ProbeKvmAndCriu && !caps.Criu.Usable && _options.RequireCriu)
                failures.Add("CRIU does not work on the node (" + caps.Criu.Reason + ")");
        }
        catch (ToolNotFoundException ex)
        {
            failures.Add("prlctl cannot be run on the node: " + ex.Message);
        }
        catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException)
        {
            failures.Add("the node's capabilities cannot be read: " + ex.Message);
        }

        if (failures.Count == 0)
        {
            try
            {
                var ves = await runtime.Inventory.ListAsync(cancellationToken).ConfigureAwait(false);
                data["dispatcher"] = "answering";
                data["ves"] = ves.Count;
            }
            catch (Exception ex) when (ex is VirtuozzoException or IOException)
            {
                data["dispatcher"] = "not answering";
                failures.Add("the Virtuozzo service (prl-disp-service) does not answer 'prlctl list': " + ex.Message);
            }
        }

        if (failures.Count > 0)
            return new HealthCheckResult(failureStatus, string.Join("; ", failures.Concat(degradations)), data: data);
        if (degradations.Count > 0)
            return HealthCheckResult.Degraded(string.Join("; ", degradations), data: data);
        return HealthCheckResult.Healthy($"{_host.Name}: prlctl present, the Virtuozzo service answering", data);
    }

    private async Task CheckDataRootAsync(List<string> failures, Dictionary<string, object> data, CancellationToken ct)
    {
        data["data_root"] = _dataRoot;
        var probe = Path.Combine(_dataRoot, $".vzsdk-health-{Guid.NewGuid():N}");
        try
        {
            await _host.WriteFileAsync(probe, "ok"u8.ToArray(), ct).ConfigureAwait(false);
            await _host.DeleteFileAsync(probe, ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException)
        {
            failures.Add($"the data root '{_dataRoot}' is not writable: {ex.Message}");
        }
    }

    private async Task CheckLedgerAsync(List<string> degradations, Dictionary<string, object> data, CancellationToken ct)
    {
        try
        {
            var snapshot = await _ledger.GetSnapshotAsync(ct).ConfigureAwait(false);
            data["ledger_capacity_bytes"] = snapshot.CapacityBytes;
            data["ledger_reserved_bytes"] = snapshot.ReservedBytes;
            var known = (await _knownVes(ct).ConfigureAwait(false)).ToHashSet();
            var orphans = snapshot.Reservations.Where(r => !known.Contains(r.VeId)).Select(r => r.VeId.ToString()).ToList();
            if (orphans.Count > 0)
                degradations.Add($"the ledger reserves memory for VEs that do not exist: {string.Join(", ", orphans)}");
            if (snapshot.ReservedBytes > snapshot.CapacityBytes)
                degradations.Add($"the ledger guarantees {new ByteSize(snapshot.ReservedBytes).ToHumanString()}, more than the host's {new ByteSize(snapshot.CapacityBytes).ToHumanString()}");
        }
        catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            degradations.Add("the ledger cannot be read: " + ex.Message);
        }
    }
}

/// <summary>Registers <see cref="VirtuozzoHostHealthCheck"/> with <c>services.AddHealthChecks()</c>.</summary>
public static class VirtuozzoHealthChecksBuilderExtensions
{
    /// <summary>
    /// Adds the health check of the SDK's host (the <see cref="VirtuozzoRuntime"/> registered by <c>AddVirtuozzoSdk</c>).
    /// </summary>
    /// <example>
    /// <code>
    /// services.AddVirtuozzoSdk(configuration.GetSection("Virtuozzo"));
    /// services.AddHealthChecks().AddVirtuozzoHost(tags: ["ready"]);
    /// </code>
    /// </example>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="name">The check's name. Default <c>virtuozzo-host</c>.</param>
    /// <param name="failureStatus">The status reported on failure; null for <see cref="HealthStatus.Unhealthy"/>.</param>
    /// <param name="tags">Tags to filter checks by (for example <c>ready</c>).</param>
    /// <param name="options">What to require; null for the defaults.</param>
    /// <param name="timeout">How long the check may run; null for no limit.</param>
    public static IHealthChecksBuilder AddVirtuozzoHost(this IHealthChecksBuilder builder, string name = "virtuozzo-host",
        HealthStatus? failureStatus = null, IEnumerable<string>? tags = null, VirtuozzoHostHealthCheckOptions? options = null, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        return builder.Add(new HealthCheckRegistration(
            name,
            sp => new VirtuozzoHostHealthCheck(sp.GetRequiredService<VirtuozzoRuntime>(), options),
            failureStatus,
            tags,
            timeout));
    }
}
