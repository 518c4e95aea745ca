using System.Text.Json;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

/// <summary>One disk of a VM as a backup sees it.</summary>
/// <param name="Name">The disk's name (<c>hdd0</c>…).</param>
/// <param name="Path">Its image file.</param>
/// <param name="SizeBytes">Its virtual size.</param>
/// <param name="Node">The emulator's block node of its format layer (where change-tracking bitmaps live).</param>
internal sealed record VmBackupDisk(string Name, string Path, long SizeBytes, string Node);

/// <summary>What a backup needs to know about a VM, read under the VM's lock (which the caller holds).</summary>
internal sealed record VmBackupView(VeId Id, string Name, bool Running, bool Suspended, IReadOnlyList<VmBackupDisk> Disks, string ConfigJson, IReadOnlyDictionary<string, string> TrackingResets);

/// <summary>The guest's file systems frozen through its guest tools; disposing thaws them and releases the channel.</summary>
internal sealed class GuestFreeze(GuestAgentClient agent, FileLock agentLock, int count, ILogger logger, string vmName, string marker) : IAsyncDisposable
{
    /// <summary>How many file systems the guest froze.</summary>
    public int Count => count;

    public async ValueTask DisposeAsync()
    {
        try
        {
            // A guest left frozen would hang every writer in it: try hard.
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await agent.ThawFileSystemsAsync(LocalTimeouts.GuestThaw, CancellationToken.None).ConfigureAwait(false);
                    File.Delete(marker);
                    break;
                }
                catch (Exception ex) when (attempt < 3 && ex is GuestAgentException or GuestAgentUnavailableException or TimeoutException or IOException)
                {
                    logger.LogWarning("VM {Name}: thawing its file systems failed ({Error}); retrying", vmName, ex.Message);
                    await Task.Delay(500).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            await agent.DisposeAsync().ConfigureAwait(false);
            agentLock.Dispose();
        }
    }
}

internal sealed partial class LocalVmDriver
{
    // The Backup package's view of VMs. Every method here expects the caller to hold the VM's lock.

    internal StateStore Store => _store;

    internal VeRegistry Registry => _registry;

    internal IVirtuozzoHost Host => _host;

    internal string PrivateDirectoryOf(VeId id) => PathsOf(id.Value).PrivateDirectory;

    internal async Task<VmBackupView?> GetBackupViewAsync(VeId id, CancellationToken ct)
    {
        var s = await OpenSessionAsync(id.Value, ct).ConfigureAwait(false);
        if (s is null)
            return null;
        var json = await File.ReadAllTextAsync(s.Paths.ConfigFile, ct).ConfigureAwait(false);
        var identity = await _registry.FindAsync(id.ToString(), ct).ConfigureAwait(false);
        return new VmBackupView(
            id,
            identity?.Name ?? s.Config.Name,
            s.Runtime is not null,
            s.Runtime is null && s.Config.SuspendedStateFile is not null,
            s.Config.Disks.Select(d => new VmBackupDisk(d.Name, s.Paths.DiskPath(d), d.SizeBytes, d.Name + "-fmt")).ToList(),
            json,
            s.Config.TrackingResets ?? []);
    }

    /// <summary>Opens the running VM's monitor.</summary>
    internal Task<QmpClient> ConnectMonitorAsync(VeId id, CancellationToken ct) => ConnectAsync(PathsOf(id.Value), ct);

    /// <summary>
    /// Freezes the guest's file systems through its guest tools, or returns null when the tools do not answer in
    /// <paramref name="connectTimeout"/> (or refuse): the backup is then crash-consistent, and says so.
    /// </summary>
    internal async Task<GuestFreeze?> TryFreezeGuestAsync(VeId id, string vmName, TimeSpan connectTimeout, CancellationToken ct)
    {
        FileLock? agentLock = null;
        GuestAgentClient? agent = null;
        try
        {
            agentLock = await AgentLockAsync(id.Value, ct, LocalTimeouts.GuestToolsLock).ConfigureAwait(false);
            agent = await GuestAgentClient.ConnectAsync(PathsOf(id.Value).AgentSocket, connectTimeout, ct).ConfigureAwait(false);
            // Marked before freezing: if this process dies before the thaw, the next backup finds the mark and thaws.
            var marker = FreezeMarker(id);
            await File.WriteAllTextAsync(marker, DateTimeOffset.UtcNow.ToString("O"), ct).ConfigureAwait(false);
            var count = await agent.FreezeFileSystemsAsync(LocalTimeouts.GuestFreeze, ct).ConfigureAwait(false);
            return new GuestFreeze(agent, agentLock, count, _logger, vmName, marker);
        }
        catch (Exception ex) when (ex is GuestAgentUnavailableException or GuestAgentException or LockTimeoutException or TimeoutException)
        {
            _logger.LogInformation("VM {Name}: its file systems could not be frozen ({Error}); the backup is crash-consistent", vmName, ex.Message);
            if (agent is not null)
                await agent.DisposeAsync().ConfigureAwait(false);
            agentLock?.Dispose();
            return null;
        }
    }

    private string FreezeMarker(VeId id) => _store.FrozenByBackupMarker(id);

    /// <summary>Thaws the guest's file systems if a backup killed at the instant of its freeze left them frozen.</summary>
    internal async Task ThawGuestIfFrozenAsync(VeId id, string vmName, TimeSpan connectTimeout, CancellationToken ct)
    {
        if (!File.Exists(FreezeMarker(id)))
            return;
        try
        {
            using var agentLock = await AgentLockAsync(id.Value, ct, LocalTimeouts.GuestToolsLock).ConfigureAwait(false);
            var agent = await GuestAgentClient.ConnectAsync(PathsOf(id.Value).AgentSocket, connectTimeout, ct).ConfigureAwait(false);
            await using (agent.ConfigureAwait(false))
            {
                if (await agent.AreFileSystemsFrozenAsync(TimeSpan.FromSeconds(10), ct).ConfigureAwait(false))
                {
                    _logger.LogWarning("VM {Name}: its file systems were left frozen by an interrupted backup; thawing them", vmName);
                    await agent.ThawFileSystemsAsync(LocalTimeouts.GuestThaw, ct).ConfigureAwait(false);
                }
            }
            File.Delete(FreezeMarker(id));
        }
        catch (Exception ex) when (ex is GuestAgentUnavailableException or GuestAgentException or LockTimeoutException or TimeoutException)
        {
            // no guest tools: nothing can have been frozen through them
        }
    }

    /// <summary>Forgets the recorded change-tracking resets once a backup has started new tracking.</summary>
    internal async Task ClearTrackingResetsAsync(VeId id, CancellationToken ct)
    {
        var paths = PathsOf(id.Value);
        var config = await ReadConfigAsync(paths, ct).ConfigureAwait(false);
        if (config?.TrackingResets is { Count: > 0 })
            await WriteConfigAsync(paths, config with { TrackingResets = null }, ct).ConfigureAwait(false);
    }

    /// <summary>Records that a disk's change tracking was reset and why (the bitmaps themselves are removed by the caller).</summary>
    private static VmConfig WithTrackingReset(VmConfig c, string disk, string reason)
    {
        var resets = new Dictionary<string, string>(c.TrackingResets ?? [], StringComparer.Ordinal) { [disk] = reason };
        return c with { TrackingResets = resets };
    }

    /// <summary>Removes the change-tracking bitmaps of a stopped VM's disk image.</summary>
    private static void RemoveTrackingBitmaps(string imagePath)
    {
        using var image = Qcow2Image.Open(imagePath, new Qcow2OpenOptions { NoBacking = true });
        var doomed = image.Bitmaps.Where(b => ChangeTracking.IsTrackingBitmap(b.Name)).Select(b => b.Name).ToList();
        foreach (var name in doomed)
            image.RemoveBitmap(name);
        if (doomed.Count > 0)
            image.Flush();
    }

    private static VmConfig ParseBackupConfig(string json)
        => JsonSerializer.Deserialize(json, VmJsonContext.Default.VmConfig)
           ?? throw new InvalidStateException("The backup's VM configuration is empty.");

    /// <summary>
    /// Restores a stopped VM's disks from a backup: <paramref name="writeDisks"/> writes each backed-up disk (name →
    /// temporary path next to the VM's disks), then every disk is replaced by its restored image. Disks the VM has now
    /// but the backup lacks are kept. Internal snapshots go (restored images have none); change tracking restarts.
    /// </summary>
    internal async Task RestoreDisksAsync(VeId id, string backupConfigJson, string backupId, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken ct)
    {
        var s = await OpenSessionAsync(id.Value, ct).ConfigureAwait(false)
            ?? throw new NotFoundException($"The VM {id} no longer exists: restore backup {backupId} into a new VM with a new name.");
        if (s.Runtime is not null)
            throw new InvalidStateException($"The VM '{s.Config.Name}' is running; stop it before restoring into it.");
        if (s.Config.SuspendedStateFile is not null)
            throw new InvalidStateException($"The VM '{s.Config.Name}' is suspended; resume and stop it before restoring into it (its saved state belongs to the current disks).");
        await EnsureNoCloneDependsOnAsync(s, ct).ConfigureAwait(false);
        var backup = ParseBackupConfig(backupConfigJson);
        var temps = backup.Disks.ToDictionary(d => d.Name, d => Path.Combine(s.Paths.PrivateDirectory, $".{d.Name}.restore-{Guid.NewGuid():N}.qcow2"), StringComparer.Ordinal);
        try
        {
            await writeDisks(temps).ConfigureAwait(false);
            var disks = new List<VmDiskConfig>();
            var config = s.Config;
            foreach (var d in backup.Disks)
            {
                var current = s.Config.Disks.FirstOrDefault(x => x.Name == d.Name);
                var restored = current is null ? d with { File = d.Name + ".qcow2" } : current with { SizeBytes = d.SizeBytes };
                File.Move(temps[d.Name], s.Paths.DiskPath(restored), overwrite: true); // atomic per disk
                disks.Add(restored);
                config = WithTrackingReset(config, d.Name, $"the disk was restored from backup {backupId}");
            }
            disks.AddRange(s.Config.Disks.Where(x => disks.All(r => r.Name != x.Name)));
            config = config with { Disks = disks.OrderBy(d => d.Name, StringComparer.Ordinal).ToList(), Snapshots = [], CurrentSnapshotId = null };
            await WriteConfigAsync(s.Paths, config, ct).ConfigureAwait(false);
        }
        finally
        {
            foreach (var t in temps.Values)
                File.Delete(t);
        }
    }

    /// <summary>
    /// Creates a new, stopped VM from a backup's configuration under a new name, UUID and MAC address;
    /// <paramref name="writeDisks"/> writes each disk (name → its path in the new VM).
    /// </summary>
    internal async Task<VeId> CreateFromBackupAsync(string backupConfigJson, VeName name, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken ct)
    {
        var backup = ParseBackupConfig(backupConfigJson);
        var id = Guid.NewGuid();
        var paths = PathsOf(id);
        var config = backup with
        {
            Id = id,
            Name = name.Value,
            CreatedAt = DateTimeOffset.UtcNow,
            MacAddress = backup.MacAddress is null ? null : VmConfigRules.NewMac(id),
            Snapshots = [],
            CurrentSnapshotId = null,
            SuspendedStateFile = null,
            SuspendedHardware = null,
            TrackingResets = null,
            Disks = backup.Disks.Select(d => d with { File = d.Name + ".qcow2" }).ToList(),
        };
        await _registry.RegisterAsync(new VeId(id), name, VeKind.Vm, ct).ConfigureAwait(false);
        try
        {
            using var veLock = await _store.LockVeAsync(new VeId(id), ct).ConfigureAwait(false);
            await writeDisks(config.Disks.ToDictionary(d => d.Name, paths.DiskPath, StringComparer.Ordinal)).ConfigureAwait(false);
            await WriteConfigAsync(paths, config, ct).ConfigureAwait(false);
        }
        catch
        {
            await _registry.UnregisterAsync(new VeId(id), CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        return new VeId(id);
    }
}
