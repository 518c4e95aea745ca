using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Containers.Runtime.Local;

// Suspend to disk: CRIU dumps the container's processes (through runc) into private/<uuid>/checkpoint/, which kills
// them; the container is then torn down like a stopped one (disk unmounted, network and cgroups removed, guarantee
// released) and shows as Suspended. Start or resume restores the processes from the checkpoint, inside a freshly set up
// disk mount, network namespace (same addresses) and cgroup. The checkpoint is written to checkpoint.partial/ and
// renamed once complete, so a crash half-way leaves a stopped container (and leaked space), never a half checkpoint.
internal sealed partial class LocalContainerDriver
{
    private const string CheckpointMarker = "vzsdk-checkpoint";

    internal string CheckpointDirectory(VeId id) => Path.Combine(_store.PrivatePath(id), "checkpoint");

    /// <summary>
    /// A live migration's pre-dumps, one subdirectory per round (<c>1</c>, <c>2</c>, …), each the parent of the next; the
    /// final checkpoint names the last as <c>../checkpoint.pre/N</c>. A sibling of the checkpoint, so that writing the
    /// checkpoint (which starts from an empty directory) keeps them, and the restore finds them through the links.
    /// </summary>
    internal string PreDumpDirectory(VeId id) => Path.Combine(_store.PrivatePath(id), "checkpoint.pre");

    /// <summary>The parent link of the final dump (relative to the checkpoint directory) after <paramref name="rounds"/> pre-dumps.</summary>
    internal static string PreDumpParent(int rounds) => $"../checkpoint.pre/{rounds.ToString(System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>True when the container is suspended to disk (a complete checkpoint waits to be restored).</summary>
    internal bool HasCheckpoint(VeId id) => File.Exists(Path.Combine(CheckpointDirectory(id), CheckpointMarker));

    private string CriuWorkDirectory(VeId id) => Path.Combine(_store.RunPath(id), "criu");

    /// <summary>An empty CRIU work directory for the next dump: a failed one's leftover mounts are unmounted before it is deleted.</summary>
    private async Task<string> FreshCriuWorkDirectoryAsync(VeId id)
    {
        var work = CriuWorkDirectory(id);
        await UnmountUnderAsync(work).ConfigureAwait(false);
        DeleteDirectory(work);
        Directory.CreateDirectory(work);
        return work;
    }

    /// <summary>What CRIU can do here (probed once per boot).</summary>
    public async Task<CheckpointSupport> GetCheckpointSupportAsync(CancellationToken cancellationToken)
    {
        var p = await Criu.ProbeAsync(_host, _runtime.Options.Local.CriuPath, _store.RunDirectory, cancellationToken).ConfigureAwait(false);
        return new CheckpointSupport(p.Usable, p.Path, p.Version, p.BreakpointsWork, p.MemoryDirtyTracking, p.LazyPages, p.Reason);
    }

    /// <summary>
    /// Why the processes of this container cannot be checkpointed, or null when they can. With runc 1.1, CRIU restores an
    /// unprivileged container's processes into a new user namespace of its own, which cannot enter the network namespace
    /// the container's user namespace owns (setns fails with EPERM): checkpoints are for privileged containers until the
    /// OCI runtime passes the user namespace as external.
    /// </summary>
    internal static string? CheckpointRefusal(ContainerConfig config)
        => config.UserIdStart is null ? null
            : "its processes run in a user namespace of their own (an unprivileged container), which CRIU cannot restore them into with runc 1.1; create the container with Security.Privileged = true to checkpoint it";

    internal async Task<CriuTool> RequireCriuAsync(CancellationToken ct, ContainerConfig? config = null)
    {
        if (config is not null && CheckpointRefusal(config) is { } refusal)
            throw new UnsupportedOnHostException($"This container's processes cannot be checkpointed: {refusal}.");
        var p = await Criu.ProbeAsync(_host, _runtime.Options.Local.CriuPath, _store.RunDirectory, ct).ConfigureAwait(false);
        return p.Tool ?? throw new UnsupportedOnHostException($"Checkpointing containers needs a working CRIU 4: {p.Reason}.");
    }

    /// <summary>Dumps a running container's processes to disk and stops it; start or resume restores them.</summary>
    public async Task<ContainerInfo> SuspendToDiskAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Suspend);
            var criu = await RequireCriuAsync(cancellationToken, config).ConfigureAwait(false);
            await CheckpointLockedAsync(id, identity.Name, criu, leaveRunning: false, cancellationToken).ConfigureAwait(false);
            await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
            _logger.LogDebug("Container {Name} suspended to disk", identity.Name);
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes a complete checkpoint of the container's processes (renamed into place only once whole).</summary>
    internal async Task CheckpointLockedAsync(VeId id, string name, CriuTool criu, bool leaveRunning, CancellationToken ct, string? parentPath = null)
    {
        var final = CheckpointDirectory(id);
        var partial = final + ".partial";
        DeleteDirectory(partial);
        DeleteDirectory(final);
        Directory.CreateDirectory(partial);
        var work = await FreshCriuWorkDirectoryAsync(id).ConfigureAwait(false);
        try
        {
            await _runc.CheckpointAsync(id, criu, partial, work, leaveRunning, ct, parentPath: parentPath).ConfigureAwait(false);
        }
        catch
        {
            await UnmountUnderAsync(work).ConfigureAwait(false);
            DeleteDirectory(partial);
            // CRIU resumes the processes when a dump fails; if they are gone anyway, the container is simply stopped.
            throw;
        }
        await File.WriteAllTextAsync(Path.Combine(partial, CheckpointMarker), $"{name}\n{criu.Version}\n{DateTimeOffset.UtcNow:O}\n", ct).ConfigureAwait(false);
        Core.Internal.Native.FsyncDirectory(partial);
        Directory.Move(partial, final);
        Core.Internal.Native.FsyncDirectory(Path.GetDirectoryName(final)!);
    }

    /// <summary>Starts a container suspended to disk by restoring its processes (under the VE's lock).</summary>
    private async Task RestoreFromCheckpointLockedAsync(VeId id, VeIdentity identity, ContainerConfig config, CancellationToken ct)
    {
        var criu = await RequireCriuAsync(ct).ConfigureAwait(false);
        await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
        var work = CriuWorkDirectory(id);
        try
        {
            await StartLockedAsync(id, identity, config, ct, async (bundle, run) =>
            {
                DeleteDirectory(work);
                Directory.CreateDirectory(work);
                await _runc.RestoreDetachedAsync(id, criu, bundle, CheckpointDirectory(id), work, Path.Combine(run, "init.pid"), Path.Combine(run, "console.log"), ct).ConfigureAwait(false);
            }).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is CommandFailedException or InvalidStateException)
        {
            await UnmountUnderAsync(work).ConfigureAwait(false);
            await UnmountUnderAsync(Path.Combine(_runc.StateRoot, id.ToString())).ConfigureAwait(false);
            throw new InvalidStateException($"Container {identity.Name} could not be restored from its checkpoint: {ex.Message} The checkpoint is kept; stop the container to discard it and start it afresh.", ex);
        }
        DeleteDirectory(CheckpointDirectory(id));
        DeleteDirectory(PreDumpDirectory(id));
        _logger.LogDebug("Container {Name} restored from its checkpoint", identity.Name);
    }

    /// <summary>Discards a checkpoint (the suspended processes are gone for good); true when there was one.</summary>
    private bool DiscardCheckpoint(VeId id)
    {
        var had = HasCheckpoint(id);
        DeleteDirectory(CheckpointDirectory(id));
        DeleteDirectory(CheckpointDirectory(id) + ".partial");
        DeleteDirectory(PreDumpDirectory(id));
        return had;
    }

    /// <summary>
    /// Unmounts whatever is mounted under <paramref name="path"/>, deepest first: a failed CRIU restore can leave its
    /// cgroup yard and runc's bind mount of the root file system there, and deleting through them would delete the
    /// container's files.
    /// </summary>
    private async Task UnmountUnderAsync(string path)
    {
        if (!File.Exists("/proc/self/mountinfo"))
            return;
        var prefix = Path.GetFullPath(path).TrimEnd('/') + "/";
        var targets = File.ReadLines("/proc/self/mountinfo")
            .Select(l => l.Split(' '))
            .Where(f => f.Length > 4)
            .Select(f => f[4].Replace("\\040", " ", StringComparison.Ordinal))
            .Where(t => (t + "/").StartsWith(prefix, StringComparison.Ordinal))
            .OrderByDescending(t => t.Length)
            .ToList();
        foreach (var t in targets)
        {
            _logger.LogWarning("Unmounting {Target}, left by CRIU", t);
            await _host.ExecuteAsync(new Command("umount").WithArguments("-l", t).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static void DeleteDirectory(string path)
    {
        if (Directory.Exists(path))
            Directory.Delete(path, recursive: true);
    }
}
