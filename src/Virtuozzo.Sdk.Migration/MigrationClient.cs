using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Containers.Runtime;
using Virtuozzo.Sdk.Containers.Runtime.Local;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.Migration;

/// <summary>
/// Moves containers and VMs between hosts. A running VM migrates live: its disks are mirrored to the destination while
/// it runs, then its memory is copied (pre-copy with auto-converge, optionally post-copy) until the rest fits in the
/// downtime limit, and the switch-over pauses it for about that long. Everything the destination must accept (name and
/// UUID free, CPU model, memory guarantee) is checked before anything moves; a failure or cancellation at any point
/// leaves the VE running on the source and nothing on the destination.
/// </summary>
/// <remarks>
/// The equivalent of <c>prlctl migrate NAME HOST</c> / <c>vzmigrate --online HOST NAME</c>. Every member is virtual so
/// that SDK users can mock the client in their tests.
/// </remarks>
public class MigrationClient
{
    private readonly VirtuozzoRuntime? _runtime;
    private readonly ILogger? _logger;

    /// <summary>Creates a client that migrates the VEs of <paramref name="runtime"/> (the source).</summary>
    /// <param name="runtime">The SDK's runtime: the source of every migration this client makes.</param>
    /// <exception cref="UnsupportedOnHostException">The runtime cannot migrate VEs yet.</exception>
    public MigrationClient(VirtuozzoRuntime runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        if (runtime.Kind is not (RuntimeKind.Local or RuntimeKind.Virtuozzo or RuntimeKind.Libvirt))
            throw new UnsupportedOnHostException($"Migration is not available on the {runtime.Kind} runtime yet.");
        _runtime = runtime;
        _logger = runtime.CreateLogger<MigrationClient>();
    }

    /// <summary>For mocking frameworks: a client with no runtime behind it.</summary>
    protected MigrationClient()
    {
    }

    private VirtuozzoRuntime Runtime => _runtime ?? throw new InvalidOperationException("This MigrationClient was made for mocking and has no runtime.");

    /// <summary>Migrates a VE to <paramref name="destination"/>, where it keeps its name and UUID.</summary>
    /// <param name="ve">The VE, by name or UUID.</param>
    /// <param name="destination">Where it goes.</param>
    /// <param name="options">Mode, downtime limit, post-copy, whether the source's copy is kept; null for the defaults.</param>
    /// <param name="progress">Receives the phase and the bytes moved, about ten times a second.</param>
    /// <param name="cancellationToken">Cancels the migration; the VE keeps running on the source (unless post-copy had begun).</param>
    /// <returns>The mode used, the downtime, the total time and the bytes moved.</returns>
    /// <exception cref="NotFoundException">No such VE.</exception>
    /// <exception cref="InvalidStateException">The VE cannot migrate as asked (not running for a live migration, running or suspended for an offline one, has snapshots for a live one, is a linked clone…), or the migration failed (the VE stays on the source).</exception>
    /// <exception cref="AlreadyExistsException">The destination has a VE with that name or UUID.</exception>
    /// <exception cref="InsufficientResourcesException">The destination cannot guarantee the VE's memory, or (offline) has too little disk space.</exception>
    /// <exception cref="UnsupportedOnHostException">The mode is not available or the destination cannot run the VE's CPU model.</exception>
    /// <remarks>
    /// The equivalent of <c>prlctl migrate NAME HOST</c>.
    /// A stopped VM (or any VM with <see cref="MigrationMode.Offline"/>, which requires it stopped) moves offline: its
    /// QCOW2 images, internal snapshots included, are streamed to the destination with a SHA-256 check, the destination
    /// registers it stopped, and only then is the source's copy deleted. Before that, a failure or cancellation leaves
    /// the VM untouched on the source and nothing on the destination.
    /// </remarks>
    public virtual Task<MigrationResult> MigrateAsync(VeRef ve, MigrationDestination destination, MigrationOptions? options = null, IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.MigrateOperation, null, ve.IsEmpty ? null : ve.Value, async scope =>
        {
            var result = await MigrateCoreAsync(ve, destination, options, progress, cancellationToken).ConfigureAwait(false);
            scope.Kind = result.Kind;
            scope.AddBytes(result.DiskBytes + result.MemoryBytes);
            scope.Activity?.SetTag("vzsdk.migration.mode", result.Mode.ToString().ToLowerInvariant());
            scope.Activity?.SetTag("vzsdk.migration.downtime_ms", (long)result.Downtime.TotalMilliseconds);
            return result;
        });

    private async Task<MigrationResult> MigrateCoreAsync(VeRef ve, MigrationDestination destination, MigrationOptions? options, IProgress<MigrationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        options ??= new MigrationOptions();
        options.Validate();
        var runtime = Runtime;
        if (runtime.Kind == RuntimeKind.Libvirt)
        {
            if (ve.IsEmpty)
                throw new ArgumentException("Name the VM to migrate.", nameof(ve));
            return await Migration.Runtime.Libvirt.LibvirtMigration.MigrateAsync(runtime, ve.Value, destination, options, progress, cancellationToken).ConfigureAwait(false);
        }
        if (destination is LibvirtDestination)
            throw new UnsupportedOnHostException($"{destination} is a libvirt daemon: only a runtime created with UseLibvirtRuntime migrates to it.");
        if (runtime.Kind == RuntimeKind.Virtuozzo)
        {
            if (ve.IsEmpty)
                throw new ArgumentException("Name the VE to migrate.", nameof(ve));
            return await Migration.Runtime.Virtuozzo.VirtuozzoMigration.MigrateAsync(runtime, ve.Value, destination, options, progress, cancellationToken).ConfigureAwait(false);
        }
        if (destination.LocalRuntime is { } other && Path.GetFullPath(other.Options.DataRoot) == Path.GetFullPath(runtime.Options.DataRoot))
            throw new ArgumentException($"The destination is this runtime itself (data root '{runtime.Options.DataRoot}').", nameof(destination));
        var identity = await runtime.Inventory.FindAsync(ve.Value, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"No container or VM is named '{ve}'.");
        if (identity.Kind == VeKind.Container)
            return await MigrateContainerAsync(runtime, identity.VeId, destination, options, progress, cancellationToken).ConfigureAwait(false);
        var driver = runtime.GetDriver<IVmDriver>(VeKind.Vm, rt => VirtualMachineClient.CreateDriver(rt, new VirtualMachineClientOptions())) as LocalVmDriver
            ?? throw new UnsupportedOnHostException("This runtime's VMs cannot migrate.");
        if (options.Mode == MigrationMode.Offline)
            return await MigrateVmOfflineAsync(driver, identity, destination, options, "an offline migration was asked for", progress, cancellationToken).ConfigureAwait(false);
        if (options.Mode == MigrationMode.Auto)
        {
            var state = (await driver.GetAsync(identity.VeId.ToString(), cancellationToken).ConfigureAwait(false)).State;
            if (state is VeState.Stopped or VeState.Suspended)
                return await MigrateVmOfflineAsync(driver, identity, destination, options, "the VM is stopped: its disks and configuration moved, and it stays stopped", progress, cancellationToken).ConfigureAwait(false);
        }
        var settings = new VmMigrationSettings
        {
            DowntimeLimit = options.DowntimeLimit,
            AutoConverge = options.AutoConverge,
            PostCopy = options.PostCopy,
            MaxBandwidthBytesPerSecond = options.MaxBandwidthPerSecond?.Bytes,
            KeepSource = options.KeepSource,
        };
        _logger?.LogInformation("Migrating VM {Name} to {Destination}", identity.Name, destination);
        Action<VmMigrationSample>? report = progress is null ? null : s => progress.Report(new MigrationProgress(PhaseOf(s.Phase), s.Transferred, s.Remaining, s.DirtyBytesPerSecond, s.ExpectedDowntime));
        var peer = await destination.CreateVmPeerAsync(_logger!, cancellationToken).ConfigureAwait(false);
        VmMigrationOutcome outcome;
        try
        {
            outcome = await driver.MigrateOutAsync(identity.VeId.ToString(), peer, settings, report, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (peer is IAsyncDisposable disposable)
                await disposable.DisposeAsync().ConfigureAwait(false);
        }
        _logger?.LogInformation("VM {Name} migrated in {Total} with {Downtime} ms of downtime", identity.Name, outcome.TotalTime, outcome.Downtime.TotalMilliseconds);
        return new MigrationResult(outcome.Id, outcome.Name, VeKind.Vm, MigrationMode.Online,
            options.Mode == MigrationMode.Auto ? "the VM is running: it migrated live" : "a live migration was asked for",
            outcome.Downtime, outcome.TotalTime, outcome.DiskBytes, outcome.MemoryBytes, outcome.PostCopyUsed) { PreCopyRounds = outcome.PreCopyRounds };
    }

    private async Task<MigrationResult> MigrateVmOfflineAsync(LocalVmDriver driver, Virtuozzo.Sdk.Core.State.VeIdentity identity, MigrationDestination destination, MigrationOptions options, string reason, IProgress<MigrationProgress>? progress, CancellationToken ct)
    {
        _logger?.LogInformation("Migrating the stopped VM {Name} to {Destination}", identity.Name, destination);
        Action<VmMigrationSample>? report = progress is null ? null : s => progress.Report(new MigrationProgress(PhaseOf(s.Phase), s.Transferred, s.Remaining));
        var peer = await destination.CreateVmPeerAsync(_logger!, ct).ConfigureAwait(false);
        VmMigrationOutcome outcome;
        try
        {
            var offline = peer as IVmOfflineMigrationPeer ?? throw new UnsupportedOnHostException($"{destination} cannot receive a stopped VM.");
            outcome = await driver.MigrateOfflineOutAsync(identity.VeId.ToString(), offline, options.KeepSource, options.MaxBandwidthPerSecond?.Bytes, report, ct).ConfigureAwait(false);
        }
        finally
        {
            if (peer is IAsyncDisposable disposable)
                await disposable.DisposeAsync().ConfigureAwait(false);
        }
        _logger?.LogInformation("VM {Name} migrated offline in {Total} ({Bytes} bytes of disk images)", identity.Name, outcome.TotalTime, outcome.DiskBytes);
        return new MigrationResult(outcome.Id, outcome.Name, VeKind.Vm, MigrationMode.Offline, reason, TimeSpan.Zero, outcome.TotalTime, outcome.DiskBytes, 0, false);
    }

    private async Task<MigrationResult> MigrateContainerAsync(VirtuozzoRuntime runtime, VeId id, MigrationDestination destination, MigrationOptions options, IProgress<MigrationProgress>? progress, CancellationToken ct)
    {
        var driver = runtime.GetDriver<IContainerDriver>(VeKind.Container, ContainerClient.CreateDriver) as LocalContainerDriver
            ?? throw new UnsupportedOnHostException("This runtime's containers cannot migrate.");
        var peer = await destination.CreateContainerPeerAsync(_logger!, ct).ConfigureAwait(false);
        ContainerMigrationOutcome outcome;
        try
        {
            Action<ContainerMigrationSample>? report = progress is null ? null : s => progress.Report(new MigrationProgress(PhaseOf(s.Phase), s.Transferred, s.Remaining));
            var requireLive = options.RequireLive || options.Mode == MigrationMode.Online;
            outcome = await driver.MigrateOutAsync(id.ToString(), peer, allowRestart: !requireLive, requireLive: requireLive, keepSource: options.KeepSource, report, ct,
                forceRestart: options.Mode == MigrationMode.Offline).ConfigureAwait(false);
        }
        finally
        {
            if (peer is IAsyncDisposable disposable)
                await disposable.DisposeAsync().ConfigureAwait(false);
        }
        _logger?.LogInformation("Container {Name} migrated ({Mode}) in {Total}, frozen {Frozen}", outcome.Name, outcome.Live ? "live" : "restart", outcome.TotalTime, outcome.Frozen);
        return new MigrationResult(outcome.Id, outcome.Name, VeKind.Container, outcome.Live ? MigrationMode.Online : MigrationMode.Offline, outcome.Reason,
            outcome.Frozen, outcome.TotalTime, outcome.DiskBytes, outcome.ImageBytes, false) { PreCopyRounds = outcome.PreCopyRounds };
    }

    private static MigrationPhase PhaseOf(string phase) => phase switch
    {
        "copying-disk" => MigrationPhase.CopyingDisks,
        "dumping" or "stopping" or "sending-state" or "restoring" or "starting" => MigrationPhase.Switching,
        "preparing" => MigrationPhase.Preparing,
        "copying-disks" => MigrationPhase.CopyingDisks,
        "copying-memory" or "pre-dumping" => MigrationPhase.CopyingMemory,
        "post-copy" => MigrationPhase.PostCopy,
        "switching" => MigrationPhase.Switching,
        _ => MigrationPhase.CleaningUp,
    };
}
