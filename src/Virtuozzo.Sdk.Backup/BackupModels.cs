using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Backup;

/// <summary>Full or incremental.</summary>
public enum BackupType
{
    /// <summary>Standalone: all of the disk's data; starts a chain.</summary>
    Full,

    /// <summary>Only what changed since the previous backup of the chain, which it depends on.</summary>
    Incremental,
}

/// <summary>How backup data is compressed.</summary>
public enum BackupCompression
{
    /// <summary>zstd (the default: fast, small).</summary>
    Zstd,

    /// <summary>zlib (deflate), readable by older QEMU.</summary>
    Zlib,

    /// <summary>No compression.</summary>
    None,
}

/// <summary>Options of <see cref="BackupClient.CreateAsync"/>.</summary>
public sealed record BackupCreateOptions
{
    /// <summary>Start a new chain with a full backup even when an incremental is possible.</summary>
    public bool Full { get; init; }

    /// <summary>Compression of the stored data. Default zstd.</summary>
    public BackupCompression Compression { get; init; } = BackupCompression.Zstd;

    /// <summary>
    /// How long a running VM's guest tools get to answer before the backup goes ahead without freezing the guest's file
    /// systems (the result then says it is crash-consistent). Default 10 s.
    /// </summary>
    public TimeSpan GuestToolsTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>One disk in a backup.</summary>
/// <param name="Name">The disk's name within the VE (<c>root</c> for a container).</param>
/// <param name="File">The backup's QCOW2 file for this disk.</param>
/// <param name="OriginalPath">Where the disk lived when it was backed up.</param>
/// <param name="VirtualSize">The disk's virtual size.</param>
/// <param name="StoredSize">Bytes this backup's file takes.</param>
/// <param name="Digest">SHA-256 of the guest data stored in this backup's file (offsets and bytes), recorded while writing.</param>
public sealed record BackupDisk(string Name, string File, string OriginalPath, long VirtualSize, long StoredSize, string Digest);

/// <summary>A backup.</summary>
/// <param name="Id">Its id: <c>{uuid}</c> for a full backup, <c>{uuid}.N</c> for the incrementals after it. Never changes.</param>
/// <param name="Type">Full or incremental (an incremental whose parent was deleted becomes a standalone full).</param>
/// <param name="ParentId">The backup it depends on, or null.</param>
/// <param name="VeId">The VE backed up.</param>
/// <param name="VeName">The VE's name at the time.</param>
/// <param name="CreatedAt">When the point in time was taken (UTC).</param>
/// <param name="Disks">Its disks.</param>
/// <param name="SdkVersion">The SDK version that wrote it.</param>
public sealed record BackupInfo(string Id, BackupType Type, string? ParentId, VeId VeId, string VeName, DateTimeOffset CreatedAt, IReadOnlyList<BackupDisk> Disks, string SdkVersion)
{
    /// <summary>Bytes the backup's files take.</summary>
    public long SizeBytes => Disks.Sum(d => d.StoredSize);
}

/// <summary>A chain of backups: a full backup and the incrementals that depend on it, oldest first.</summary>
/// <param name="VeId">The VE backed up.</param>
/// <param name="VeName">The VE's name at the newest backup of the chain.</param>
/// <param name="Backups">The full backup first, then each incremental after its parent.</param>
public sealed record BackupChain(VeId VeId, string VeName, IReadOnlyList<BackupInfo> Backups)
{
    /// <summary>Bytes the chain's files take.</summary>
    public long SizeBytes => Backups.Sum(b => b.SizeBytes);
}

/// <summary>What <see cref="BackupClient.CreateAsync"/> did.</summary>
/// <param name="Backup">The new backup.</param>
/// <param name="Consistency">How the point in time was fixed.</param>
/// <param name="FullReasons">Why the backup is full when an incremental was asked for (one line per disk), empty otherwise.</param>
public sealed record BackupResult(BackupInfo Backup, string Consistency, IReadOnlyList<string> FullReasons);

/// <summary>Options of <see cref="BackupClient.RestoreAsync"/>.</summary>
public sealed record BackupRestoreOptions
{
    /// <summary>Restore into a new VE with this name (and a new UUID); null to restore into the original, stopped VE.</summary>
    public VeName? NewName { get; init; }
}

/// <summary>The outcome of <see cref="BackupClient.VerifyAsync"/>.</summary>
/// <param name="Checked">Backups checked.</param>
/// <param name="Damaged">Damaged backups, each with what is wrong.</param>
/// <param name="Affected">Backups that depend on a damaged one (restoring them fails too).</param>
public sealed record BackupVerifyResult(IReadOnlyList<string> Checked, IReadOnlyDictionary<string, string> Damaged, IReadOnlyList<string> Affected)
{
    /// <summary>True when nothing is damaged.</summary>
    public bool IsValid => Damaged.Count == 0;
}

/// <summary>Retention rules for <see cref="BackupClient.PruneAsync"/>; a backup kept by any rule is kept.</summary>
public sealed record BackupRetention
{
    /// <summary>Keep the newest N backups.</summary>
    public int KeepLast { get; init; }

    /// <summary>Keep the newest backup of each of the last N days that have one.</summary>
    public int KeepDaily { get; init; }

    /// <summary>Keep the newest backup of each of the last N ISO weeks that have one.</summary>
    public int KeepWeekly { get; init; }

    /// <summary>Keep the newest backup of each of the last N months that have one.</summary>
    public int KeepMonthly { get; init; }
}

/// <summary>Options of the <see cref="BackupClient"/>.</summary>
public sealed record BackupClientOptions
{
    /// <summary>The directory backups are kept in; null for <c>backups/</c> in the SDK's data root.</summary>
    public string? Location { get; init; }
}
