using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>A snapshot as prlctl lists it, before the kind's driver makes its record.</summary>
internal sealed record PrlctlSnapshot(Guid Id, string Name, string? Description, DateTimeOffset CreatedAt, Guid? ParentId, bool IncludesMemory, bool IsCurrent);

/// <summary>
/// The verbs containers and VMs share on a Virtuozzo node, each one prlctl command on the VE's UUID; the kind's driver
/// maps the node's configuration (<see cref="PrlctlVeConfig"/>) to its record. The node serialises operations on a VE
/// itself (a busy VE fails with a message that maps to <see cref="InvalidStateException"/>), so the driver takes no lock.
/// </summary>
internal abstract class VirtuozzoVeDriver<TInfo>(VirtuozzoRuntime runtime, VeKind kind) : IVeDriver
    where TInfo : VeInfo
{
    protected VirtuozzoNode Node { get; } = runtime.RequireNode();

    protected VirtuozzoRuntime Runtime { get; } = runtime;

    public VeKind Kind { get; } = kind;

    protected string KindWord => Kind == VeKind.Container ? "container" : "VM";

    /// <summary>The kind's record for a configuration the node printed.</summary>
    protected abstract TInfo Map(PrlctlVeConfig config);

    /// <summary>Refuses a feature the Virtuozzo runtime does not drive, by name.</summary>
    protected UnsupportedOnHostException Unsupported(string feature, string? instead = null)
        => new($"{feature} is not supported by the Virtuozzo runtime on {Node.Host.Name}{(instead is null ? "." : "; " + instead)}");

    public async Task<IReadOnlyList<TInfo>> ListInfosAsync(CancellationToken cancellationToken)
        => (await Node.ListConfigsAsync(Kind, cancellationToken).ConfigureAwait(false)).Select(Map).ToList();

    public async Task<TInfo> GetInfoAsync(string nameOrId, CancellationToken cancellationToken)
        => Map(await Node.GetConfigAsync(nameOrId, Kind, cancellationToken).ConfigureAwait(false));

    protected Task<PrlctlVeConfig> ConfigAsync(string nameOrId, CancellationToken cancellationToken) => Node.GetConfigAsync(nameOrId, Kind, cancellationToken);

    protected async Task<TInfo> RunThenGetAsync(PrlctlCommand command, VeId id, CancellationToken cancellationToken)
    {
        await Node.RunAsync(command, cancellationToken).ConfigureAwait(false);
        return await GetInfoAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    public async Task<TInfo> StartInfoAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State == VeState.Running)
            throw new InvalidStateException($"The {KindWord} {c.Name} is already running.");
        if (c.State is not VeState.Stopped)
            throw new InvalidStateException($"The {KindWord} {c.Name} is {c.StateText}; only a stopped {KindWord} starts (resume a suspended or paused one).");
        return await RunThenGetAsync(Prlctl.Start(c.Id.ToString()), c.Id, cancellationToken).ConfigureAwait(false);
    }

    public async Task<VeStopMethod> StopVerbAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken)
    {
        options?.Validate();
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State == VeState.Stopped)
            return VeStopMethod.AlreadyStopped;
        var kill = options?.Kill == true;
        var command = Prlctl.Stop(c.Id.ToString(), kill);
        await Node.RunAsync(command, cancellationToken, template: options?.Timeout is { } t ? new Command(command.Program).WithTimeout(t + TimeSpan.FromSeconds(30)) : null)
            .ConfigureAwait(false);
        return kill ? VeStopMethod.Killed : Kind == VeKind.Container ? VeStopMethod.Signal : VeStopMethod.Acpi;
    }

    public async Task<TInfo> RestartInfoAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken)
    {
        options?.Validate();
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State != VeState.Running)
            throw new InvalidStateException($"The {KindWord} {c.Name} is {c.StateText}; only a running {KindWord} restarts.");
        if (options?.Kill == true)
        {
            await Node.RunAsync(Prlctl.Stop(c.Id.ToString(), kill: true), cancellationToken).ConfigureAwait(false);
            return await RunThenGetAsync(Prlctl.Start(c.Id.ToString()), c.Id, cancellationToken).ConfigureAwait(false);
        }
        return await RunThenGetAsync(Prlctl.Restart(c.Id.ToString()), c.Id, cancellationToken).ConfigureAwait(false);
    }

    public async Task<TInfo> SuspendInfoAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State != VeState.Running)
            throw new InvalidStateException($"The {KindWord} {c.Name} is {c.StateText}; only a running {KindWord} is suspended.");
        return await RunThenGetAsync(Prlctl.Suspend(c.Id.ToString()), c.Id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Resumes a suspended VE (<c>prlctl resume</c>) or continues a paused one (<c>prlctl start</c>, as prlsdkapi's unpause).</summary>
    public async Task<TInfo> ResumeInfoAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        return c.State switch
        {
            VeState.Suspended => await RunThenGetAsync(Prlctl.Resume(c.Id.ToString()), c.Id, cancellationToken).ConfigureAwait(false),
            VeState.Paused => await RunThenGetAsync(Prlctl.Start(c.Id.ToString()), c.Id, cancellationToken).ConfigureAwait(false),
            _ => throw new InvalidStateException($"The {KindWord} {c.Name} is {c.StateText}; only a suspended or paused {KindWord} resumes."),
        };
    }

    public async Task<bool> DeleteVerbAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await Node.FindConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c is null || c.Kind != Kind)
            return false;
        if (c.State != VeState.Stopped)
            await Node.RunAsync(Prlctl.Stop(c.Id.ToString(), kill: true), cancellationToken).ConfigureAwait(false);
        await Node.RunAsync(Prlctl.Delete(c.Id.ToString()), cancellationToken).ConfigureAwait(false);
        return true;
    }

    public async Task<TInfo> RenameInfoAsync(string nameOrId, VeName newName, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.Name == newName.Value)
            return Map(c);
        if (await Node.FindAsync(newName.Value, cancellationToken).ConfigureAwait(false) is not null)
            throw new AlreadyExistsException($"A VE named {newName} already exists on {Node.Host.Name}.");
        return await RunThenGetAsync(Prlctl.Rename(c.Id.ToString(), newName.Value), c.Id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// <c>prlctl exec ID --without-shell …</c>. prlctl passes the program's exit code through; the environment and working
    /// directory have no prlctl option and are refused by name.
    /// </summary>
    public async Task<VeExecResult> ExecVerbAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.Environment.Count > 0)
            throw Unsupported("Exec with environment variables", "prlctl exec has no option for them: pass them in the command (env NAME=VALUE CMD…).");
        if (options.WorkingDirectory is not null)
            throw Unsupported("Exec with a working directory", "prlctl exec has no option for it: run the command with Shell and 'cd DIR && …'.");
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State != VeState.Running)
            throw new InvalidStateException($"The {KindWord} {c.Name} is {c.StateText}; commands run only in a running {KindWord}.");
        var command = Prlctl.Exec(c.Id.ToString(), options.EffectiveCommand);
        var template = new Command(command.Program);
        if (options.Timeout is { } t)
            template = template.WithTimeout(t);
        if (options.StandardInput is { } input)
            template = template.WithStandardInput(input);
        var r = await Node.RunAsync(command, cancellationToken, allowFailure: true, template).ConfigureAwait(false);
        var stdout = r.StandardOutput;
        var stderr = r.StandardError;
        if (options.StandardOutput is { } o)
        {
            await o.WriteAsync(System.Text.Encoding.UTF8.GetBytes(stdout), cancellationToken).ConfigureAwait(false);
            stdout = string.Empty;
        }
        if (options.StandardError is { } e)
        {
            await e.WriteAsync(System.Text.Encoding.UTF8.GetBytes(stderr), cancellationToken).ConfigureAwait(false);
            stderr = string.Empty;
        }
        return new VeExecResult(r.ExitCode, stdout, stderr);
    }

    public async Task<PrlctlSnapshot> CreateSnapshotVerbAsync(string nameOrId, string snapshotName, string? description, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(snapshotName);
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var r = await Node.RunAsync(Prlctl.CreateSnapshot(c.Id.ToString(), snapshotName, description), cancellationToken).ConfigureAwait(false);
        var snapshotId = PrlctlText.ParseCreatedSnapshotId(r.StandardOutput);
        return await DetailsAsync(c.Id.ToString(), new PrlctlSnapshotRow(snapshotId, null, true), cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<PrlctlSnapshot>> ListSnapshotsVerbAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var r = await Node.RunAsync(Prlctl.ListSnapshots(c.Id.ToString()), cancellationToken).ConfigureAwait(false);
        var list = new List<PrlctlSnapshot>();
        foreach (var row in PrlctlText.ParseSnapshotList(r.StandardOutput))
            list.Add(await DetailsAsync(c.Id.ToString(), row, cancellationToken).ConfigureAwait(false));
        return list;
    }

    public async Task SwitchSnapshotVerbAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
    {
        var (id, snap) = await ResolveSnapshotAsync(nameOrId, snapshotIdOrName, cancellationToken).ConfigureAwait(false);
        await Node.RunAsync(Prlctl.SwitchSnapshot(id, snap), cancellationToken).ConfigureAwait(false);
    }

    public async Task DeleteSnapshotVerbAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
    {
        var (id, snap) = await ResolveSnapshotAsync(nameOrId, snapshotIdOrName, cancellationToken).ConfigureAwait(false);
        await Node.RunAsync(Prlctl.DeleteSnapshot(id, snap), cancellationToken).ConfigureAwait(false);
    }

    private async Task<(string Id, Guid Snapshot)> ResolveSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(snapshotIdOrName);
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var all = await ListSnapshotsVerbAsync(c.Id.ToString(), cancellationToken).ConfigureAwait(false);
        var matches = Guid.TryParse(snapshotIdOrName.Trim('{', '}'), out var g)
            ? all.Where(s => s.Id == g).ToList()
            : all.Where(s => s.Name == snapshotIdOrName).ToList();
        return matches.Count switch
        {
            1 => (c.Id.ToString(), matches[0].Id),
            0 => throw new NotFoundException($"The {KindWord} {c.Name} has no snapshot '{snapshotIdOrName}'."),
            _ => throw new ArgumentException($"The {KindWord} {c.Name} has {matches.Count} snapshots named '{snapshotIdOrName}'; name one by its id.", nameof(snapshotIdOrName)),
        };
    }

    private async Task<PrlctlSnapshot> DetailsAsync(string id, PrlctlSnapshotRow row, CancellationToken cancellationToken)
    {
        var r = await Node.RunAsync(Prlctl.SnapshotDetails(id, row.Id), cancellationToken).ConfigureAwait(false);
        var d = PrlctlText.ParseSnapshotDetails(r.StandardOutput);
        var memory = d.State is { } s && (s.Contains("run", StringComparison.OrdinalIgnoreCase) || s.Contains("poweron", StringComparison.OrdinalIgnoreCase)
            || s.Contains("suspend", StringComparison.OrdinalIgnoreCase));
        return new PrlctlSnapshot(d.Id, d.Name, d.Description, d.CreatedAt ?? DateTimeOffset.MinValue, row.ParentId, memory, d.IsCurrent || row.IsCurrent);
    }

    // IVeDriver, by UUID.
    async Task<IReadOnlyList<VeInfo>> IVeDriver.ListVesAsync(CancellationToken cancellationToken) => await ListInfosAsync(cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.GetVeAsync(VeId id, CancellationToken cancellationToken) => await GetInfoAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.StartVeAsync(VeId id, CancellationToken cancellationToken) => await StartInfoAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    Task<VeStopMethod> IVeDriver.StopVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken) => StopVerbAsync(id.ToString(), options, cancellationToken);

    async Task<VeInfo> IVeDriver.RestartVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken)
        => await RestartInfoAsync(id.ToString(), options, cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.SuspendVeAsync(VeId id, CancellationToken cancellationToken) => await SuspendInfoAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.ResumeVeAsync(VeId id, CancellationToken cancellationToken) => await ResumeInfoAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    Task<bool> IVeDriver.DeleteVeAsync(VeId id, CancellationToken cancellationToken) => DeleteVerbAsync(id.ToString(), cancellationToken);

    async Task<VeInfo> IVeDriver.RenameVeAsync(VeId id, VeName newName, CancellationToken cancellationToken)
        => await RenameInfoAsync(id.ToString(), newName, cancellationToken).ConfigureAwait(false);

    Task<VeExecResult> IVeDriver.ExecVeAsync(VeId id, VeExecOptions options, CancellationToken cancellationToken) => ExecVerbAsync(id.ToString(), options, cancellationToken);

    Task<VeUsage> IVeDriver.GetVeUsageAsync(VeId id, CancellationToken cancellationToken)
        => Task.FromException<VeUsage>(Unsupported("Usage statistics", "prlctl statistics is not mapped yet."));
}
