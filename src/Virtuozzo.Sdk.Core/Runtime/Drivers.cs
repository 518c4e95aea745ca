using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core.Runtime;

// The runtime seam: what a runtime (local runc/QEMU, Virtuozzo's prlctl, libvirt) implements so that the public clients
// can drive it. Internal for now: the runtimes ship inside the SDK's packages; the seam becomes public once three runtimes
// have proved it (docs/articles/core/runtime-model.md).

/// <summary>
/// What every VE kind's driver does for the unified client: the verbs <c>prlctl</c> applies to containers and VMs alike.
/// The public clients call it after validating input and resolving the VE; a driver takes the VE's lock for what it
/// changes, maps runtime failures to the SDK's exceptions and speaks of the VE by name.
/// </summary>
internal interface IVeDriver
{
    /// <summary>The kind of VE this driver manages.</summary>
    VeKind Kind { get; }

    /// <summary>Every VE of this kind (running or not), as the kind's info record.</summary>
    Task<IReadOnlyList<VeInfo>> ListVesAsync(CancellationToken cancellationToken);

    /// <summary>One VE's info.</summary>
    Task<VeInfo> GetVeAsync(VeId id, CancellationToken cancellationToken);

    Task<VeInfo> StartVeAsync(VeId id, CancellationToken cancellationToken);

    Task<VeStopMethod> StopVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken);

    Task<VeInfo> RestartVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken);

    Task<VeInfo> SuspendVeAsync(VeId id, CancellationToken cancellationToken);

    Task<VeInfo> ResumeVeAsync(VeId id, CancellationToken cancellationToken);

    /// <summary>Deletes a VE (a running one is stopped first); false when it did not exist.</summary>
    Task<bool> DeleteVeAsync(VeId id, CancellationToken cancellationToken);

    Task<VeInfo> RenameVeAsync(VeId id, VeName newName, CancellationToken cancellationToken);

    Task<VeExecResult> ExecVeAsync(VeId id, VeExecOptions options, CancellationToken cancellationToken);

    Task<VeUsage> GetVeUsageAsync(VeId id, CancellationToken cancellationToken);
}

/// <summary>Who the VEs of a runtime are: names, UUIDs and kinds (the local registry; <c>prlctl list -a</c> on a Virtuozzo node).</summary>
internal interface IVeInventory
{
    /// <summary>Every VE, of every kind, ordered by name.</summary>
    Task<IReadOnlyList<VeIdentity>> ListAsync(CancellationToken cancellationToken, VeKind? kind = null);

    /// <summary>Finds a VE by name or UUID; null when there is none.</summary>
    Task<VeIdentity?> FindAsync(string nameOrId, CancellationToken cancellationToken);
}

/// <summary>Registers a VE kind's driver with every runtime a DI container builds (added by <c>AddContainers()</c>, <c>AddVirtualMachines()</c>).</summary>
internal sealed class VeDriverRegistration(VeKind kind, Func<VirtuozzoRuntime, IServiceProvider, IVeDriver> factory)
{
    public VeKind Kind { get; } = kind;

    public Func<VirtuozzoRuntime, IServiceProvider, IVeDriver> Factory { get; } = factory;
}

/// <summary>
/// Where a backup is restored: each VE kind's driver, so that containers and VMs restore the same way. The backup client
/// finds the backup and converts its disks; the target says where each disk goes and makes the VE whole around them.
/// </summary>
internal interface IRestoreTarget
{
    /// <summary>The name of the configuration document a backup of this kind carries (<c>container.json</c>, <c>vm.json</c>).</summary>
    string ConfigDocument { get; }

    /// <summary>
    /// Creates a new, stopped VE under <paramref name="name"/> (a new UUID; addresses and autostart are not copied) from a
    /// backup's configuration; <paramref name="writeDisks"/> writes each backed-up disk (disk name → path in the new VE).
    /// A failure leaves no VE behind.
    /// </summary>
    Task<VeId> CreateFromBackupAsync(string configJson, VeName name, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken);

    /// <summary>
    /// Replaces the disks of the existing, stopped VE <paramref name="id"/> with a backup's, under the VE's lock:
    /// <paramref name="writeDisks"/> writes each disk to a temporary path first, so that a failure leaves the old disks.
    /// </summary>
    Task RestoreInPlaceAsync(VeId id, string configJson, string backupId, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken);
}
