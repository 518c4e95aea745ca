using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

internal sealed partial class LocalVmDriver
{
    private static string Tag(Guid id) => "vzsdk-" + id.ToString("N");

    private static VmSnapshotInfo ToInfo(VmSnapshotConfig s, Guid? current)
        => new(s.Id, s.Name, s.Description, s.CreatedAt, s.ParentId, s.IncludesMemory, s.Id == current);

    /// <summary>Runs one internal-snapshot command (savevm, loadvm, delvm) through the human monitor; its output is the error, if any.</summary>
    private static async Task HmpAsync(QmpClient qmp, string commandLine, string vmName, CancellationToken ct)
    {
        var output = (await qmp.ExecuteAsync("human-monitor-command", new JsonObject { ["command-line"] = commandLine }, LocalTimeouts.Snapshot, ct).ConfigureAwait(false))?.GetValue<string>();
        if (!string.IsNullOrWhiteSpace(output))
            throw new InvalidStateException($"The snapshot operation on '{vmName}' failed: {output.Trim()}");
    }

    /// <summary>Runs <paramref name="action"/> on the VM's monitor: live when it runs, else in a paused, never-booted instance.</summary>
    private async Task WithMonitorAsync(VmSession s, Func<QmpClient, Task> action, bool keepRunning, CancellationToken ct)
    {
        if (s.Config.Disks.Count == 0)
            throw new InvalidStateException($"The VM '{s.Config.Name}' has no disk to hold snapshots.");
        var wasRunning = s.Runtime is not null;
        if (!wasRunning)
        {
            if (s.Config.SuspendedStateFile is not null)
                throw new InvalidStateException($"The VM '{s.Config.Name}' is suspended; resume it first.");
            await StartCoreAsync(s, paused: true, ct).ConfigureAwait(false);
        }
        try
        {
            var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
                await action(qmp).ConfigureAwait(false);
        }
        finally
        {
            if (!wasRunning && !keepRunning)
                await QuitPausedAsync(s).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Ends an emulator started paused for a monitor operation with <c>quit</c>, so that it closes its images cleanly
    /// (a kill would leave their change-tracking bitmaps marked in use, and the next backup full); kills it if it lingers.
    /// </summary>
    private async Task QuitPausedAsync(VmSession s)
    {
        if (s.Runtime is { } rt)
        {
            try
            {
                await QmpAsync(s, "quit", null, CancellationToken.None, LocalTimeouts.MonitorQuickCommand).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is VirtuozzoException or TimeoutException or IOException)
            {
                _logger.LogDebug("VM {Name}: quit failed ({Error})", s.Config.Name, ex.Message);
            }
            for (var i = 0; i < 200 && IsAlive(rt); i++)
                await Task.Delay(50).ConfigureAwait(false);
        }
        await StopCoreAsync(s, new VeStopOptions { Kill = true }, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Removes the change-tracking bitmaps of every disk of the VM behind <paramref name="qmp"/> and records why.</summary>
    private static async Task<VmConfig> ResetTrackingAsync(QmpClient qmp, VmConfig config, string reason, CancellationToken ct)
    {
        foreach (var d in config.Disks)
        {
            await ChangeTracking.RemoveBitmapsAsync(qmp, d.Name + "-fmt", ct).ConfigureAwait(false);
            config = WithTrackingReset(config, d.Name, reason);
        }
        return config;
    }

    /// <summary>
    /// Takes a snapshot of a VM's disks — and, for a running VM, of its memory and devices, so that switching to it
    /// resumes the guest where it was.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl snapshot NAME --name SNAP</c>.</remarks>
    public Task<VmSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(snapshotName);
        var ct = cancellationToken;
        return WithVmAsync(nameOrId, async s =>
        {
            var snap = new VmSnapshotConfig(Guid.NewGuid(), snapshotName, description, DateTimeOffset.UtcNow, s.Config.CurrentSnapshotId, s.Runtime is not null);
            await WithMonitorAsync(s, qmp => HmpAsync(qmp, "savevm " + Tag(snap.Id), s.Config.Name, ct), keepRunning: false, ct).ConfigureAwait(false);
            s.Config = s.Config with { Snapshots = [.. s.Config.Snapshots, snap], CurrentSnapshotId = snap.Id };
            await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            return ToInfo(snap, snap.Id);
        }, cancellationToken);
    }

    /// <summary>Lists a VM's snapshots; <see cref="VmSnapshotInfo.ParentId"/> links them into a tree.</summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-list NAME</c>.</remarks>
    public Task<IReadOnlyList<VmSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken cancellationToken = default)
        => WithVmAsync(nameOrId, s => Task.FromResult<IReadOnlyList<VmSnapshotInfo>>(
            s.Config.Snapshots.OrderBy(x => x.CreatedAt).Select(x => ToInfo(x, s.Config.CurrentSnapshotId)).ToList()), cancellationToken);

    private static VmSnapshotConfig FindSnapshot(VmSession s, string idOrName)
        => s.Config.Snapshots.FirstOrDefault(x => x.Id.ToString() == idOrName.Trim('{', '}') || x.Name == idOrName)
           ?? throw new NotFoundException($"The VM '{s.Config.Name}' has no snapshot '{idOrName}'.");

    /// <summary>
    /// Reverts a VM to a snapshot. A snapshot with memory resumes the guest where it was (a stopped VM is started);
    /// a disk-only snapshot can only be switched to while the VM is stopped.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-switch NAME --id ID</c>.</remarks>
    public Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(snapshotIdOrName);
        var ct = cancellationToken;
        return WithVmAsync<bool>(nameOrId, async s =>
        {
            var snap = FindSnapshot(s, snapshotIdOrName);
            if (!snap.IncludesMemory && s.Runtime is not null)
                throw new InvalidStateException($"The snapshot '{snap.Name}' holds no memory; stop the VM '{s.Config.Name}' before switching to it.");
            var startedHere = s.Runtime is null;
            await WithMonitorAsync(s, async qmp =>
            {
                // The disks change behind any change-tracking bitmap (and QEMU refuses to load a snapshot while a
                // bitmap is active): tracking restarts, and the next backup is full and says why.
                s.Config = await ResetTrackingAsync(qmp, s.Config, $"the VM was switched to snapshot '{snap.Name}'", ct).ConfigureAwait(false);
                await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
                await HmpAsync(qmp, "loadvm " + Tag(snap.Id), s.Config.Name, ct).ConfigureAwait(false);
                if (startedHere && snap.IncludesMemory)
                    await qmp.ExecuteAsync("cont", null, QmpTimeout, ct).ConfigureAwait(false);
            }, keepRunning: snap.IncludesMemory, ct).ConfigureAwait(false);
            s.Config = s.Config with { CurrentSnapshotId = snap.Id };
            await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    /// <summary>Deletes a snapshot; its children are attached to its parent.</summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-delete NAME --id ID</c>.</remarks>
    public Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(snapshotIdOrName);
        var ct = cancellationToken;
        return WithVmAsync<bool>(nameOrId, async s =>
        {
            var snap = FindSnapshot(s, snapshotIdOrName);
            await WithMonitorAsync(s, qmp => HmpAsync(qmp, "delvm " + Tag(snap.Id), s.Config.Name, ct), keepRunning: false, ct).ConfigureAwait(false);
            s.Config = s.Config with
            {
                Snapshots = s.Config.Snapshots.Where(x => x.Id != snap.Id).Select(x => x.ParentId == snap.Id ? x with { ParentId = snap.ParentId } : x).ToList(),
                CurrentSnapshotId = s.Config.CurrentSnapshotId == snap.Id ? snap.ParentId : s.Config.CurrentSnapshotId,
            };
            await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    // ------------------------------------------------------------------ clone

    /// <summary>
    /// Clones a stopped VM under a new name, UUID and MAC address. A full clone copies the disks; a linked clone turns
    /// the source's disks into read-only bases shared by the source and the clone, each writing to its own overlay.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl clone NAME --name NEW [--linked]</c>.</remarks>
    public Task<VmInfo> CloneAsync(string nameOrId, VmCloneOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        _ = options.Name.Value; // an uninitialised VeName throws here
        var ct = cancellationToken;
        return WithVmAsync(nameOrId, async s =>
        {
            RequireStopped(s, "clone");
            if (s.Config.SuspendedStateFile is not null)
                throw new InvalidStateException($"The VM '{s.Config.Name}' is suspended; resume and stop it before cloning.");
            if (options.Linked && s.Config.Snapshots.Count > 0)
                throw new InvalidStateException($"A linked clone of '{s.Config.Name}' needs a VM without snapshots; delete them or make a full clone.");
            var id = Guid.NewGuid();
            var paths = PathsOf(id);
            var clone = s.Config with
            {
                Id = id,
                Name = options.Name.Value,
                CreatedAt = DateTimeOffset.UtcNow,
                MacAddress = s.Config.MacAddress is null ? null : VmConfigRules.NewMac(id),
                Snapshots = [],
                CurrentSnapshotId = null,
                TrackingResets = null,
            };
            await _registry.RegisterAsync(new VeId(id), options.Name, VeKind.Vm, ct).ConfigureAwait(false);
            try
            {
                var sourceDisks = new List<VmDiskConfig>();
                foreach (var d in s.Config.Disks)
                {
                    var src = s.Paths.DiskPath(d);
                    var dst = paths.DiskPath(d);
                    if (!options.Linked)
                    {
                        File.Copy(src, dst);
                        RemoveTrackingBitmaps(dst); // the source's backups are not the clone's
                        sourceDisks.Add(d);
                        continue;
                    }
                    // The source's current image becomes a read-only base; source and clone each get an overlay on it.
                    // The new overlay has no change tracking: the source's next backup is full.
                    RemoveTrackingBitmaps(src);
                    s.Config = WithTrackingReset(s.Config, d.Name, $"the disk became the base of linked clone '{options.Name}'");
                    var baseFile = $"{d.Name}.base-{id:N}.qcow2";
                    var basePath = Path.Combine(s.Paths.PrivateDirectory, baseFile);
                    File.Move(src, basePath);
                    try
                    {
                        File.SetUnixFileMode(basePath, UnixFileMode.UserRead | UnixFileMode.GroupRead);
                        await _disks.CreateAsync(src, d.SizeBytes, basePath, ct).ConfigureAwait(false);
                    }
                    catch
                    {
                        File.Move(basePath, src);
                        throw;
                    }
                    await _disks.CreateAsync(dst, d.SizeBytes, basePath, ct).ConfigureAwait(false);
                    sourceDisks.Add(d);
                }
                await WriteConfigAsync(paths, clone, ct).ConfigureAwait(false);
                if (options.Linked)
                    await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            }
            catch
            {
                await _registry.UnregisterAsync(new VeId(id), CancellationToken.None).ConfigureAwait(false);
                throw;
            }
            return ToInfo(new VmSession(clone, paths, null), VeState.Stopped);
        }, cancellationToken);
    }
}
