using Virtuozzo.Sdk.Core.Internal;
using System.Runtime.CompilerServices;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core;

/// <summary>
/// One client for every virtual environment, containers and VMs alike: list them together, start, stop, restart,
/// suspend, resume, delete, rename and run programs in any of them by name or UUID, watch their state change, and read
/// what they use. The equivalent of <c>prlctl</c>'s verbs that apply to both kinds (<c>prlctl list -a</c>…).
/// </summary>
/// <remarks>
/// Kind-specific work (templates and mounts, guest tools, snapshots, disks) stays on <c>ContainerClient</c> and
/// <c>VirtualMachineClient</c>; the records this client returns are theirs (<c>ContainerInfo</c>, <c>VmInfo</c>), seen
/// as <see cref="VeInfo"/>. The client sees the kinds enabled on its runtime (<c>AddContainers()</c>,
/// <c>AddVirtualMachines()</c>, or a kind client created on the same runtime). Every member is virtual so that SDK
/// users can mock it.
/// </remarks>
public class VirtualEnvironmentClient
{
    /// <summary>How often <see cref="WatchAsync"/> looks at the VEs when its options do not say.</summary>
    public static readonly TimeSpan DefaultWatchInterval = TimeSpan.FromSeconds(1);

    private readonly VirtuozzoRuntime? _runtime;

    /// <summary>Creates a client over an SDK runtime.</summary>
    public VirtualEnvironmentClient(VirtuozzoRuntime runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        _runtime = runtime;
    }

    /// <summary>For mocking frameworks: a client with no runtime behind it.</summary>
    protected VirtualEnvironmentClient()
    {
    }

    private VirtuozzoRuntime Runtime => _runtime ?? throw new InvalidOperationException("This VirtualEnvironmentClient was made for mocking and has no runtime.");

    /// <summary>
    /// Lists containers and VMs together, ordered by name: all of them, or only those running (or paused or frozen in memory).
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl list [-a]</c>.</remarks>
    public virtual async Task<IReadOnlyList<VeInfo>> ListAsync(bool all = true, CancellationToken cancellationToken = default)
    {
        var list = new List<VeInfo>();
        foreach (var driver in Runtime.Drivers)
            list.AddRange(await driver.ListVesAsync(cancellationToken).ConfigureAwait(false));
        return list.Where(v => all || v.IsRunning).OrderBy(v => v.Name.Value, StringComparer.Ordinal).ToList();
    }

    /// <summary>Gets a container or VM by name or UUID.</summary>
    /// <remarks>The equivalent of <c>prlctl list -i NAME</c>.</remarks>
    /// <exception cref="NotFoundException">No such VE.</exception>
    public virtual async Task<VeInfo> GetAsync(VeRef ve, CancellationToken cancellationToken = default)
    {
        var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
        return await driver.GetVeAsync(id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Starts a stopped VE (a suspended VM resumes from its saved state).</summary>
    /// <remarks>The equivalent of <c>prlctl start NAME</c>.</remarks>
    /// <exception cref="InvalidStateException">It is not stopped.</exception>
    /// <exception cref="InsufficientResourcesException">Its memory guarantee cannot be admitted.</exception>
    public virtual Task<VeInfo> StartAsync(VeRef ve, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.StartOperation, null, ve.Value, async scope =>
        {
            var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
            scope.Kind = driver.Kind;
            return await driver.StartVeAsync(id, cancellationToken).ConfigureAwait(false);
        });

    /// <summary>Stops a VE: politely first (a container's stop signal, a VM's guest tools then ACPI), killing it after the timeout. Returns how it stopped.</summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME [--kill]</c>.</remarks>
    public virtual async Task<VeStopMethod> StopAsync(VeRef ve, VeStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new VeStopOptions();
        options.Validate();
        return await SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.StopOperation, null, ve.Value, async scope =>
        {
            var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
            scope.Kind = driver.Kind;
            return await driver.StopVeAsync(id, options, cancellationToken).ConfigureAwait(false);
        }).ConfigureAwait(false);
    }

    /// <summary>Stops (if running) and starts a VE.</summary>
    /// <remarks>The equivalent of <c>prlctl restart NAME</c>.</remarks>
    public virtual async Task<VeInfo> RestartAsync(VeRef ve, VeStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new VeStopOptions();
        options.Validate();
        var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
        return await driver.RestartVeAsync(id, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Suspends a running VE: a container's processes are frozen; a VM's state is saved to disk and the VM stops.</summary>
    /// <remarks>The equivalent of <c>prlctl suspend NAME</c>.</remarks>
    public virtual async Task<VeInfo> SuspendAsync(VeRef ve, CancellationToken cancellationToken = default)
    {
        var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
        return await driver.SuspendVeAsync(id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Resumes a suspended (or paused) VE.</summary>
    /// <remarks>The equivalent of <c>prlctl resume NAME</c>.</remarks>
    public virtual async Task<VeInfo> ResumeAsync(VeRef ve, CancellationToken cancellationToken = default)
    {
        var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
        return await driver.ResumeVeAsync(id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Deletes a VE with its disks; a running VE is stopped (killed) first. Returns false when there was no such VE
    /// (deleting twice is harmless; of two concurrent deletes, one returns true).
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl delete NAME</c>.</remarks>
    public virtual async Task<bool> DeleteAsync(VeRef ve, CancellationToken cancellationToken = default)
    {
        var identity = await Runtime.Inventory.FindAsync(ve.Value, cancellationToken).ConfigureAwait(false);
        if (identity is null)
            return false;
        return await Runtime.DriverFor(identity.Kind).DeleteVeAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Renames a VE (running or not); names are unique across containers and VMs.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --name NEW</c>.</remarks>
    /// <exception cref="AlreadyExistsException">The new name is taken.</exception>
    public virtual async Task<VeInfo> RenameAsync(VeRef ve, VeName newName, CancellationToken cancellationToken = default)
    {
        var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
        return await driver.RenameVeAsync(id, newName, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs a program inside a running VE (a container's namespaces, or a VM's guest through its guest tools) and returns
    /// its exit code and output.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl exec NAME CMD…</c>. A program that is not found exits 127; not executable, 126.</remarks>
    /// <exception cref="InvalidStateException">The VE is not running.</exception>
    public virtual async Task<VeExecResult> ExecAsync(VeRef ve, VeExecOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
        return await driver.ExecVeAsync(id, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>What a VE uses now: CPU time, memory, disk and network.</summary>
    /// <remarks>The equivalent of <c>prlctl statistics NAME</c>.</remarks>
    public virtual async Task<VeUsage> GetUsageAsync(VeRef ve, CancellationToken cancellationToken = default)
    {
        var (driver, id) = await ResolveAsync(ve, cancellationToken).ConfigureAwait(false);
        return await driver.GetVeUsageAsync(id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Reports every change to the host's VEs — created, deleted, renamed, state changed — as it is seen, until cancelled.
    /// A panel keeps its view current from this stream instead of polling <see cref="ListAsync"/>.
    /// </summary>
    /// <remarks>
    /// Changes made by any process (another SDK instance, the <c>vzsdk</c> tool) are seen, as are VEs that stop on their
    /// own. The runtime is looked at every <see cref="VeWatchOptions.Interval"/>; a change shorter than that may be missed,
    /// but the stream always converges on the current state.
    /// </remarks>
    public virtual async IAsyncEnumerable<VeEvent> WatchAsync(VeWatchOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        options ??= new VeWatchOptions();
        var interval = options.Interval ?? DefaultWatchInterval;
        if (interval <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(options), interval, "The watch interval must be positive.");
        Dictionary<VeId, VeInfo>? known = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            var changed = Runtime.Changes.Next;
            var now = (await ListAsync(true, cancellationToken).ConfigureAwait(false)).ToDictionary(v => v.Id);
            var events = known is null
                ? (options.IncludeExisting ? now.Values.Select(v => Event(VeEventType.Created, v, null)).ToList() : [])
                : Diff(known, now);
            foreach (var e in events)
                yield return e;
            known = now;
            try
            {
                // A runtime that hears of changes (libvirt's domain events) wakes the watch at once; otherwise it looks every interval.
                await Task.WhenAny(changed, Task.Delay(interval, cancellationToken)).ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
            }
            catch (OperationCanceledException)
            {
                yield break;
            }
        }
    }

    internal static List<VeEvent> Diff(IReadOnlyDictionary<VeId, VeInfo> before, IReadOnlyDictionary<VeId, VeInfo> after)
    {
        var events = new List<VeEvent>();
        foreach (var (id, was) in before)
        {
            if (!after.ContainsKey(id))
                events.Add(Event(VeEventType.Deleted, was, was.State));
        }
        foreach (var (id, now) in after.OrderBy(p => p.Value.Name.Value, StringComparer.Ordinal))
        {
            if (!before.TryGetValue(id, out var was))
            {
                events.Add(Event(VeEventType.Created, now, null));
                continue;
            }
            if (was.Name != now.Name)
                events.Add(Event(VeEventType.Renamed, now, was.State));
            if (was.State != now.State)
                events.Add(Event(VeEventType.StateChanged, now, was.State));
        }
        return events;
    }

    private static VeEvent Event(VeEventType type, VeInfo ve, VeState? previous)
        => new(type, ve.Id, ve.Name, ve.Kind, ve.State, previous, DateTimeOffset.UtcNow);

    private async Task<(IVeDriver Driver, VeId Id)> ResolveAsync(VeRef ve, CancellationToken ct)
    {
        var identity = await Runtime.Inventory.FindAsync(ve.Value, ct).ConfigureAwait(false)
            ?? throw new NotFoundException($"There is no container or VM named '{ve.Value}'.");
        return (Runtime.DriverFor(identity.Kind), identity.VeId);
    }
}

/// <summary>Options of <see cref="VirtualEnvironmentClient.WatchAsync"/>.</summary>
public sealed record VeWatchOptions
{
    /// <summary>How often to look; null for <see cref="VirtualEnvironmentClient.DefaultWatchInterval"/> (1 s).</summary>
    public TimeSpan? Interval { get; init; }

    /// <summary>Report every existing VE as <see cref="VeEventType.Created"/> first, so that the stream alone builds a full view. Default false.</summary>
    public bool IncludeExisting { get; init; }
}
