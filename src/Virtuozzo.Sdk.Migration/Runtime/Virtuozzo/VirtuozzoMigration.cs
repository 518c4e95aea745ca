using System.Diagnostics;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Migration.Runtime.Virtuozzo;

/// <summary>
/// Migration between Virtuozzo nodes, delegated to the node: <c>prlctl migrate UUID [user@]DESTINATION [--keep-src]</c>
/// (live for a running VE, offline for a stopped one; the node checks the destination's resources, bridges and
/// snapshots itself). The SDK's tuning knobs of its own live migration (downtime limit, auto-converge, post-copy,
/// bandwidth) have no prlctl option and are refused by name when changed from their defaults.
/// </summary>
internal static class VirtuozzoMigration
{
    private static readonly MigrationOptions Defaults = new();

    /// <summary>The prlctl command for a migration, after checking what prlctl can do of the options.</summary>
    /// <exception cref="UnsupportedOnHostException">An option prlctl migrate cannot honour, named.</exception>
    /// <exception cref="InvalidStateException">A live migration of a VE that is not running.</exception>
    public static PrlctlCommand Command(PrlctlVeConfig ve, string destination, MigrationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.PostCopy)
            throw Unsupported("Post-copy migration (PostCopy)");
        if (options.MaxBandwidthPerSecond is not null)
            throw Unsupported("A migration bandwidth limit (MaxBandwidthPerSecond)");
        if (options.DowntimeLimit != Defaults.DowntimeLimit)
            throw Unsupported("A migration downtime limit (DowntimeLimit)");
        if (options.AutoConverge != Defaults.AutoConverge)
            throw Unsupported("Turning auto-converge off (AutoConverge)");
        var running = ve.State == VeState.Running;
        if ((options.Mode == MigrationMode.Online || options.RequireLive) && !running)
            throw new InvalidStateException($"{ve.Name} is {ve.StateText}; a live migration needs it running.");
        if (options.Mode == MigrationMode.Offline && running)
            throw Unsupported("Offline migration of a running VE (Mode = Offline)", "stop it first; prlctl migrates a running VE live.");
        return Prlctl.Migrate(ve.Id.ToString(), destination, options.KeepSource, compress: true);
    }

    public static async Task<MigrationResult> MigrateAsync(VirtuozzoRuntime runtime, string nameOrId, MigrationDestination destination, MigrationOptions? options,
        IProgress<MigrationProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        options ??= new MigrationOptions();
        var node = runtime.RequireNode();
        var address = destination.NodeAddress
            ?? throw Unsupported($"Migrating to {destination}", "name the destination node with MigrationDestination.OverSsh(new SshHostOptions { HostName = …, User = \"root\" }).");
        var ve = await node.FindConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"No container or VM is named '{nameOrId}' on {node.Host.Name}.");
        var command = Command(ve, address, options);
        var live = ve.State == VeState.Running;
        var clock = Stopwatch.StartNew();
        progress?.Report(new MigrationProgress(MigrationPhase.Preparing, 0, 0));
        await node.RunAsync(command, cancellationToken).ConfigureAwait(false);
        progress?.Report(new MigrationProgress(MigrationPhase.CleaningUp, 0, 0));
        return new MigrationResult(ve.Id, new VeName(ve.Name), ve.Kind, live ? MigrationMode.Online : MigrationMode.Offline,
            live ? "the VE is running: prlctl migrated it live" : "the VE is stopped: prlctl migrated it offline",
            TimeSpan.Zero, clock.Elapsed, 0, 0, PostCopyUsed: false)
        {
            // prlctl migrate prints progress and a success line, but no downtime and no byte counts (reference §3.9).
            TransferMeasured = false,
        };
    }

    private static UnsupportedOnHostException Unsupported(string feature, string instead = "prlctl migrate has no option for it; leave it at its default.")
        => new($"{feature} is not supported by the Virtuozzo runtime; {instead}");
}
