using System.Globalization;
using System.Reflection;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime.Local;
using Virtuozzo.Sdk.Containers.Runtime.Local;

namespace Virtuozzo.Sdk.Backup;

/// <summary>
/// QCOW2 backup chains of containers and VMs: full and incremental backups found from persistent dirty bitmaps carried
/// by the disks, deletion of any backup (merged crash-safely into its child), restore into the same or a new VE,
/// verification against digests recorded while writing, and retention. The equivalent of <c>prlctl backup</c>.
/// </summary>
/// <remarks>
/// A backup location holds <c>&lt;ve-uuid&gt;/&lt;backup-id&gt;/</c> with one QCOW2 file per disk and <c>backup.json</c>.
/// A full backup has the id <c>{uuid}</c>; the incrementals after it are <c>{uuid}.1</c>, <c>{uuid}.2</c>… and no id
/// ever changes. An incremental is made only when every disk's change-tracking bitmap for the previous backup is
/// present and consistent; otherwise the backup is full and <see cref="BackupResult.FullReasons"/> says which disk and why.
/// </remarks>
public class BackupClient
{
    internal const string BitmapPrefix = ChangeTracking.BitmapPrefix;
    private const string PendingBitmap = BitmapPrefix + "pending";
    private static readonly TimeSpan QmpTimeout = TimeSpan.FromSeconds(30);
    private readonly VirtuozzoRuntime? _runtime;
    private readonly LocalContainerDriver _containers;
    private readonly LocalVmDriver _vms;
    private readonly StateStore _store;
    private readonly string _location;
    private readonly ILogger _logger;

    /// <summary>
    /// Creates a client over an SDK runtime, for its containers and VMs; backups go under <c>backups/</c> in the data root
    /// unless <see cref="BackupClientOptions.Location"/> says otherwise.
    /// </summary>
    /// <exception cref="UnsupportedOnHostException">The runtime cannot back up VEs yet.</exception>
    public BackupClient(VirtuozzoRuntime runtime, BackupClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        if (runtime.Kind != RuntimeKind.Local)
            throw new UnsupportedOnHostException($"Backups are not available on the {runtime.Kind} runtime yet.");
        _runtime = runtime;
        // The local runtime's backup sources and restore targets are its container and VM drivers (shared with the
        // runtime's other clients: one ledger, one registry).
        _containers = (LocalContainerDriver)runtime.GetDriver<Containers.Runtime.IContainerDriver>(VeKind.Container, ContainerClient.CreateDriver);
        _vms = (LocalVmDriver)runtime.GetDriver<Vm.Runtime.IVmDriver>(VeKind.Vm, rt => VirtualMachineClient.CreateDriver(rt, new VirtualMachineClientOptions()));
        _store = runtime.Store;
        _location = Path.GetFullPath(options?.Location ?? _store.BackupsDirectory);
        _logger = runtime.CreateLogger<BackupClient>();
    }

    /// <summary>For mocking frameworks: a client with no runtime behind it.</summary>
    protected BackupClient()
    {
        _containers = null!;
        _vms = null!;
        _store = null!;
        _location = string.Empty;
        _logger = NullLogger.Instance;
    }

    /// <summary>The directory backups are kept in.</summary>
    public virtual string Location => _location;

    private static string SdkVersion => typeof(BackupClient).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    private BackupRepository? _repository;

    /// <summary>The backup location's layout, metadata, ids and deletes (built on first use, from the location and the store).</summary>
    private BackupRepository Repository => _repository ??= new BackupRepository(_store, _location, _logger);

    private string VeDir(VeId id) => Repository.VeDir(id);

    private static string DiskFileName(string disk) => BackupRepository.DiskFileName(disk);

    private Task<(VeId Ve, BackupMetadata Meta)> FindAsync(string backupId, CancellationToken ct) => Repository.FindAsync(backupId, ct);

    // ---------------------------------------------------------------------------------------------------------
    // What is backed up
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>A disk being backed up.</summary>
    /// <param name="Name">Its name in the VE.</param>
    /// <param name="Path">Its image file.</param>
    /// <param name="VirtualSize">Its virtual size.</param>
    /// <param name="Node">The block node of its format layer in the running emulator or daemon.</param>
    /// <param name="BackingChain">The backing files below the disk (path, size, modification time), or null when it has none.</param>
    private sealed record SubjectDisk(string Name, string Path, long VirtualSize, string Node, string? BackingChain)
    {
        /// <summary>Reads the disk's size (unless <paramref name="knownSize"/> gives it) and its backing chain, with one open.</summary>
        public static SubjectDisk Read(string name, string path, string node, long? knownSize = null)
        {
            using var top = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
            return new SubjectDisk(name, path, knownSize ?? top.Size, node, ChainFingerprint(top));
        }
    }

    private static string? ChainFingerprint(Qcow2Image top)
    {
        var parts = new List<string>();
        for (var image = top; image is not null; image = image.Backing)
        {
            if (image.GetInfo().FullBackingFile is not { } backing)
                break;
            var file = new FileInfo(backing);
            parts.Add(FormattableString.Invariant($"{file.FullName}|{file.Length}|{file.LastWriteTimeUtc.Ticks}"));
        }
        return parts.Count == 0 ? null : string.Join("\n", parts);
    }

    /// <summary>A VE as a backup sees it, read under its lock.</summary>
    private sealed record Subject(VeId Id, string Name, VeKind Kind, bool Running, IReadOnlyList<SubjectDisk> Disks, Dictionary<string, string> Config, IReadOnlyDictionary<string, string> TrackingResets)
    {
        public string KindName => Kind == VeKind.Vm ? "VM" : "container";
    }

    private async Task<VeIdentity> ResolveAsync(string nameOrId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        return await _runtime!.Registry.FindAsync(nameOrId.Trim(), ct).ConfigureAwait(false)
               ?? throw new NotFoundException($"There is no container or VM named '{nameOrId}'.");
    }

    private async Task<Subject> ReadSubjectAsync(VeIdentity identity, CancellationToken ct)
    {
        var id = identity.VeId;
        if (identity.Kind == VeKind.Vm)
        {
            var view = await _vms.GetBackupViewAsync(id, ct).ConfigureAwait(false)
                       ?? throw new NotFoundException($"The VM '{identity.Name}' was deleted by another operation.");
            if (view.Disks.Count == 0)
                throw new InvalidStateException($"The VM '{view.Name}' has no disks to back up.");
            var disks = new List<SubjectDisk>();
            foreach (var d in view.Disks)
                disks.Add(SubjectDisk.Read(d.Name, d.Path, d.Node, view.Running ? d.SizeBytes : null));
            return new Subject(id, view.Name, VeKind.Vm, view.Running, disks, new Dictionary<string, string> { ["vm.json"] = view.ConfigJson }, view.TrackingResets);
        }
        var state = await _containers.StateOfAsync(id, ct).ConfigureAwait(false);
        if (state == VeState.Mounted)
            throw new InvalidStateException($"Container {identity.Name} is mounted; unmount it before backing it up.");
        var disk = _containers.DiskPath(id);
        return new Subject(id, identity.Name, VeKind.Container, state is VeState.Running or VeState.Suspended,
            [SubjectDisk.Read("root", disk, StorageDaemon.DiskNode)],
            new Dictionary<string, string> { ["container.json"] = await File.ReadAllTextAsync(_containers.ConfigPath(id), ct).ConfigureAwait(false) },
            new Dictionary<string, string>());
    }

    // ---------------------------------------------------------------------------------------------------------
    // Create
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Backs up a container or VM: incremental when the chain allows it, else full. A running VM's point in time is fixed
    /// by one QMP transaction over all its disks, with its file systems frozen through the guest tools when they answer;
    /// a running container is frozen only for that instant; a stopped VE is read directly. Holds the VE's lock throughout.
    /// </summary>
    /// <remarks>
    /// The equivalent of <c>prlctl backup NAME [--full]</c>. <paramref name="progress"/> receives, in order: for a running
    /// VE, <c>fixing the point in time</c> (no total), then <c>copying disk NAME</c> with bytes copied of the disk's
    /// virtual size as the emulator reports them; for a stopped VE, <c>copying disk NAME</c> per disk.
    /// </remarks>
    public virtual async Task<BackupResult> CreateAsync(VeRef ve, BackupCreateOptions? options = null, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var nameOrId = ve.Value;
        options ??= new BackupCreateOptions();
        if (!Enum.IsDefined(options.Compression))
            throw new ArgumentOutOfRangeException(nameof(options), options.Compression, "Unknown compression (zstd, zlib or none).");
        if (options.GuestToolsTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(options), options.GuestToolsTimeout, "The guest tools timeout must be positive.");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        void Phase(string what) => _logger.LogDebug("Backup of {Name}: {Phase} at {Ms} ms", nameOrId, what, clock.ElapsedMilliseconds);
        var identity = await ResolveAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
        await Repository.RecoverAsync(id, cancellationToken).ConfigureAwait(false);
        var subject = await ReadSubjectAsync(identity, cancellationToken).ConfigureAwait(false);
        Phase("locked and read the VE");
        CheckFreeSpace(subject.Disks.Select(d => d.Path));

        var chain = await Repository.ListVeAsync(id, cancellationToken).ConfigureAwait(false);
        var last = chain.OrderBy(b => b.Created).LastOrDefault();
        var plan = IncrementalPlanner.Plan(options.Full, subject.KindName, last,
            await PlannedDisksAsync(subject, readTracking: !options.Full && last is not null, cancellationToken).ConfigureAwait(false),
            last is null ? new HashSet<string>() : MissingFiles(id, last));
        var parent = plan.Parent;

        Phase(parent is null ? "decided: full" : "decided: incremental");
        // The id is handed out (durably) while the data is copied; a failed backup leaves a gap, never a reused number.
        var newIdTask = parent is null ? Task.FromResult(BackupRepository.NewChainId()) : Repository.NextIncrementalIdAsync(id, parent, cancellationToken);
        var staging = Repository.CreateStagingDirectory(id);
        var created = DateTimeOffset.UtcNow;
        var unflushed = new List<Qcow2Image>();
        try
        {
            var targets = subject.Disks.ToDictionary(d => d.Name, d => Path.Combine(staging, DiskFileName(d.Name)), StringComparer.Ordinal);
            string consistency;
            Dictionary<string, string> digests;
            if (subject.Running)
            {
                (consistency, digests) = await BackupRunningAsync(subject, targets, parent, options, progress, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                consistency = "stopped: read directly";
                foreach (var d in subject.Disks)
                    File.Delete(FleeceFile(d)); // left by a backup killed while the VE ran, then stopped
                digests = BackupStopped(subject, targets, parent, options.Compression, progress, unflushed, cancellationToken);
            }
            var newId = await newIdTask.ConfigureAwait(false);
            Phase("copied");

            var meta = new BackupMetadata
            {
                Id = newId,
                Type = parent is null ? BackupType.Full : BackupType.Incremental,
                Parent = parent,
                VeUuid = id.ToString(),
                VeName = subject.Name,
                VeKind = subject.Kind == VeKind.Vm ? "vm" : "container",
                Created = created,
                Disks = subject.Disks.Select(d => new BackupDiskMetadata(d.Name, DiskFileName(d.Name), d.Path, d.VirtualSize, new FileInfo(targets[d.Name]).Length, digests[d.Name], d.BackingChain)).ToList(),
                SdkVersion = SdkVersion,
                Config = subject.Config,
            };
            // The new files reach the disk while the metadata is written; both before the backup is published.
            var flushing = Task.Run(() => unflushed.ForEach(t => t.Flush()), CancellationToken.None);
            try
            {
                await Repository.WriteMetadataAsync(staging, meta, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                await flushing.ConfigureAwait(false);
            }
            var dir = Repository.Publish(id, staging, newId); // the backup exists from here on, whole
            Phase("published");
            await StartTrackingAsync(subject, newId, cancellationToken).ConfigureAwait(false);
            Phase("tracking changes since it");
            var info = meta.ToPublic(dir);
            _logger.LogInformation("Backup {Id} of {Name}: {Type}, {Size} bytes", newId, subject.Name, meta.Type, info.SizeBytes);
            return new BackupResult(info, consistency, plan.FullReasons);
        }
        finally
        {
            unflushed.ForEach(t => t.Dispose());
            // Never leave the id's hand-out running past the VE's lock (the next backup would read the sequence under it).
            await newIdTask.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).ConfigureAwait(false);
            if (Directory.Exists(staging))
                Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>Each disk as the planner needs it; its tracking bitmaps are read only when an incremental is possible at all.</summary>
    private async Task<List<PlannedDisk>> PlannedDisksAsync(Subject subject, bool readTracking, CancellationToken ct)
    {
        var bitmaps = readTracking ? await TrackingBitmapsAsync(subject, ct).ConfigureAwait(false) : null;
        return subject.Disks.Select(d => new PlannedDisk(d.Name, d.VirtualSize, d.BackingChain,
            bitmaps is null ? new Dictionary<string, TrackingState>() : bitmaps[d.Name],
            subject.TrackingResets.GetValueOrDefault(d.Name))).ToList();
    }

    /// <summary>The disks of <paramref name="last"/> whose file is missing from the backup location.</summary>
    private HashSet<string> MissingFiles(VeId id, BackupMetadata last)
        => last.Disks.Where(d => !File.Exists(Path.Combine(Repository.BackupDir(id, last.Id), d.File))).Select(d => d.Name).ToHashSet(StringComparer.Ordinal);

    /// <summary>The change-tracking bitmaps of each disk, from the running emulator or daemon, or from the image files.</summary>
    private async Task<Dictionary<string, Dictionary<string, TrackingState>>> TrackingBitmapsAsync(Subject subject, CancellationToken ct)
    {
        var result = new Dictionary<string, Dictionary<string, TrackingState>>(StringComparer.Ordinal);
        if (subject.Running)
        {
            var qmp = await ConnectMonitorAsync(subject, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                foreach (var d in subject.Disks)
                {
                    result[d.Name] = (await StorageDaemon.QueryBitmapsAsync(qmp, ct, d.Node).ConfigureAwait(false))
                        .Where(b => b["name"]?.GetValue<string>() is { } n && ChangeTracking.IsTrackingBitmap(n))
                        .ToDictionary(b => b["name"]!.GetValue<string>(), b =>
                            b["inconsistent"]?.GetValue<bool>() == true ? TrackingState.Inconsistent
                            : b["recording"]?.GetValue<bool>() == false ? TrackingState.Disabled
                            : TrackingState.Good, StringComparer.Ordinal);
                }
            }
            return result;
        }
        foreach (var d in subject.Disks)
        {
            using var image = Qcow2Image.Open(d.Path, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
            result[d.Name] = image.Bitmaps.Where(b => ChangeTracking.IsTrackingBitmap(b.Name)).ToDictionary(b => b.Name,
                b => b.InUse ? TrackingState.Inconsistent : !b.Enabled ? TrackingState.Disabled : TrackingState.Good, StringComparer.Ordinal);
        }
        return result;
    }

    private async Task<QmpClient> ConnectMonitorAsync(Subject subject, CancellationToken ct)
        => subject.Kind == VeKind.Vm
            ? await _vms.ConnectMonitorAsync(subject.Id, ct).ConfigureAwait(false)
            : await StorageDaemon.ConnectAsync(_containers.DaemonPaths(subject.Id), ct).ConfigureAwait(false);

    /// <summary>A backup never needs more than the disk files' own size (compressed data is smaller still).</summary>
    private void CheckFreeSpace(IEnumerable<string> disks)
    {
        var used = disks.Sum(d => new FileInfo(d).Length);
        Directory.CreateDirectory(_location);
        var free = new DriveInfo(_location).AvailableFreeSpace;
        if (free < used)
            throw new InsufficientResourcesException($"Not enough free space for a backup in {_location}: {new ByteSize(free).ToHumanString()} free, up to {new ByteSize(used).ToHumanString()} needed.", used, free);
    }

    private static Qcow2CompressionType CompressionType(BackupCompression c) => c == BackupCompression.Zlib ? Qcow2CompressionType.Zlib : Qcow2CompressionType.Zstd;

    /// <summary>
    /// Creates a backup file in the staging directory, open without flush barriers: nothing reads it before the final
    /// flush, and a crash before that leaves only a staging directory, which is discarded.
    /// </summary>
    /// <remarks>
    /// An incremental's backing file is named relative to it (<c>../{parent}/hddN.qcow2</c>), so that the backup
    /// location can move; the staging directory sits beside the backups, so the name resolves there too.
    /// </remarks>
    private static Qcow2Image CreateTarget(string target, string? parent, string diskFile, BackupCompression compression, long size)
        => Qcow2Image.Create(target, new Qcow2CreateOptions
        {
            Size = size,
            ClusterSize = DiskCopier.ClusterSize,
            CompressionType = CompressionType(compression),
            BackingFile = parent is null ? null : Path.Combine("..", parent, diskFile),
            BackingFormat = parent is null ? null : "qcow2",
        }, new Qcow2OpenOptions { CacheMode = Qcow2CacheMode.Unsafe });

    /// <summary>Stopped VE: copy each disk with the managed engine, hashing while writing. Returns the digests.</summary>
    /// <remarks>An incremental's files are left open and unflushed in <paramref name="unflushed"/>: the caller flushes them while it writes the metadata.</remarks>
    private Dictionary<string, string> BackupStopped(Subject subject, Dictionary<string, string> targets, string? parent, BackupCompression compression, IProgress<OperationProgress>? progress, List<Qcow2Image> unflushed, CancellationToken ct)
    {
        var digests = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var d in subject.Disks)
        {
            var stage = "copying disk " + d.Name;
            if (parent is null)
            {
                // A full backup is a compressed convert of the whole disk (read, zero detection and compression on
                // every core), hashing each cluster as it is stored.
                var digest = new ClusterDigest();
                var report = progress is null ? null : new Progress<Qcow2ConvertProgress>(p => progress.Report(new OperationProgress(stage, p.BytesDone, p.TotalBytes)));
                Qcow2Converter.Convert(d.Path, targets[d.Name], new Qcow2ConvertOptions
                {
                    SourceFormat = "qcow2",
                    Compress = compression != BackupCompression.None,
                    Create = new Qcow2CreateOptions { CompressionType = CompressionType(compression), ClusterSize = DiskCopier.ClusterSize },
                    StoredDataObserver = (offset, data) => digest.AddRun(offset, data, DiskCopier.ClusterSize),
                }, report, ct);
                digests[d.Name] = digest.Result();
                continue;
            }
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var source = Qcow2Image.Open(d.Path, new Qcow2OpenOptions { ReadOnly = true });
            var ranges = source.GetDirtyExtents(BitmapPrefix + parent).Select(e => (e.Start, e.Length)).ToList();
            var t = CreateTarget(targets[d.Name], parent, DiskFileName(d.Name), compression, d.VirtualSize);
            unflushed.Add(t);
            var total = ranges.Sum(r => r.Item2);
            var opened = clock.ElapsedMilliseconds;
            digests[d.Name] = DiskCopier.Copy(source, t, ranges, compression != BackupCompression.None,
                progress is null ? null : new Progress<long>(done => progress.Report(new OperationProgress(stage, done, total))), ct, flush: false);
            _logger.LogDebug("Backup of {Name}, disk {Disk}: {Bytes} changed bytes in {Ranges} ranges; opened in {Opened} ms, copied and flushed in {Copied} ms",
                subject.Name, d.Name, total, ranges.Count, opened, clock.ElapsedMilliseconds - opened);
        }
        return digests;
    }

    /// <summary>
    /// Running VE: fix the point in time with one QMP transaction over all its disks (a new bitmap plus a backup job per
    /// disk) while the VE is frozen — a container by its freezer and fsfreeze, a VM's file systems through its guest
    /// tools when they answer — then let the emulator or storage daemon copy while the VE runs. Each job writes to an
    /// NBD server in this process, which compresses in parallel and computes the digest as the data arrives.
    /// </summary>
    private async Task<(string Consistency, Dictionary<string, string> Digests)> BackupRunningAsync(Subject subject, Dictionary<string, string> targets, string? parent, BackupCreateOptions options, IProgress<OperationProgress>? progress, CancellationToken ct)
    {
        var compression = options.Compression;
        var qmp = await ConnectMonitorAsync(subject, ct).ConfigureAwait(false);
        var jobs = new List<(SubjectDisk Disk, string Job, string Node, Qcow2Image Target, NbdTargetServer Server)>();
        await using (qmp.ConfigureAwait(false))
        {
            // Fleecing needs a node to switch: a VM's device, or the raw layer a container's storage daemon exports
            // (daemons started by an older SDK export the disk directly and get QEMU's plain backup job).
            var fleecing = subject.Kind == VeKind.Vm || await HasNodeAsync(qmp, StorageDaemon.ExportNode, ct).ConfigureAwait(false);
            await RemoveLeftoversAsync(qmp, subject, fleecing, options.GuestToolsTimeout).ConfigureAwait(false);
            try
            {
                foreach (var d in subject.Disks)
                {
                    var target = CreateTarget(targets[d.Name], parent, DiskFileName(d.Name), compression, d.VirtualSize);
                    NbdTargetServer server;
                    try
                    {
                        var socket = Path.Combine(_store.RunPath(subject.Id), "bk-" + d.Name);
                        File.Delete(socket);
                        server = new NbdTargetServer(socket, target, compression != BackupCompression.None, _logger);
                    }
                    catch
                    {
                        target.Dispose();
                        throw;
                    }
                    var node = "backup-" + d.Name;
                    jobs.Add((d, "backup-" + d.Name + "-" + Guid.NewGuid().ToString("N")[..8], node, target, server));
                    await qmp.ExecuteAsync("blockdev-add", new JsonObject
                    {
                        ["driver"] = "nbd",
                        ["node-name"] = node,
                        ["server"] = new JsonObject { ["type"] = "unix", ["path"] = server.SocketPath },
                        ["export"] = "",
                    }, QmpTimeout, ct).ConfigureAwait(false);
                    if (fleecing)
                        await AddFleecingFilterAsync(qmp, d, ct).ConfigureAwait(false);
                }
                var actions = new JsonArray();
                foreach (var (d, job, node, _, _) in jobs)
                {
                    actions.Add((JsonNode)new JsonObject { ["type"] = "block-dirty-bitmap-add", ["data"] = new JsonObject { ["node"] = d.Node, ["name"] = PendingBitmap, ["persistent"] = true } });
                    if (!fleecing)
                        actions.Add((JsonNode)new JsonObject { ["type"] = "blockdev-backup", ["data"] = BackupJobArguments(job, d.Node, node, parent is null ? null : BitmapPrefix + parent) });
                }
                string consistency;
                var clock = System.Diagnostics.Stopwatch.StartNew();
                try
                {
                    progress?.Report(new OperationProgress(StageFixingPointInTime, 0, null));
                    consistency = subject.Kind == VeKind.Vm
                        ? await FixVmPointInTimeAsync(subject, qmp, actions, options.GuestToolsTimeout, ct).ConfigureAwait(false)
                        : await TransactionWithContainerFrozenAsync(subject, qmp, actions, fleecing, ct).ConfigureAwait(false);
                    _logger.LogDebug("Backup of {Name}: point in time fixed in {Ms} ms", subject.Name, clock.ElapsedMilliseconds);
                    if (fleecing)
                        foreach (var (d, job, node, _, _) in jobs)
                            await StartFleecedBackupJobAsync(qmp, d, job, node, parent, ct).ConfigureAwait(false);
                    foreach (var (d, job, _, _, _) in jobs)
                    {
                        var stage = "copying disk " + d.Name;
                        await WaitForJobAsync(qmp, job, ct, progress is null ? null : (done, total) => progress.Report(new OperationProgress(stage, done, total))).ConfigureAwait(false);
                    }
                    _logger.LogDebug("Backup of {Name}: jobs done at {Ms} ms", subject.Name, clock.ElapsedMilliseconds);
                }
                catch
                {
                    foreach (var (d, job, _, _, _) in jobs)
                    {
                        await TryQmpAsync(qmp, "block-job-cancel", new JsonObject { ["device"] = job, ["force"] = true }).ConfigureAwait(false);
                        await TryQmpAsync(qmp, "block-dirty-bitmap-remove", new JsonObject { ["node"] = d.Node, ["name"] = PendingBitmap }).ConfigureAwait(false);
                    }
                    throw;
                }
                finally
                {
                    foreach (var (d, job, node, _, _) in jobs)
                    {
                        await WaitForJobGoneOrConcludedAsync(qmp, job).ConfigureAwait(false);
                        await TryQmpAsync(qmp, "job-dismiss", new JsonObject { ["id"] = job }).ConfigureAwait(false);
                        if (fleecing)
                            await RemoveFleecingAsync(qmp, subject, d).ConfigureAwait(false);
                        await TryQmpAsync(qmp, "blockdev-del", new JsonObject { ["node-name"] = node }).ConfigureAwait(false); // the client hangs up
                    }
                }
                var digests = new Dictionary<string, string>(StringComparer.Ordinal);
                using (var done = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    done.CancelAfter(TimeSpan.FromMinutes(5));
                    foreach (var (d, _, _, _, server) in jobs)
                        digests[d.Name] = await server.CompleteAsync(done.Token).ConfigureAwait(false);
                }
                _logger.LogDebug("Backup of {Name}: targets complete at {Ms} ms", subject.Name, clock.ElapsedMilliseconds);
                return (consistency, digests);
            }
            finally
            {
                foreach (var (_, _, _, target, server) in jobs)
                {
                    await server.DisposeAsync().ConfigureAwait(false);
                    target.Dispose();
                }
            }
        }
    }

    /// <summary>
    /// A backup killed half-way leaves its job (failing: nobody serves its target any more), its target node and its
    /// pending bitmap in the emulator or daemon, and one killed at the instant of its freeze a frozen VE. All are
    /// undone before the next backup starts.
    /// </summary>
    private async Task RemoveLeftoversAsync(QmpClient qmp, Subject subject, bool fleecing, TimeSpan guestToolsTimeout)
    {
        if (subject.Kind == VeKind.Vm)
        {
            await _vms.ThawGuestIfFrozenAsync(subject.Id, subject.Name, guestToolsTimeout, CancellationToken.None).ConfigureAwait(false);
        }
        else if (File.Exists(ContainerFreezeMarker(subject.Id)))
        {
            _logger.LogWarning("Container {Name} was left frozen by an interrupted backup; thawing it", subject.Name);
            await _runtime!.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-u", _store.RootPath(subject.Id)).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
            _runtime!.Cgroups.Open(subject.Id).Thaw();
            File.Delete(ContainerFreezeMarker(subject.Id));
        }
        var jobs = (await qmp.ExecuteAsync("query-jobs", null, QmpTimeout, CancellationToken.None).ConfigureAwait(false))!.AsArray();
        foreach (var job in jobs)
        {
            var id = job!["id"]!.GetValue<string>();
            if (!id.StartsWith("backup-", StringComparison.Ordinal))
                continue;
            await TryQmpAsync(qmp, "block-job-cancel", new JsonObject { ["device"] = id, ["force"] = true }).ConfigureAwait(false);
            await WaitForJobGoneOrConcludedAsync(qmp, id).ConfigureAwait(false);
            await TryQmpAsync(qmp, "job-dismiss", new JsonObject { ["id"] = id }).ConfigureAwait(false);
        }
        foreach (var d in subject.Disks)
        {
            if (fleecing)
                await RemoveFleecingAsync(qmp, subject, d).ConfigureAwait(false);
            await TryQmpAsync(qmp, "blockdev-del", new JsonObject { ["node-name"] = "backup-" + d.Name }).ConfigureAwait(false);
            await TryQmpAsync(qmp, "block-dirty-bitmap-remove", new JsonObject { ["node"] = d.Node, ["name"] = PendingBitmap }).ConfigureAwait(false);
        }
        if (subject.Kind == VeKind.Vm && File.Exists(VmPauseMarker(subject.Id)))
        {
            // killed while the VM was paused for a multi-disk cut: resume it, unless something else paused it too
            var status = await qmp.ExecuteAsync("query-status", null, QmpTimeout, CancellationToken.None).ConfigureAwait(false);
            if (status?["status"]?.GetValue<string>() == "paused")
            {
                _logger.LogWarning("VM {Name} was left paused by an interrupted backup; resuming it", subject.Name);
                await qmp.ExecuteAsync("cont", null, QmpTimeout, CancellationToken.None).ConfigureAwait(false);
            }
            File.Delete(VmPauseMarker(subject.Id));
        }
    }

    private string ContainerFreezeMarker(VeId id) => _store.FrozenByBackupMarker(id);

    private async Task<string> TransactionWithContainerFrozenAsync(Subject subject, QmpClient qmp, JsonArray actions, bool fleecing, CancellationToken ct)
    {
        var frozen = false;
        var cg = _runtime!.Cgroups.Open(subject.Id);
        var root = _store.RootPath(subject.Id);
        // Marked before freezing: if this process dies before the thaw, the next backup finds the mark and thaws.
        await File.WriteAllTextAsync(ContainerFreezeMarker(subject.Id), DateTimeOffset.UtcNow.ToString("O"), ct).ConfigureAwait(false);
        // And a guardian child holds the thaw in the meantime: its standard input is a pipe from this process, which
        // the kernel closes when this process dies, however it dies; on end of input the guardian thaws.
        var (thawFile, thawValue) = cg.ThawWrite();
        var release = new System.IO.Pipelines.Pipe();
        var guardian = _runtime!.Host.ExecuteAsync(new Command("sh")
            .WithArguments("-c", "read -r _; fsfreeze -u \"$1\" 2>/dev/null; echo \"$3\" > \"$2\" 2>/dev/null; exit 0", "sh", root, thawFile, thawValue)
            .WithStandardInput(release.Reader.AsStream())
            .WithValidation(CommandResultValidation.None), CancellationToken.None);
        try
        {
            await cg.FreezeAsync(ct).ConfigureAwait(false);
            var fs = await _runtime!.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-f", root).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(30)), ct).ConfigureAwait(false);
            frozen = fs.ExitCode == 0;
            if (fleecing)
                await SwitchOntoFleecingAsync(qmp, subject, actions, ct).ConfigureAwait(false);
            else
                await qmp.ExecuteAsync("transaction", new JsonObject { ["actions"] = actions }, QmpTimeout, ct).ConfigureAwait(false);
        }
        finally
        {
            if (frozen)
                await _runtime!.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-u", root).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
            cg.Thaw();
            File.Delete(ContainerFreezeMarker(subject.Id));
            await release.Writer.CompleteAsync().ConfigureAwait(false); // the guardian's thaw is then a no-op
            await guardian.ConfigureAwait(false);
        }
        return frozen
            ? "running: frozen (freezer and fsfreeze) while the point in time was fixed"
            : "running: frozen (freezer) while the point in time was fixed; fsfreeze was not available";
    }

    /// <summary>
    /// Fixes a running VM's point in time: with its file systems frozen through its guest tools when they answer, one
    /// transaction starts the change tracking of every disk, then each disk's device is switched onto its
    /// copy-before-write filter. Without a freeze and with several disks the VM is paused for those few
    /// milliseconds, so that the disks share one instant (a marker lets the next backup resume a VM whose backup was
    /// killed in between).
    /// </summary>
    private async Task<string> FixVmPointInTimeAsync(Subject subject, QmpClient qmp, JsonArray actions, TimeSpan guestToolsTimeout, CancellationToken ct)
    {
        var freeze = await _vms.TryFreezeGuestAsync(subject.Id, subject.Name, guestToolsTimeout, ct).ConfigureAwait(false);
        if (freeze is null)
        {
            var pause = subject.Disks.Count > 1;
            if (pause)
            {
                await File.WriteAllTextAsync(VmPauseMarker(subject.Id), DateTimeOffset.UtcNow.ToString("O"), ct).ConfigureAwait(false);
                await qmp.ExecuteAsync("stop", null, QmpTimeout, ct).ConfigureAwait(false);
            }
            try
            {
                await SwitchOntoFleecingAsync(qmp, subject, actions, ct).ConfigureAwait(false);
            }
            finally
            {
                if (pause)
                {
                    await qmp.ExecuteAsync("cont", null, QmpTimeout, CancellationToken.None).ConfigureAwait(false);
                    File.Delete(VmPauseMarker(subject.Id));
                }
            }
            return "running: crash-consistent; the guest tools did not answer, so the guest's file systems were not frozen";
        }
        await using (freeze.ConfigureAwait(false))
            await SwitchOntoFleecingAsync(qmp, subject, actions, ct).ConfigureAwait(false);
        return freeze.Count > 0
            ? $"running: the guest's file systems were frozen through its guest tools ({freeze.Count.ToString(CultureInfo.InvariantCulture)}) while the point in time was fixed"
            : "running: crash-consistent; the guest tools answered but had no file system to freeze";
    }

    private static async Task SwitchOntoFleecingAsync(QmpClient qmp, Subject subject, JsonArray actions, CancellationToken ct)
    {
        await qmp.ExecuteAsync("transaction", new JsonObject { ["actions"] = actions }, QmpTimeout, ct).ConfigureAwait(false);
        foreach (var d in subject.Disks)
            await SwitchAsync(qmp, subject, d, CbwNode(d), ct).ConfigureAwait(false);
    }

    /// <summary>Puts a disk's consumer (a VM's device, a container daemon's export layer) onto <paramref name="node"/>.</summary>
    private static Task SwitchAsync(QmpClient qmp, Subject subject, SubjectDisk d, string node, CancellationToken ct)
        => subject.Kind == VeKind.Vm
            ? qmp.ExecuteAsync("qom-set", new JsonObject { ["path"] = DevicePath(d), ["property"] = "drive", ["value"] = node }, QmpTimeout, ct)
            : qmp.ExecuteAsync("blockdev-reopen", new JsonObject { ["options"] = new JsonArray(new JsonObject { ["driver"] = "raw", ["node-name"] = StorageDaemon.ExportNode, ["file"] = node }) }, QmpTimeout, ct);

    private static async Task<bool> HasNodeAsync(QmpClient qmp, string node, CancellationToken ct)
    {
        var nodes = (await qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true }, QmpTimeout, ct).ConfigureAwait(false))!.AsArray();
        return nodes.Any(n => n?["node-name"]?.GetValue<string>() == node);
    }

    // A running VE's disk is backed up through a fleecing graph rather than a plain backup job, so that a backup
    // that fails or is killed never fails a write of the VE (QEMU 7.2's backup job has no on-cbw-error; its built-in
    // filter fails the VE's write when the target does, and the target is an NBD server in this process):
    //   consumer (a VM's device, or the raw layer a container's daemon exports) -> cbw-NAME (copy-before-write,
    //   on-cbw-error=break-snapshot, old data to fleece-NAME, a sparse file next to the disk) -> the disk's format
    //   node; snap-NAME (snapshot-access over cbw-NAME) is the point-in-time view, which a backup job copies into
    //   the NBD target. A failing target fails only that job.

    private static string CbwNode(SubjectDisk d) => "cbw-" + d.Name;

    private static string SnapshotNode(SubjectDisk d) => "snap-" + d.Name;

    private static string FleeceNode(SubjectDisk d) => "fleece-" + d.Name;

    private static string DevicePath(SubjectDisk d) => "/machine/peripheral/" + d.Name;

    private static string FleeceFile(SubjectDisk d) => Path.Combine(Path.GetDirectoryName(d.Path)!, ".backup-fleece-" + d.Name);

    private string VmPauseMarker(VeId id) => Path.Combine(_store.RunPath(id), "paused-by-backup");

    private static async Task AddFleecingFilterAsync(QmpClient qmp, SubjectDisk d, CancellationToken ct)
    {
        var file = FleeceFile(d);
        using (var h = File.OpenHandle(file, FileMode.Create, FileAccess.ReadWrite))
            RandomAccess.SetLength(h, d.VirtualSize); // sparse: it grows only by what the guest overwrites during the backup
        await qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "file", ["node-name"] = FleeceNode(d), ["filename"] = file }, QmpTimeout, ct).ConfigureAwait(false);
        await qmp.ExecuteAsync("blockdev-add", new JsonObject
        {
            ["driver"] = "copy-before-write",
            ["node-name"] = CbwNode(d),
            ["file"] = d.Node,
            ["target"] = FleeceNode(d),
            ["on-cbw-error"] = "break-snapshot",
        }, QmpTimeout, ct).ConfigureAwait(false);
    }

    private static JsonObject BackupJobArguments(string job, string device, string target, string? bitmap)
    {
        var backup = new JsonObject
        {
            ["job-id"] = job,
            ["device"] = device,
            ["target"] = target,
            ["sync"] = bitmap is null ? "full" : "incremental",
            ["auto-dismiss"] = false,
        };
        if (bitmap is not null)
            backup["bitmap"] = bitmap;
        return backup;
    }

    /// <summary>
    /// Starts the job that copies the point-in-time view into the target: all of it, or (incremental) the clusters
    /// of the parent's tracking bitmap, copied onto the view's node after the cut — a superset of what changed before
    /// it (the bitmap kept recording), which is all an incremental needs.
    /// </summary>
    private static async Task StartFleecedBackupJobAsync(QmpClient qmp, SubjectDisk d, string job, string target, string? parent, CancellationToken ct)
    {
        await qmp.ExecuteAsync("blockdev-add", new JsonObject { ["driver"] = "snapshot-access", ["node-name"] = SnapshotNode(d), ["file"] = CbwNode(d) }, QmpTimeout, ct).ConfigureAwait(false);
        string? bitmap = null;
        if (parent is not null)
        {
            var source = (await StorageDaemon.QueryBitmapsAsync(qmp, ct, d.Node).ConfigureAwait(false)).FirstOrDefault(b => b["name"]?.GetValue<string>() == BitmapPrefix + parent)
                ?? throw new InvalidStateException($"The change tracking of disk {d.Name} since backup {parent} disappeared from the running emulator or storage daemon; make a full backup.");
            bitmap = BitmapPrefix + parent;
            await qmp.ExecuteAsync("block-dirty-bitmap-add", new JsonObject { ["node"] = SnapshotNode(d), ["name"] = bitmap, ["granularity"] = source["granularity"]!.DeepClone() }, QmpTimeout, ct).ConfigureAwait(false);
            await qmp.ExecuteAsync("block-dirty-bitmap-merge", new JsonObject
            {
                ["node"] = SnapshotNode(d),
                ["target"] = bitmap,
                ["bitmaps"] = new JsonArray(new JsonObject { ["node"] = d.Node, ["name"] = bitmap }),
            }, QmpTimeout, ct).ConfigureAwait(false);
        }
        await qmp.ExecuteAsync("blockdev-backup", BackupJobArguments(job, SnapshotNode(d), target, bitmap), QmpTimeout, ct).ConfigureAwait(false);
    }

    /// <summary>Takes a disk's fleecing graph down (idempotent): the device back onto the disk first, then the nodes and the file.</summary>
    private async Task RemoveFleecingAsync(QmpClient qmp, Subject subject, SubjectDisk d)
    {
        await TryQmpAsync(qmp, "blockdev-del", new JsonObject { ["node-name"] = SnapshotNode(d) }).ConfigureAwait(false);
        if (await HasNodeAsync(qmp, CbwNode(d), CancellationToken.None).ConfigureAwait(false))
        {
            try
            {
                // A VM's device is moved back only when it is on the filter: QEMU 7.2 aborts (assertion old_bs != new_bs)
                // on a qom-set of the drive it already has. A raw layer's reopen onto its current child is a no-op.
                var onFilter = subject.Kind != VeKind.Vm
                    || (await qmp.ExecuteAsync("qom-get", new JsonObject { ["path"] = DevicePath(d), ["property"] = "drive" }, QmpTimeout, CancellationToken.None).ConfigureAwait(false))?.GetValue<string>() == CbwNode(d);
                if (onFilter)
                    await SwitchAsync(qmp, subject, d, d.Node, CancellationToken.None).ConfigureAwait(false);
            }
            catch (QmpException ex)
            {
                _logger.LogWarning("{Kind} {Name}: could not move disk {Disk} off its backup filter: {Error}", subject.KindName, subject.Name, d.Name, ex.Message);
                return; // keep the filter (and its file): the VE's writes go through it
            }
            await TryQmpAsync(qmp, "blockdev-del", new JsonObject { ["node-name"] = CbwNode(d) }).ConfigureAwait(false);
        }
        await TryQmpAsync(qmp, "blockdev-del", new JsonObject { ["node-name"] = FleeceNode(d) }).ConfigureAwait(false);
        File.Delete(FleeceFile(d));
    }

    /// <summary>The first progress stage of a running VE's backup: freezing (or pausing) it and starting the copy at one instant.</summary>
    internal const string StageFixingPointInTime = "fixing the point in time";

    private static async Task WaitForJobAsync(QmpClient qmp, string jobId, CancellationToken ct, Action<long, long?>? onProgress = null)
    {
        var deadline = DateTime.UtcNow.AddHours(12);
        while (DateTime.UtcNow < deadline)
        {
            var jobs = (await qmp.ExecuteAsync("query-jobs", null, QmpTimeout, ct).ConfigureAwait(false))!.AsArray();
            var job = jobs.FirstOrDefault(j => j!["id"]!.GetValue<string>() == jobId);
            if (job is null)
                throw new CommandFailedException($"The backup job {jobId} disappeared.", "qmp query-jobs", -1, string.Empty);
            var status = job["status"]!.GetValue<string>();
            if (onProgress is not null && job["current-progress"] is { } current)
                onProgress(current.GetValue<long>(), job["total-progress"]?.GetValue<long>());
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

    /// <summary>After a cancel, waits (briefly) until the job has let go of its target, so that the target node can be deleted.</summary>
    private static async Task WaitForJobGoneOrConcludedAsync(QmpClient qmp, string jobId)
    {
        for (var i = 0; i < 200; i++)
        {
            try
            {
                var jobs = (await qmp.ExecuteAsync("query-jobs", null, TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false))!.AsArray();
                var job = jobs.FirstOrDefault(j => j!["id"]!.GetValue<string>() == jobId);
                if (job is null || job["status"]!.GetValue<string>() is "concluded" or "null")
                    return;
            }
            catch (Exception ex) when (ex is QmpException or TimeoutException or IOException)
            {
                return;
            }
            await Task.Delay(50).ConfigureAwait(false);
        }
    }

    private static async Task TryQmpAsync(QmpClient qmp, string command, JsonObject args)
    {
        try { await qmp.ExecuteAsync(command, args, TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false); }
        catch (Exception ex) when (ex is QmpException or TimeoutException or IOException) { }
    }

    /// <summary>After a backup exists: each disk tracks changes since it, under a bitmap named after it; older backup bitmaps go.</summary>
    private async Task StartTrackingAsync(Subject subject, string newId, CancellationToken ct)
    {
        if (subject.Running)
        {
            var qmp = await ConnectMonitorAsync(subject, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                foreach (var d in subject.Disks)
                {
                    foreach (var b in await StorageDaemon.QueryBitmapsAsync(qmp, ct, d.Node).ConfigureAwait(false))
                    {
                        var name = b["name"]!.GetValue<string>();
                        if (ChangeTracking.IsTrackingBitmap(name) && name != PendingBitmap)
                            await TryQmpAsync(qmp, "block-dirty-bitmap-remove", new JsonObject { ["node"] = d.Node, ["name"] = name }).ConfigureAwait(false);
                    }
                    // Bitmap names cannot be changed in place: copy "pending" into one named after the backup.
                    await qmp.ExecuteAsync("block-dirty-bitmap-add", new JsonObject { ["node"] = d.Node, ["name"] = BitmapPrefix + newId, ["persistent"] = true }, QmpTimeout, ct).ConfigureAwait(false);
                    await qmp.ExecuteAsync("transaction", new JsonObject
                    {
                        ["actions"] = new JsonArray(
                            new JsonObject { ["type"] = "block-dirty-bitmap-merge", ["data"] = new JsonObject { ["node"] = d.Node, ["target"] = BitmapPrefix + newId, ["bitmaps"] = new JsonArray(PendingBitmap) } },
                            new JsonObject { ["type"] = "block-dirty-bitmap-remove", ["data"] = new JsonObject { ["node"] = d.Node, ["name"] = PendingBitmap } }),
                    }, QmpTimeout, ct).ConfigureAwait(false);
                }
            }
        }
        else
        {
            foreach (var d in subject.Disks)
            {
                using var image = Qcow2Image.Open(d.Path, new Qcow2OpenOptions { NoBacking = true });
                foreach (var b in image.Bitmaps.Where(b => ChangeTracking.IsTrackingBitmap(b.Name)).ToList())
                    image.RemoveBitmap(b.Name);
                image.AddBitmap(BitmapPrefix + newId);
                image.Flush();
            }
        }
        if (subject.Kind == VeKind.Vm)
            await _vms.ClearTrackingResetsAsync(subject.Id, ct).ConfigureAwait(false);
    }

    // ---------------------------------------------------------------------------------------------------------
    // List
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>Lists backups, oldest first: of one container or VM (by name or UUID, even a deleted one by UUID), or all.</summary>
    /// <remarks>The equivalent of <c>prlctl backup-list [NAME]</c>.</remarks>
    public virtual async Task<IReadOnlyList<BackupInfo>> ListAsync(VeRef ve = default, CancellationToken cancellationToken = default)
    {
        var nameOrId = ve.IsEmpty ? null : ve.Value;
        IEnumerable<VeId> ves;
        if (nameOrId is null)
            ves = Repository.ListVes();
        else if (VeId.TryParse(nameOrId, out var byId))
            ves = [byId];
        else
            ves = [(await ResolveAsync(nameOrId, cancellationToken).ConfigureAwait(false)).VeId];
        var result = new List<BackupInfo>();
        foreach (var one in ves)
            result.AddRange(await Repository.ListInfoAsync(one, cancellationToken).ConfigureAwait(false));
        return result.OrderBy(b => b.CreatedAt).ToList();
    }

    /// <summary>Lists backups as chains (a full backup, then the incrementals built on it), oldest chain first: of one container or VM, or all.</summary>
    public virtual async Task<IReadOnlyList<BackupChain>> ListChainsAsync(VeRef ve = default, CancellationToken cancellationToken = default)
        => BackupRepository.Chains(await ListAsync(ve, cancellationToken).ConfigureAwait(false));

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
    public virtual async Task<IReadOnlyList<string>> DeleteAsync(string backupId, bool withDependents = false, CancellationToken cancellationToken = default)
    {
        var (ve, meta) = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        using var veLock = await _store.LockVeAsync(ve, cancellationToken).ConfigureAwait(false);
        await Repository.RecoverAsync(ve, cancellationToken).ConfigureAwait(false);
        return await Repository.DeleteAsync(ve, meta, withDependents, null, cancellationToken).ConfigureAwait(false);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Restore, open, verify, prune
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Restores a backup (any in a chain): into its original container or VM, which must be stopped, or into a new one
    /// with a new name and UUID (and, for a VM, a new MAC address). The restored disks have no change tracking, so the
    /// next backup is full. A VM restored in place keeps the disks it has now that the backup lacks; its snapshots go.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl restore -t ID [--name NEW]</c>.</remarks>
    /// <returns>The restored VE's UUID.</returns>
    public virtual async Task<VeId> RestoreAsync(string backupId, BackupRestoreOptions? options = null, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new BackupRestoreOptions();
        var (ve, meta) = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        var dir = Path.Combine(VeDir(ve), meta.Id);
        // Containers and VMs restore the same way: the kind's driver is the restore target, this client writes the disks.
        IRestoreTarget target = meta.VeKind == "vm" ? _vms : _containers;
        if (!meta.Config.TryGetValue(target.ConfigDocument, out var configJson))
            throw new InvalidStateException($"Backup {meta.Id} carries no {target.ConfigDocument}; it cannot be restored as a {(meta.VeKind == "vm" ? "VM" : "container")}.");
        var convert = new Qcow2ConvertOptions { SourceFormat = "qcow2", OutputFormat = "qcow2" };
        async Task WriteDisksAsync(IReadOnlyDictionary<string, string> destinations)
        {
            foreach (var d in meta.Disks)
            {
                if (!destinations.TryGetValue(d.Name, out var destination))
                    throw new InvalidStateException($"Backup {meta.Id} holds disk {d.Name}, which its configuration does not list.");
                await Qcow2Converter.ConvertAsync(Path.Combine(dir, d.File), destination, convert, ConvertProgress(progress, d.Name), cancellationToken).ConfigureAwait(false);
            }
        }
        if (options.NewName is { } newName)
            return await target.CreateFromBackupAsync(configJson, newName, WriteDisksAsync, cancellationToken).ConfigureAwait(false);
        await target.RestoreInPlaceAsync(ve, configJson, meta.Id, WriteDisksAsync, cancellationToken).ConfigureAwait(false);
        return ve;
    }

    /// <summary>Restore's progress stage for one disk: "restoring disk NAME", bytes converted of the disk's virtual size.</summary>
    private static Progress<Qcow2ConvertProgress>? ConvertProgress(IProgress<OperationProgress>? progress, string disk)
        => progress is null ? null : new Progress<Qcow2ConvertProgress>(p => progress.Report(new OperationProgress("restoring disk " + disk, p.BytesDone, p.TotalBytes)));

    /// <summary>
    /// Opens a disk of a backup read-only as a seekable stream of the disk's content at the backup's point in time (the
    /// chain below an incremental included), for file-level access or export. Dispose it when done.
    /// </summary>
    /// <param name="backupId">The backup.</param>
    /// <param name="diskName">The disk (<c>root</c> for a container, <c>hdd0</c>… for a VM); null for the first.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    public virtual async Task<Stream> OpenDiskAsync(string backupId, string? diskName = null, CancellationToken cancellationToken = default)
    {
        var (ve, meta) = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        var disk = diskName is null ? meta.Disks[0] : meta.Disks.FirstOrDefault(d => d.Name == diskName)
            ?? throw new NotFoundException($"Backup {meta.Id} has no disk '{diskName}' (it has: {string.Join(", ", meta.Disks.Select(d => d.Name))}).");
        var image = Qcow2Image.Open(Path.Combine(VeDir(ve), meta.Id, disk.File), new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
        return image.AsStream(leaveOpen: false);
    }

    /// <summary>
    /// Checks backups — of one container or VM, one backup, or all: each file's QCOW2 structure and the digest recorded while
    /// writing (a single flipped data byte is caught). Names the damaged backups and those that depend on them. Leaked
    /// clusters (space a file holds but does not use) count as damage too, said so, without affecting the backups
    /// that depend on it.
    /// </summary>
    /// <remarks>The equivalent of <c>qemu-img check</c> on each file plus a check of the recorded digests.</remarks>
    public virtual async Task<BackupVerifyResult> VerifyAsync(string? target = null, CancellationToken cancellationToken = default)
    {
        var nameOrIdOrBackupId = target;
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
        var leaking = new HashSet<string>(); // damaged only by leaked clusters: its data, and what depends on it, restore
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
                        leaking.Remove(b.Id);
                        continue;
                    }
                    var digest = DiskCopier.DigestOfOwnData(image, cancellationToken);
                    if (digest != d.Digest)
                    {
                        damaged[b.Id] = $"disk {d.Name}: the data does not match the digest recorded when it was written";
                        leaking.Remove(b.Id);
                    }
                    else if (check.Leaks > 0 && damaged.TryAdd(b.Id, $"disk {d.Name}: {check.Leaks.ToString(CultureInfo.InvariantCulture)} leaked cluster(s), allocated in the file but unused; the data is intact, the space is wasted until the file's leaks are repaired (as 'qemu-img check -r leaks' does)"))
                    {
                        leaking.Add(b.Id);
                    }
                }
                catch (Exception ex) when (ex is Qcow2Exception or IOException)
                {
                    damaged[b.Id] = $"disk {d.Name}: {ex.Message}";
                    leaking.Remove(b.Id);
                }
            }
        }
        var all = await ListAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        var affected = BackupRepository.Dependents(all.Select(b => (b.Id, b.ParentId)), damaged.Keys.Where(id => !leaking.Contains(id)),
            id => !damaged.ContainsKey(id) || leaking.Contains(id));
        return new BackupVerifyResult(scope.Select(b => b.Id).ToList(), damaged, affected);
    }

    /// <summary>Deletes the container's or VM's backups that no retention rule keeps (each delete merges as <see cref="DeleteAsync"/> does). Returns the deleted ids.</summary>
    public virtual async Task<IReadOnlyList<string>> PruneAsync(VeRef ve, BackupRetention retention, CancellationToken cancellationToken = default)
    {
        var nameOrId = ve.Value;
        ArgumentNullException.ThrowIfNull(retention);
        if (retention.KeepLast < 0 || retention.KeepDaily < 0 || retention.KeepWeekly < 0 || retention.KeepMonthly < 0)
            throw new ArgumentOutOfRangeException(nameof(retention), "Retention counts cannot be negative.");
        if (retention.KeepLast + retention.KeepDaily + retention.KeepWeekly + retention.KeepMonthly == 0)
            throw new ArgumentException("A retention policy must keep something (set --keep-last and/or --keep-daily, --keep-weekly, --keep-monthly).", nameof(retention));
        var backups = await ListAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var keep = BackupRepository.Retained(backups, retention);
        var deleted = new List<string>();
        foreach (var b in backups.Where(b => !keep.Contains(b.Id)))
            deleted.AddRange(await DeleteAsync(b.Id, false, cancellationToken).ConfigureAwait(false));
        return deleted;
    }
}
