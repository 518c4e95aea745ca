using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Storage.Qcow2;
using static Virtuozzo.Sdk.Core.Runtime.Libvirt.LibvirtNative;

namespace Virtuozzo.Sdk.Vm.Runtime.Libvirt;

// A libvirt VM as a backup's subject and restore target. The backup itself (libvirt's push-mode backup job and
// checkpoints) is driven by the Backup package; this side knows the domain: its disks, its definition, and what a
// restore or a snapshot switch must do to libvirt's records.
internal sealed partial class LibvirtVmDriver : IRestoreTarget
{
    /// <summary>The configuration document of a libvirt VM's backup: its inactive domain XML.</summary>
    public const string DomainDocument = "libvirt-domain.xml";

    public string ConfigDocument => DomainDocument;

    /// <summary>A VM as a backup reads it, under its lock.</summary>
    /// <param name="Id">The domain's UUID.</param>
    /// <param name="Name">Its name.</param>
    /// <param name="Running">True when the domain is active (running or paused): libvirt's backup job copies it.</param>
    /// <param name="Disks">Its disks (a running VM's from its live definition).</param>
    /// <param name="DomainXml">The inactive definition, which a restore defines again.</param>
    internal sealed record BackupView(Guid Id, string Name, bool Running, IReadOnlyList<DomainDisk> Disks, string DomainXml);

    /// <summary>Reads what a backup of the VM covers. Only a local URI: the backup location and the disks are on this machine.</summary>
    internal async Task<BackupView> GetBackupViewAsync(LibvirtDomain dom, CancellationToken ct)
    {
        RequireLocal("Backing up a VM");
        var s = await ReadAsync(dom, ct).ConfigureAwait(false);
        if (StateOf(s.Summary) == VeState.Suspended)
            throw new InvalidStateException($"The VM {s.Model.Name} is suspended to disk; resume or stop it before backing it up (its saved memory would not match a restored disk).");
        var inactive = await dom.GetXmlAsync(inactive: true, ct).ConfigureAwait(false);
        return new BackupView(s.Model.Id, s.Model.Name, IsActive(s), s.Model.Disks, inactive);
    }

    /// <summary>
    /// Removes the backups' checkpoints of a VM, so that the next backup is full: an active domain loses them with their
    /// bitmaps; an inactive one can only forget them in libvirt, and the SDK's engine removes the bitmaps from the files.
    /// </summary>
    internal async Task ForgetChangeTrackingAsync(LibvirtDomain dom, DomainModel model, bool active, CancellationToken ct)
    {
        var ours = (await dom.ListCheckpointsAsync(ct).ConfigureAwait(false)).Where(ChangeTracking.IsTrackingCheckpoint).ToList();
        if (ours.Count > 0)
            await dom.DeleteCheckpointsAsync(ours, metadataOnly: !active, ct).ConfigureAwait(false);
        if (active || !_conn.IsLocal)
            return;
        foreach (var d in model.Disks.Where(d => File.Exists(d.Path)))
        {
            try
            {
                using var image = Qcow2Image.Open(d.Path, new Qcow2OpenOptions { NoBacking = true });
                var stale = image.Bitmaps.Where(b => ChangeTracking.IsTrackingCheckpoint(b.Name)).Select(b => b.Name).ToList();
                foreach (var name in stale)
                    image.RemoveBitmap(name);
                if (stale.Count > 0)
                    image.Flush();
            }
            catch (Qcow2Exception)
            {
                // Not an image the engine opens (a raw disk defined outside the SDK): it carries no bitmaps.
            }
        }
    }

    private Task ForgetChangeTrackingAsync(LibvirtDomain dom, Snapshot s, CancellationToken ct) => ForgetChangeTrackingAsync(dom, s.Model, IsActive(s), ct);

    /// <summary>
    /// Creates a new, stopped VM from a backup's domain XML under a new name, UUID and MAC address, its disks written by
    /// <paramref name="writeDisks"/> into the SDK's directory for it. A failure leaves no domain and no files.
    /// </summary>
    public async Task<VeId> CreateFromBackupAsync(string configJson, VeName name, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken)
    {
        RequireLocal("Restoring a backup into a new VM");
        var backup = ParseBackupXml(configJson);
        if (await _conn.FindDomainAsync(name.Value, cancellationToken).ConfigureAwait(false) is { } taken)
        {
            taken.Dispose();
            throw new AlreadyExistsException($"A domain named {name} already exists on {Where}.");
        }
        var id = Guid.NewGuid();
        var dir = _store.PrivatePath(new VeId(id));
        Directory.CreateDirectory(dir);
        using var veLock = await _store.LockVeAsync(new VeId(id), cancellationToken).ConfigureAwait(false);
        try
        {
            var paths = backup.Disks.ToDictionary(d => d.Name, d => Path.Combine(dir, d.Name + ".qcow2"), StringComparer.Ordinal);
            await writeDisks(paths).ConfigureAwait(false);
            var xml = AsNewDomain(configJson, name, id, dir, backup.Disks.ToDictionary(d => d.Path, d => paths[d.Name], StringComparer.Ordinal));
            using var dom = await _conn.DefineAsync(xml, $"Defining the VM {name} restored from a backup", cancellationToken).ConfigureAwait(false);
            return new VeId(id);
        }
        catch
        {
            TryDeleteDirectory(dir);
            throw;
        }
    }

    /// <summary>
    /// Replaces the disks of a stopped VM with a backup's. Each disk is written beside the current one and moved over it
    /// (atomically per disk). libvirt's records of what the old files held (internal snapshots, checkpoints) are dropped
    /// first: at worst a crash leaves a VM whose old snapshots libvirt no longer lists. The VM keeps its current
    /// definition; a backed-up disk the VM no longer has is refused (restore into a new VM instead).
    /// </summary>
    public Task RestoreInPlaceAsync(VeId id, string configJson, string backupId, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken)
    {
        RequireLocal("Restoring a backup");
        var backup = ParseBackupXml(configJson);
        return WithVmAsync<bool>(id.ToString(), async (dom, s) =>
        {
            RequireStopped(s, $"restoring backup {backupId} into it");
            var current = s.Model.Disks.ToDictionary(d => d.Name, StringComparer.Ordinal);
            foreach (var d in backup.Disks.Where(d => !current.ContainsKey(d.Name)))
                throw new InvalidStateException($"Backup {backupId} holds disk {d.Name}, which the VM {s.Model.Name} no longer has; restore it into a new VM (a new name) instead.");
            var temps = backup.Disks.ToDictionary(d => d.Name, d => Path.Combine(Path.GetDirectoryName(current[d.Name].Path)!, ".restore-" + d.Name + ".qcow2"), StringComparer.Ordinal);
            try
            {
                await writeDisks(temps).ConfigureAwait(false);
                await ForgetSnapshotsAsync(dom, cancellationToken).ConfigureAwait(false);
                var checkpoints = (await dom.ListCheckpointsAsync(cancellationToken).ConfigureAwait(false)).Where(ChangeTracking.IsTrackingCheckpoint).ToList();
                if (checkpoints.Count > 0)
                    await dom.DeleteCheckpointsAsync(checkpoints, metadataOnly: true, cancellationToken).ConfigureAwait(false);
                foreach (var d in backup.Disks)
                    File.Move(temps[d.Name], current[d.Name].Path, overwrite: true);
            }
            finally
            {
                foreach (var t in temps.Values)
                    File.Delete(t);
            }
            return true;
        }, cancellationToken);
    }

    /// <summary>Drops libvirt's records of the VM's snapshots (their data lives in the disk files being replaced).</summary>
    private static Task ForgetSnapshotsAsync(LibvirtDomain dom, CancellationToken ct) => dom.RunAsync(d =>
    {
        unsafe
        {
            nint* snaps = null;
            var n = virDomainListAllSnapshots(d, &snaps, 0);
            if (n < 0)
                throw LibvirtErrors.Last("Listing the VM's snapshots");
            try
            {
                for (var i = 0; i < n; i++)
                {
                    if (virDomainSnapshotDelete(snaps[i], SnapshotDeleteMetadataOnly) < 0)
                        throw LibvirtErrors.Last("Dropping the record of a snapshot");
                }
            }
            finally
            {
                for (var i = 0; i < n; i++)
                    virDomainSnapshotFree(snaps[i]);
                System.Runtime.InteropServices.NativeMemory.Free(snaps);
            }
            return 0;
        }
    }, ct);

    private static DomainModel ParseBackupXml(string xml)
    {
        try
        {
            return DomainXml.Parse(xml);
        }
        catch (Exception ex) when (ex is System.Xml.XmlException or InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new InvalidStateException($"The backup's domain XML cannot be read: {ex.Message}", ex);
        }
    }
}
