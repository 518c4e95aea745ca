using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

// Live migration of a running VM between two local runtimes, with no shared storage:
//   destination: empty disks of the same sizes, the emulator started with `-incoming defer` and paused, its disk nodes
//                exported writable over NBD, `migrate-incoming tcp:ADDR:PORT`;
//   source:      a `blockdev-mirror` of every disk into the destination's NBD export, until every mirror is ready;
//                then `migrate` (pre-copy, auto-converge, downtime limit; post-copy when asked), and once the source
//                is paused at the switch-over, the mirrors are cancelled (a ready mirror's cancel completes the copy
//                without switching the source to it);
//   destination: stops its NBD server and continues the VM; the source's emulator is then stopped and the VM deleted
//                there (or kept, stopped).
// Any failure before the destination runs the VM aborts the mirrors and the migration, resumes the source if the
// switch-over had paused it, and has the destination remove everything it made.
internal sealed partial class LocalVmDriver
{
    private const string MigrationNodePrefix = "mig-";

    /// <summary>QEMU's default migration bandwidth limit (migration/options.c: MAX_THROTTLE, 128 MiB/s).</summary>
    private const long DefaultMigrationBandwidth = 128L << 20;

    // ------------------------------------------------------------------ source

    /// <summary>Sends the running VM to <paramref name="peer"/>; on success the source's copy is deleted (or kept stopped).</summary>
    internal Task<VmMigrationOutcome> MigrateOutAsync(string nameOrId, IVmMigrationPeer peer, VmMigrationSettings settings, Action<VmMigrationSample>? progress, CancellationToken cancellationToken)
        => WithVmAsync(nameOrId, s => MigrateOutCoreAsync(s, peer, settings, progress, cancellationToken), cancellationToken);

    private async Task<VmMigrationOutcome> MigrateOutCoreAsync(VmSession s, IVmMigrationPeer peer, VmMigrationSettings settings, Action<VmMigrationSample>? progress, CancellationToken ct)
    {
        RequireRunning(s);
        var c = s.Config;
        if (c.Snapshots.Count > 0)
            throw new InvalidStateException($"The VM '{c.Name}' has {c.Snapshots.Count} snapshot(s), which a live migration cannot carry (the disks are copied as they are now). Delete them, or migrate it stopped.");
        if (c.CdromImagePath is { } iso && !File.Exists(iso))
            throw new InvalidStateException($"The VM '{c.Name}' has the CD image '{iso}' inserted, which is gone; eject it first.");
        var rt = s.Runtime!;
        var sw = Stopwatch.StartNew();
        var marker = MigrationMarker(s.Paths);
        await File.WriteAllTextAsync(marker, "copying\n", ct).ConfigureAwait(false);
        var offer = new VmMigrationOffer(
            JsonSerializer.Serialize(c, VmJsonContext.Default.VmConfig),
            new VmMigrationHardware(rt.BaseMemoryBytes, rt.Dimms, rt.Cpus, rt.TargetMemoryBytes, rt.HotplugCpus, rt.BootCpus),
            rt.Software, c.MemoryBytes, Guarantee(c, c.MemoryBytes), settings.PostCopy);
        progress?.Invoke(new VmMigrationSample("preparing", 0, 0, null, null));
        var endpoint = await peer.PrepareAsync(offer, ct).ConfigureAwait(false);

        var nodes = new List<string>();
        var migrating = false;
        long diskBytes = 0;
        TimeSpan downtime;
        long memoryBytes;
        var rounds = 0;
        var postCopyUsed = false;
        try
        {
            var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                try
                {
                    foreach (var d in c.Disks)
                    {
                        var node = MigrationNodePrefix + d.Name;
                        await qmp.ExecuteAsync("blockdev-add", new JsonObject
                        {
                            ["driver"] = "nbd",
                            ["node-name"] = node,
                            ["server"] = new JsonObject { ["type"] = "inet", ["host"] = endpoint.NbdHost, ["port"] = endpoint.NbdPort.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                            ["export"] = endpoint.Exports[d.Name],
                        }, QmpTimeout, ct).ConfigureAwait(false);
                        nodes.Add(node);
                        await qmp.ExecuteAsync("blockdev-mirror", new JsonObject
                        {
                            ["job-id"] = node,
                            ["device"] = d.Name + "-fmt",
                            ["target"] = node,
                            ["sync"] = "full",
                            ["auto-dismiss"] = false,
                        }, QmpTimeout, ct).ConfigureAwait(false);
                    }
                    diskBytes = await WaitForMirrorsReadyAsync(qmp, c, nodes, progress, ct).ConfigureAwait(false);

                    await qmp.ExecuteAsync("migrate-set-capabilities", new JsonObject
                    {
                        ["capabilities"] = new JsonArray(
                            new JsonObject { ["capability"] = "auto-converge", ["state"] = settings.AutoConverge },
                            new JsonObject { ["capability"] = "postcopy-ram", ["state"] = settings.PostCopy }),
                    }, QmpTimeout, ct).ConfigureAwait(false);
                    // Every parameter is set each time: the emulator keeps what an earlier (failed) migration set.
                    var parameters = new JsonObject
                    {
                        ["downtime-limit"] = (long)settings.DowntimeLimit.TotalMilliseconds,
                        ["max-bandwidth"] = settings.MaxBandwidthBytesPerSecond ?? DefaultMigrationBandwidth,
                    };
                    await qmp.ExecuteAsync("migrate-set-parameters", parameters, QmpTimeout, ct).ConfigureAwait(false);
                    migrating = true;
                    await qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = endpoint.MigrationUri }, QmpTimeout, ct).ConfigureAwait(false);
                    (downtime, memoryBytes, postCopyUsed, rounds) = await WaitForMigrationAsync(qmp, c.Name, settings, progress, ct).ConfigureAwait(false);

                    // The source is paused at the switch-over: the mirrors drain what is left and end without pivoting.
                    progress?.Invoke(new VmMigrationSample("switching", diskBytes + memoryBytes, 0, null, null));
                    foreach (var node in nodes)
                        await qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = node }, QmpTimeout, ct).ConfigureAwait(false);
                    foreach (var node in nodes)
                        await FinishJobAsync(qmp, node, requireSuccess: true, ct).ConfigureAwait(false);
                    foreach (var node in nodes)
                        await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = node }, QmpTimeout, ct).ConfigureAwait(false);
                    nodes.Clear();
                    // From here the destination may run the VM: a source that dies now must not resume its copy.
                    await File.WriteAllTextAsync(marker, "handing-over\n", CancellationToken.None).ConfigureAwait(false);
                    await peer.CompleteAsync(s.Id, ct).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    _logger.LogWarning("Migration of VM {Name} failed: {Error}; the source keeps running", c.Name, ex.Message);
                    await RollBackOutgoingAsync(qmp, nodes, migrating, postCopyUsed).ConfigureAwait(false);
                    throw;
                }
            }
        }
        catch
        {
            try
            {
                await peer.AbortAsync(s.Id, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception abortError)
            {
                _logger.LogWarning("Migration of VM {Name}: the destination could not clean up: {Error}", c.Name, abortError.Message);
            }
            File.Delete(marker);
            throw;
        }

        // The destination runs the VM: the source's emulator (paused since the switch-over) goes.
        progress?.Invoke(new VmMigrationSample("cleaning-up", diskBytes + memoryBytes, 0, null, null));
        await KillProcessAsync(rt.Pid, CancellationToken.None).ConfigureAwait(false);
        await CleanUpAfterExitAsync(s.Id, s.Paths, CancellationToken.None).ConfigureAwait(false);
        s.Runtime = null;
        if (!settings.KeepSource)
            await _registry.UnregisterAsync(s.Id, CancellationToken.None).ConfigureAwait(false);
        return new VmMigrationOutcome(s.Id, new VeName(c.Name), downtime, sw.Elapsed, diskBytes, memoryBytes, postCopyUsed, rounds);
    }

    private static string MigrationMarker(VmPaths paths) => Path.Combine(paths.RunDirectory, "migrating");

    /// <summary>
    /// Cleans up after a migration whose process died (the marker it leaves says how far it got): the emulator's
    /// mirror jobs and NBD clients go, a migration still running is cancelled, and the VM resumes if it was paused —
    /// unless the hand-over had begun, when the destination may be running it: then it stays paused and says so.
    /// Runs under the VM's lock, before any operation on it.
    /// </summary>
    private async Task RecoverInterruptedMigrationAsync(VmSession s, CancellationToken ct)
    {
        var marker = MigrationMarker(s.Paths);
        if (s.Runtime is null || !File.Exists(marker))
            return;
        var phase = (await File.ReadAllTextAsync(marker, ct).ConfigureAwait(false)).Trim();
        _logger.LogWarning("VM {Name}: a migration was interrupted ({Phase}); cleaning up", s.Config.Name, phase);
        var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
        await using (qmp.ConfigureAwait(false))
        {
            var jobs = (await qmp.ExecuteAsync("query-jobs", null, QmpTimeout, ct).ConfigureAwait(false))!.AsArray()
                .Select(j => j!["id"]!.GetValue<string>()).Where(id => id.StartsWith(MigrationNodePrefix, StringComparison.Ordinal)).ToList();
            var nodes = (await qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true }, QmpTimeout, ct).ConfigureAwait(false))!.AsArray()
                .Select(n => n!["node-name"]!.GetValue<string>()).Where(n => n.StartsWith(MigrationNodePrefix, StringComparison.Ordinal)).Distinct().ToList();
            var status = (await qmp.ExecuteAsync("query-migrate", null, QmpTimeout, ct).ConfigureAwait(false))?["status"]?.GetValue<string>();
            var migrating = status is "setup" or "active" or "postcopy-active" or "pre-switchover" or "device";
            if (phase == "handing-over")
            {
                foreach (var job in jobs)
                    await FinishJobAsync(qmp, job, requireSuccess: false, ct).ConfigureAwait(false);
                File.Delete(marker);
                throw new InvalidStateException($"The VM '{s.Config.Name}' was being handed over to a migration's destination when the migration stopped; it may run there. " +
                    "It stays paused here: check the destination, then delete or kill this copy (or resume it if the destination does not have it).");
            }
            await RollBackOutgoingAsync(qmp, nodes.Union(jobs).ToList(), migrating, postCopy: status == "postcopy-active").ConfigureAwait(false);
        }
        File.Delete(marker);
    }

    private static async Task<long> WaitForMirrorsReadyAsync(QmpClient qmp, VmConfig c, List<string> nodes, Action<VmMigrationSample>? progress, CancellationToken ct)
    {
        while (true)
        {
            var jobs = (await qmp.ExecuteAsync("query-jobs", null, QmpTimeout, ct).ConfigureAwait(false))!.AsArray();
            long done = 0, total = 0;
            var ready = 0;
            foreach (var node in nodes)
            {
                var job = jobs.FirstOrDefault(j => j!["id"]!.GetValue<string>() == node)
                    ?? throw new InvalidStateException($"Copying the disks of '{c.Name}' to the destination failed: the job {node} disappeared.");
                var status = job["status"]!.GetValue<string>();
                if (status is "concluded" or "aborting" or "null")
                    throw new InvalidStateException($"Copying disk {node[MigrationNodePrefix.Length..]} of '{c.Name}' to the destination failed: {job["error"]?.GetValue<string>() ?? status}.");
                done += job["current-progress"]?.GetValue<long>() ?? 0;
                total += job["total-progress"]?.GetValue<long>() ?? 0;
                if (status == "ready")
                    ready++;
            }
            progress?.Invoke(new VmMigrationSample("copying-disks", done, Math.Max(0, total - done), null, null));
            if (ready == nodes.Count)
                return done;
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
    }

    private static async Task<(TimeSpan Downtime, long Bytes, bool PostCopy, int Rounds)> WaitForMigrationAsync(QmpClient qmp, string name, VmMigrationSettings settings, Action<VmMigrationSample>? progress, CancellationToken ct)
    {
        var postCopy = false;
        while (true)
        {
            var m = (await qmp.ExecuteAsync("query-migrate", null, QmpTimeout, ct).ConfigureAwait(false))!;
            var status = m["status"]?.GetValue<string>();
            var ram = m["ram"];
            long transferred = ram?["transferred"]?.GetValue<long>() ?? 0;
            switch (status)
            {
                case "completed":
                    return (TimeSpan.FromMilliseconds(m["downtime"]?.GetValue<long>() ?? 0), transferred, postCopy, (int)(ram?["dirty-sync-count"]?.GetValue<long>() ?? 0));
                case "failed" or "cancelled":
                    throw new InvalidStateException($"The live migration of '{name}' {status}: {m["error-desc"]?.GetValue<string>() ?? "the emulator gave no reason"}.");
            }
            long? dirty = ram?["dirty-pages-rate"]?.GetValue<long>() is { } pages && ram?["page-size"]?.GetValue<long>() is { } size ? pages * size : null;
            TimeSpan? expected = m["expected-downtime"]?.GetValue<long>() is { } ms ? TimeSpan.FromMilliseconds(ms) : null;
            progress?.Invoke(new VmMigrationSample(status == "postcopy-active" ? "post-copy" : "copying-memory", transferred, ram?["remaining"]?.GetValue<long>() ?? 0, dirty, expected));
            // Post-copy, when allowed, starts once pre-copy has sent everything once and still has not converged.
            if (settings.PostCopy && !postCopy && status == "active" && (ram?["dirty-sync-count"]?.GetValue<long>() ?? 0) >= 2)
            {
                await qmp.ExecuteAsync("migrate-start-postcopy", null, QmpTimeout, ct).ConfigureAwait(false);
                postCopy = true;
            }
            await Task.Delay(100, ct).ConfigureAwait(false);
        }
    }

    private static Task FinishJobAsync(QmpClient qmp, string id, bool requireSuccess, CancellationToken ct)
        => BlockJobs.FinishAsync(qmp, id, $"the copy of disk {id[MigrationNodePrefix.Length..]}", requireSuccess, QmpTimeout, ct);

    /// <summary>Undoes what the source did: the migration, the mirrors, the NBD clients; resumes the VM if the switch-over paused it.</summary>
    private async Task RollBackOutgoingAsync(QmpClient qmp, List<string> nodes, bool migrating, bool postCopy)
    {
        var none = CancellationToken.None;
        async Task Try(string command, JsonObject? args)
        {
            try { await qmp.ExecuteAsync(command, args, QmpTimeout, none).ConfigureAwait(false); }
            catch (Exception ex) when (ex is QmpException or VirtuozzoException or IOException) { _logger.LogDebug("Rollback: {Command} failed: {Error}", command, ex.Message); }
        }
        if (migrating)
        {
            await Try("migrate_cancel", null).ConfigureAwait(false);
            for (var i = 0; i < 200; i++)
            {
                try
                {
                    var st = (await qmp.ExecuteAsync("query-migrate", null, QmpTimeout, none).ConfigureAwait(false))?["status"]?.GetValue<string>();
                    if (st is null or "cancelled" or "failed" or "completed")
                        break;
                }
                catch (Exception ex) when (ex is QmpException or VirtuozzoException or IOException)
                {
                    break;
                }
                await Task.Delay(50, none).ConfigureAwait(false);
            }
        }
        foreach (var node in nodes)
        {
            await Try("block-job-cancel", new JsonObject { ["device"] = node, ["force"] = true }).ConfigureAwait(false);
            try { await FinishJobAsync(qmp, node, requireSuccess: false, none).ConfigureAwait(false); }
            catch (Exception ex) when (ex is QmpException or VirtuozzoException or IOException) { _logger.LogDebug("Rollback: job {Node}: {Error}", node, ex.Message); }
            await Try("blockdev-del", new JsonObject { ["node-name"] = node }).ConfigureAwait(false);
        }
        if (postCopy)
        {
            _logger.LogError("The migration failed after post-copy began: the VM's state is split between the hosts and cannot be resumed on the source.");
            return;
        }
        try
        {
            var status = (await qmp.ExecuteAsync("query-status", null, QmpTimeout, none).ConfigureAwait(false))?["status"]?.GetValue<string>();
            if (status is "postmigrate" or "paused" or "finish-migrate")
                await Try("cont", null).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is QmpException or VirtuozzoException or IOException)
        {
            _logger.LogWarning("Rollback: could not query the VM's state: {Error}", ex.Message);
        }
    }

    // ------------------------------------------------------------------ destination

    /// <summary>
    /// Receives a VM: checks the offer, admits its guarantee, creates empty disks and starts the emulator waiting for
    /// the migration, with its disks exported over NBD on <paramref name="listenAddress"/>.
    /// </summary>
    internal async Task<VmIncomingEndpoint> PrepareIncomingAsync(VmMigrationOffer offer, string listenAddress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(offer);
        var address = IPAddress.Parse(listenAddress);
        var source = JsonSerializer.Deserialize(offer.ConfigJson, VmJsonContext.Default.VmConfig)
            ?? throw new ArgumentException("The migration offer carries no VM configuration.", nameof(offer));
        var id = new VeId(source.Id);
        if (await _registry.FindAsync(source.Id.ToString(), ct).ConfigureAwait(false) is { } sameId)
            throw new AlreadyExistsException($"The destination already has a {(sameId.Kind == VeKind.Vm ? "VM" : "container")} with the UUID {source.Id} ('{sameId.Name}').");
        // The CPU model must agree: a VM emulated on the source is emulated here too; one using hardware
        // virtualisation there needs it here (UseSoftwareAsync refuses when it does not work).
        var acceleration = offer.Software ? VmAcceleration.Software : VmAcceleration.Hardware;
        await UseSoftwareAsync(acceleration, ct).ConfigureAwait(false);

        var hw = offer.Hardware;
        var config = source with
        {
            SuspendedStateFile = null,
            SuspendedHardware = new VmSuspendedHardware(hw.BaseMemoryBytes, hw.Dimms, hw.Cpus, hw.TargetMemoryBytes, hw.HotplugCpus, hw.BootCpus),
            // The change-tracking bitmaps stay behind: the next backup here is a full one, and says why.
            TrackingResets = source.Disks.ToDictionary(d => d.Name, _ => "the VM was migrated to this host", StringComparer.Ordinal),
        };
        var paths = PathsOf(config.Id);
        await _registry.RegisterAsync(id, new VeName(config.Name), VeKind.Vm, ct).ConfigureAwait(false); // refuses a taken name
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        var s = new VmSession(config, paths, null);
        try
        {
            foreach (var d in config.Disks)
                await _disks.CreateAsync(paths.DiskPath(d), d.SizeBytes, null, ct).ConfigureAwait(false);
            await WriteConfigAsync(paths, config, ct).ConfigureAwait(false);
            // Admits the guarantee first (InsufficientResourcesException before anything moves), then starts the emulator.
            await StartCoreAsync(s, paused: true, ct, migrationTarget: true, acceleration).ConfigureAwait(false);

            var nbdPort = LocalPorts.Free(address);
            var migrationPort = LocalPorts.Free(address);
            var exports = new Dictionary<string, string>(StringComparer.Ordinal);
            var qmp = await ConnectAsync(paths, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                await qmp.ExecuteAsync("nbd-server-start", new JsonObject
                {
                    ["addr"] = new JsonObject
                    {
                        ["type"] = "inet",
                        ["data"] = new JsonObject { ["host"] = listenAddress, ["port"] = nbdPort.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                    },
                }, QmpTimeout, ct).ConfigureAwait(false);
                foreach (var d in config.Disks)
                {
                    await qmp.ExecuteAsync("block-export-add", new JsonObject
                    {
                        ["type"] = "nbd",
                        ["id"] = MigrationNodePrefix + d.Name,
                        ["node-name"] = d.Name + "-fmt",
                        ["name"] = d.Name,
                        ["writable"] = true,
                    }, QmpTimeout, ct).ConfigureAwait(false);
                    exports[d.Name] = d.Name;
                }
                if (offer.PostCopy)
                {
                    await qmp.ExecuteAsync("migrate-set-capabilities", new JsonObject
                    {
                        ["capabilities"] = new JsonArray(new JsonObject { ["capability"] = "postcopy-ram", ["state"] = true }),
                    }, QmpTimeout, ct).ConfigureAwait(false);
                }
                var uri = $"tcp:{LocalPorts.FormatHost(address)}:{migrationPort}";
                await qmp.ExecuteAsync("migrate-incoming", new JsonObject { ["uri"] = uri }, QmpTimeout, ct).ConfigureAwait(false);
                _logger.LogDebug("VM {Name} waits for its migration at {Uri}, disks at nbd://{Host}:{Port}", config.Name, uri, listenAddress, nbdPort);
                return new VmIncomingEndpoint(uri, listenAddress, nbdPort, exports);
            }
        }
        catch
        {
            await DiscardIncomingAsync(s, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The VM's state has arrived: stops the NBD server and runs the VM.</summary>
    internal Task CompleteIncomingAsync(VeId id, CancellationToken cancellationToken)
        => WithVmAsync(id.ToString(), async s =>
        {
            RequireRunning(s);
            var qmp = await ConnectAsync(s.Paths, cancellationToken).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
                while ((await qmp.ExecuteAsync("query-status", null, QmpTimeout, cancellationToken).ConfigureAwait(false))?["status"]?.GetValue<string>() == "inmigrate")
                {
                    if (DateTime.UtcNow > deadline)
                        throw new InvalidStateException($"The VM '{s.Config.Name}' did not finish receiving its state within a minute.");
                    await Task.Delay(20, cancellationToken).ConfigureAwait(false);
                }
                var incoming = (await qmp.ExecuteAsync("query-migrate", null, QmpTimeout, cancellationToken).ConfigureAwait(false))?["status"]?.GetValue<string>();
                if (incoming is "failed" or "cancelled")
                    throw new InvalidStateException($"The VM '{s.Config.Name}' did not receive its state ({incoming}).");
                foreach (var d in s.Config.Disks)
                    await qmp.ExecuteAsync("block-export-del", new JsonObject { ["id"] = MigrationNodePrefix + d.Name }, QmpTimeout, cancellationToken).ConfigureAwait(false);
                await qmp.ExecuteAsync("nbd-server-stop", null, QmpTimeout, cancellationToken).ConfigureAwait(false);
                await qmp.ExecuteAsync("cont", null, QmpTimeout, cancellationToken).ConfigureAwait(false);
            }
            s.Config = s.Config with { SuspendedHardware = null };
            await WriteConfigAsync(s.Paths, s.Config, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    /// <summary>Gives up receiving a VM (live or stopped): kills its emulator or stops receiving its disks, and removes it (nothing of it remains on this host).</summary>
    internal async Task AbortIncomingAsync(VeId id, CancellationToken cancellationToken)
    {
        if (await AbortOfflineIncomingAsync(id).ConfigureAwait(false))
            return;
        if (await _registry.FindAsync(id.ToString(), cancellationToken).ConfigureAwait(false) is null)
            return;
        using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
        var s = await OpenSessionAsync(id.Value, cancellationToken).ConfigureAwait(false);
        if (s is not null)
            await DiscardIncomingAsync(s, cancellationToken).ConfigureAwait(false);
        else
            await _registry.UnregisterAsync(id, cancellationToken).ConfigureAwait(false);
    }

    private async Task DiscardIncomingAsync(VmSession s, CancellationToken ct)
    {
        if (s.Runtime is { } rt)
            await KillProcessAsync(rt.Pid, ct).ConfigureAwait(false);
        else if (File.Exists(s.Paths.PidFile) && int.TryParse(File.ReadAllText(s.Paths.PidFile).Trim(), out var pid))
            await KillProcessAsync(pid, ct).ConfigureAwait(false);
        await CleanUpAfterExitAsync(s.Id, s.Paths, ct).ConfigureAwait(false);
        s.Runtime = null;
        await _registry.UnregisterAsync(s.Id, ct).ConfigureAwait(false);
    }
}
