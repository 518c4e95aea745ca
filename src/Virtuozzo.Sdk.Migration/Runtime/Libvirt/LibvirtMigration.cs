using System.Diagnostics;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using static Virtuozzo.Sdk.Core.Runtime.Libvirt.LibvirtNative;

namespace Virtuozzo.Sdk.Migration.Runtime.Libvirt;

/// <summary>
/// Migration on the libvirt runtime, delegated to libvirt: the source's libvirtd moves the domain to the destination's
/// peer to peer (<c>virDomainMigrateToURI3</c> with <c>VIR_MIGRATE_PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE</c>, plus
/// <c>LIVE</c> and auto-converge for a running VM, <c>OFFLINE</c> for a stopped one). Disks stay where they are: the
/// destination reaches them at the same paths (shared storage). While it runs, the job's progress is polled, the downtime
/// limit is set on the running job, and cancellation aborts the job (libvirt then leaves the VM running on the source).
/// Downtime and bytes are read from the destination's record of the completed incoming job.
/// </summary>
internal static class LibvirtMigration
{
    public static async Task<MigrationResult> MigrateAsync(VirtuozzoRuntime runtime, string nameOrId, MigrationDestination destination, MigrationOptions options,
        IProgress<MigrationProgress>? progress, CancellationToken cancellationToken)
    {
        var connection = runtime.RequireLibvirt();
        if (destination is not LibvirtDestination target)
            throw new UnsupportedOnHostException($"The libvirt runtime migrates to another libvirt daemon (MigrationDestination.ToLibvirt), not to {destination}.");
        if (options.PostCopy)
            throw new UnsupportedOnHostException("Post-copy migration (PostCopy) is not supported by the libvirt runtime.");
        if (target.Uri == connection.Uri)
            throw new ArgumentException($"The destination is this runtime's own libvirt daemon ({connection.Uri}).", nameof(destination));

        using var dom = await connection.FindDomainAsync(nameOrId, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"There is no VM '{nameOrId}' on {connection.Uri}.");
        var summary = await dom.SummarizeAsync(cancellationToken).ConfigureAwait(false);
        if (summary.Kind != VeKind.Vm)
            throw new UnsupportedOnHostException($"'{summary.Name}' is a container: the libvirt runtime migrates VMs only.");
        using var veLock = await runtime.Store.LockVeAsync(new VeId(summary.Id), cancellationToken).ConfigureAwait(false);
        summary = await dom.SummarizeAsync(cancellationToken).ConfigureAwait(false);
        var running = summary.State is LibvirtDomainState.Running or LibvirtDomainState.Blocked or LibvirtDomainState.Paused;
        if ((options.Mode == MigrationMode.Online || options.RequireLive) && !running)
            throw new InvalidStateException($"The VM {summary.Name} is not running; a live migration needs it running (Mode = Offline moves a stopped VM's definition).");
        if (options.Mode == MigrationMode.Offline && running)
            throw new UnsupportedOnHostException("Offline migration of a running VM (Mode = Offline) is not supported by the libvirt runtime; stop it first, or migrate it live.");
        if (summary.HasManagedSave)
            throw new InvalidStateException($"The VM {summary.Name} is suspended to disk; resume it (or stop it) before migrating it.");

        // The destination is reached before anything moves: a name or UUID it already has is refused here.
        using var peer = await LibvirtConnection.OpenAsync(target.Uri, null, cancellationToken).ConfigureAwait(false);
        foreach (var key in new[] { summary.Id.ToString(), summary.Name })
        {
            using var clash = await peer.FindDomainAsync(key, cancellationToken).ConfigureAwait(false);
            if (clash is not null)
                throw new AlreadyExistsException($"{target} already has a domain named or numbered '{key}'.");
        }

        // Disks on a local file system are copied (libvirt mirrors them into volumes it pre-creates in a pool on the
        // destination); disks on shared storage stay where they are. A mix cannot be told apart safely and is refused.
        var disks = Vm.Runtime.Libvirt.DomainXml.Parse(await dom.GetXmlAsync(false, cancellationToken).ConfigureAwait(false)).Disks;
        var local = disks.Where(d => IsLocalFileSystem(d.Path)).ToList();
        var copy = local.Count > 0;
        if (copy && local.Count != disks.Count)
            throw new UnsupportedOnHostException($"The VM {summary.Name} has disks on local and on shared storage; the libvirt runtime migrates either kind, not a mix.");
        if (copy && !running)
            throw new UnsupportedOnHostException($"The VM {summary.Name} is stopped and its disks are on local storage: libvirt copies disks only during a live migration. Start it, or move its disks to shared storage.");

        // The source's definition is undefined by the SDK after the move rather than by libvirt (UNDEFINE_SOURCE), so that
        // the source's record of the completed job (downtime, memory and disk bytes) can be read first.
        var flags = MigratePeerToPeer | MigratePersistDest
            | (running ? MigrateLive | (options.AutoConverge ? MigrateAutoConverge : 0) : MigrateOffline)
            | (copy ? MigrateNonSharedDisk : 0);
        var parameters = new List<KeyValuePair<string, object>>();
        if (running && target.MigrationAddress is { } address)
            parameters.Add(new("migrate_uri", "tcp://" + (address.Contains(':', StringComparison.Ordinal) ? $"[{address}]" : address)));
        if (options.MaxBandwidthPerSecond is { } bandwidth)
            parameters.Add(new("bandwidth", Math.Max(1, bandwidth.Bytes / (1024 * 1024)))); // MiB/s

        var clock = Stopwatch.StartNew();
        progress?.Report(new MigrationProgress(MigrationPhase.Preparing, 0, 0));
        var pools = new List<nint>();
        try
        {
            foreach (var dir in local.Select(d => Path.GetDirectoryName(d.Path)!).Distinct(StringComparer.Ordinal))
                pools.Add(await peer.EnsureDirectoryPoolAsync(dir, cancellationToken).ConfigureAwait(false));
            await RunAsync(dom, summary, target, parameters, flags, running, options, progress, connection.Uri, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            foreach (var pool in pools)
                await peer.DestroyPoolAsync(pool).ConfigureAwait(false);
        }
        clock.Stop();
        progress?.Report(new MigrationProgress(MigrationPhase.CleaningUp, 0, 0));

        // The copied disks' source files are stale now; the SDK removes the VM's own directory (never foreign files).
        var ours = runtime.Store.PrivatePath(new VeId(summary.Id));
        if (copy && !options.KeepSource && local.All(d => Path.GetDirectoryName(d.Path) == ours) && Directory.Exists(ours))
            Directory.Delete(ours, recursive: true);

        // The source keeps the statistics of the job it completed; then its definition goes (a crash in between leaves it
        // defined and shut off with the reason "migrated", as virsh migrate without --undefinesource does).
        IReadOnlyDictionary<string, object>? stats = running ? await dom.GetCompletedJobStatsAsync(CancellationToken.None).ConfigureAwait(false) : null;
        if (!options.KeepSource)
        {
            await dom.CallAsync(d => virDomainUndefineFlags(d, UndefineManagedSave | UndefineSnapshotsMetadata | UndefineNvram | UndefineCheckpointsMetadata),
                $"Undefining the migrated VM {summary.Name} on {connection.Uri}", CancellationToken.None).ConfigureAwait(false);
        }
        long Stat(string key) => stats is not null && stats.TryGetValue(key, out var v) && v is long l ? l : 0;
        return new MigrationResult(new VeId(summary.Id), new VeName(summary.Name), VeKind.Vm, running ? MigrationMode.Online : MigrationMode.Offline,
            running ? (copy ? "the VM is running: libvirt migrated it live, with its disks" : "the VM is running: libvirt migrated it live (its disks are shared)")
                : "the VM is stopped: libvirt moved its definition (its disks are shared)",
            TimeSpan.FromMilliseconds(Stat("downtime")), clock.Elapsed, Stat("disk_processed"), Stat("memory_processed"), PostCopyUsed: false)
        {
            TransferMeasured = stats is not null,
        };
    }

    // ext2/3/4, XFS, Btrfs, tmpfs, ZFS, overlayfs, F2FS, JFS, ReiserFS: certainly this machine's own. Anything else (NFS,
    // CIFS, GFS2, OCFS2, Ceph, FUSE…) is left to libvirt's own shared-storage check, which refuses what is not safe.
    private static readonly long[] LocalFileSystems = [0xEF53, 0x58465342, 0x9123683E, 0x01021994, 0x2FC12FC1, 0x794C7630, 0xF2F52010, 0x3153464A, 0x52654973];

    internal static bool IsLocalFileSystem(string path)
        => FileSystemType(File.Exists(path) ? path : Path.GetDirectoryName(path) ?? "/") is { } type && LocalFileSystems.Contains(type & 0xFFFFFFFF);

    private static async Task RunAsync(LibvirtDomain dom, LibvirtDomainSummary summary, LibvirtDestination target, List<KeyValuePair<string, object>> parameters,
        uint flags, bool running, MigrationOptions options, IProgress<MigrationProgress>? progress, string source, CancellationToken cancellationToken)
    {
        var migration = dom.MigrateAsync(target.Uri, parameters, flags, $"Migrating the VM {summary.Name} to {target.Uri}");
        var aborted = false;
        using (cancellationToken.Register(() => { aborted = true; _ = dom.AbortJobAsync(); }))
        {
            var downtimeSet = false;
            while (!migration.IsCompleted)
            {
                await Task.WhenAny(migration, Task.Delay(200, CancellationToken.None)).ConfigureAwait(false);
                if (migration.IsCompleted || !running)
                    continue;
                if (await dom.GetJobInfoAsync(CancellationToken.None).ConfigureAwait(false) is not { Type: not 0 } job)
                    continue;
                if (!downtimeSet)
                    downtimeSet = await dom.SetMaxDowntimeAsync(options.DowntimeLimit).ConfigureAwait(false);
                // Disks are mirrored before memory is copied; the job reports both in its data counters.
                var disksLeft = (long)(job.DataRemaining - Math.Min(job.DataRemaining, job.MemRemaining));
                progress?.Report(disksLeft > 0
                    ? new MigrationProgress(MigrationPhase.CopyingDisks, (long)(job.DataProcessed - Math.Min(job.DataProcessed, job.MemProcessed)), disksLeft)
                    : new MigrationProgress(MigrationPhase.CopyingMemory, (long)job.MemProcessed, (long)job.MemRemaining));
            }
            try
            {
                await migration.ConfigureAwait(false);
            }
            catch (Exception ex) when (aborted)
            {
                throw new OperationCanceledException($"The migration of {summary.Name} was cancelled; it stays on {source}.", ex, cancellationToken);
            }
        }
    }
}
