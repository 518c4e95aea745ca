using System.Globalization;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>
/// A backup location: <c>&lt;ve-uuid&gt;/&lt;backup-id&gt;/</c> with one QCOW2 file per disk and <c>backup.json</c>,
/// plus per VE <c>sequence.json</c> (the numbers handed out per chain) and, while a delete runs,
/// <c>pending-delete.json</c> (its journal). Reads and lists metadata, hands out ids, deletes and merges, groups
/// chains and applies retention. The methods that change a VE's directory expect its caller to hold the VE's lock.
/// </summary>
internal sealed class BackupRepository
{
    /// <summary>The metadata file of a backup.</summary>
    public const string MetadataFile = "backup.json";

    private const string SequenceFile = "sequence.json";
    private const string JournalFile = "pending-delete.json";
    private readonly StateStore _store;
    private readonly ILogger _logger;

    public BackupRepository(StateStore store, string location, ILogger logger)
    {
        _store = store;
        Location = Path.GetFullPath(location);
        _logger = logger;
    }

    /// <summary>The directory backups are kept in.</summary>
    public string Location { get; }

    /// <summary>The directory of one VE's backups.</summary>
    public string VeDir(VeId id) => Path.Combine(Location, id.ToString());

    /// <summary>The directory of one backup.</summary>
    public string BackupDir(VeId id, string backupId) => Path.Combine(VeDir(id), backupId);

    /// <summary>The name of a disk's file in a backup.</summary>
    public static string DiskFileName(string disk) => disk + ".qcow2";

    /// <summary>A new, empty directory beside the VE's backups, where a backup is written before it is published.</summary>
    /// <remarks>Beside the backups, so that an incremental's relative backing name (<c>../{parent}/…</c>) resolves in it too.</remarks>
    public string CreateStagingDirectory(VeId id)
    {
        var staging = Path.Combine(VeDir(id), ".staging-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staging);
        return staging;
    }

    /// <summary>Writes a backup's metadata into its (staging) directory.</summary>
    public Task WriteMetadataAsync(string backupDir, BackupMetadata meta, CancellationToken ct)
        => _store.WriteDocumentAsync(Path.Combine(backupDir, MetadataFile), meta, BackupJson.Default.BackupMetadata, ct);

    /// <summary>Publishes a staged backup under its id: it exists from here on, whole. Returns its directory.</summary>
    public string Publish(VeId id, string staging, string backupId)
    {
        var dir = BackupDir(id, backupId);
        Directory.Move(staging, dir);
        return dir;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Listing
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>The VEs that have a directory in the location.</summary>
    public IReadOnlyList<VeId> ListVes()
        => Directory.Exists(Location)
            ? Directory.GetDirectories(Location).Select(Path.GetFileName).Where(n => VeId.TryParse(n, out _)).Select(n => VeId.Parse(n!)).ToList()
            : [];

    /// <summary>The backups of one VE, oldest first.</summary>
    public async Task<List<BackupMetadata>> ListVeAsync(VeId id, CancellationToken ct)
    {
        var dir = VeDir(id);
        var list = new List<BackupMetadata>();
        if (!Directory.Exists(dir))
            return list;
        foreach (var d in Directory.GetDirectories(dir).Where(d => Path.GetFileName(d).StartsWith('{')))
        {
            var meta = await _store.ReadDocumentAsync(Path.Combine(d, MetadataFile), BackupJson.Default.BackupMetadata, BackupMetadata.CurrentVersion, ct).ConfigureAwait(false);
            if (meta is not null)
                list.Add(meta);
        }
        return list.OrderBy(m => m.Created).ToList();
    }

    /// <summary>The backups of one VE as the public type, oldest first.</summary>
    public async Task<IEnumerable<BackupInfo>> ListInfoAsync(VeId id, CancellationToken ct)
        => (await ListVeAsync(id, ct).ConfigureAwait(false)).Select(m => m.ToPublic(BackupDir(id, m.Id)));

    /// <summary>Finds a backup by id, in whichever VE's directory it is.</summary>
    /// <exception cref="ArgumentException">The id is not a backup id.</exception>
    /// <exception cref="NotFoundException">There is no such backup.</exception>
    public async Task<(VeId Ve, BackupMetadata Meta)> FindAsync(string backupId, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(backupId) || backupId.IndexOfAny(['/', '\0']) >= 0 || backupId.Contains("..", StringComparison.Ordinal))
            throw new ArgumentException($"'{backupId}' is not a backup id such as {{uuid}} or {{uuid}}.2.", nameof(backupId));
        if (Directory.Exists(Location))
        {
            foreach (var ve in Directory.GetDirectories(Location))
            {
                var meta = await _store.ReadDocumentAsync(Path.Combine(ve, backupId, MetadataFile), BackupJson.Default.BackupMetadata, BackupMetadata.CurrentVersion, ct).ConfigureAwait(false);
                if (meta is not null)
                    return (VeId.Parse(Path.GetFileName(ve)), meta);
            }
        }
        throw new NotFoundException($"There is no backup {backupId} in {Location}. List them with 'vzsdk backup list'.");
    }

    // ---------------------------------------------------------------------------------------------------------
    // Ids
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>The id of a new chain's full backup: <c>{uuid}</c>.</summary>
    public static string NewChainId() => "{" + Guid.NewGuid().ToString("D") + "}";

    /// <summary>
    /// Hands out the next incremental id of <paramref name="parent"/>'s chain (<c>{uuid}.N</c>), durably, so that no
    /// number is ever handed out twice: not after a failed backup, not after a delete.
    /// </summary>
    public async Task<string> NextIncrementalIdAsync(VeId id, string parent, CancellationToken ct)
    {
        var chainUuid = parent.Split('.')[0];
        var path = Path.Combine(VeDir(id), SequenceFile);
        var seq = await _store.ReadDocumentAsync(path, BackupJson.Default.ChainSequence, 1, ct).ConfigureAwait(false) ?? new ChainSequence(1, []);
        var next = seq.LastNumber.GetValueOrDefault(chainUuid) + 1;
        seq.LastNumber[chainUuid] = next;
        Directory.CreateDirectory(VeDir(id));
        await _store.WriteDocumentAsync(path, seq, BackupJson.Default.ChainSequence, ct).ConfigureAwait(false);
        return chainUuid + "." + next.ToString(CultureInfo.InvariantCulture);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Delete (crash-safe merge)
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Deletes a backup of <paramref name="ve"/>: only it (the newest is removed; one with a child is merged into the
    /// child, journalled), or with <paramref name="withDependents"/> it and every backup after it in its chain.
    /// Returns the deleted ids. The caller holds the VE's lock and has run <see cref="RecoverAsync"/>.
    /// </summary>
    /// <param name="ve">The VE whose backup it is.</param>
    /// <param name="meta">The backup.</param>
    /// <param name="withDependents">Delete the backups after it in its chain too.</param>
    /// <param name="mergeProgress">Told the bytes merged into the child so far, synchronously; or null.</param>
    /// <param name="ct">Cancels the delete (a merge already journalled is finished by the next operation).</param>
    public async Task<IReadOnlyList<string>> DeleteAsync(VeId ve, BackupMetadata meta, bool withDependents, IProgress<long>? mergeProgress, CancellationToken ct)
    {
        var all = await ListVeAsync(ve, ct).ConfigureAwait(false);
        var deleted = new List<string>();
        if (withDependents)
        {
            var doomed = Dependents(all.Select(b => (b.Id, b.Parent)), [meta.Id]).Prepend(meta.Id).ToList();
            foreach (var id in Enumerable.Reverse(doomed)) // children first: no remaining backup ever points at a missing parent
            {
                RemoveDirectory(BackupDir(ve, id));
                deleted.Add(id);
            }
            return deleted;
        }
        var child = all.FirstOrDefault(b => b.Parent == meta.Id);
        var pending = new PendingDelete(1, meta.Id, child?.Id, meta.Parent);
        await _store.WriteDocumentAsync(JournalPath(ve), pending, BackupJson.Default.PendingDelete, ct).ConfigureAwait(false);
        await FinishDeleteAsync(ve, pending, resumed: false, mergeProgress, ct).ConfigureAwait(false);
        return [meta.Id];
    }

    private string JournalPath(VeId ve) => Path.Combine(VeDir(ve), JournalFile);

    /// <summary>
    /// Finishes what killed processes left in a VE's directory: a journalled delete, staging and half-removed
    /// directories, and the temp files of atomic writes whose writer is gone. Run before any change to the directory.
    /// </summary>
    public async Task RecoverAsync(VeId ve, CancellationToken ct)
    {
        var pending = await _store.ReadDocumentAsync(JournalPath(ve), BackupJson.Default.PendingDelete, 1, ct).ConfigureAwait(false);
        if (pending is not null)
        {
            _logger.LogInformation("Finishing the interrupted delete of backup {Id}", pending.Target);
            await FinishDeleteAsync(ve, pending, resumed: true, null, ct).ConfigureAwait(false);
        }
        if (Directory.Exists(VeDir(ve)))
        {
            foreach (var leftover in Directory.GetDirectories(VeDir(ve), ".staging-*").Concat(Directory.GetDirectories(VeDir(ve), ".deleting-*")))
                RemoveDirectory(leftover);
            // sequence.json and pending-delete.json here, backup.json in a backup's directory
            foreach (var temp in AtomicFile.RemoveAbandoned(VeDir(ve), maxDepth: 1))
                _logger.LogDebug("Removed {File}, left by a killed writer", temp);
        }
    }

    /// <summary>Each step is idempotent: rebase the child (safe mode copies what it needs first), record it, then remove the target.</summary>
    /// <remarks>
    /// A merge killed half-way leaves clusters in the child that it had allocated but not yet referenced (the
    /// engine orders its writes so that a kill leaks rather than corrupts). A resumed merge reclaims them first, so
    /// that it reuses that space and the finished child has no leaks.
    /// </remarks>
    private async Task FinishDeleteAsync(VeId ve, PendingDelete pending, bool resumed, IProgress<long>? mergeProgress, CancellationToken ct)
    {
        var targetDir = BackupDir(ve, pending.Target);
        if (pending.Child is { } childId && Directory.Exists(BackupDir(ve, childId)))
        {
            var childDir = BackupDir(ve, childId);
            var childMeta = (await _store.ReadDocumentAsync(Path.Combine(childDir, MetadataFile), BackupJson.Default.BackupMetadata, BackupMetadata.CurrentVersion, ct).ConfigureAwait(false))!;
            if (childMeta.Parent == pending.Target)
            {
                var disks = new List<BackupDiskMetadata>();
                foreach (var d in childMeta.Disks)
                {
                    if (resumed)
                        ReclaimLeaks(Path.Combine(childDir, d.File));
                    // An incremental has the same disks as its parent (a change of disks starts a new chain).
                    DiskCopier.MergeParentInto(Path.Combine(targetDir, d.File), Path.Combine(childDir, d.File),
                        pending.NewParent is null ? null : Path.Combine("..", pending.NewParent, d.File), mergeProgress, ct);
                    using var image = Qcow2Image.Open(Path.Combine(childDir, d.File), new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
                    disks.Add(d with { StoredSize = new FileInfo(Path.Combine(childDir, d.File)).Length, Digest = DiskCopier.DigestOfOwnData(image, ct) });
                }
                var updated = childMeta with
                {
                    Parent = pending.NewParent,
                    Type = pending.NewParent is null ? BackupType.Full : BackupType.Incremental,
                    Disks = disks,
                };
                await WriteMetadataAsync(childDir, updated, ct).ConfigureAwait(false);
            }
        }
        RemoveDirectory(targetDir);
        File.Delete(JournalPath(ve));
    }

    private void ReclaimLeaks(string file)
    {
        using var image = Qcow2Image.Open(file, new Qcow2OpenOptions { NoBacking = true });
        var result = image.Check(Qcow2RepairMode.Leaks);
        if (result.LeaksFixed > 0)
            _logger.LogInformation("Reclaimed {Leaks} clusters of {File} left allocated by an interrupted merge", result.LeaksFixed, file);
    }

    private static void RemoveDirectory(string dir)
    {
        if (!Directory.Exists(dir))
            return;
        // Rename first: a half-removed directory is never mistaken for a backup.
        var doomed = Path.Combine(Path.GetDirectoryName(dir)!, ".deleting-" + Guid.NewGuid().ToString("N"));
        Directory.Move(dir, doomed);
        Directory.Delete(doomed, recursive: true);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Chains and retention (pure)
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Groups backups into chains: each backup without a parent (or whose parent is not among them) starts one, and
    /// every backup follows its parent. Oldest chain first.
    /// </summary>
    public static List<BackupChain> Chains(IReadOnlyList<BackupInfo> backups)
    {
        var chains = new List<BackupChain>();
        foreach (var root in backups.Where(b => b.ParentId is null || backups.All(p => p.Id != b.ParentId)))
        {
            var members = new List<BackupInfo> { root };
            for (var i = 0; i < members.Count; i++)
                members.AddRange(backups.Where(b => b.ParentId == members[i].Id));
            chains.Add(new BackupChain(root.VeId, members[^1].VeName, members));
        }
        return chains.OrderBy(c => c.Backups[0].CreatedAt).ToList();
    }

    /// <summary>
    /// The backups that depend on any of <paramref name="roots"/>, directly or through others, each once, nearest first
    /// (the roots themselves are not included). Only dependents that <paramref name="follow"/> accepts are counted
    /// and followed further.
    /// </summary>
    /// <param name="backups">Every backup (id and parent id) that may depend on the roots.</param>
    /// <param name="roots">The backups whose dependents are wanted.</param>
    /// <param name="follow">Which dependents count; null for all.</param>
    public static List<string> Dependents(IEnumerable<(string Id, string? Parent)> backups, IEnumerable<string> roots, Func<string, bool>? follow = null)
    {
        var all = backups.ToList();
        var found = new List<string>();
        var start = roots.ToList();
        var seen = new HashSet<string>(start, StringComparer.Ordinal);
        var frontier = new Queue<string>(start);
        while (frontier.Count > 0)
        {
            var id = frontier.Dequeue();
            foreach (var (child, _) in all.Where(b => b.Parent == id))
            {
                if ((follow is null || follow(child)) && seen.Add(child))
                {
                    found.Add(child);
                    frontier.Enqueue(child);
                }
            }
        }
        return found;
    }

    /// <summary>
    /// The ids a retention policy keeps: the newest <see cref="BackupRetention.KeepLast"/>, and the newest backup of
    /// each of the last N days, ISO weeks and months (UTC) that have one. A backup that a kept one depends on need
    /// not be kept: deleting it merges it into its child.
    /// </summary>
    public static HashSet<string> Retained(IReadOnlyList<BackupInfo> backups, BackupRetention r)
    {
        var newestFirst = backups.OrderByDescending(b => b.CreatedAt).ToList();
        var keep = new HashSet<string>(newestFirst.Take(r.KeepLast).Select(b => b.Id));
        void ByPeriod(int count, Func<DateTimeOffset, string> period)
        {
            foreach (var g in newestFirst.GroupBy(b => period(b.CreatedAt)).Take(count))
                keep.Add(g.First().Id);
        }
        ByPeriod(r.KeepDaily, t => t.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture));
        ByPeriod(r.KeepWeekly, t => $"{ISOWeek.GetYear(t.UtcDateTime)}-W{ISOWeek.GetWeekOfYear(t.UtcDateTime)}");
        ByPeriod(r.KeepMonthly, t => t.UtcDateTime.ToString("yyyy-MM", CultureInfo.InvariantCulture));
        return keep;
    }
}
