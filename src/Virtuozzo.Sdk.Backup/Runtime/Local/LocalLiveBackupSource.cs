using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Containers.Runtime.Local;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.Backup.Runtime.Local;

/// <summary>
/// The local runtime's backup source for running VEs and its change tracking: QEMU's block layer (the VM's emulator or
/// the container's disk daemon) copies each disk at one point in time through a copy-before-write fleecing graph into
/// the SDK's NBD target, and keeps persistent dirty bitmaps for the next incremental. Stopped VEs are read by the
/// SDK's own QCOW2 engine in <see cref="BackupClient"/>; the repository, the planner and retention are runtime-neutral.
/// </summary>
internal sealed class LocalLiveBackupSource(VirtuozzoRuntime runtime, LocalContainerDriver containers, LocalVmDriver vms, ILogger logger) : IBackupSource
{
    internal const string BitmapPrefix = ChangeTracking.BitmapPrefix;
    private const string PendingBitmap = BitmapPrefix + "pending";
    private static readonly TimeSpan QmpTimeout = LocalTimeouts.MonitorBlockCommand;
    private readonly VirtuozzoRuntime _runtime = runtime;
    private readonly LocalContainerDriver _containers = containers;
    private readonly LocalVmDriver _vms = vms;
    private readonly StateStore _store = runtime.Store;
    private readonly ILogger _logger = logger;

    public string FileBitmapName(string backupId) => BitmapPrefix + backupId;

    /// <summary>Removes the fleecing files a backup killed while the VE ran, then stopped, left beside its disks.</summary>
    public void PrepareStopped(Subject subject)
    {
        foreach (var d in subject.Disks)
            File.Delete(FleeceFile(d));
    }

    public Core.Runtime.IRestoreTarget RestoreTarget(VeKind kind) => kind == VeKind.Vm ? _vms : _containers;

    public async Task<Dictionary<string, Dictionary<string, TrackingState>>> TrackingBitmapsAsync(Subject subject, CancellationToken ct)
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

    internal async Task<QmpClient> ConnectMonitorAsync(Subject subject, CancellationToken ct)
        => subject.Kind == VeKind.Vm
            ? await _vms.ConnectMonitorAsync(subject.Id, ct).ConfigureAwait(false)
            : await StorageDaemon.ConnectAsync(_containers.DaemonPaths(subject.Id), ct).ConfigureAwait(false);


    /// <summary>
    /// Running VE: fix the point in time with one QMP transaction over all its disks (a new bitmap plus a backup job per
    /// disk) while the VE is frozen — a container by its freezer and fsfreeze, a VM's file systems through its guest
    /// tools when they answer — then let the emulator or storage daemon copy while the VE runs. Each job writes to an
    /// NBD server in this process, which compresses in parallel and computes the digest as the data arrives.
    /// </summary>
    public async Task<(string Consistency, Dictionary<string, string> Digests)> BackupRunningAsync(Subject subject, Dictionary<string, string> targets, string? parent, Task<string> newId, BackupCreateOptions options, IProgress<OperationProgress>? progress, CancellationToken ct)
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
                    var target = BackupClient.CreateTarget(targets[d.Name], parent, BackupRepository.DiskFileName(d.Name), compression, d.VirtualSize);
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
            await _runtime.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-u", _store.RootPath(subject.Id)).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
            _runtime.Cgroups.Open(subject.Id).Thaw();
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
        var cg = _runtime.Cgroups.Open(subject.Id);
        var root = _store.RootPath(subject.Id);
        // Marked before freezing: if this process dies before the thaw, the next backup finds the mark and thaws.
        await File.WriteAllTextAsync(ContainerFreezeMarker(subject.Id), DateTimeOffset.UtcNow.ToString("O"), ct).ConfigureAwait(false);
        // And a guardian child holds the thaw in the meantime: its standard input is a pipe from this process, which
        // the kernel closes when this process dies, however it dies; on end of input the guardian thaws.
        var (thawFile, thawValue) = cg.ThawWrite();
        var release = new System.IO.Pipelines.Pipe();
        var guardian = _runtime.Host.ExecuteAsync(new Command("sh")
            .WithArguments("-c", "read -r _; fsfreeze -u \"$1\" 2>/dev/null; echo \"$3\" > \"$2\" 2>/dev/null; exit 0", "sh", root, thawFile, thawValue)
            .WithStandardInput(release.Reader.AsStream())
            .WithValidation(CommandResultValidation.None), CancellationToken.None);
        try
        {
            await cg.FreezeAsync(ct).ConfigureAwait(false);
            var fs = await _runtime.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-f", root).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(30)), ct).ConfigureAwait(false);
            frozen = fs.ExitCode == 0;
            if (fleecing)
                await SwitchOntoFleecingAsync(qmp, subject, actions, ct).ConfigureAwait(false);
            else
                await qmp.ExecuteAsync("transaction", new JsonObject { ["actions"] = actions }, QmpTimeout, ct).ConfigureAwait(false);
        }
        finally
        {
            if (frozen)
                await _runtime.Host.ExecuteAsync(new Command("fsfreeze").WithArguments("-u", root).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
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

    internal static string FleeceFile(SubjectDisk d) => Path.Combine(Path.GetDirectoryName(d.Path)!, ".backup-fleece-" + d.Name);

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
    public async Task StartTrackingAsync(Subject subject, string newId, CancellationToken ct)
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

    /// <summary>Reads what a backup of the VE covers (its disks, configuration, whether it runs), under the VE's lock.</summary>
    public async Task<Subject> ReadSubjectAsync(VeIdentity identity, CancellationToken ct)
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
}
