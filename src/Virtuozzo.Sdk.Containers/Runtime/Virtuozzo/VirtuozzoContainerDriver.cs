using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Containers.Runtime.Virtuozzo;

/// <summary>
/// Containers on a Virtuozzo node: each operation one or two prlctl commands on the container's UUID
/// (<see cref="VirtuozzoContainerCommands"/>, <see cref="Prlctl"/>). The node keeps the containers, their templates,
/// their checkpoints and their memory guarantees; the SDK reads them back with <c>prlctl list -i -f -j</c> after each change.
/// </summary>
internal sealed class VirtuozzoContainerDriver(VirtuozzoRuntime runtime) : VirtuozzoVeDriver<ContainerInfo>(runtime, VeKind.Container), IContainerDriver
{
    protected override ContainerInfo Map(PrlctlVeConfig c)
    {
        var root = c.Disks.FirstOrDefault(d => d.MountPoint == "/") ?? c.Disks.FirstOrDefault();
        return new ContainerInfo
        {
            Id = c.Id,
            Name = new VeName(c.Name),
            Kind = VeKind.Container,
            State = c.State,
            Cpus = c.Cpus,
            CpuLimitPercent = c.CpuLimitPercent,
            CpuMask = c.CpuMask,
            MemorySize = c.MemorySize,
            MemoryGuaranteePercent = c.MemoryGuaranteePercent ?? 0,
            DiskSize = root?.Size ?? ByteSize.Zero,
            Hostname = c.Hostname,
            IpAddresses = c.IpAddresses,
            Autostart = c.Autostart,
            Template = c.Os ?? string.Empty,
            Resources = new ContainerResources
            {
                MemorySize = c.MemorySize,
                MemoryGuaranteePercent = c.MemoryGuaranteePercent ?? 0,
                Cpus = c.Cpus,
                CpuLimitPercent = c.CpuLimitPercent,
                CpuUnits = c.CpuUnits ?? new ContainerResources().CpuUnits,
                CpuMask = c.CpuMask,
                DiskSpace = root?.Size ?? ByteSize.Zero,
            },
        };
    }

    public async Task<ContainerInfo> CreateAsync(ContainerCreateOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        var settings = VirtuozzoContainerCommands.CreateSettings(options);
        if (await Node.FindAsync(options.Name.Value, cancellationToken).ConfigureAwait(false) is not null)
            throw new AlreadyExistsException($"A VE named {options.Name} already exists on {Node.Host.Name}.");
        var id = Node.NewId();
        await Node.RunAsync(VirtuozzoContainerCommands.Create(options, id), cancellationToken).ConfigureAwait(false);
        try
        {
            await Node.RunAsync(Prlctl.Set(id.ToString(), settings)!, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            // A failure leaves no VE behind.
            await Node.RunAsync(Prlctl.Delete(id.ToString()), CancellationToken.None, allowFailure: true).ConfigureAwait(false);
            throw;
        }
        return await GetInfoAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<ContainerInfo>> ListAsync(bool all, CancellationToken cancellationToken)
    {
        var list = await ListInfosAsync(cancellationToken).ConfigureAwait(false);
        return all ? list : list.Where(c => c.State == VeState.Running).ToList();
    }

    public Task<ContainerInfo> GetAsync(string nameOrId, CancellationToken cancellationToken) => GetInfoAsync(nameOrId, cancellationToken);

    public Task<ContainerInfo> StartAsync(string nameOrId, CancellationToken cancellationToken) => StartInfoAsync(nameOrId, cancellationToken);

    public Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken) => StopVerbAsync(nameOrId, options, cancellationToken);

    public Task<ContainerInfo> RestartAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken) => RestartInfoAsync(nameOrId, options, cancellationToken);

    /// <summary><c>prlctl suspend</c>: on Virtuozzo a container's suspend is a checkpoint of its memory to disk.</summary>
    public Task<ContainerInfo> SuspendAsync(string nameOrId, CancellationToken cancellationToken) => SuspendInfoAsync(nameOrId, cancellationToken);

    public Task<ContainerInfo> ResumeAsync(string nameOrId, CancellationToken cancellationToken) => ResumeInfoAsync(nameOrId, cancellationToken);

    public Task<ContainerInfo> SuspendToDiskAsync(string nameOrId, CancellationToken cancellationToken) => SuspendInfoAsync(nameOrId, cancellationToken);

    public Task<CheckpointSupport> GetCheckpointSupportAsync(CancellationToken cancellationToken)
        => Task.FromResult(new CheckpointSupport(true, null, null, true, true, false,
            "Virtuozzo checkpoints and migrates containers itself (prlctl suspend, prlctl migrate)."));

    public async Task<ContainerSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description, CancellationToken cancellationToken)
        => ToRecord(await CreateSnapshotVerbAsync(nameOrId, snapshotName, description, cancellationToken).ConfigureAwait(false));

    public async Task<IReadOnlyList<ContainerSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken cancellationToken)
        => (await ListSnapshotsVerbAsync(nameOrId, cancellationToken).ConfigureAwait(false)).Select(ToRecord).ToList();

    public Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => SwitchSnapshotVerbAsync(nameOrId, snapshotIdOrName, cancellationToken);

    public Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => DeleteSnapshotVerbAsync(nameOrId, snapshotIdOrName, cancellationToken);

    public Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken) => ExecVerbAsync(nameOrId, options, cancellationToken);

    /// <summary><c>vzctl compact CTID</c> (vzctl: a container-only operation prlctl has no verb for); the CTID is the container's EnvID.</summary>
    public async Task CompactDiskAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        await Node.RunAsync(Prlctl.CompactContainer(string.IsNullOrEmpty(c.EnvId) ? c.Id.ToString() : c.EnvId), cancellationToken).ConfigureAwait(false);
    }

    public async Task<ContainerInfo> SetAsync(string nameOrId, ContainerSetOptions options, CancellationToken cancellationToken)
    {
        var args = VirtuozzoContainerCommands.Set(options);
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (options.DiskSpace is { } disk && c.Disks.FirstOrDefault() is { } root && disk.Bytes < root.Size.Bytes)
            throw new InvalidStateException($"The disk of {c.Name} is {root.Size} and cannot shrink to {disk}: container disks only grow.");
        if (Prlctl.Set(c.Id.ToString(), args) is not { } command)
            return Map(c);
        return await RunThenGetAsync(command, c.Id, cancellationToken).ConfigureAwait(false);
    }

    public async Task<ContainerInfo> CloneAsync(string nameOrId, VeName newName, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (await Node.FindAsync(newName.Value, cancellationToken).ConfigureAwait(false) is not null)
            throw new AlreadyExistsException($"A VE named {newName} already exists on {Node.Host.Name}.");
        await Node.RunAsync(Prlctl.Clone(c.Id.ToString(), newName.Value), cancellationToken).ConfigureAwait(false);
        return await GetInfoAsync(newName.Value, cancellationToken).ConfigureAwait(false);
    }

    public Task<ContainerInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken) => RenameInfoAsync(nameOrId, newName, cancellationToken);

    public Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken) => DeleteVerbAsync(nameOrId, cancellationToken);

    /// <summary><c>prlctl mount ID</c>; returns the container's root on the node (<c>/vz/root/CTID</c>).</summary>
    public async Task<string> MountAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State is not (VeState.Stopped or VeState.Mounted))
            throw new InvalidStateException($"The container {c.Name} is {c.StateText}; only a stopped container is mounted.");
        if (c.State == VeState.Stopped)
            await Node.RunAsync(Prlctl.Mount(c.Id.ToString()), cancellationToken).ConfigureAwait(false);
        return c.Home is { } home && home.StartsWith("/vz/private/", StringComparison.Ordinal)
            ? "/vz/root/" + home["/vz/private/".Length..].TrimEnd('/')
            : "/vz/root/" + (c.EnvId ?? c.Id.ToString());
    }

    public async Task UnmountAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State == VeState.Mounted)
            await Node.RunAsync(Prlctl.Umount(c.Id.ToString()), cancellationToken).ConfigureAwait(false);
    }

    public Task<IReadOnlyList<ContainerTemplate>> ListTemplatesAsync(CancellationToken cancellationToken)
        => Task.FromException<IReadOnlyList<ContainerTemplate>>(Unsupported("Listing OS templates", "the node's templates are managed with its own tools (vzpkg list)."));

    public Task<ContainerTemplate> ImportTemplateAsync(ContainerTemplateImportOptions options, CancellationToken cancellationToken)
        => Task.FromException<ContainerTemplate>(Unsupported("Importing an OS template", "install templates with the node's own tools (vzpkg install)."));

    /// <summary>The node starts its autostart containers itself: nothing to do.</summary>
    public Task<IReadOnlyList<ContainerInfo>> StartAutostartAsync(CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<ContainerInfo>>([]);

    /// <summary>The node reconciles its own state: nothing to do.</summary>
    public Task<int> ReconcileAsync(CancellationToken cancellationToken) => Task.FromResult(0);

    private static ContainerSnapshotInfo ToRecord(PrlctlSnapshot s) => new(s.Id, s.Name, s.Description, s.CreatedAt, s.ParentId, s.IncludesMemory, s.IsCurrent);
}
