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
