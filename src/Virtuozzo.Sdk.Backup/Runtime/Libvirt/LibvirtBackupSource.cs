using System.Globalization;
using System.Security;
using System.Text;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Vm.Runtime.Libvirt;

namespace Virtuozzo.Sdk.Backup.Runtime.Libvirt;

/// <summary>
/// The libvirt runtime's backup source: a running VM is copied by libvirt's push-mode backup job
/// (<c>virDomainBackupBegin</c>) into scratch QCOW2 files in the backup's staging directory, and the SDK then stores
/// each one in the repository's format (compressed, hashed while written). Change tracking is libvirt's checkpoints:
/// the checkpoint for a backup is created by the same call that fixes the backup's point in time, so no write falls
/// between them, and an incremental is libvirt's backup from that checkpoint. A stopped VM's disks are read by the
/// SDK's engine (as on the local runtime); its checkpoint is then recorded in libvirt over a bitmap the engine adds.
/// </summary>
/// <remarks>
/// The backup location and the disks must be on this machine (a local URI). libvirt 9.0 copies with QEMU's backup job,
/// which, unlike the local runtime's fleecing graph, can fail a guest write when the scratch file cannot be written
/// (a full file system): the free-space check before a backup covers the disks' size.
/// </remarks>
internal sealed class LibvirtBackupSource(VirtuozzoRuntime runtime, LibvirtVmDriver vms, ILogger logger) : IBackupSource
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(200);
    private readonly LibvirtConnection _conn = runtime.RequireLibvirt();

    private async Task<LibvirtDomain> OpenAsync(VeId id, string name, CancellationToken ct)
        => await _conn.FindDomainAsync(id.ToString(), ct).ConfigureAwait(false)
           ?? throw new NotFoundException($"The VM '{name}' was deleted by another operation.");

    public async Task<Subject> ReadSubjectAsync(VeIdentity identity, CancellationToken ct)
    {
        if (identity.Kind != VeKind.Vm)
            throw new UnsupportedOnHostException($"'{identity.Name}' is a container; the libvirt runtime ({_conn.Uri}) backs up VMs only.");
        using var dom = await OpenAsync(identity.VeId, identity.Name, ct).ConfigureAwait(false);
        var view = await vms.GetBackupViewAsync(dom, ct).ConfigureAwait(false);
        if (view.Disks.Count == 0)
            throw new InvalidStateException($"The VM '{view.Name}' has no disks to back up.");
        var disks = new List<SubjectDisk>();
        foreach (var d in view.Disks)
        {
            try
            {
                disks.Add(SubjectDisk.Read(d.Name, d.Path, d.Target));
            }
            catch (Exception ex) when (ex is Qcow2Exception or IOException or UnauthorizedAccessException)
            {
                throw new InvalidStateException($"The disk {d.Name} of '{view.Name}' ('{d.Path}') cannot be backed up: the SDK backs up QCOW2 disks on this machine ({ex.Message}).", ex);
            }
        }
        return new Subject(identity.VeId, view.Name, VeKind.Vm, view.Running, disks,
            new Dictionary<string, string> { [LibvirtVmDriver.DomainDocument] = view.DomainXml }, new Dictionary<string, string>());
    }

    public async Task<Dictionary<string, Dictionary<string, TrackingState>>> TrackingBitmapsAsync(Subject subject, CancellationToken ct)
    {
        using var dom = await OpenAsync(subject.Id, subject.Name, ct).ConfigureAwait(false);
        // A checkpoint libvirt does not know cannot be the base of a running VM's incremental: only libvirt's count.
        var known = (await dom.ListCheckpointsAsync(ct).ConfigureAwait(false)).Where(ChangeTracking.IsTrackingCheckpoint).ToHashSet(StringComparer.Ordinal);
        var result = new Dictionary<string, Dictionary<string, TrackingState>>(StringComparer.Ordinal);
        // A running VM's bitmaps are QEMU's: a VM killed (SIGKILL, a host crash) comes back with them inconsistent,
        // which only QEMU reports (query-block, read through libvirt). Without that answer libvirt's own check at
        // the backup's start is the last word.
        var live = subject.Running ? await LiveBitmapsAsync(dom, ct).ConfigureAwait(false) : null;
        foreach (var d in subject.Disks)
        {
            var states = new Dictionary<string, TrackingState>(StringComparer.Ordinal);
            if (subject.Running)
            {
                var bitmaps = live?.GetValueOrDefault(d.Path);
                foreach (var name in known)
                {
                    if (ChangeTracking.BackupIdOfCheckpoint(name) is not { } backupId)
                        continue;
                    if (live is null)
                        states[ChangeTracking.BitmapPrefix + backupId] = TrackingState.Good;
                    else if (bitmaps is not null && bitmaps.TryGetValue(name, out var state))
                        states[ChangeTracking.BitmapPrefix + backupId] = state;
                }
            }
            else
            {
                using var image = Qcow2Image.Open(d.Path, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true, ForceShare = true });
                foreach (var b in image.Bitmaps.Where(b => known.Contains(b.Name)))
                {
                    if (ChangeTracking.BackupIdOfCheckpoint(b.Name) is { } backupId)
                        states[ChangeTracking.BitmapPrefix + backupId] = b.InUse ? TrackingState.Inconsistent : !b.Enabled ? TrackingState.Disabled : TrackingState.Good;
                }
            }
            result[d.Name] = states;
        }
        return result;
    }

    /// <summary>Each image's bitmaps as the running QEMU reports them (image path → name → state); null when QEMU cannot be asked.</summary>
    private async Task<Dictionary<string, Dictionary<string, TrackingState>>?> LiveBitmapsAsync(LibvirtDomain dom, CancellationToken ct)
    {
        var reply = await dom.TryMonitorCommandAsync("{\"execute\":\"query-block\"}", ct).ConfigureAwait(false);
        if (reply is null)
        {
            logger.LogDebug("QEMU's block state could not be read through libvirt; libvirt checks the bitmaps when the backup starts");
            return null;
        }
        return ParseQueryBlock(reply);
    }

    /// <summary>query-block's reply as image path → bitmap name → state (inconsistent, not recording, or good).</summary>
    internal static Dictionary<string, Dictionary<string, TrackingState>> ParseQueryBlock(string reply)
    {
        var result = new Dictionary<string, Dictionary<string, TrackingState>>(StringComparer.Ordinal);
        if (System.Text.Json.Nodes.JsonNode.Parse(reply)?["return"] is not System.Text.Json.Nodes.JsonArray devices)
            return result;
        foreach (var inserted in devices.Select(b => b?["inserted"]).OfType<System.Text.Json.Nodes.JsonObject>())
        {
            if (inserted["file"]?.GetValue<string>() is not { } file)
                continue;
            var states = new Dictionary<string, TrackingState>(StringComparer.Ordinal);
            foreach (var b in (inserted["dirty-bitmaps"] as System.Text.Json.Nodes.JsonArray ?? []).OfType<System.Text.Json.Nodes.JsonObject>())
            {
                if (b["name"]?.GetValue<string>() is not { } name)
                    continue;
                states[name] = b["inconsistent"]?.GetValue<bool>() == true ? TrackingState.Inconsistent
                    : b["recording"]?.GetValue<bool>() == false ? TrackingState.Disabled
                    : TrackingState.Good;
            }
            result[file] = states;
        }
        return result;
    }

    public string FileBitmapName(string backupId) => ChangeTracking.CheckpointName(backupId);

    public void PrepareStopped(Subject subject)
    {
    }

    public IRestoreTarget RestoreTarget(VeKind kind)
        => kind == VeKind.Vm ? vms : throw new UnsupportedOnHostException($"The libvirt runtime ({_conn.Uri}) restores VMs only; restore a container's backup with the local runtime.");

    /// <summary>The backup job's XML: each disk pushed into a scratch QCOW2 file, from the parent's checkpoint for an incremental.</summary>
    internal static string BackupXml(IReadOnlyList<(string Target, string File)> disks, string? parentCheckpoint, IEnumerable<string>? others = null)
    {
        var xml = new StringBuilder("<domainbackup mode='push'>");
        if (parentCheckpoint is not null)
            xml.Append("<incremental>").Append(SecurityElement.Escape(parentCheckpoint)).Append("</incremental>");
        xml.Append("<disks>");
        foreach (var (target, file) in disks)
            xml.Append(CultureInfo.InvariantCulture, $"<disk name='{SecurityElement.Escape(target)}' backup='yes' type='file'><target file='{SecurityElement.Escape(file)}'/><driver type='qcow2'/></disk>");
        // Every other disk (a CD image, a disk the SDK does not back up) is named and left out, never left to libvirt's default.
        foreach (var other in others ?? [])
            xml.Append(CultureInfo.InvariantCulture, $"<disk name='{SecurityElement.Escape(other)}' backup='no'/>");
        return xml.Append("</disks></domainbackup>").ToString();
    }

    /// <summary>A checkpoint's XML: a bitmap on each disk, named after the checkpoint; with a creation time, for a redefinition.</summary>
    internal static string CheckpointXml(string name, IEnumerable<string> targets, DateTimeOffset? created = null, IEnumerable<string>? others = null)
    {
        var xml = new StringBuilder("<domaincheckpoint><name>").Append(SecurityElement.Escape(name)).Append("</name>");
        if (created is { } at)
            xml.Append("<creationTime>").Append(at.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture)).Append("</creationTime>");
        xml.Append("<disks>");
        foreach (var target in targets)
        {
            xml.Append(CultureInfo.InvariantCulture, $"<disk name='{SecurityElement.Escape(target)}' checkpoint='bitmap'");
            if (created is not null)
                xml.Append(CultureInfo.InvariantCulture, $" bitmap='{SecurityElement.Escape(name)}'");
            xml.Append("/>");
        }
        foreach (var other in others ?? [])
            xml.Append(CultureInfo.InvariantCulture, $"<disk name='{SecurityElement.Escape(other)}' checkpoint='no'/>");
        return xml.Append("</disks></domaincheckpoint>").ToString();
    }

    public async Task<(string Consistency, Dictionary<string, string> Digests)> BackupRunningAsync(Subject subject, Dictionary<string, string> targets, string? parent, Task<string> newId, BackupCreateOptions options, IProgress<OperationProgress>? progress, CancellationToken ct)
    {
        var id = await newId.ConfigureAwait(false);
        var checkpoint = ChangeTracking.CheckpointName(id);
        using var dom = await OpenAsync(subject.Id, subject.Name, ct).ConfigureAwait(false);
        await AbortLeftoverBackupAsync(dom, subject, ct).ConfigureAwait(false);
        var pushed = subject.Disks.ToDictionary(d => d.Name, d => Path.Combine(Path.GetDirectoryName(targets[d.Name])!, ".push-" + d.Name + ".qcow2"), StringComparer.Ordinal);
        var others = await OtherTargetsAsync(dom, subject, ct).ConfigureAwait(false);
        var backupXml = BackupXml(subject.Disks.Select(d => (d.Node, pushed[d.Name])).ToList(), parent is null ? null : ChangeTracking.CheckpointName(parent), others);
        var checkpointXml = CheckpointXml(checkpoint, subject.Disks.Select(d => d.Node), others: others);
        progress?.Report(new OperationProgress(Local.LocalLiveBackupSource.StageFixingPointInTime, 0, null));
        string consistency;
        var began = false;
        try
        {
            var frozen = await TryFreezeAsync(dom, subject, options.GuestToolsTimeout, ct).ConfigureAwait(false);
            try
            {
                await dom.BeginBackupAsync(backupXml, checkpointXml, $"Starting libvirt's backup job for {subject.Name}", ct).ConfigureAwait(false);
                began = true;
            }
            finally
            {
                if (frozen > 0 && !await dom.TryThawFileSystemsAsync().ConfigureAwait(false))
                    logger.LogWarning("Backup of {Name}: the guest's file systems could not be thawed through its guest tools", subject.Name);
            }
            consistency = frozen switch
            {
                > 0 => $"running: the guest's file systems were frozen through its guest tools ({frozen.ToString(CultureInfo.InvariantCulture)}) while libvirt fixed the point in time",
                0 => "running: crash-consistent; the guest tools answered but had no file system to freeze",
                _ => "running: crash-consistent; the guest tools did not answer, so the guest's file systems were not frozen",
            };
            await WaitForJobAsync(dom, subject, progress, ct).ConfigureAwait(false);
        }
        catch
        {
            if (began)
            {
                await dom.AbortJobAsync().ConfigureAwait(false);
                await TryForgetAsync(dom, [checkpoint]).ConfigureAwait(false);
            }
            throw;
        }

        // libvirt's files hold the point in time; store each in the repository's format, hashing what is stored.
        var digests = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            foreach (var d in subject.Disks)
            {
                var stage = "copying disk " + d.Name;
                if (parent is null)
                {
                    digests[d.Name] = BackupClient.ConvertFull(pushed[d.Name], targets[d.Name], options.Compression, progress, stage, ct);
                }
                else
                {
                    using var source = Qcow2Image.Open(pushed[d.Name], new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
                    using var target = BackupClient.CreateTarget(targets[d.Name], parent, BackupRepository.DiskFileName(d.Name), options.Compression, d.VirtualSize);
                    var ranges = DiskCopier.OwnRanges(source);
                    var total = ranges.Sum(r => r.Length);
                    digests[d.Name] = DiskCopier.Copy(source, target, ranges, options.Compression != BackupCompression.None,
                        progress is null ? null : new RelayProgress<long>(done => progress.Report(new OperationProgress(stage, done, total))), ct);
                }
                File.Delete(pushed[d.Name]);
            }
        }
        catch
        {
            await TryForgetAsync(dom, [checkpoint]).ConfigureAwait(false);
            throw;
        }
        return (consistency, digests);
    }

    /// <summary>The guest devices of the domain's disks (CD drives included) that the backup does not cover.</summary>
    private static async Task<List<string>> OtherTargetsAsync(LibvirtDomain dom, Subject subject, CancellationToken ct)
    {
        var xml = System.Xml.Linq.XDocument.Parse(await dom.GetXmlAsync(inactive: false, ct).ConfigureAwait(false)).Root!;
        var ours = subject.Disks.Select(d => d.Node).ToHashSet(StringComparer.Ordinal);
        return (xml.Element("devices")?.Elements("disk") ?? [])
            .Select(d => (string?)d.Element("target")?.Attribute("dev")).OfType<string>()
            .Where(t => !ours.Contains(t)).ToList();
    }

    /// <summary>A backup job left running by a process killed during a backup holds the domain: abort it.</summary>
    private async Task AbortLeftoverBackupAsync(LibvirtDomain dom, Subject subject, CancellationToken ct)
    {
        var job = await dom.GetJobAsync(completed: false, ct).ConfigureAwait(false);
        if (job is not { Type: > LibvirtNative.JobNone and < LibvirtNative.JobCompleted } running
            || !running.Stats.TryGetValue("operation", out var op) || op is not long operation || operation != LibvirtNative.JobOperationBackup)
            return;
        logger.LogWarning("Backup of {Name}: aborting a backup job left by an earlier backup", subject.Name);
        await dom.AbortJobAsync().ConfigureAwait(false);
        for (var i = 0; i < 50 && (await dom.GetJobAsync(completed: false, ct).ConfigureAwait(false))?.Type is > LibvirtNative.JobNone and < LibvirtNative.JobCompleted; i++)
            await Task.Delay(Poll, ct).ConfigureAwait(false);
    }

    /// <summary>Freezes the guest's file systems when its agent answers within the timeout; the count frozen, or -1.</summary>
    private async Task<int> TryFreezeAsync(LibvirtDomain dom, Subject subject, TimeSpan timeout, CancellationToken ct)
    {
        try
        {
            await dom.AgentCommandAsync("{\"execute\":\"guest-ping\"}", Math.Max(1, (int)Math.Ceiling(timeout.TotalSeconds)), ct).ConfigureAwait(false);
        }
        catch (VirtuozzoException ex)
        {
            logger.LogDebug("Backup of {Name}: the guest tools did not answer ({Error}); the backup is crash-consistent", subject.Name, ex.Message);
            return -1;
        }
        // A backup killed between freeze and thaw leaves the guest frozen: thaw it before freezing again.
        try
        {
            var status = await dom.AgentCommandAsync("{\"execute\":\"guest-fsfreeze-status\"}", Math.Max(1, (int)Math.Ceiling(timeout.TotalSeconds)), ct).ConfigureAwait(false);
            if (status.Contains("\"frozen\"", StringComparison.Ordinal))
            {
                logger.LogWarning("Backup of {Name}: the guest's file systems were left frozen by an earlier backup; thawing them", subject.Name);
                await dom.TryThawFileSystemsAsync().ConfigureAwait(false);
            }
        }
        catch (VirtuozzoException ex)
        {
            logger.LogDebug("Backup of {Name}: the guest tools did not report their freeze state ({Error})", subject.Name, ex.Message);
        }
        return await dom.TryFreezeFileSystemsAsync(ct).ConfigureAwait(false);
    }

    /// <summary>Waits for libvirt's backup job, reporting its bytes; cancelling aborts it.</summary>
    private async Task WaitForJobAsync(LibvirtDomain dom, Subject subject, IProgress<OperationProgress>? progress, CancellationToken ct)
    {
        var stage = subject.Disks.Count == 1 ? "copying disk " + subject.Disks[0].Name : "copying disks";
        while (true)
        {
            if (ct.IsCancellationRequested)
            {
                await dom.AbortJobAsync().ConfigureAwait(false);
                ct.ThrowIfCancellationRequested();
            }
            var info = await dom.GetJobInfoAsync(CancellationToken.None).ConfigureAwait(false);
            if (info is null || info.Value.Type == LibvirtNative.JobNone)
                break;
            progress?.Report(new OperationProgress(stage, (long)info.Value.DataProcessed, info.Value.DataTotal > 0 ? (long)info.Value.DataTotal : null));
            await Task.Delay(Poll, CancellationToken.None).ConfigureAwait(false);
        }
        var done = await dom.GetJobAsync(completed: true, CancellationToken.None).ConfigureAwait(false);
        if (done is not { } job || !job.Stats.TryGetValue("operation", out var op) || op is not long operation || operation != LibvirtNative.JobOperationBackup)
            throw new InvalidStateException($"libvirt's backup job for {subject.Name} ended without a record of how (the domain may have stopped).");
        switch (job.Type)
        {
            case LibvirtNative.JobCompleted:
                return;
            case LibvirtNative.JobCancelled:
                ct.ThrowIfCancellationRequested();
                throw new OperationCanceledException($"libvirt's backup job for {subject.Name} was cancelled by another client.");
            default:
                var why = job.Stats.TryGetValue("errmsg", out var msg) ? msg as string : null;
                throw new InvalidStateException($"libvirt's backup job for {subject.Name} failed: {why ?? "no reason given"}.");
        }
    }

    private async Task TryForgetAsync(LibvirtDomain dom, IReadOnlyList<string> checkpoints)
    {
        try
        {
            var active = (await dom.SummarizeAsync(CancellationToken.None).ConfigureAwait(false)).IsActive;
            var present = (await dom.ListCheckpointsAsync(CancellationToken.None).ConfigureAwait(false)).Intersect(checkpoints, StringComparer.Ordinal).ToList();
            if (present.Count > 0)
                await dom.DeleteCheckpointsAsync(present, metadataOnly: !active, CancellationToken.None).ConfigureAwait(false);
        }
        catch (VirtuozzoException ex)
        {
            logger.LogWarning("Could not remove the checkpoints {Checkpoints}: {Error}", string.Join(", ", checkpoints), ex.Message);
        }
    }

    public async Task StartTrackingAsync(Subject subject, string newId, CancellationToken ct)
    {
        var checkpoint = ChangeTracking.CheckpointName(newId);
        using var dom = await OpenAsync(subject.Id, subject.Name, ct).ConfigureAwait(false);
        if (subject.Running)
        {
            // The new checkpoint was made with the backup; the older ones are no longer a base for anything.
            var older = (await dom.ListCheckpointsAsync(ct).ConfigureAwait(false)).Where(n => ChangeTracking.IsTrackingCheckpoint(n) && n != checkpoint).ToList();
            if (older.Count > 0)
                await dom.DeleteCheckpointsAsync(older, metadataOnly: false, ct).ConfigureAwait(false);
            return;
        }
        // libvirt creates checkpoints of running domains only: the engine adds the bitmap, libvirt records it.
        var model = DomainXml.Parse(await dom.GetXmlAsync(inactive: true, ct).ConfigureAwait(false));
        await vms.ForgetChangeTrackingAsync(dom, model, active: false, ct).ConfigureAwait(false);
        foreach (var d in subject.Disks)
        {
            using var image = Qcow2Image.Open(d.Path, new Qcow2OpenOptions { NoBacking = true });
            image.AddBitmap(checkpoint);
            image.Flush();
        }
        await dom.RedefineCheckpointAsync(CheckpointXml(checkpoint, subject.Disks.Select(d => d.Node), DateTimeOffset.UtcNow, await OtherTargetsAsync(dom, subject, ct).ConfigureAwait(false)),
            $"Recording the checkpoint of backup {newId} for {subject.Name}", ct).ConfigureAwait(false);
    }
}
