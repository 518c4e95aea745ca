using System.Globalization;
using System.Reflection;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Qemu;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Backup;

/// <summary>
/// QCOW2 backup chains of containers: full and incremental backups found from persistent dirty bitmaps carried by the
/// disks, deletion of any backup (merged crash-safely into its child), restore into the same or a new container,
/// verification against digests recorded while writing, and retention. The equivalent of <c>prlctl backup</c>.
/// </summary>
/// <remarks>
/// A backup location holds <c>&lt;ve-uuid&gt;/&lt;backup-id&gt;/</c> with one QCOW2 file per disk and <c>backup.json</c>.
/// A full backup has the id <c>{uuid}</c>; the incrementals after it are <c>{uuid}.1</c>, <c>{uuid}.2</c>… and no id
/// ever changes. An incremental is made only when the disk's change-tracking bitmap for the previous backup is present
/// and consistent; otherwise the backup is full and <see cref="BackupResult.FullReasons"/> says why.
/// </remarks>
public sealed class BackupClient
{
    internal const string BitmapPrefix = "vzsdk-backup:";
    private const string DiskFile = "root.qcow2";
    private readonly ContainerClient _containers;
    private readonly StateStore _store;
    private readonly string _location;
    private readonly ILogger _logger;

    /// <summary>Creates a client for the local machine's containers; backups go under <c>backups/</c> in the data root unless <paramref name="location"/> is given.</summary>
    public BackupClient(VirtuozzoSdkOptions? options = null, string? location = null, ILoggerFactory? loggerFactory = null)
        : this(new ContainerClient(options ?? new VirtuozzoSdkOptions(), loggerFactory), location, loggerFactory)
    {
    }

    internal BackupClient(ContainerClient containers, string? location, ILoggerFactory? loggerFactory)
    {
        _containers = containers;
        _store = containers.Store;
        _location = Path.GetFullPath(location ?? _store.BackupsDirectory);
        _logger = (ILogger?)loggerFactory?.CreateLogger<BackupClient>() ?? NullLogger.Instance;
    }

    /// <summary>The directory backups are kept in.</summary>
    public string Location => _location;

    private static string SdkVersion => typeof(BackupClient).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    private string VeDir(VeId id) => Path.Combine(_location, id.ToString());

    // ---------------------------------------------------------------------------------------------------------
    // Create
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Backs up a container: incremental when the chain allows it, else full. A running container is frozen only for
    /// the instant its point in time is fixed; a stopped one is read directly. Holds the container's lock throughout.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl backup NAME [--full]</c>.</remarks>
    public async Task<BackupResult> CreateAsync(string nameOrId, BackupCreateOptions? options = null, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new BackupCreateOptions();
        var identity = await _containers.Registry.GetAsync(nameOrId, VeKind.Container, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
        await RecoverAsync(id, cancellationToken).ConfigureAwait(false);

        var chain = await ListVeAsync(id, cancellationToken).ConfigureAwait(false);
        var last = chain.OrderBy(b => b.Created).LastOrDefault();
        var disk = _containers.DiskPath(id);
        var state = await _containers.StateOfAsync(id, cancellationToken).ConfigureAwait(false);
        var running = state is ContainerState.Running or ContainerState.Suspended;
        if (state == ContainerState.Mounted)
            throw new InvalidStateException($"Container {identity.Name} is mounted; unmount it before backing it up.");

        var reasons = new List<string>();
        long virtualSize;
        using (var probe = Qcow2Image.Open(disk, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true }))
            virtualSize = probe.Size;
        CheckFreeSpace(disk);

        string? parent = null;
        if (options.Full)
            reasons.Add("root: a full backup was asked for (--full)");
        else if (last is null)
            reasons.Add("root: this is the first backup of the container");
        else if (last.Disks.FirstOrDefault()?.VirtualSize != virtualSize)
            reasons.Add($"root: the disk was resized since backup {last.Id}");
        else if (!File.Exists(Path.Combine(_location, id.ToString(), last.Id, DiskFile)))
            reasons.Add($"root: the file of backup {last.Id} is missing");
        else
            parent = last.Id;

        var newId = parent is null ? "{" + Guid.NewGuid().ToString("D") + "}" : await NextIncrementalIdAsync(id, parent, cancellationToken).ConfigureAwait(false);
        var dir = Path.Combine(VeDir(id), newId);
        var staging = Path.Combine(VeDir(id), ".staging-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staging);
        var target = Path.Combine(staging, DiskFile);
        string consistency;
        string digest;
        var created = DateTimeOffset.UtcNow;
        try
        {
            if (running)
            {
                (consistency, var fallback) = await BackupRunningAsync(id, disk, target, parent, options.Compression, virtualSize, cancellationToken).ConfigureAwait(false);
                if (fallback is not null)
                {
                    reasons.Add(fallback);
                    parent = null;
                    newId = "{" + Guid.NewGuid().ToString("D") + "}";
                    dir = Path.Combine(VeDir(id), newId);
                }
                using var written = Qcow2Image.Open(target, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
                digest = DiskCopier.DigestOfOwnData(written, cancellationToken);
            }
            else
            {
                consistency = "stopped: read directly";
                (digest, var fallback) = BackupStopped(disk, target, parent, options.Compression, virtualSize, progress, cancellationToken);
                if (fallback is not null)
                {
                    reasons.Add(fallback);
                    parent = null;
                    newId = "{" + Guid.NewGuid().ToString("D") + "}";
                    dir = Path.Combine(VeDir(id), newId);
                }
            }
            if (parent is not null)
                RelinkBacking(target, parent);

            var meta = new BackupMetadata
            {
                Id = newId,
                Type = parent is null ? BackupType.Full : BackupType.Incremental,
                Parent = parent,
                VeUuid = id.ToString(),
                VeName = identity.Name,
                VeKind = "container",
                Created = created,
                Disks = [new BackupDiskMetadata("root", DiskFile, disk, virtualSize, new FileInfo(target).Length, digest)],
                SdkVersion = SdkVersion,
                Config = new Dictionary<string, string> { ["container.json"] = await File.ReadAllTextAsync(_containers.ConfigPath(id), cancellationToken).ConfigureAwait(false) },
            };
            await _store.WriteDocumentAsync(Path.Combine(staging, "backup.json"), meta, BackupJson.Default.BackupMetadata, cancellationToken).ConfigureAwait(false);
            Directory.Move(staging, dir); // the backup exists from here on, whole
            await StartTrackingAsync(id, disk, running, newId, parent, cancellationToken).ConfigureAwait(false);
            var info = meta.ToPublic(dir);
            _logger.LogInformation("Backup {Id} of {Name}: {Type}, {Size} bytes", newId, identity.Name, meta.Type, info.SizeBytes);
            return new BackupResult(info, consistency, parent is null ? reasons : []);
        }
        finally
        {
            if (Directory.Exists(staging))
                Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>A backup never needs more than the disk file's own size (compressed data is smaller still).</summary>
    private void CheckFreeSpace(string disk)
    {
        var used = new FileInfo(disk).Length;
        Directory.CreateDirectory(_location);
        var free = new DriveInfo(_location).AvailableFreeSpace;
        if (free < used)
            throw new InsufficientResourcesException($"Not enough free space for a backup: {new ByteSize(free).ToHumanString()} free, up to {new ByteSize(used).ToHumanString()} needed.", used, free);
    }

    private static Qcow2CompressionType CompressionType(BackupCompression c) => c == BackupCompression.Zlib ? Qcow2CompressionType.Zlib : Qcow2CompressionType.Zstd;

    private Qcow2Image CreateTarget(string target, string? parent, BackupCompression compression, long size, string veDir)
        => Qcow2Image.Create(target, new Qcow2CreateOptions
        {
            Size = size,
            CompressionType = CompressionType(compression),
            BackingFile = parent is null ? null : Path.Combine(veDir, parent, DiskFile),
            BackingFormat = parent is null ? null : "qcow2",
        });

    /// <summary>Stopped container: copy with the managed engine. Returns the digest, or a reason when the incremental had to become full.</summary>
    private (string Digest, string? Fallback) BackupStopped(string disk, string target, string? parent, BackupCompression compression, long size, IProgress<OperationProgress>? progress, CancellationToken ct)
    {
        using var source = Qcow2Image.Open(disk, new Qcow2OpenOptions { ReadOnly = true });
        string? fallback = null;
        List<(long, long)> ranges;
        if (parent is not null)
        {
            var bitmap = source.Bitmaps.FirstOrDefault(b => b.Name == BitmapPrefix + parent);
            fallback = bitmap is null
                ? $"root: the disk has no change-tracking bitmap for backup {parent} (it was replaced, restored, changed by a tool that does not track changes, or its tracking was reset)"
                : bitmap.InUse ? $"root: the change-tracking bitmap for backup {parent} is inconsistent (the container's disk was not closed cleanly)"
                : !bitmap.Enabled ? $"root: change tracking for backup {parent} was disabled" : null;
        }
        if (parent is not null && fallback is null)
            ranges = source.GetDirtyExtents(BitmapPrefix + parent).Select(e => (e.Start, e.Length)).ToList();
        else
            ranges = source.GetAllocationMap().Where(e => e.Data).Select(e => (e.Start, e.Length)).ToList();
        var veDir = Path.GetDirectoryName(Path.GetDirectoryName(target))!;
        using var t = CreateTarget(target, fallback is null ? parent : null, compression, size, veDir);
        var total = ranges.Sum(r => r.Item2);
        var digest = DiskCopier.Copy(source, t, ranges, compression != BackupCompression.None,
            progress is null ? null : new Progress<long>(d => progress.Report(new OperationProgress("copying disk root", d, total))), ct);
        return (digest, fallback);
    }

    /// <summary>
    /// Running container: freeze it (freezer, then fsfreeze) only while a QMP transaction on its disk daemon adds the new
    /// bitmap and starts the backup job; the daemon then copies the point in time while the container runs.
    /// </summary>
    private async Task<(string Consistency, string? Fallback)> BackupRunningAsync(VeId id, string disk, string target, string? parent, BackupCompression compression, long size, CancellationToken ct)
    {
        var daemon = _containers.DaemonPaths(id);
        var qmp = await StorageDaemon.ConnectAsync(daemon, ct).ConfigureAwait(false);
        await using (qmp.ConfigureAwait(false))
        {
            string? fallback = null;
            if (parent is not null)
            {
                var bitmaps = await StorageDaemon.QueryBitmapsAsync(qmp, ct).ConfigureAwait(false);
                var b = bitmaps.FirstOrDefault(x => x["name"]?.GetValue<string>() == BitmapPrefix + parent);
                fallback = b is null
                    ? $"root: the disk has no change-tracking bitmap for backup {parent} (it was replaced, restored, changed by a tool that does not track changes, or its tracking was reset)"
                    : b["inconsistent"]?.GetValue<bool>() == true ? $"root: the change-tracking bitmap for backup {parent} is inconsistent (unclean stop)" : null;
            }
            var incremental = parent is not null && fallback is null;
            var veDir = Path.GetDirectoryName(Path.GetDirectoryName(target))!;
            using (CreateTarget(target, incremental ? parent : null, compression, size, veDir)) { }
            var timeout = TimeSpan.FromSeconds(30);
            await qmp.ExecuteAsync("blockdev-add", new JsonObject
            {
                ["driver"] = "qcow2",
                ["node-name"] = "backup-target",
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = target },
            }, timeout, ct).ConfigureAwait(false);
            var jobId = "backup-" + Guid.NewGuid().ToString("N")[..8];
            var frozen = false;
            var cg = _containers.Cgroups.Open(id);
            var root = _store.RootPath(id);
            try
            {
                await cg.FreezeAsync(ct).ConfigureAwait(false);
                var fs = await _containers.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-f", root).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(30)), ct).ConfigureAwait(false);
                frozen = fs.ExitCode == 0;
                var backup = new JsonObject
                {
                    ["job-id"] = jobId,
                    ["device"] = StorageDaemon.DiskNode,
                    ["target"] = "backup-target",
                    ["sync"] = incremental ? "incremental" : "full",
                    ["compress"] = compression != BackupCompression.None,
                    ["auto-dismiss"] = false,
                };
                if (incremental)
                    backup["bitmap"] = BitmapPrefix + parent;
                await qmp.ExecuteAsync("transaction", new JsonObject
                {
                    ["actions"] = new JsonArray(
                        new JsonObject { ["type"] = "block-dirty-bitmap-add", ["data"] = new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = BitmapPrefix + "pending", ["persistent"] = true } },
                        new JsonObject { ["type"] = "blockdev-backup", ["data"] = backup }),
                }, timeout, ct).ConfigureAwait(false);
            }
            finally
            {
                if (frozen)
                    await _containers.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-u", root).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
                cg.Thaw();
            }
            try
            {
                await WaitForJobAsync(qmp, jobId, ct).ConfigureAwait(false);
            }
            catch
            {
                await TryQmpAsync(qmp, "block-dirty-bitmap-remove", new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = BitmapPrefix + "pending" }).ConfigureAwait(false);
                throw;
            }
            finally
            {
                await TryQmpAsync(qmp, "job-dismiss", new JsonObject { ["id"] = jobId }).ConfigureAwait(false);
                await TryQmpAsync(qmp, "blockdev-del", new JsonObject { ["node-name"] = "backup-target" }).ConfigureAwait(false);
            }
            return ((frozen ? "running: frozen (freezer and fsfreeze) while the point in time was fixed" : "running: frozen (freezer) while the point in time was fixed; fsfreeze was not available"), fallback);
        }
    }

    private static async Task WaitForJobAsync(QmpClient qmp, string jobId, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow.AddHours(12);
        while (DateTime.UtcNow < deadline)
        {
            var jobs = (await qmp.ExecuteAsync("query-jobs", null, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false))!.AsArray();
            var job = jobs.FirstOrDefault(j => j!["id"]!.GetValue<string>() == jobId);
            if (job is null)
                throw new CommandFailedException($"The backup job {jobId} disappeared.", "qmp query-jobs", -1, string.Empty);
            var status = job["status"]!.GetValue<string>();
            if (status is "concluded" or "null")
            {
                if (job["error"] is { } error)
                    throw new CommandFailedException($"The backup job failed: {error.GetValue<string>()}", "qmp blockdev-backup", -1, error.GetValue<string>());
                return;
            }
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
        throw new TimeoutException($"The backup job {jobId} did not finish.");
    }

    private static async Task TryQmpAsync(QmpClient qmp, string command, JsonObject args)
    {
        try { await qmp.ExecuteAsync(command, args, TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false); }
        catch (Exception ex) when (ex is QmpException or TimeoutException or IOException) { }
    }

    /// <summary>Makes the incremental's backing file name relative, so that the backup location can move.</summary>
    private static void RelinkBacking(string target, string parent)
    {
        using var image = Qcow2Image.Open(target, new Qcow2OpenOptions { NoBacking = true });
        image.Rebase(Path.Combine("..", parent, DiskFile), "qcow2", unsafeMode: true);
    }

    /// <summary>After a backup exists: the disk tracks changes since it, under a bitmap named after it; older backup bitmaps go.</summary>
    private async Task StartTrackingAsync(VeId id, string disk, bool running, string newId, string? parent, CancellationToken ct)
    {
        if (running)
        {
            var qmp = await StorageDaemon.ConnectAsync(_containers.DaemonPaths(id), ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                foreach (var b in await StorageDaemon.QueryBitmapsAsync(qmp, ct).ConfigureAwait(false))
                {
                    var name = b["name"]!.GetValue<string>();
                    if (name.StartsWith(BitmapPrefix, StringComparison.Ordinal) && name != BitmapPrefix + "pending")
                        await TryQmpAsync(qmp, "block-dirty-bitmap-remove", new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = name }).ConfigureAwait(false);
                }
                // Bitmap names cannot be changed in place: copy "pending" into one named after the backup.
                await qmp.ExecuteAsync("block-dirty-bitmap-add", new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = BitmapPrefix + newId, ["persistent"] = true }, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
                await qmp.ExecuteAsync("transaction", new JsonObject
                {
                    ["actions"] = new JsonArray(
                        new JsonObject { ["type"] = "block-dirty-bitmap-merge", ["data"] = new JsonObject { ["node"] = StorageDaemon.DiskNode, ["target"] = BitmapPrefix + newId, ["bitmaps"] = new JsonArray(BitmapPrefix + "pending") } },
                        new JsonObject { ["type"] = "block-dirty-bitmap-remove", ["data"] = new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = BitmapPrefix + "pending" } }),
                }, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            }
            return;
        }
        using var image = Qcow2Image.Open(disk);
        foreach (var b in image.Bitmaps.Where(b => b.Name.StartsWith(BitmapPrefix, StringComparison.Ordinal)).ToList())
            image.RemoveBitmap(b.Name);
        image.AddBitmap(BitmapPrefix + newId);
        image.Flush();
    }

    private async Task<string> NextIncrementalIdAsync(VeId id, string parent, CancellationToken ct)
    {
        var chainUuid = parent.Split('.')[0];
        var path = Path.Combine(VeDir(id), "sequence.json");
        var seq = await _store.ReadDocumentAsync(path, BackupJson.Default.ChainSequence, 1, ct).ConfigureAwait(false) ?? new ChainSequence(1, []);
        var next = seq.LastNumber.GetValueOrDefault(chainUuid) + 1;
        seq.LastNumber[chainUuid] = next;
        Directory.CreateDirectory(VeDir(id));
        await _store.WriteDocumentAsync(path, seq, BackupJson.Default.ChainSequence, ct).ConfigureAwait(false);
        return chainUuid + "." + next.ToString(CultureInfo.InvariantCulture);
    }

    // ---------------------------------------------------------------------------------------------------------
    // List
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>Lists backups, oldest first: of one container (by name or UUID, even a deleted one by UUID), or all.</summary>
    /// <remarks>The equivalent of <c>prlctl backup-list [NAME]</c>.</remarks>
    public async Task<IReadOnlyList<BackupInfo>> ListAsync(string? nameOrId = null, CancellationToken cancellationToken = default)
    {
        IEnumerable<VeId> ves;
        if (nameOrId is null)
            ves = Directory.Exists(_location) ? Directory.GetDirectories(_location).Select(Path.GetFileName).Where(n => VeId.TryParse(n, out _)).Select(n => VeId.Parse(n!)) : [];
        else if (VeId.TryParse(nameOrId, out var byId))
            ves = [byId];
        else
            ves = [(await _containers.Registry.GetAsync(nameOrId, VeKind.Container, cancellationToken).ConfigureAwait(false)).VeId];
        var result = new List<BackupInfo>();
        foreach (var ve in ves)
            result.AddRange((await ListVeAsync(ve, cancellationToken).ConfigureAwait(false)).Select(m => m.ToPublic(Path.Combine(VeDir(ve), m.Id))));
        return result.OrderBy(b => b.CreatedAt).ToList();
    }

    private async Task<List<BackupMetadata>> ListVeAsync(VeId id, CancellationToken ct)
    {
        var dir = VeDir(id);
        var list = new List<BackupMetadata>();
        if (!Directory.Exists(dir))
            return list;
        foreach (var d in Directory.GetDirectories(dir).Where(d => Path.GetFileName(d).StartsWith('{')))
        {
            var meta = await _store.ReadDocumentAsync(Path.Combine(d, "backup.json"), BackupJson.Default.BackupMetadata, BackupMetadata.CurrentVersion, ct).ConfigureAwait(false);
            if (meta is not null)
                list.Add(meta);
        }
        return list.OrderBy(m => m.Created).ToList();
    }

    private async Task<(VeId Ve, BackupMetadata Meta)> FindAsync(string backupId, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(backupId) || backupId.IndexOfAny(['/', '\0']) >= 0 || backupId.Contains("..", StringComparison.Ordinal))
            throw new ArgumentException($"'{backupId}' is not a backup id such as {{uuid}} or {{uuid}}.2.", nameof(backupId));
        if (Directory.Exists(_location))
        {
            foreach (var ve in Directory.GetDirectories(_location))
            {
                var meta = await _store.ReadDocumentAsync(Path.Combine(ve, backupId, "backup.json"), BackupJson.Default.BackupMetadata, BackupMetadata.CurrentVersion, ct).ConfigureAwait(false);
                if (meta is not null)
                    return (VeId.Parse(Path.GetFileName(ve)), meta);
            }
        }
        throw new NotFoundException($"There is no backup {backupId} in {_location}. List them with 'vzsdk backup list'.");
    }

    // ---------------------------------------------------------------------------------------------------------
    // Delete (crash-safe merge)
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Deletes a backup. By default only that backup: the newest is removed; one with a child is merged into the child
    /// (which then depends on the deleted backup's parent, or becomes a standalone full). With
    /// <paramref name="withDependents"/>, it and every backup after it in its chain are removed. A kill at any point
    /// leaves every remaining backup restorable: the merge is journalled and finished by the next operation.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl backup-delete -t ID</c>.</remarks>
    public async Task<IReadOnlyList<string>> DeleteAsync(string backupId, bool withDependents = false, CancellationToken cancellationToken = default)
    {
        var (ve, meta) = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        using var veLock = await _store.LockVeAsync(ve, cancellationToken).ConfigureAwait(false);
        await RecoverAsync(ve, cancellationToken).ConfigureAwait(false);
        var all = await ListVeAsync(ve, cancellationToken).ConfigureAwait(false);
        var deleted = new List<string>();
        if (withDependents)
        {
            var doomed = new List<string> { meta.Id };
            for (var i = 0; i < doomed.Count; i++)
                doomed.AddRange(all.Where(b => b.Parent == doomed[i]).Select(b => b.Id));
            foreach (var id in Enumerable.Reverse(doomed)) // children first: no remaining backup ever points at a missing parent
            {
                RemoveDirectory(Path.Combine(VeDir(ve), id));
                deleted.Add(id);
            }
            return deleted;
        }
        var child = all.FirstOrDefault(b => b.Parent == meta.Id);
        var pending = new PendingDelete(1, meta.Id, child?.Id, meta.Parent);
        await _store.WriteDocumentAsync(JournalPath(ve), pending, BackupJson.Default.PendingDelete, cancellationToken).ConfigureAwait(false);
        await FinishDeleteAsync(ve, pending, cancellationToken).ConfigureAwait(false);
        return [meta.Id];
    }

    private string JournalPath(VeId ve) => Path.Combine(VeDir(ve), "pending-delete.json");

    /// <summary>Finishes a journalled delete left by a killed process.</summary>
    private async Task RecoverAsync(VeId ve, CancellationToken ct)
    {
        var pending = await _store.ReadDocumentAsync(JournalPath(ve), BackupJson.Default.PendingDelete, 1, ct).ConfigureAwait(false);
        if (pending is not null)
        {
            _logger.LogInformation("Finishing the interrupted delete of backup {Id}", pending.Target);
            await FinishDeleteAsync(ve, pending, ct).ConfigureAwait(false);
        }
        if (Directory.Exists(VeDir(ve)))
        {
            foreach (var leftover in Directory.GetDirectories(VeDir(ve), ".staging-*").Concat(Directory.GetDirectories(VeDir(ve), ".deleting-*")))
                RemoveDirectory(leftover);
        }
    }

    /// <summary>Each step is idempotent: rebase the child (safe mode copies what it needs first), record it, then remove the target.</summary>
    private async Task FinishDeleteAsync(VeId ve, PendingDelete pending, CancellationToken ct)
    {
        var targetDir = Path.Combine(VeDir(ve), pending.Target);
        if (pending.Child is { } childId && Directory.Exists(Path.Combine(VeDir(ve), childId)))
        {
            var childDir = Path.Combine(VeDir(ve), childId);
            var childMeta = (await _store.ReadDocumentAsync(Path.Combine(childDir, "backup.json"), BackupJson.Default.BackupMetadata, BackupMetadata.CurrentVersion, ct).ConfigureAwait(false))!;
            if (childMeta.Parent == pending.Target)
            {
                string digest;
                DiskCopier.MergeParentInto(Path.Combine(targetDir, DiskFile), Path.Combine(childDir, DiskFile),
                    pending.NewParent is null ? null : Path.Combine("..", pending.NewParent, DiskFile), ct);
                using (var image = Qcow2Image.Open(Path.Combine(childDir, DiskFile), new Qcow2OpenOptions { ReadOnly = true, NoBacking = true }))
                    digest = DiskCopier.DigestOfOwnData(image, ct);
                var updated = childMeta with
                {
                    Parent = pending.NewParent,
                    Type = pending.NewParent is null ? BackupType.Full : BackupType.Incremental,
                    Disks = childMeta.Disks.Select(d => d with { StoredSize = new FileInfo(Path.Combine(childDir, d.File)).Length, Digest = digest }).ToList(),
                };
                await _store.WriteDocumentAsync(Path.Combine(childDir, "backup.json"), updated, BackupJson.Default.BackupMetadata, ct).ConfigureAwait(false);
            }
        }
        RemoveDirectory(targetDir);
        File.Delete(JournalPath(ve));
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
    // Restore, open, verify, prune
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Restores a backup (any in a chain): into its original container, which must be stopped, or into a new container
    /// with a new name and UUID. The restored disk has no change tracking, so the next backup of it is full.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl restore -t ID [--name NEW]</c>.</remarks>
    /// <returns>The restored container's UUID.</returns>
    public async Task<VeId> RestoreAsync(string backupId, BackupRestoreOptions? options = null, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new BackupRestoreOptions();
        var (ve, meta) = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        var source = Path.Combine(VeDir(ve), meta.Id, meta.Disks[0].File);
        var convert = new Qcow2ConvertOptions { SourceFormat = "qcow2", OutputFormat = "qcow2" };
        var report = progress is null ? null : new Progress<Qcow2ConvertProgress>(p => progress.Report(new OperationProgress("restoring disk root", p.BytesDone, p.TotalBytes)));
        if (options.NewName is { } newName)
        {
            var newId = VeId.New();
            await _containers.Registry.RegisterAsync(newId, newName, VeKind.Container, cancellationToken).ConfigureAwait(false);
            try
            {
                using var veLock = await _store.LockVeAsync(newId, cancellationToken).ConfigureAwait(false);
                await Qcow2Converter.ConvertAsync(source, _containers.DiskPath(newId), convert, report, cancellationToken).ConfigureAwait(false);
                var config = JsonNode.Parse(meta.Config["container.json"])!.AsObject();
                config["ip_addresses"] = new JsonArray(); // addresses belong to the original
                config["autostart"] = false;
                await Core.Internal.AtomicFileAccess.WriteTextAsync(_containers.ConfigPath(newId), config.ToJsonString(), cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await _containers.Registry.UnregisterAsync(newId, CancellationToken.None).ConfigureAwait(false);
                throw;
            }
            return newId;
        }

        var identity = await _containers.Registry.FindAsync(ve.ToString(), cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"Container {ve} no longer exists: restore backup {backupId} into a new container with a new name.");
        using (await _store.LockVeAsync(ve, cancellationToken).ConfigureAwait(false))
        {
            var state = await _containers.StateOfAsync(ve, cancellationToken).ConfigureAwait(false);
            if (state != ContainerState.Stopped)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; stop it before restoring into it.");
            var disk = _containers.DiskPath(ve);
            var temp = disk + ".restore-" + Guid.NewGuid().ToString("N")[..8];
            try
            {
                await Qcow2Converter.ConvertAsync(source, temp, convert, report, cancellationToken).ConfigureAwait(false);
                File.Move(temp, disk, overwrite: true); // atomic: the old disk or the restored one
            }
            finally
            {
                File.Delete(temp);
            }
        }
        return ve;
    }

    /// <summary>Opens a backup read-only as a disk image (its chain included), for file-level access. Dispose it when done.</summary>
    public async Task<Qcow2Image> OpenAsync(string backupId, CancellationToken cancellationToken = default)
    {
        var (ve, meta) = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        return Qcow2Image.Open(Path.Combine(VeDir(ve), meta.Id, meta.Disks[0].File), new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
    }

    /// <summary>
    /// Checks backups — of one container, one backup, or all: each file's QCOW2 structure and the digest recorded while
    /// writing (a single flipped data byte is caught). Names the damaged backups and those that depend on them.
    /// </summary>
    public async Task<BackupVerifyResult> VerifyAsync(string? nameOrIdOrBackupId = null, CancellationToken cancellationToken = default)
    {
        List<BackupInfo> scope;
        if (nameOrIdOrBackupId is not null && nameOrIdOrBackupId.StartsWith('{'))
        {
            var (ve, meta) = await FindAsync(nameOrIdOrBackupId, cancellationToken).ConfigureAwait(false);
            scope = [meta.ToPublic(Path.Combine(VeDir(ve), meta.Id))];
        }
        else
        {
            scope = (await ListAsync(nameOrIdOrBackupId, cancellationToken).ConfigureAwait(false)).ToList();
        }
        var damaged = new Dictionary<string, string>();
        foreach (var b in scope)
        {
            foreach (var d in b.Disks)
            {
                try
                {
                    using var image = Qcow2Image.Open(d.File, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true, ForceShare = true });
                    var check = image.Check();
                    if (check.Corruptions > 0)
                    {
                        damaged[b.Id] = $"disk {d.Name}: {check.Corruptions} corruption(s) in the QCOW2 structure";
                        continue;
                    }
                    var digest = DiskCopier.DigestOfOwnData(image, cancellationToken);
                    if (digest != d.Digest)
                        damaged[b.Id] = $"disk {d.Name}: the data does not match the digest recorded when it was written";
                }
                catch (Exception ex) when (ex is Qcow2Exception or IOException)
                {
                    damaged[b.Id] = $"disk {d.Name}: {ex.Message}";
                }
            }
        }
        var all = await ListAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        var affected = new List<string>();
        var frontier = new Queue<string>(damaged.Keys);
        while (frontier.Count > 0)
        {
            var id = frontier.Dequeue();
            foreach (var c in all.Where(x => x.ParentId == id && !damaged.ContainsKey(x.Id) && !affected.Contains(x.Id)))
            {
                affected.Add(c.Id);
                frontier.Enqueue(c.Id);
            }
        }
        return new BackupVerifyResult(scope.Select(b => b.Id).ToList(), damaged, affected);
    }

    /// <summary>Deletes the container's backups that no retention rule keeps (each delete merges as <see cref="DeleteAsync"/> does). Returns the deleted ids.</summary>
    public async Task<IReadOnlyList<string>> PruneAsync(string nameOrId, BackupRetention retention, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(retention);
        if (retention.KeepLast < 0 || retention.KeepDaily < 0 || retention.KeepWeekly < 0 || retention.KeepMonthly < 0)
            throw new ArgumentOutOfRangeException(nameof(retention), "Retention counts cannot be negative.");
        if (retention.KeepLast + retention.KeepDaily + retention.KeepWeekly + retention.KeepMonthly == 0)
            throw new ArgumentException("A retention policy must keep something (set --keep-last and/or --keep-daily, --keep-weekly, --keep-monthly).", nameof(retention));
        var backups = await ListAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var keep = Retained(backups, retention);
        var deleted = new List<string>();
        foreach (var b in backups.Where(b => !keep.Contains(b.Id)))
            deleted.AddRange(await DeleteAsync(b.Id, false, cancellationToken).ConfigureAwait(false));
        return deleted;
    }

    internal static HashSet<string> Retained(IReadOnlyList<BackupInfo> backups, BackupRetention r)
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
