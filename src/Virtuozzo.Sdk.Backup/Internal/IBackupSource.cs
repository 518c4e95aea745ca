using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>
/// What a runtime supplies to the backup client: the VE as a backup sees it, the copy of a running VE at one point in
/// time, change tracking between backups, and the restore targets. The repository (layout, ids, metadata, merges), the
/// planner, the copy of a stopped VE's disks and retention are runtime-neutral and live in <see cref="BackupClient"/>.
/// </summary>
internal interface IBackupSource
{
    /// <summary>Reads what a backup of the VE covers (its disks, configuration, whether it runs), under the VE's lock.</summary>
    Task<Subject> ReadSubjectAsync(VeIdentity identity, CancellationToken ct);

    /// <summary>Each disk's change-tracking state by canonical bitmap name (<c>vzsdk-backup:</c> + backup id).</summary>
    Task<Dictionary<string, Dictionary<string, TrackingState>>> TrackingBitmapsAsync(Subject subject, CancellationToken ct);

    /// <summary>
    /// Copies a running VE's disks at one point in time into <paramref name="targets"/> (disk name → new backup file),
    /// incrementally on <paramref name="parent"/> when it is set; returns how consistent the copy is and each disk's digest.
    /// <paramref name="newId"/> completes with the new backup's id (a source that names its tracking after it waits for it).
    /// </summary>
    Task<(string Consistency, Dictionary<string, string> Digests)> BackupRunningAsync(Subject subject, Dictionary<string, string> targets, string? parent, Task<string> newId, BackupCreateOptions options, IProgress<OperationProgress>? progress, CancellationToken ct);

    /// <summary>After the backup <paramref name="newId"/> is published: track the disks' changes since it, and only since it.</summary>
    Task StartTrackingAsync(Subject subject, string newId, CancellationToken ct);

    /// <summary>The name of the bitmap, in a stopped VE's image files, that records the changes since <paramref name="backupId"/>.</summary>
    string FileBitmapName(string backupId);

    /// <summary>Before a stopped VE's disks are read: removes what a backup killed while the VE ran left beside them.</summary>
    void PrepareStopped(Subject subject);

    /// <summary>The restore target for VEs of <paramref name="kind"/>.</summary>
    IRestoreTarget RestoreTarget(VeKind kind);
}
