using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;

namespace Virtuozzo.Sdk.Containers.Runtime;

/// <summary>
/// The container side of the runtime seam: what a runtime does for <see cref="ContainerClient"/>, beyond the verbs every
/// VE has (<see cref="IVeDriver"/>). VEs are named by name or UUID as text; the client has validated the options.
/// </summary>
internal interface IContainerDriver : IVeDriver
{
    Task<ContainerInfo> CreateAsync(ContainerCreateOptions options, CancellationToken cancellationToken);

    Task<IReadOnlyList<ContainerInfo>> ListAsync(bool all, CancellationToken cancellationToken);

    Task<ContainerInfo> GetAsync(string nameOrId, CancellationToken cancellationToken);

    Task<ContainerInfo> StartAsync(string nameOrId, CancellationToken cancellationToken);

    Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken);

    Task<ContainerInfo> RestartAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken);

    Task<ContainerInfo> SuspendAsync(string nameOrId, CancellationToken cancellationToken);

    Task<ContainerInfo> ResumeAsync(string nameOrId, CancellationToken cancellationToken);

    Task<ContainerInfo> SuspendToDiskAsync(string nameOrId, CancellationToken cancellationToken);

    Task<CheckpointSupport> GetCheckpointSupportAsync(CancellationToken cancellationToken);

    Task<ContainerSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description, CancellationToken cancellationToken);

    Task<IReadOnlyList<ContainerSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken cancellationToken);

    Task CompactDiskAsync(string nameOrId, CancellationToken cancellationToken);

    Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken);

    Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken);

    Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken);

    Task<ContainerInfo> SetAsync(string nameOrId, ContainerSetOptions options, CancellationToken cancellationToken);

    Task<ContainerInfo> CloneAsync(string nameOrId, VeName newName, CancellationToken cancellationToken);

    Task<ContainerInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken);

    Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken);

    Task<string> MountAsync(string nameOrId, CancellationToken cancellationToken);

    Task UnmountAsync(string nameOrId, CancellationToken cancellationToken);

    Task<IReadOnlyList<ContainerTemplate>> ListTemplatesAsync(CancellationToken cancellationToken);

    Task<ContainerTemplate> ImportTemplateAsync(ContainerTemplateImportOptions options, CancellationToken cancellationToken);

    /// <summary>Builds an OS template from a distribution's packages (runtimes that cannot refuse by name).</summary>
    Task<ContainerTemplate> CreateTemplateAsync(ContainerTemplateCreateOptions options, CancellationToken cancellationToken)
        => throw new UnsupportedOnHostException("Building OS templates from packages is not available on this runtime.");

    /// <summary>Rebuilds a template made by <see cref="CreateTemplateAsync"/> from the distribution's current packages.</summary>
    Task<ContainerTemplate> UpdateTemplateAsync(string name, CancellationToken cancellationToken)
        => throw new UnsupportedOnHostException("Updating OS templates is not available on this runtime.");

    /// <summary>Sets a user's password inside a running container.</summary>
    Task SetUserPasswordAsync(string nameOrId, string user, string password, CancellationToken cancellationToken)
        => throw new UnsupportedOnHostException("Setting passwords inside containers is not available on this runtime.");

    Task<IReadOnlyList<ContainerInfo>> StartAutostartAsync(CancellationToken cancellationToken);

    Task<int> ReconcileAsync(CancellationToken cancellationToken);
}
