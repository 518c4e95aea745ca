using System.Globalization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Vm.Runtime.Virtuozzo;

/// <summary>
/// VMs on a Virtuozzo node: each operation one or a few prlctl commands on the VM's UUID (<see cref="VirtuozzoVmCommands"/>,
/// <see cref="Prlctl"/>). The node's dispatcher runs the VMs, keeps their disks and admits their memory guarantees; the
/// SDK reads them back with <c>prlctl list -i -f -j</c> after each change.
/// </summary>
internal sealed class VirtuozzoVmDriver(VirtuozzoRuntime runtime) : VirtuozzoVeDriver<VmInfo>(runtime, VeKind.Vm), IVmDriver
{
    protected override VmInfo Map(PrlctlVeConfig c) => new()
    {
        Id = c.Id,
        Name = new VeName(c.Name),
        Kind = VeKind.Vm,
        State = c.State,
        Cpus = c.Cpus,
        CpuLimitPercent = c.CpuLimitPercent,
        CpuMask = c.CpuMask,
        MemorySize = c.MemorySize,
        MemoryGuaranteePercent = c.MemoryGuaranteePercent ?? VmDefaults.MemoryGuaranteePercent,
        DiskSize = ByteSize.FromBytes(c.Disks.Sum(d => d.Size.Bytes)),
        Hostname = c.Hostname,
        IpAddresses = c.IpAddresses,
        Autostart = c.Autostart,
        MaxCpus = c.Cpus ?? 1,
        MemoryHotplug = c.MemoryHotplug,
        MaxMemory = c.MemorySize,
        Disks = c.Disks.Select(d => new VmDiskInfo(d.Name, d.Image ?? string.Empty, d.Size)).ToList(),
        CdromImagePath = c.CdromImage,
        Network = c.MacAddress is null ? VmNetworkMode.None : VmNetworkMode.Bridged,
        MacAddress = FormatMac(c.MacAddress),
    };

    public async Task<VmInfo> CreateAsync(VmCreateOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        var id = Node.NewId();
        var commands = VirtuozzoVmCommands.Create(options, id);
        if (await Node.FindAsync(options.Name.Value, cancellationToken).ConfigureAwait(false) is not null)
            throw new AlreadyExistsException($"A VE named {options.Name} already exists on {Node.Host.Name}.");
        await Node.RunAsync(commands[0], cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var command in commands.Skip(1))
                await Node.RunAsync(command, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            await Node.RunAsync(Prlctl.Delete(id.ToString()), CancellationToken.None, allowFailure: true).ConfigureAwait(false);
            throw;
        }
        return await GetInfoAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    public Task<IReadOnlyList<VmInfo>> ListAsync(CancellationToken cancellationToken) => ListInfosAsync(cancellationToken);

    public Task<VmInfo> GetAsync(string nameOrId, CancellationToken cancellationToken) => GetInfoAsync(nameOrId, cancellationToken);

    /// <summary>The node reconciles its own VMs: nothing to do.</summary>
    public Task<int> ReconcileAsync(CancellationToken cancellationToken) => Task.FromResult(0);

    public Task<VmInfo> StartAsync(string nameOrId, CancellationToken cancellationToken) => StartInfoAsync(nameOrId, cancellationToken);

    public Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken) => StopVerbAsync(nameOrId, options, cancellationToken);

    public async Task KillAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State != VeState.Stopped)
            await Node.RunAsync(Prlctl.Stop(c.Id.ToString(), kill: true), cancellationToken).ConfigureAwait(false);
    }

    public async Task PauseAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State != VeState.Running)
            throw new InvalidStateException($"The VM {c.Name} is {c.StateText}; only a running VM is paused.");
        await Node.RunAsync(Prlctl.Pause(c.Id.ToString()), cancellationToken).ConfigureAwait(false);
    }

    public async Task ResumeAsync(string nameOrId, CancellationToken cancellationToken) => await ResumeInfoAsync(nameOrId, cancellationToken).ConfigureAwait(false);

    public async Task ResetAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State != VeState.Running)
            throw new InvalidStateException($"The VM {c.Name} is {c.StateText}; only a running VM is reset.");
        await Node.RunAsync(Prlctl.Reset(c.Id.ToString()), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes a stopped VM (<c>prlctl delete</c>); a running one is refused, as on every runtime.</summary>
    public async Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var c = await Node.FindConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c is null || c.Kind != VeKind.Vm)
            return false;
        if (c.State != VeState.Stopped)
            throw new InvalidStateException($"The VM {c.Name} is {c.StateText}; stop it before deleting it.");
        await Node.RunAsync(Prlctl.Delete(c.Id.ToString()), cancellationToken).ConfigureAwait(false);
        return true;
    }

    public Task<VmInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken) => RenameInfoAsync(nameOrId, newName, cancellationToken);

    /// <summary>Polls <c>prlctl list -i -j</c> until the guest tools report <c>installed</c>.</summary>
    public async Task WaitForGuestToolsAsync(string nameOrId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (timeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be positive.");
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (true)
        {
            var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
            if (c.State != VeState.Running)
                throw new InvalidStateException($"The VM {c.Name} is {c.StateText}; guest tools answer only in a running VM.");
            if (string.Equals(c.GuestToolsState, "installed", StringComparison.OrdinalIgnoreCase))
                return;
            if (DateTimeOffset.UtcNow >= deadline)
                throw new TimeoutException($"The guest tools of {c.Name} did not report 'installed' within {timeout} (state: {c.GuestToolsState ?? "unknown"}).");
            await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
        }
    }

    public Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken) => ExecVerbAsync(nameOrId, options, cancellationToken);

    public async Task SetUserPasswordAsync(string nameOrId, string user, string password, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentNullException.ThrowIfNull(password);
        if (user.Contains(':', StringComparison.Ordinal))
            throw new ArgumentException("A user name cannot contain ':'.", nameof(user));
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        await Node.RunAsync(Prlctl.SetUserPassword(c.Id.ToString(), user, password), cancellationToken).ConfigureAwait(false);
    }

    public Task<IReadOnlyList<VmGuestInterface>> GetGuestNetworkAsync(string nameOrId, CancellationToken cancellationToken)
        => Task.FromException<IReadOnlyList<VmGuestInterface>>(Unsupported("Reading the guest's network interfaces",
            "the configured addresses are in VmInfo.IpAddresses."));

    public async Task<VmInfo> SetAsync(string nameOrId, VmSetOptions options, CancellationToken cancellationToken)
    {
        var args = VirtuozzoVmCommands.Set(options);
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        return Prlctl.Set(c.Id.ToString(), args) is { } command
            ? await RunThenGetAsync(command, c.Id, cancellationToken).ConfigureAwait(false)
            : Map(c);
    }

    public async Task<VmDiskInfo> AddDiskAsync(string nameOrId, VmDiskOptions disk, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        await Node.RunAsync(VirtuozzoVmCommands.AddDisk(c.Id.ToString(), disk), cancellationToken).ConfigureAwait(false);
        var after = await GetInfoAsync(c.Id.ToString(), cancellationToken).ConfigureAwait(false);
        return after.Disks.FirstOrDefault(d => c.Disks.All(old => old.Name != d.Name))
            ?? throw new VirtuozzoException($"prlctl added a disk to {c.Name}, but its configuration shows no new disk.");
    }

    public async Task RemoveDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var command = VirtuozzoVmCommands.RemoveDisk(c.Id.ToString(), diskName);
        if (c.Disks.All(d => d.Name != diskName))
            throw new NotFoundException($"The VM {c.Name} has no disk {diskName}.");
        await Node.RunAsync(command, cancellationToken).ConfigureAwait(false);
    }

    public async Task<VmDiskInfo> ResizeDiskAsync(string nameOrId, string diskName, ByteSize newSize, CancellationToken cancellationToken)
    {
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var command = VirtuozzoVmCommands.ResizeDisk(c.Id.ToString(), diskName, newSize);
        var disk = c.Disks.FirstOrDefault(d => d.Name == diskName) ?? throw new NotFoundException($"The VM {c.Name} has no disk {diskName}.");
        if (newSize.Bytes < disk.Size.Bytes)
            throw new InvalidStateException($"The disk {diskName} of {c.Name} is {disk.Size} and cannot shrink to {newSize}: disks only grow.");
        await Node.RunAsync(command, cancellationToken).ConfigureAwait(false);
        var after = await GetInfoAsync(c.Id.ToString(), cancellationToken).ConfigureAwait(false);
        return after.Disks.First(d => d.Name == diskName);
    }

    /// <summary><c>prl_disk_tool compact --hdd IMAGE</c> on a stopped VM's disk (the SDK does not compact an image the running VM writes).</summary>
    public async Task<VmDiskInfo> CompactDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken)
    {
        VirtuozzoVmCommands.ValidateDiskName(diskName);
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var disk = c.Disks.FirstOrDefault(d => d.Name == diskName) ?? throw new NotFoundException($"The VM {c.Name} has no disk {diskName}.");
        if (c.State != VeState.Stopped)
            throw new InvalidStateException($"The VM {c.Name} is {c.StateText}; stop it before compacting {diskName}.");
        if (string.IsNullOrEmpty(disk.Image))
            throw Unsupported($"Compacting {diskName} of {c.Name} (it has no image file: a passthrough or attached-backup disk)");
        await Node.RunAsync(Prlctl.CompactImage(disk.Image), cancellationToken).ConfigureAwait(false);
        var after = await GetInfoAsync(c.Id.ToString(), cancellationToken).ConfigureAwait(false);
        return after.Disks.First(d => d.Name == diskName);
    }

    public async Task SuspendAsync(string nameOrId, CancellationToken cancellationToken) => await SuspendInfoAsync(nameOrId, cancellationToken).ConfigureAwait(false);

    public async Task<VmSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description, CancellationToken cancellationToken)
        => ToRecord(await CreateSnapshotVerbAsync(nameOrId, snapshotName, description, cancellationToken).ConfigureAwait(false));

    public async Task<IReadOnlyList<VmSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken cancellationToken)
        => (await ListSnapshotsVerbAsync(nameOrId, cancellationToken).ConfigureAwait(false)).Select(ToRecord).ToList();

    public Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => SwitchSnapshotVerbAsync(nameOrId, snapshotIdOrName, cancellationToken);

    public Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => DeleteSnapshotVerbAsync(nameOrId, snapshotIdOrName, cancellationToken);

    public async Task<VmInfo> CloneAsync(string nameOrId, VmCloneOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        var c = await ConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (c.State != VeState.Stopped)
            throw new InvalidStateException($"The VM {c.Name} is {c.StateText}; only a stopped VM is cloned.");
        if (await Node.FindAsync(options.Name.Value, cancellationToken).ConfigureAwait(false) is not null)
            throw new AlreadyExistsException($"A VE named {options.Name} already exists on {Node.Host.Name}.");
        await Node.RunAsync(Prlctl.Clone(c.Id.ToString(), options.Name.Value, options.Linked), cancellationToken).ConfigureAwait(false);
        return await GetInfoAsync(options.Name.Value, cancellationToken).ConfigureAwait(false);
    }

    /// <summary><c>001C42E1A819</c> → <c>00:1c:42:e1:a8:19</c>; null stays null, anything else is returned as printed.</summary>
    internal static string? FormatMac(string? mac)
        => mac is { Length: 12 } && mac.All(char.IsAsciiHexDigit)
            ? string.Join(':', Enumerable.Range(0, 6).Select(i => mac.Substring(i * 2, 2).ToLower(CultureInfo.InvariantCulture)))
            : mac;

    private static VmSnapshotInfo ToRecord(PrlctlSnapshot s) => new(s.Id, s.Name, s.Description, s.CreatedAt, s.ParentId, s.IncludesMemory, s.IsCurrent);
}
