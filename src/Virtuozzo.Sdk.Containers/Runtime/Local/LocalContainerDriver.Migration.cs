using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Containers.Runtime.Local;

// Container migration, P.Haul's loop on this runtime:
//   destination: registers the container (same UUID, name, addresses), admits its guarantee, creates an empty disk of
//                the same size and serves it over NBD from a storage daemon;
//   source:      mirrors the running container's disk into that export (the storage daemon's block-mirror keeps
//                copying what the container writes: the iterative disk sync) until it is ready; then CRIU dumps the
//                processes, which freezes and ends them (a restart migration stops the container instead); the root
//                file system is unmounted so that every write reaches the daemon, the mirror drains and ends, and the
//                images travel to the destination;
//   destination: stops serving the disk and restores the processes in a fresh mount, network namespace (same
//                addresses) and cgroup — or starts the container;
//   source:      removes its copy (or keeps it, stopped).
// A failure before the dump leaves the container running; after the dump, the source restores it from its own images.
internal sealed partial class LocalContainerDriver
{
    private const string MigrationNode = "mig-root";

    /// <summary>Sends a running container to <paramref name="peer"/>: live with CRIU, or (when allowed) by a restart.</summary>
    internal async Task<ContainerMigrationOutcome> MigrateOutAsync(string nameOrId, IContainerMigrationPeer peer, bool allowRestart, bool requireLive, bool keepSource,
        Action<ContainerMigrationSample>? progress, CancellationToken ct, bool forceRestart = false)
    {
        var (identity, config) = await LoadAsync(nameOrId, ct).ConfigureAwait(false);
        var id = identity.VeId;
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        var state = await StateOfAsync(id, ct).ConfigureAwait(false);
        if (state is not (VeState.Running or VeState.Stopped))
            throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; a running or stopped container migrates.");
        var wasStopped = state == VeState.Stopped;
        if (wasStopped && requireLive)
            throw new InvalidStateException($"Container {identity.Name} is stopped: there is nothing to migrate live. Migrate it offline (its disk moves; it stays stopped).");
        if (config.Snapshots.Count > 0)
            throw new InvalidStateException($"Container {identity.Name} has {config.Snapshots.Count} snapshot(s), which a migration cannot carry (the disk is copied as it is now). Delete them first.");
        var total = Stopwatch.StartNew();
        CriuTool? criu = null;
        string reason;
        var probe = await Criu.ProbeAsync(_host, _runtime.Options.Local.CriuPath, _store.RunDirectory, ct).ConfigureAwait(false);
        if (wasStopped)
        {
            reason = "the container is stopped: its disk moved and it stays stopped on the destination";
        }
        else if (forceRestart)
        {
            reason = "a restart migration was asked for: the container was stopped and started on the destination";
        }
        else if (CheckpointRefusal(config) is { } refusal)
        {
            if (requireLive || !allowRestart)
                throw new UnsupportedOnHostException($"Container {identity.Name} cannot migrate live: {refusal}.{(requireLive ? "" : " Allow a restart migration to move it anyway.")}");
            reason = $"the container cannot migrate live ({refusal}): it was stopped and started on the destination";
        }
        else if (probe.Tool is { } tool)
        {
            criu = tool;
            reason = probe.MemoryDirtyTracking
                ? "CRIU works here: the container migrated live"
                : "CRIU works here: the container migrated live (no memory dirty tracking on this kernel, so one dump with no pre-dump iterations)";
        }
        else if (requireLive || !allowRestart)
        {
            throw new UnsupportedOnHostException($"Container {identity.Name} cannot migrate live: {probe.Reason}.{(requireLive ? "" : " Allow a restart migration to move it anyway.")}");
        }
        else
        {
            reason = $"CRIU is not usable here ({probe.Reason}): the container was stopped and started on the destination";
        }
        var live = criu is not null;

        long diskSize;
        using (var image = Qcow2Image.Open(DiskPath(id), new Qcow2OpenOptions { ReadOnly = true, ForceShare = true, NoBacking = true }))
            diskSize = image.Size;
        var offer = new ContainerMigrationOffer(id.Value, identity.Name, JsonSerializer.Serialize(config, ContainersJson.Default.ContainerConfig), diskSize, config.ToResources().GuaranteeBytes, live);
        progress?.Invoke(new ContainerMigrationSample("preparing", 0, 0));
        ContainerIncomingEndpoint endpoint;
        try
        {
            endpoint = await peer.PrepareContainerAsync(offer, ct).ConfigureAwait(false);
        }
        catch (UnsupportedOnHostException ex) when (live && allowRestart && !requireLive)
        {
            // the destination cannot restore processes: a restart migration, reported as such
            live = false;
            criu = null;
            reason = $"the destination cannot restore processes ({ex.Message}): the container was stopped and started there";
            endpoint = await peer.PrepareContainerAsync(offer with { Live = false }, ct).ConfigureAwait(false);
        }

        var daemon = DaemonPaths(id);
        await ClearMigrationLeftoversAsync(identity.Name, daemon).ConfigureAwait(false); // a killed migration's, if any
        var mirroring = false;
        var stopped = false;
        long diskBytes = 0, imageBytes = 0;
        var preDumps = new PreDumpResult(0, 0, 0, "");
        var frozen = new Stopwatch();
        try
        {
            if (wasStopped)
            {
                // a storage daemon serves the stopped container's disk for the copy (nothing writes to it meanwhile)
                Directory.CreateDirectory(_store.RunPath(id));
                await StorageDaemon.StartAsync(_host, daemon, null, ct).ConfigureAwait(false);
            }
            var qmp = await StorageDaemon.ConnectAsync(daemon, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                await qmp.ExecuteAsync("blockdev-add", new JsonObject
                {
                    ["driver"] = "nbd",
                    ["node-name"] = MigrationNode,
                    ["server"] = new JsonObject { ["type"] = "inet", ["host"] = endpoint.NbdHost, ["port"] = endpoint.NbdPort.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                    ["export"] = endpoint.Export,
                }, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
                mirroring = true;
                diskBytes = await SyncDiskWhileRunningAsync(qmp, identity.Name, progress, ct).ConfigureAwait(false);
                if (live && probe.MemoryDirtyTracking && endpoint.PreDumpDirectory is { } remotePreDumps)
                {
                    // P.Haul's memory rounds, where the kernel tracks dirtied pages: the memory goes while the container
                    // runs, each round only what the one before left dirty, so that the freeze dumps only the rest.
                    preDumps = await PreDumpAsync(id, identity.Name, criu!, peer, remotePreDumps, qmp, progress, ct).ConfigureAwait(false);
                    diskBytes += preDumps.DiskBytes;
                    imageBytes += preDumps.ImageBytes;
                    reason += $"; {preDumps.Note}";
                }
                else if (live && probe.MemoryDirtyTracking)
                {
                    reason += "; the destination's migration agent (an earlier version) takes no pre-dumps, so its memory went in one dump";
                }

                if (!wasStopped)
                {
                    // The freeze: from here the container does not run until it runs on the destination (or back here).
                    // The journal says so, so that reconcile brings it back here if this process is killed before the
                    // destination confirms; the dump images stay here until then.
                    await OwnerMarker.WriteAsync(OutgoingJournal(id), ct).ConfigureAwait(false);
                    frozen.Start();
                    progress?.Invoke(new ContainerMigrationSample(live ? "dumping" : "stopping", 0, 0));
                    if (live)
                        await CheckpointLockedAsync(id, identity.Name, criu!, leaveRunning: false, ct,
                            parentPath: preDumps.Rounds > 0 ? PreDumpParent(preDumps.Rounds) : null).ConfigureAwait(false);
                    else
                        await StopLockedAsync(id, config, new VeStopOptions(), ct, teardown: false).ConfigureAwait(false); // the daemon serves the last delta
                    stopped = true;
                    await UnmountRootAsync(id, ct).ConfigureAwait(false);
                }
                diskBytes += await CopyDirtyAsync(qmp, identity.Name, "final", progress, ct).ConfigureAwait(false); // the last delta, frozen
                await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = MigrationNode }, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
                await qmp.ExecuteAsync("block-dirty-bitmap-remove", new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = MigrationBitmap }, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
                mirroring = false;
            }
            if (live)
            {
                progress?.Invoke(new ContainerMigrationSample("sending-state", 0, 0));
                imageBytes += await peer.SendImagesAsync(CheckpointDirectory(id), endpoint.ImageDirectory, ct).ConfigureAwait(false);
            }
            if (wasStopped)
                await StorageDaemon.StopAsync(_host, daemon, ct).ConfigureAwait(false);
            progress?.Invoke(new ContainerMigrationSample(live ? "restoring" : wasStopped ? "cleaning-up" : "starting", 0, 0));
            await peer.CompleteContainerAsync(id, live, start: !wasStopped, ct).ConfigureAwait(false);
            // Confirmed: it runs on the destination. The journal goes first, then the destination is told to keep it: a
            // kill in between leaves the container suspended here with its images (a start restores it) and none there.
            File.Delete(OutgoingJournal(id));
            await peer.CommitContainerAsync(id, ct).ConfigureAwait(false);
            frozen.Stop();
        }
        catch (Exception ex)
        {
            _logger.LogWarning("Migration of container {Name} failed: {Error}", identity.Name, ex.Message);
            if (wasStopped)
                await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false); // the daemon started for the copy
            await RollBackOutgoingAsync(id, identity, config, peer, daemon, mirroring, stopped, live).ConfigureAwait(false);
            if (await _runc.StatusAsync(id, CancellationToken.None).ConfigureAwait(false) is "running")
                File.Delete(OutgoingJournal(id)); // it runs here again; otherwise reconcile retries from the journal
            throw;
        }

        progress?.Invoke(new ContainerMigrationSample("cleaning-up", 0, 0));
        await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
        DiscardCheckpoint(id);
        if (!keepSource)
            await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
        return new ContainerMigrationOutcome(id, new VeName(identity.Name), live, reason, frozen.Elapsed, total.Elapsed, diskBytes, imageBytes, preDumps.Rounds);
    }

    private readonly record struct PreDumpResult(int Rounds, long ImageBytes, long DiskBytes, string Note);

    /// <summary>
    /// CRIU pre-dumps while the container runs, each sent to the destination's <paramref name="remoteDirectory"/> as it
    /// completes, with the disk's delta after each (P.Haul moves the file system on with every round), until
    /// <see cref="PreDumpRounds"/> says stop. A failed round ends the rounds without failing the migration, and the final
    /// dump is then a whole one with no parent: CRIU clears the tasks' soft-dirty bits while they are frozen and writes the
    /// pages after, so a round that failed late may have cleared bits without storing the pages, and a final dump chained to
    /// the round before would restore stale memory without an error. Each runc call runs to its end (cancellation is checked
    /// between rounds), so that CRIU is never killed while it holds the container frozen.
    /// </summary>
    private async Task<PreDumpResult> PreDumpAsync(VeId id, string name, CriuTool criu, IContainerMigrationPeer peer, string remoteDirectory, QmpClient qmp,
        Action<ContainerMigrationSample>? progress, CancellationToken ct)
    {
        var root = PreDumpDirectory(id);
        DeleteDirectory(root);
        Directory.CreateDirectory(root);
        long imageBytes = 0, diskBytes = 0;
        long? previous = null;
        for (var round = 1; ; round++)
        {
            var member = round.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var dir = Path.Combine(root, member);
            Directory.CreateDirectory(dir);
            var work = await FreshCriuWorkDirectoryAsync(id).ConfigureAwait(false);
            progress?.Invoke(new ContainerMigrationSample("pre-dumping", imageBytes, 0));
            ct.ThrowIfCancellationRequested();
            try
            {
                await _runc.CheckpointAsync(id, criu, dir, work, leaveRunning: true, CancellationToken.None, preDump: true,
                    parentPath: round == 1 ? null : $"../{(round - 1).ToString(System.Globalization.CultureInfo.InvariantCulture)}").ConfigureAwait(false);
            }
            catch (CommandFailedException ex)
            {
                // CRIU resumes the tasks of a failed pre-dump. The rounds end here, and none of them is a parent: this
                // round may have cleared soft-dirty bits of pages it did not store.
                await UnmountUnderAsync(work).ConfigureAwait(false);
                DeleteDirectory(root);
                _logger.LogWarning("Container {Name}: pre-dump round {Round} failed ({Error}); the final dump is a whole one", name, round, ex.Message);
                return new PreDumpResult(0, imageBytes, diskBytes, $"pre-dump round {round} failed ({ex.Message}), so its memory went in one whole dump");
            }
            var pages = PreDumpRounds.PagesWritten(dir);
            imageBytes += await peer.SendImagesAsync(root, remoteDirectory, ct, member).ConfigureAwait(false);
            diskBytes += await CopyDirtyAsync(qmp, name, "copying-disk", progress, ct).ConfigureAwait(false);
            _logger.LogDebug("Container {Name}: pre-dump round {Round} wrote {Pages} pages", name, round, pages);
            if (PreDumpRounds.StopReason(round, pages, previous) is { } why)
                return new PreDumpResult(round, imageBytes, diskBytes, $"{round} pre-dump round(s) copied its memory while it ran ({why})");
            previous = pages;
        }
    }

    /// <summary>Unmounts the running container's root so that every write it made reaches the storage daemon.</summary>
    private async Task UnmountRootAsync(VeId id, CancellationToken ct)
    {
        var root = _store.RootPath(id);
        for (var i = 0; i < 50 && StorageDaemon.IsMounted(root); i++)
        {
            var r = await _host.ExecuteAsync(new Command("umount").WithArguments(root).WithValidation(CommandResultValidation.None), ct).ConfigureAwait(false);
            if (r.ExitCode != 0)
                await Task.Delay(100, ct).ConfigureAwait(false);
        }
        if (StorageDaemon.IsMounted(root))
            throw new InvalidStateException($"The root file system at {root} stays busy; its last writes cannot be sent.");
    }

    private const string MigrationBitmap = "mig-dirty";

    // P.Haul's stop rules for iterative file-system sync (p_haul's MIN_ITER_FS_XFER_BYTES, MAX_ITER_GROW_RATE, MAX_ITERS_COUNT).
    private const long MinIterationBytes = 1 << 20;
    private const int MaxIterations = 8;

    /// <summary>
    /// Copies the disk while the container runs: a full copy, then the clusters dirtied meanwhile (from a dirty bitmap,
    /// the change tracking the backups use), again and again until the delta is small, stops shrinking or eight
    /// iterations have run. Returns the bytes copied.
    /// </summary>
    private static async Task<long> SyncDiskWhileRunningAsync(QmpClient qmp, string name, Action<ContainerMigrationSample>? progress, CancellationToken ct)
    {
        await qmp.ExecuteAsync("block-dirty-bitmap-add", new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = MigrationBitmap, ["granularity"] = 65536 },
            LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
        var copied = await RunCopyJobAsync(qmp, name, new JsonObject { ["sync"] = "full" }, "copying-disk", progress, ct).ConfigureAwait(false);
        long previous = long.MaxValue;
        for (var i = 0; i < MaxIterations; i++)
        {
            var dirty = await DirtyBytesAsync(qmp, ct).ConfigureAwait(false);
            if (dirty <= MinIterationBytes || dirty > previous + previous / 10)
                break;
            copied += await CopyDirtyAsync(qmp, name, "copying-disk", progress, ct).ConfigureAwait(false);
            previous = dirty;
        }
        return copied;
    }

    private static async Task<long> DirtyBytesAsync(QmpClient qmp, CancellationToken ct)
        => (await StorageDaemon.QueryBitmapsAsync(qmp, ct).ConfigureAwait(false)).FirstOrDefault(b => b["name"]?.GetValue<string>() == MigrationBitmap)?["count"]?.GetValue<long>() ?? 0;

    /// <summary>Copies the clusters the bitmap marks (and clears them when the copy succeeds).</summary>
    private static Task<long> CopyDirtyAsync(QmpClient qmp, string name, string phase, Action<ContainerMigrationSample>? progress, CancellationToken ct)
        => RunCopyJobAsync(qmp, name, new JsonObject { ["sync"] = "incremental", ["bitmap"] = MigrationBitmap, ["bitmap-mode"] = "on-success" }, phase, progress, ct);

    private static async Task<long> RunCopyJobAsync(QmpClient qmp, string name, JsonObject sync, string phase, Action<ContainerMigrationSample>? progress, CancellationToken ct)
    {
        var args = new JsonObject { ["job-id"] = MigrationNode, ["device"] = StorageDaemon.DiskNode, ["target"] = MigrationNode, ["auto-dismiss"] = false };
        foreach (var (k, v) in sync)
            args[k] = v?.DeepClone();
        await qmp.ExecuteAsync("blockdev-backup", args, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
        while (true)
        {
            var jobs = (await qmp.ExecuteAsync("query-jobs", null, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false))!.AsArray();
            var job = jobs.FirstOrDefault(j => j!["id"]!.GetValue<string>() == MigrationNode)
                ?? throw new InvalidStateException($"Copying the disk of container {name} failed: the job disappeared.");
            var status = job["status"]!.GetValue<string>();
            long done = job["current-progress"]?.GetValue<long>() ?? 0, all = job["total-progress"]?.GetValue<long>() ?? 0;
            progress?.Invoke(new ContainerMigrationSample(phase, done, Math.Max(0, all - done)));
            if (status is "concluded" or "null")
            {
                var error = job["error"]?.GetValue<string>();
                await qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = MigrationNode }, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
                if (error is not null)
                    throw new InvalidStateException($"Copying the disk of container {name} to the destination failed: {error}.");
                return done;
            }
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    private static Task FinishMirrorAsync(QmpClient qmp, bool requireSuccess, CancellationToken ct)
        => BlockJobs.FinishAsync(qmp, MigrationNode, "the disk copy", requireSuccess, LocalTimeouts.MonitorBlockCommand, ct);

    /// <summary>Undoes a failed outgoing migration: the destination's copy goes; the container runs here again.</summary>
    private async Task RollBackOutgoingAsync(VeId id, VeIdentity identity, ContainerConfig config, IContainerMigrationPeer peer, Core.Runtime.Local.StorageDaemonPaths daemon,
        bool mirroring, bool stopped, bool live)
    {
        var none = CancellationToken.None;
        try
        {
            await peer.AbortContainerAsync(id, none).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogWarning("Container {Name}: the destination could not clean up: {Error}", identity.Name, ex.Message);
        }
        if (mirroring)
            await ClearMigrationLeftoversAsync(identity.Name, daemon).ConfigureAwait(false);
        if (!stopped)
        {
            DeleteDirectory(PreDumpDirectory(id)); // it runs on: its pre-dumps are of no use (after the dump they are the checkpoint's parents)
            // It never stopped running here, but a CRIU ended half-way (a timeout during a dump) can leave it frozen; the
            // migration only starts from a running container, so a paused one is CRIU's doing.
            try
            {
                if (await _runc.StatusAsync(id, none).ConfigureAwait(false) is "paused")
                {
                    await _runc.ResumeAsync(id, none).ConfigureAwait(false);
                    _logger.LogWarning("Container {Name} was left frozen by the interrupted dump; resumed", identity.Name);
                }
            }
            catch (VirtuozzoException ex)
            {
                _logger.LogError("Container {Name} could not be resumed after the failed migration: {Error}", identity.Name, ex.Message);
            }
            return;
        }
        try
        {
            if (live && HasCheckpoint(id))
                await RestoreFromCheckpointLockedAsync(id, identity, config, none).ConfigureAwait(false);
            else
            {
                await TeardownAsync(id, none).ConfigureAwait(false);
                await StartLockedAsync(id, identity, config, none).ConfigureAwait(false);
            }
            _logger.LogWarning("Container {Name} runs on the source again", identity.Name);
        }
        catch (Exception ex)
        {
            _logger.LogError("Container {Name} could not be resumed on the source after the failed migration: {Error}", identity.Name, ex.Message);
        }
    }

    /// <summary>Removes a migration's copy job, NBD client and dirty bitmap from the container's storage daemon (after a failure, or left by a killed process).</summary>
    private async Task ClearMigrationLeftoversAsync(string name, StorageDaemonPaths daemon)
    {
        var none = CancellationToken.None;
        if (StorageDaemon.RunningPid(daemon) is null)
            return;
        try
        {
            var qmp = await StorageDaemon.ConnectAsync(daemon, none).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                try { await qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = MigrationNode, ["force"] = true }, LocalTimeouts.MonitorBlockCommand, none).ConfigureAwait(false); }
                catch (QmpException) { }
                await FinishMirrorAsync(qmp, requireSuccess: false, none).ConfigureAwait(false);
                try { await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = MigrationNode }, LocalTimeouts.MonitorBlockCommand, none).ConfigureAwait(false); }
                catch (QmpException) { }
                try { await qmp.ExecuteAsync("block-dirty-bitmap-remove", new JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = MigrationBitmap }, LocalTimeouts.MonitorBlockCommand, none).ConfigureAwait(false); }
                catch (QmpException) { }
            }
        }
        catch (Exception ex) when (ex is VirtuozzoException or IOException or TimeoutException)
        {
            _logger.LogWarning("Container {Name}: could not end the disk copy: {Error}", name, ex.Message);
        }
    }

    // ------------------------------------------------------------------ destination

    private StorageDaemonPaths ReceiverPaths(VeId id)
    {
        var run = _store.RunPath(id);
        return new StorageDaemonPaths(DiskPath(id), Path.Combine(run, "rx.raw"), Path.Combine(run, "rx.sock"), Path.Combine(run, "rx.pid"));
    }

    /// <summary>Receives a container: checks the offer, admits its guarantee, creates its disk and serves it over NBD.</summary>
    internal async Task<ContainerIncomingEndpoint> PrepareIncomingAsync(ContainerMigrationOffer offer, string listenAddress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(offer);
        var address = IPAddress.Parse(listenAddress);
        var config = JsonSerializer.Deserialize(offer.ConfigJson, ContainersJson.Default.ContainerConfig)
            ?? throw new ArgumentException("The migration offer carries no container configuration.", nameof(offer));
        var id = new VeId(offer.Id);
        if (offer.Live)
            await RequireCriuAsync(ct).ConfigureAwait(false); // a live migration needs CRIU here too: refused before anything moves
        if (await _registry.FindAsync(id.ToString(), ct).ConfigureAwait(false) is { } same)
            throw new AlreadyExistsException($"The destination already has a {(same.Kind == VeKind.Container ? "container" : "VM")} with the UUID {id} ('{same.Name}').");
        await ValidateAddressesAsync(offer.Name, null, config.IpAddresses, ct).ConfigureAwait(false);
        await _registry.RegisterAsync(id, new VeName(offer.Name), VeKind.Container, ct).ConfigureAwait(false); // refuses a taken name
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        try
        {
            // Admitted before anything moves; the start or restore at the end keeps this reservation.
            await _ledger.ReserveAsync(id, VeKind.Container, offer.GuaranteeBytes, 0, ct).ConfigureAwait(false);
            await _store.WriteDocumentAsync(ConfigPath(id), config, ContainersJson.Default.ContainerConfig, ct).ConfigureAwait(false);
            // which process receives it: reconcile removes the container once that process is gone without completing
            await OwnerMarker.WriteAsync(IncomingMarkerPath(id), ct).ConfigureAwait(false);
            Qcow2Image.Create(DiskPath(id), new Qcow2CreateOptions { Size = offer.DiskVirtualSize }).Dispose();
            Directory.CreateDirectory(_store.RunPath(id));
            var port = LocalPorts.Free(address);
            await StorageDaemon.StartNbdReceiverAsync(_host, ReceiverPaths(id), listenAddress, port, "root", ct).ConfigureAwait(false);
            var images = CheckpointDirectory(id) + ".partial";
            Directory.CreateDirectory(images);
            string? preDumps = null;
            if (offer.Live)
                Directory.CreateDirectory(preDumps = PreDumpDirectory(id));
            _logger.LogDebug("Container {Name} is received at nbd://{Host}:{Port}/root", offer.Name, listenAddress, port);
            return new ContainerIncomingEndpoint(listenAddress, port, "root", images, preDumps);
        }
        catch
        {
            await DiscardIncomingLockedAsync(id).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The disk (and the images) have arrived: restores the processes, or starts the container.</summary>
    internal async Task CompleteIncomingAsync(VeId id, bool live, bool start, CancellationToken ct)
    {
        var (identity, config) = await LoadAsync(id.ToString(), ct).ConfigureAwait(false);
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        await StorageDaemon.StopAsync(_host, ReceiverPaths(id), ct).ConfigureAwait(false);
        if (live)
        {
            var partial = CheckpointDirectory(id) + ".partial";
            await File.WriteAllTextAsync(Path.Combine(partial, CheckpointMarker), $"{identity.Name}\nmigrated\n{DateTimeOffset.UtcNow:O}\n", ct).ConfigureAwait(false);
            Core.Internal.Native.FsyncDirectory(partial);
            Directory.Move(partial, CheckpointDirectory(id));
            await RestoreFromCheckpointLockedAsync(id, identity, config, ct).ConfigureAwait(false);
        }
        else if (start)
        {
            DeleteDirectory(CheckpointDirectory(id) + ".partial");
            DeleteDirectory(PreDumpDirectory(id));
            await StartLockedAsync(id, identity, config, ct).ConfigureAwait(false);
        }
        else
        {
            // a stopped container arrives stopped: it holds no guarantee until it starts
            DeleteDirectory(CheckpointDirectory(id) + ".partial");
            DeleteDirectory(PreDumpDirectory(id));
            await _ledger.ReleaseAsync(id, ct).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The source has recorded the success: the container is this host's now. Until this, the marker of the receiving
    /// process stays, so that a receiver killed between the restore and the source's commit leaves a container that
    /// reconcile removes (the source, which did not hear the restore confirmed, brings its own copy back).
    /// </summary>
    internal async Task CommitIncomingAsync(VeId id, CancellationToken ct)
    {
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        File.Delete(IncomingMarkerPath(id));
        Core.Internal.Native.FsyncDirectory(_store.PrivatePath(id));
    }

    /// <summary>Gives up receiving a container: nothing of it remains on this host.</summary>
    internal async Task AbortIncomingAsync(VeId id, CancellationToken ct)
    {
        if (await _registry.FindAsync(id.ToString(), ct).ConfigureAwait(false) is null)
            return;
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        await DiscardIncomingLockedAsync(id).ConfigureAwait(false);
    }

    private async Task DiscardIncomingLockedAsync(VeId id)
    {
        var none = CancellationToken.None;
        await StorageDaemon.StopAsync(_host, ReceiverPaths(id), none).ConfigureAwait(false);
        if (await _runc.StatusAsync(id, none).ConfigureAwait(false) is not null)
            await _runc.KillAsync(id, "KILL", all: true, none).ConfigureAwait(false);
        await TeardownAsync(id, none).ConfigureAwait(false);
        await _ledger.ReleaseAsync(id, none).ConfigureAwait(false);
        await _registry.UnregisterAsync(id, none).ConfigureAwait(false);
    }
}
