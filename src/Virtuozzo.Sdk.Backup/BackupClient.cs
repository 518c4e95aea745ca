using System.Globalization;
using System.Reflection;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime.Local;
using Virtuozzo.Sdk.Backup.Runtime.Local;
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
    private readonly VirtuozzoRuntime? _runtime;
    private readonly StateStore _store;
    private readonly string _location;
    private readonly ILogger _logger;
    private readonly IBackupSource _live;
    private readonly Runtime.Virtuozzo.VirtuozzoBackups? _node;

    /// <summary>
    /// Creates a client over an SDK runtime, for its containers and VMs; backups go under <c>backups/</c> in the data root
    /// unless <see cref="BackupClientOptions.Location"/> says otherwise.
    /// </summary>
    /// <exception cref="UnsupportedOnHostException">The runtime cannot back up VEs yet.</exception>
    public BackupClient(VirtuozzoRuntime runtime, BackupClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        if (runtime.Kind == RuntimeKind.Virtuozzo)
        {
            // A Virtuozzo node keeps its own backups (prlctl backup); this client delegates to it.
            _runtime = runtime;
            _node = new Runtime.Virtuozzo.VirtuozzoBackups(runtime);
            _store = runtime.Store;
            _location = _node.Location;
            _logger = runtime.CreateLogger<BackupClient>();
            _live = null!;
            return;
        }
        if (runtime.Kind is not (RuntimeKind.Local or RuntimeKind.Libvirt))
            throw new UnsupportedOnHostException($"Backups are not available on the {runtime.Kind} runtime yet.");
        _runtime = runtime;
        _store = runtime.Store;
        _location = Path.GetFullPath(options?.Location ?? _store.BackupsDirectory);
        _logger = runtime.CreateLogger<BackupClient>();
        // The runtime's VM driver (and the local runtime's container driver) are the backup's sources and restore
        // targets, shared with the runtime's other clients: one ledger, one registry, one lock per VE.
        var vms = runtime.GetDriver<Vm.Runtime.IVmDriver>(VeKind.Vm, rt => VirtualMachineClient.CreateDriver(rt, new VirtualMachineClientOptions()));
        if (runtime.Kind == RuntimeKind.Libvirt)
        {
            if (!runtime.RequireLibvirt().IsLocal)
                throw new UnsupportedOnHostException($"Backups on the libvirt runtime need a local URI ({runtime.RequireLibvirt().Uri} is remote): the backup location and the disks must be on this machine.");
            _live = new Runtime.Libvirt.LibvirtBackupSource(runtime, (Vm.Runtime.Libvirt.LibvirtVmDriver)vms, _logger);
            return;
        }
        var containers = (LocalContainerDriver)runtime.GetDriver<Containers.Runtime.IContainerDriver>(VeKind.Container, ContainerClient.CreateDriver);
        _live = new LocalLiveBackupSource(runtime, containers, (LocalVmDriver)vms, _logger);
    }

    /// <summary>For mocking frameworks: a client with no runtime behind it.</summary>
    protected BackupClient()
    {
        _store = null!;
        _location = string.Empty;
        _logger = NullLogger.Instance;
        _live = null!;
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

    private async Task<VeIdentity> ResolveAsync(string nameOrId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        return await _runtime!.Inventory.FindAsync(nameOrId.Trim(), ct).ConfigureAwait(false)
               ?? throw new NotFoundException($"There is no container or VM named '{nameOrId}'.");
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
    public virtual Task<BackupResult> CreateAsync(VeRef ve, BackupCreateOptions? options = null, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.BackupOperation, null, ve.Value, scope => _node is not null
            ? _node.CreateAsync(ve.Value, options, cancellationToken)
            : CreateCoreAsync(ve, options, progress, scope, cancellationToken));

    private async Task<BackupResult> CreateCoreAsync(VeRef ve, BackupCreateOptions? options, IProgress<OperationProgress>? progress, SdkTelemetry.OperationScope scope, CancellationToken cancellationToken)
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
        scope.Kind = identity.Kind;
        var id = identity.VeId;
        using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
        await Repository.RecoverAsync(id, cancellationToken).ConfigureAwait(false);
        var subject = await _live.ReadSubjectAsync(identity, cancellationToken).ConfigureAwait(false);
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
                (consistency, digests) = await _live.BackupRunningAsync(subject, targets, parent, newIdTask, options, progress, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                consistency = "stopped: read directly";
                _live.PrepareStopped(subject);
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
            await _live.StartTrackingAsync(subject, newId, cancellationToken).ConfigureAwait(false);
            Phase("tracking changes since it");
            var info = meta.ToPublic(dir);
            _logger.LogInformation("Backup {Id} of {Name}: {Type}, {Size} bytes", newId, subject.Name, meta.Type, info.SizeBytes);
            scope.AddBytes(info.SizeBytes);
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
        var bitmaps = readTracking ? await _live.TrackingBitmapsAsync(subject, ct).ConfigureAwait(false) : null;
        return subject.Disks.Select(d => new PlannedDisk(d.Name, d.VirtualSize, d.BackingChain,
            bitmaps is null ? new Dictionary<string, TrackingState>() : bitmaps[d.Name],
            subject.TrackingResets.GetValueOrDefault(d.Name))).ToList();
    }

    /// <summary>The disks of <paramref name="last"/> whose file is missing from the backup location.</summary>
    private HashSet<string> MissingFiles(VeId id, BackupMetadata last)
        => last.Disks.Where(d => !File.Exists(Path.Combine(Repository.BackupDir(id, last.Id), d.File))).Select(d => d.Name).ToHashSet(StringComparer.Ordinal);

    /// <summary>The change-tracking bitmaps of each disk, from the running emulator or daemon, or from the image files.</summary>
    /// <summary>A backup never needs more than the disk files' own size (compressed data is smaller still).</summary>
    private void CheckFreeSpace(IEnumerable<string> disks)
    {
        var used = disks.Sum(d => new FileInfo(d).Length);
        Directory.CreateDirectory(_location);
        var free = new DriveInfo(_location).AvailableFreeSpace;
        if (free < used)
            throw new InsufficientResourcesException($"Not enough free space for a backup in {_location}: {new ByteSize(free).ToHumanString()} free, up to {new ByteSize(used).ToHumanString()} needed.", used, free);
    }

    internal static Qcow2CompressionType CompressionType(BackupCompression c) => c == BackupCompression.Zlib ? Qcow2CompressionType.Zlib : Qcow2CompressionType.Zstd;

    /// <summary>
    /// Creates a backup file in the staging directory, open without flush barriers: nothing reads it before the final
    /// flush, and a crash before that leaves only a staging directory, which is discarded.
    /// </summary>
    /// <remarks>
    /// An incremental's backing file is named relative to it (<c>../{parent}/hddN.qcow2</c>), so that the backup
    /// location can move; the staging directory sits beside the backups, so the name resolves there too.
    /// </remarks>
    internal static Qcow2Image CreateTarget(string target, string? parent, string diskFile, BackupCompression compression, long size)
        => Qcow2Image.Create(target, new Qcow2CreateOptions
        {
            Size = size,
            ClusterSize = DiskCopier.ClusterSize,
            CompressionType = CompressionType(compression),
            BackingFile = parent is null ? null : Path.Combine("..", parent, diskFile),
            BackingFormat = parent is null ? null : "qcow2",
        }, new Qcow2OpenOptions { CacheMode = Qcow2CacheMode.Unsafe });

    /// <summary>
    /// A full backup of one disk: a compressed convert of the whole image (read, zero detection and compression on every
    /// core), hashing each cluster as it is stored. Returns the digest.
    /// </summary>
    internal static string ConvertFull(string source, string target, BackupCompression compression, IProgress<OperationProgress>? progress, string stage, CancellationToken ct)
    {
        var digest = new ClusterDigest();
        var report = progress is null ? null : new RelayProgress<Qcow2ConvertProgress>(p => progress.Report(new OperationProgress(stage, p.BytesDone, p.TotalBytes)));
        Qcow2Converter.Convert(source, target, new Qcow2ConvertOptions
        {
            SourceFormat = "qcow2",
            Compress = compression != BackupCompression.None,
            Create = new Qcow2CreateOptions { CompressionType = CompressionType(compression), ClusterSize = DiskCopier.ClusterSize },
            StoredDataObserver = (offset, data) => digest.AddRun(offset, data, DiskCopier.ClusterSize),
        }, report, ct);
        return digest.Result();
    }

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
                digests[d.Name] = ConvertFull(d.Path, targets[d.Name], compression, progress, stage, ct);
                continue;
            }
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var source = Qcow2Image.Open(d.Path, new Qcow2OpenOptions { ReadOnly = true });
            var ranges = source.GetDirtyExtents(_live.FileBitmapName(parent)).Select(e => (e.Start, e.Length)).ToList();
            var t = CreateTarget(targets[d.Name], parent, DiskFileName(d.Name), compression, d.VirtualSize);
            unflushed.Add(t);
            var total = ranges.Sum(r => r.Item2);
            var opened = clock.ElapsedMilliseconds;
            digests[d.Name] = DiskCopier.Copy(source, t, ranges, compression != BackupCompression.None,
                progress is null ? null : new RelayProgress<long>(done => progress.Report(new OperationProgress(stage, done, total))), ct, flush: false);
            _logger.LogDebug("Backup of {Name}, disk {Disk}: {Bytes} changed bytes in {Ranges} ranges; opened in {Opened} ms, copied and flushed in {Copied} ms",
                subject.Name, d.Name, total, ranges.Count, opened, clock.ElapsedMilliseconds - opened);
        }
        return digests;
    }

    // ---------------------------------------------------------------------------------------------------------
    // List
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>Lists backups, oldest first: of one container or VM (by name or UUID, even a deleted one by UUID), or all.</summary>
    /// <remarks>The equivalent of <c>prlctl backup-list [NAME]</c>.</remarks>
    public virtual async Task<IReadOnlyList<BackupInfo>> ListAsync(VeRef ve = default, CancellationToken cancellationToken = default)
    {
        var nameOrId = ve.IsEmpty ? null : ve.Value;
        if (_node is not null)
            return await _node.ListAsync(nameOrId, cancellationToken).ConfigureAwait(false);
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
        if (_node is not null)
            return await _node.DeleteAsync(backupId, withDependents, cancellationToken).ConfigureAwait(false);
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
    public virtual Task<VeId> RestoreAsync(string backupId, BackupRestoreOptions? options = null, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.RestoreOperation, null, backupId, scope => _node is not null
            ? _node.RestoreAsync(backupId, options, cancellationToken)
            : RestoreCoreAsync(backupId, options, progress, scope, cancellationToken));

    private async Task<VeId> RestoreCoreAsync(string backupId, BackupRestoreOptions? options, IProgress<OperationProgress>? progress, SdkTelemetry.OperationScope scope, CancellationToken cancellationToken)
    {
        options ??= new BackupRestoreOptions();
        var (ve, meta) = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        scope.Kind = meta.VeKind == "vm" ? VeKind.Vm : VeKind.Container;
        var dir = Path.Combine(VeDir(ve), meta.Id);
        // Containers and VMs restore the same way: the kind's driver is the restore target, this client writes the disks.
        var target = _live.RestoreTarget(meta.VeKind == "vm" ? VeKind.Vm : VeKind.Container);
        if (!meta.Config.TryGetValue(target.ConfigDocument, out var configJson))
            throw new InvalidStateException($"Backup {meta.Id} carries no {target.ConfigDocument}; it cannot be restored as a {(meta.VeKind == "vm" ? "VM" : "container")}.");
        // A backup file names nothing outside the backup location (its chain lives there); one that does was tampered with.
        var convert = new Qcow2ConvertOptions
        {
            SourceFormat = "qcow2", OutputFormat = "qcow2",
            SourceOpenOptions = new Qcow2OpenOptions { AllowExternalDataFile = false, AllowedDirectory = _location },
        };
        async Task WriteDisksAsync(IReadOnlyDictionary<string, string> destinations)
        {
            foreach (var d in meta.Disks)
            {
                if (!destinations.TryGetValue(d.Name, out var destination))
                    throw new InvalidStateException($"Backup {meta.Id} holds disk {d.Name}, which its configuration does not list.");
                await SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.ConvertOperation, scope.Kind, d.Name, async convertScope =>
                {
                    await Qcow2Converter.ConvertAsync(Path.Combine(dir, d.File), destination, convert, ConvertProgress(progress, d.Name), cancellationToken).ConfigureAwait(false);
                    var written = new FileInfo(destination).Length;
                    convertScope.AddBytes(written);
                    scope.AddBytes(written);
                }).ConfigureAwait(false);
            }
        }
        if (options.NewName is { } newName)
            return await target.CreateFromBackupAsync(configJson, newName, WriteDisksAsync, cancellationToken).ConfigureAwait(false);
        await target.RestoreInPlaceAsync(ve, configJson, meta.Id, WriteDisksAsync, cancellationToken).ConfigureAwait(false);
        return ve;
    }

    /// <summary>Restore's progress stage for one disk: "restoring disk NAME", bytes converted of the disk's virtual size.</summary>
    private static IProgress<Qcow2ConvertProgress>? ConvertProgress(IProgress<OperationProgress>? progress, string disk)
        => progress is null ? null : new RelayProgress<Qcow2ConvertProgress>(p => progress.Report(new OperationProgress("restoring disk " + disk, p.BytesDone, p.TotalBytes)));

    /// <summary>
    /// Opens a disk of a backup read-only as a seekable stream of the disk's content at the backup's point in time (the
    /// chain below an incremental included), for file-level access or export. Dispose it when done.
    /// </summary>
    /// <param name="backupId">The backup.</param>
    /// <param name="diskName">The disk (<c>root</c> for a container, <c>hdd0</c>… for a VM); null for the first.</param>
    /// <param name="cancellationToken">Cancels the lookup.</param>
    public virtual async Task<Stream> OpenDiskAsync(string backupId, string? diskName = null, CancellationToken cancellationToken = default)
    {
        if (_node is not null)
            throw Runtime.Virtuozzo.VirtuozzoBackups.Unsupported("Opening a backup's disk", "the node's backups are read by the node (prlctl restore, or prlctl set --backup-add to attach one).");
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
        if (_node is not null)
            throw Runtime.Virtuozzo.VirtuozzoBackups.Unsupported("Verifying backups", "the node's backup server keeps its own backups.");
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
        if (_node is not null)
            throw Runtime.Virtuozzo.VirtuozzoBackups.Unsupported("Pruning backups by retention", "delete them with DeleteAsync.");
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
