using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;

namespace Virtuozzo.Sdk.Containers.Runtime.Local;

/// <summary>What reconcile does with a container that an interrupted migration left behind.</summary>
internal enum MigrationRecovery
{
    /// <summary>Nothing: no migration marker.</summary>
    None,
    /// <summary>The process migrating it (out or in) still lives: not reconcile's to touch, nor its storage daemon serving the copy.</summary>
    InProgress,
    /// <summary>The source's processes still run (killed before the dump ended them): only the journal and the disk copy go.</summary>
    ForgetJournal,
    /// <summary>The processes were dumped and the images are complete: restore them on the source.</summary>
    RestoreFromImages,
    /// <summary>The processes are gone and the images are not complete: start the container from its disk.</summary>
    ColdStart,
    /// <summary>A container being received whose receiving process died: remove it from this host.</summary>
    DiscardIncoming,
}

/// <summary>
/// The markers (<see cref="OwnerMarker"/>) an outgoing or incoming container migration leaves in the container's private
/// directory while it runs, and the decision reconcile takes when the process doing it is gone.
/// </summary>
internal static class MigrationJournal
{
    /// <summary>On the source, from just before the freeze until the destination confirmed the restore (or the rollback ended).</summary>
    internal const string OutgoingFile = ".migrating-out";

    /// <summary>On the destination, from the preparation until the source committed (after the restore or start there).</summary>
    internal const string IncomingFile = ".incoming";

    /// <summary>
    /// The decision, from what is on disk: <paramref name="ownerAlive"/> says whether the process the marker names still
    /// runs (false when the marker cannot be read).
    /// </summary>
    internal static MigrationRecovery Decide(bool outgoing, bool incoming, bool ownerAlive, bool processesRunning, bool imagesComplete)
    {
        if (!outgoing && !incoming)
            return MigrationRecovery.None;
        if (ownerAlive)
            return MigrationRecovery.InProgress;
        if (incoming && !outgoing)
            return MigrationRecovery.DiscardIncoming;
        if (processesRunning)
            return MigrationRecovery.ForgetJournal;
        return imagesComplete ? MigrationRecovery.RestoreFromImages : MigrationRecovery.ColdStart;
    }
}

internal sealed partial class LocalContainerDriver
{
    private string OutgoingJournal(VeId id) => Path.Combine(_store.PrivatePath(id), MigrationJournal.OutgoingFile);

    private string IncomingMarkerPath(VeId id) => Path.Combine(_store.PrivatePath(id), MigrationJournal.IncomingFile);

    /// <summary>
    /// Under the container's lock: finishes what a killed migration left. On the source, after the dump, the container is
    /// restored from its local images (or started from its disk when they are incomplete); on the destination, a container
    /// whose receiver died is removed with its reservation and disk. Returns what was decided (<see cref="MigrationRecovery.None"/>
    /// without a marker, <see cref="MigrationRecovery.InProgress"/> while the migrating process lives: nothing done).
    /// </summary>
    private async Task<MigrationRecovery> RecoverInterruptedMigrationLockedAsync(VeId id, CancellationToken ct)
    {
        var outgoing = File.Exists(OutgoingJournal(id));
        var incoming = File.Exists(IncomingMarkerPath(id));
        if (!outgoing && !incoming)
            return MigrationRecovery.None;
        var alive = (outgoing && OwnerMarker.IsOwnerAlive(OutgoingJournal(id))) || (incoming && OwnerMarker.IsOwnerAlive(IncomingMarkerPath(id)));
        var running = await _runc.StatusAsync(id, ct).ConfigureAwait(false) is "running" or "created" or "paused";
        var decision = MigrationJournal.Decide(outgoing, incoming, alive, running, HasCheckpoint(id));
        if (decision == MigrationRecovery.InProgress)
            return decision;
        var none = CancellationToken.None;
        if (decision == MigrationRecovery.DiscardIncoming)
        {
            _logger.LogWarning("Container {Id}: its migration to this host was interrupted (the receiving process is gone); removing what was received", id);
            await DiscardIncomingLockedAsync(id).ConfigureAwait(false);
            return decision;
        }
        var (identity, config) = await LoadAsync(id.ToString(), none).ConfigureAwait(false);
        await ClearMigrationLeftoversAsync(identity.Name, DaemonPaths(id)).ConfigureAwait(false);
        switch (decision)
        {
            case MigrationRecovery.RestoreFromImages:
                _logger.LogWarning("Container {Name}: its migration was interrupted after the dump; restoring it here from the dump images", identity.Name);
                try
                {
                    await RestoreFromCheckpointLockedAsync(id, identity, config, none).ConfigureAwait(false);
                }
                catch (VirtuozzoException ex)
                {
                    _logger.LogWarning("Container {Name}: the restore failed ({Error}); starting it from its disk", identity.Name, ex.Message);
                    DiscardCheckpoint(id);
                    await TeardownAsync(id, none).ConfigureAwait(false);
                    await StartLockedAsync(id, identity, config, none).ConfigureAwait(false);
                }
                break;
            case MigrationRecovery.ColdStart:
                _logger.LogWarning("Container {Name}: its migration was interrupted after its processes stopped and the dump is incomplete; starting it here from its disk", identity.Name);
                DiscardCheckpoint(id);
                await TeardownAsync(id, none).ConfigureAwait(false);
                await StartLockedAsync(id, identity, config, none).ConfigureAwait(false);
                break;
        }
        File.Delete(OutgoingJournal(id));
        return decision;
    }
}
