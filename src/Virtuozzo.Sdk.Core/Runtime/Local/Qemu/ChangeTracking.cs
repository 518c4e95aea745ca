using System.Text.Json.Nodes;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>
/// The persistent dirty bitmaps that backups use to track a disk's changes. Whatever changes a disk outside a bitmap's
/// watch (a resize, a snapshot switch, a restore) removes them, so that the next backup is full rather than wrong.
/// </summary>
internal static class ChangeTracking
{
    /// <summary>The prefix of every change-tracking bitmap the SDK creates; the rest of the name is the backup id.</summary>
    public const string BitmapPrefix = "vzsdk-backup:";

    /// <summary>True for a bitmap name the SDK's backups own.</summary>
    public static bool IsTrackingBitmap(string name) => name.StartsWith(BitmapPrefix, StringComparison.Ordinal);

    /// <summary>
    /// The prefix of the libvirt checkpoints the SDK's backups create on the libvirt runtime (libvirt names each
    /// checkpoint's bitmaps after it). Checkpoint names allow only <c>[A-Za-z0-9_-][A-Za-z0-9_.-]*</c>, so the backup id
    /// <c>{uuid}.N</c> becomes <c>vzsdk-backup-uuid.N</c>.
    /// </summary>
    public const string CheckpointPrefix = "vzsdk-backup-";

    /// <summary>The libvirt checkpoint (and bitmap) name for a backup id.</summary>
    public static string CheckpointName(string backupId) => CheckpointPrefix + backupId.Replace("{", "", StringComparison.Ordinal).Replace("}", "", StringComparison.Ordinal);

    /// <summary>True for a libvirt checkpoint name the SDK's backups own.</summary>
    public static bool IsTrackingCheckpoint(string name) => name.StartsWith(CheckpointPrefix, StringComparison.Ordinal);

    /// <summary>The backup id a checkpoint of the SDK stands for, or null for a name the SDK did not make.</summary>
    public static string? BackupIdOfCheckpoint(string name)
    {
        if (!IsTrackingCheckpoint(name))
            return null;
        var rest = name[CheckpointPrefix.Length..];
        return rest.Length >= 36 && Guid.TryParseExact(rest[..36], "D", out _) ? "{" + rest[..36] + "}" + rest[36..] : null;
    }

    /// <summary>Removes the change-tracking bitmaps of a block node of a running emulator or storage daemon; returns how many.</summary>
    public static async Task<int> RemoveBitmapsAsync(QmpClient qmp, string nodeName, CancellationToken cancellationToken)
    {
        var removed = 0;
        foreach (var b in await StorageDaemon.QueryBitmapsAsync(qmp, cancellationToken, nodeName).ConfigureAwait(false))
        {
            var name = b["name"]?.GetValue<string>();
            if (name is null || !IsTrackingBitmap(name))
                continue;
            await qmp.ExecuteAsync("block-dirty-bitmap-remove", new JsonObject { ["node"] = nodeName, ["name"] = name }, TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
            removed++;
        }
        return removed;
    }
}
