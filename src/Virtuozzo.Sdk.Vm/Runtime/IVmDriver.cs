using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;

namespace Virtuozzo.Sdk.Vm.Runtime;

/// <summary>
/// The VM side of the runtime seam: what a runtime does for <see cref="VirtualMachineClient"/>, beyond the verbs every
/// VE has (<see cref="IVeDriver"/>). VMs are named by name or UUID as text; the client has validated the options.
/// </summary>
internal interface IVmDriver : IVeDriver
{
    Task<VmInfo> CreateAsync(VmCreateOptions options, CancellationToken cancellationToken);

    Task<IReadOnlyList<VmInfo>> ListAsync(CancellationToken cancellationToken);

    Task<VmInfo> GetAsync(string nameOrId, CancellationToken cancellationToken);

    Task<int> ReconcileAsync(CancellationToken cancellationToken);

    Task<VmInfo> StartAsync(string nameOrId, CancellationToken cancellationToken);

    Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken);

    Task KillAsync(string nameOrId, CancellationToken cancellationToken);

    Task PauseAsync(string nameOrId, CancellationToken cancellationToken);

    Task ResumeAsync(string nameOrId, CancellationToken cancellationToken);

    Task ResetAsync(string nameOrId, CancellationToken cancellationToken);

    Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken);

    Task<VmInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken);

    Task WaitForGuestToolsAsync(string nameOrId, TimeSpan timeout, CancellationToken cancellationToken);

    Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken);

    Task SetUserPasswordAsync(string nameOrId, string user, string password, CancellationToken cancellationToken);

    Task<IReadOnlyList<VmGuestInterface>> GetGuestNetworkAsync(string nameOrId, CancellationToken cancellationToken);

    Task<VmInfo> SetAsync(string nameOrId, VmSetOptions options, CancellationToken cancellationToken);

    Task<VmDiskInfo> AddDiskAsync(string nameOrId, VmDiskOptions disk, CancellationToken cancellationToken);

    Task RemoveDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken);

    Task<VmDiskInfo> ResizeDiskAsync(string nameOrId, string diskName, ByteSize newSize, CancellationToken cancellationToken);

    Task<VmDiskInfo> CompactDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken);

    Task SuspendAsync(string nameOrId, CancellationToken cancellationToken);

    Task<VmSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description, CancellationToken cancellationToken);

    Task<IReadOnlyList<VmSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken cancellationToken);

    Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken);

    Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken);

    Task<VmInfo> CloneAsync(string nameOrId, VmCloneOptions options, CancellationToken cancellationToken);
}
