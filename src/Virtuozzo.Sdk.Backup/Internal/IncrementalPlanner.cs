using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>The state of one change-tracking bitmap of a disk.</summary>
internal enum TrackingState
{
    /// <summary>Present, recording and consistent: the changes since its backup are known.</summary>
    Good,

    /// <summary>Not closed cleanly (the image's in-use flag, or QEMU's inconsistent flag): it may have missed writes.</summary>
    Inconsistent,

    /// <summary>Not recording.</summary>
    Disabled,
}

/// <summary>A disk as the planner sees it: what was read from the image or from the running emulator or daemon.</summary>
/// <param name="Name">Its name in the VE.</param>
/// <param name="VirtualSize">Its virtual size now.</param>
/// <param name="BackingChain">The backing files below it now (path, size, modification time), or null when it has none.</param>
/// <param name="TrackingBitmaps">Its change-tracking bitmaps by name (only gathered when an incremental is possible at all).</param>
/// <param name="TrackingReset">Why its VE reset change tracking since the last backup (a snapshot switch, a resize…), or null.</param>
internal sealed record PlannedDisk(string Name, long VirtualSize, string? BackingChain, IReadOnlyDictionary<string, TrackingState> TrackingBitmaps, string? TrackingReset = null);

/// <summary>What the next backup is.</summary>
/// <param name="Parent">The backup an incremental is built on, or null for a full backup.</param>
/// <param name="FullReasons">Why it is full (one line per disk, or one for all disks); empty for an incremental.</param>
internal sealed record BackupPlan(string? Parent, IReadOnlyList<string> FullReasons)
{
    public bool IsIncremental => Parent is not null;
}

/// <summary>
/// Decides full or incremental from plain data: the chain's last backup, each disk's size, backing chain and
/// tracking bitmaps, and whether a full backup was asked for. An incremental is made only when every disk of the last
/// backup is still there with a good bitmap named after it, the same size and the same files below it; anything else
/// could miss changes, so the backup is full and the reasons say which disk and why.
/// </summary>
internal static class IncrementalPlanner
{
    /// <summary>Plans the next backup.</summary>
    /// <param name="full">A full backup was asked for.</param>
    /// <param name="kindName">"container" or "VM", for the reasons.</param>
    /// <param name="last">The newest backup of the VE, or null when it has none.</param>
    /// <param name="disks">The VE's disks now.</param>
    /// <param name="lastFileMissing">Names of the last backup's disks whose file is missing from the backup location.</param>
    public static BackupPlan Plan(bool full, string kindName, BackupMetadata? last, IReadOnlyList<PlannedDisk> disks, IReadOnlySet<string> lastFileMissing)
    {
        if (full)
            return new BackupPlan(null, ["all disks: a full backup was asked for (--full)"]);
        if (last is null)
            return new BackupPlan(null, [$"all disks: this is the first backup of the {kindName}"]);
        var reasons = Obstacles(kindName, last, disks, lastFileMissing);
        return reasons.Count == 0 ? new BackupPlan(last.Id, []) : new BackupPlan(null, reasons);
    }

    /// <summary>Why the next backup cannot be an incremental on <paramref name="last"/>, one line per disk; empty when it can.</summary>
    private static List<string> Obstacles(string kindName, BackupMetadata last, IReadOnlyList<PlannedDisk> disks, IReadOnlySet<string> lastFileMissing)
    {
        var reasons = new List<string>();
        foreach (var gone in last.Disks.Where(b => disks.All(d => d.Name != b.Name)))
            reasons.Add($"{gone.Name}: the disk was removed since backup {last.Id}");
        var expected = ChangeTracking.BitmapPrefix + last.Id;
        foreach (var d in disks)
        {
            var previous = last.Disks.FirstOrDefault(b => b.Name == d.Name);
            if (previous is null)
                reasons.Add($"{d.Name}: the disk was added since backup {last.Id}");
            else if (d.TrackingReset is { } why)
                reasons.Add($"{d.Name}: {why} since backup {last.Id}");
            else if (previous.VirtualSize != d.VirtualSize)
                reasons.Add($"{d.Name}: the disk was resized since backup {last.Id}");
            else if (previous.BackingChain != d.BackingChain)
                reasons.Add($"{d.Name}: the files below the disk changed since backup {last.Id} (a rebase, or a commit or write into its base)");
            else if (lastFileMissing.Contains(d.Name))
                reasons.Add($"{d.Name}: the file of backup {last.Id} is missing");
            else if (!d.TrackingBitmaps.TryGetValue(expected, out var state))
                reasons.Add($"{d.Name}: the disk has no change-tracking bitmap for backup {last.Id} (the {kindName} stopped without closing its disks cleanly, or the disk was replaced, restored or changed by a tool that does not track changes)");
            else if (state == TrackingState.Inconsistent)
                reasons.Add($"{d.Name}: the change-tracking bitmap for backup {last.Id} is inconsistent (the {kindName} was not stopped cleanly)");
            else if (state == TrackingState.Disabled)
                reasons.Add($"{d.Name}: change tracking for backup {last.Id} was disabled");
        }
        return reasons;
    }
}
