using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Containers.Runtime.Local;

// Container snapshots, as prlctl snapshot serves containers: an internal snapshot of the container's QCOW2 disk, and —
// when the container runs — its processes' state as CRIU images in private/<uuid>/snapshots/<id>/. A running container
// is paused (freezer) for the snapshot: its file system is synced, the disk snapshot taken through its storage daemon,
// and CRIU dumps the still-frozen processes and leaves them running; then it is resumed, so disk and processes are of
// one instant. Switching to a snapshot with processes restores them; without, the container is left stopped.
internal sealed partial class LocalContainerDriver
{
    private static string SnapshotTag(Guid id) => "vzsdk-" + id.ToString("N");

    private string SnapshotImagesDirectory(VeId id, Guid snapshot) => Path.Combine(_store.PrivatePath(id), "snapshots", snapshot.ToString());

    private static ContainerSnapshotInfo ToInfo(ContainerSnapshotConfig s, Guid? current)
        => new(s.Id, s.Name, s.Description, s.CreatedAt, s.ParentId, s.IncludesMemory, s.Id == current);

    private static ContainerSnapshotConfig Find(ContainerConfig config, string name, string idOrName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(idOrName);
        return config.Snapshots.FirstOrDefault(s => Guid.TryParse(idOrName.Trim('{', '}'), out var g) && s.Id == g)
            ?? config.Snapshots.FirstOrDefault(s => s.Name == idOrName)
            ?? throw new NotFoundException($"Container {name} has no snapshot '{idOrName}'.");
    }

    private Task WriteConfigAsync(VeId id, ContainerConfig config, CancellationToken ct)
        => _store.WriteDocumentAsync(ConfigPath(id), config, ContainersJson.Default.ContainerConfig, ct);

    public async Task<ContainerSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(snapshotName);
        var (identity, config) = await LoadAsync(nameOrId, ct).ConfigureAwait(false);
        var id = identity.VeId;
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        (_, config) = await LoadAsync(id.ToString(), ct).ConfigureAwait(false);
        if (config.Snapshots.Any(s => s.Name == snapshotName))
            throw new AlreadyExistsException($"Container {identity.Name} already has a snapshot named '{snapshotName}'.");
        var state = await StateOfAsync(id, ct).ConfigureAwait(false);
        if (state is VeState.Mounted or VeState.Busy || (state == VeState.Suspended && await _runc.StatusAsync(id, ct).ConfigureAwait(false) is null))
            throw new InvalidStateException($"Container {identity.Name} is {(state == VeState.Suspended ? "suspended to disk" : state.ToString().ToLowerInvariant())}; snapshots are taken of a running or stopped container.");
        var snapshot = Guid.NewGuid();
        var tag = SnapshotTag(snapshot);
        var withMemory = false;
        if (state is VeState.Running or VeState.Suspended)
        {
            var criu = await Criu.ProbeAsync(_host, _runtime.Options.Local.CriuPath, _store.RunDirectory, ct).ConfigureAwait(false);
            var wasRunning = state == VeState.Running;
            if (wasRunning)
                await _runc.PauseAsync(id, ct).ConfigureAwait(false);
            try
            {
                await _host.ExecuteAsync(new Command("sync").WithArguments("-f", _store.RootPath(id)).WithTimeout(LocalTimeouts.FileSystemRepair), ct).ConfigureAwait(false);
                var qmp = await StorageDaemon.ConnectAsync(DaemonPaths(id), ct).ConfigureAwait(false);
                await using (qmp.ConfigureAwait(false))
                    await qmp.ExecuteAsync("blockdev-snapshot-internal-sync", new JsonObject { ["device"] = StorageDaemon.ExportNode, ["name"] = tag }, LocalTimeouts.Snapshot, ct).ConfigureAwait(false);
                if (criu.Tool is { } tool && CheckpointRefusal(config) is null)
                {
                    var dir = SnapshotImagesDirectory(id, snapshot);
                    var partial = dir + ".partial";
                    DeleteDirectory(partial);
                    Directory.CreateDirectory(partial);
                    var work = CriuWorkDirectory(id);
                    DeleteDirectory(work);
                    Directory.CreateDirectory(work);
                    try
                    {
                        await _runc.CheckpointAsync(id, tool, partial, work, leaveRunning: true, ct).ConfigureAwait(false);
                    }
                    catch
                    {
                        await UnmountUnderAsync(work).ConfigureAwait(false);
                        DeleteDirectory(partial);
                        await DeleteDiskSnapshotAsync(id, tag, CancellationToken.None).ConfigureAwait(false);
                        throw;
                    }
                    Core.Internal.Native.FsyncDirectory(partial);
                    Directory.Move(partial, dir);
                    withMemory = true;
                }
                else
                {
                    _logger.LogWarning("Container {Name}: snapshot {Snapshot} holds the disk only ({Reason})", identity.Name, snapshotName, CheckpointRefusal(config) ?? criu.Reason);
                }
            }
            finally
            {
                if (wasRunning)
                    await _runc.ResumeAsync(id, CancellationToken.None).ConfigureAwait(false);
            }
        }
        else
        {
            using var image = Qcow2Image.Open(DiskPath(id));
            image.CreateSnapshot(tag);
        }
        var entry = new ContainerSnapshotConfig(snapshot, snapshotName, description, DateTimeOffset.UtcNow, config.CurrentSnapshotId, withMemory);
        config = config with { Snapshots = [.. config.Snapshots, entry], CurrentSnapshotId = snapshot };
        await WriteConfigAsync(id, config, ct).ConfigureAwait(false);
        return ToInfo(entry, snapshot);
    }

    public async Task<IReadOnlyList<ContainerSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken ct)
    {
        var (_, config) = await LoadAsync(nameOrId, ct).ConfigureAwait(false);
        return config.Snapshots.OrderBy(s => s.CreatedAt).Select(s => ToInfo(s, config.CurrentSnapshotId)).ToList();
    }

    public async Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken ct)
    {
        var (identity, _) = await LoadAsync(nameOrId, ct).ConfigureAwait(false);
        var id = identity.VeId;
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        var (_, config) = await LoadAsync(id.ToString(), ct).ConfigureAwait(false);
        var snapshot = Find(config, identity.Name, snapshotIdOrName);
        var state = await StateOfAsync(id, ct).ConfigureAwait(false);
        if (state is VeState.Mounted or VeState.Busy)
            throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; unmount it first.");
        // Whatever runs now is discarded, as prlctl snapshot-switch does.
        if (await _runc.StatusAsync(id, ct).ConfigureAwait(false) is not null)
            await StopLockedAsync(id, config, new VeStopOptions { Kill = true }, ct).ConfigureAwait(false);
        DiscardCheckpoint(id);
        await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
        using (var image = Qcow2Image.Open(DiskPath(id)))
            image.ApplySnapshot(SnapshotTag(snapshot.Id));
        config = config with { CurrentSnapshotId = snapshot.Id };
        await WriteConfigAsync(id, config, ct).ConfigureAwait(false);
        if (!snapshot.IncludesMemory)
            return;
        // The processes come back as from a suspend to disk: the snapshot's images become the checkpoint, restored now.
        var checkpoint = CheckpointDirectory(id);
        var partial = checkpoint + ".partial";
        DeleteDirectory(partial);
        Directory.CreateDirectory(partial);
        foreach (var file in Directory.EnumerateFiles(SnapshotImagesDirectory(id, snapshot.Id)))
            File.Copy(file, Path.Combine(partial, Path.GetFileName(file)));
        await File.WriteAllTextAsync(Path.Combine(partial, CheckpointMarker), $"{identity.Name}\nsnapshot {snapshot.Id}\n{DateTimeOffset.UtcNow:O}\n", ct).ConfigureAwait(false);
        Core.Internal.Native.FsyncDirectory(partial);
        Directory.Move(partial, checkpoint);
        await RestoreFromCheckpointLockedAsync(id, identity, config, ct).ConfigureAwait(false);
    }

    public async Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken ct)
    {
        var (identity, _) = await LoadAsync(nameOrId, ct).ConfigureAwait(false);
        var id = identity.VeId;
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        var (_, config) = await LoadAsync(id.ToString(), ct).ConfigureAwait(false);
        var snapshot = Find(config, identity.Name, snapshotIdOrName);
        await DeleteDiskSnapshotAsync(id, SnapshotTag(snapshot.Id), ct).ConfigureAwait(false);
        DeleteDirectory(SnapshotImagesDirectory(id, snapshot.Id));
        config = config with
        {
            Snapshots = config.Snapshots.Where(s => s.Id != snapshot.Id).Select(s => s.ParentId == snapshot.Id ? s with { ParentId = snapshot.ParentId } : s).ToList(),
            CurrentSnapshotId = config.CurrentSnapshotId == snapshot.Id ? snapshot.ParentId : config.CurrentSnapshotId,
        };
        await WriteConfigAsync(id, config, ct).ConfigureAwait(false);
    }

    /// <summary>Deletes the disk's internal snapshot: through the storage daemon when it serves the disk, else in the file.</summary>
    private async Task DeleteDiskSnapshotAsync(VeId id, string tag, CancellationToken ct)
    {
        if (StorageDaemon.RunningPid(DaemonPaths(id)) is not null)
        {
            var qmp = await StorageDaemon.ConnectAsync(DaemonPaths(id), ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
                await qmp.ExecuteAsync("blockdev-snapshot-delete-internal-sync", new JsonObject { ["device"] = StorageDaemon.ExportNode, ["name"] = tag }, LocalTimeouts.Snapshot, ct).ConfigureAwait(false);
            return;
        }
        using var image = Qcow2Image.Open(DiskPath(id));
        image.DeleteSnapshot(tag);
    }
}
