using Virtuozzo.Sdk.Containers.Runtime;
using Virtuozzo.Sdk.Containers.Runtime.Local;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;

namespace Virtuozzo.Sdk.Containers;

/// <summary>
/// Manages system containers: isolated sets of processes with their own PID, mount, UTS, IPC, network and cgroup
/// namespaces, their own disk, and memory, CPU and process limits. The equivalent of <c>prlctl</c> for containers.
/// </summary>
/// <remarks>
/// The runtime chosen for the SDK does the work (<see cref="VirtuozzoRuntime"/>; the local runtime by default). The verbs
/// every VE has (start, stop, exec…) have the same names, options and results here as on
/// <see cref="VirtualEnvironmentClient"/> and the VM client. Operations on one container are serialised; different
/// containers proceed in parallel. Every member is virtual so that SDK users can mock the client in their tests.
/// </remarks>
public class ContainerClient
{
    /// <summary>The built-in template made from the host's busybox-static.</summary>
    public const string BusyboxTemplate = "busybox";

    private readonly IContainerDriver? _driver;

    /// <summary>Creates a client over an SDK runtime, sharing its state, ledger and drivers with every other client of that runtime.</summary>
    /// <exception cref="UnsupportedOnHostException">The runtime cannot run containers.</exception>
    public ContainerClient(VirtuozzoRuntime runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        _driver = runtime.GetDriver<IContainerDriver>(VeKind.Container, CreateDriver);
    }

    /// <summary>For mocking frameworks: a client with no runtime behind it.</summary>
    protected ContainerClient()
    {
    }

    internal ContainerClient(IContainerDriver driver) => _driver = driver;

    internal static IContainerDriver CreateDriver(VirtuozzoRuntime runtime) => runtime.Kind switch
    {
        RuntimeKind.Local => new LocalContainerDriver(runtime),
        RuntimeKind.Virtuozzo => new Runtime.Virtuozzo.VirtuozzoContainerDriver(runtime),
        RuntimeKind.Libvirt => new Runtime.Libvirt.LibvirtContainerDriver(runtime),
        _ => throw new UnsupportedOnHostException($"Containers are not available on the {runtime.Kind} runtime yet."),
    };

    private IContainerDriver Driver => _driver ?? throw new InvalidOperationException("This ContainerClient was made for mocking and has no runtime.");

    /// <summary>Creates a stopped container from an OS template, with its own thin disk.</summary>
    /// <remarks>The equivalent of <c>prlctl create NAME --vmtype ct --ostemplate TEMPLATE</c>.</remarks>
    /// <exception cref="AlreadyExistsException">The name is used by another container or VM, or an address by another container.</exception>
    /// <exception cref="NotFoundException">The template does not exist.</exception>
    /// <exception cref="ArgumentException">A resource, address or name is invalid; the message says which and why.</exception>
    public virtual Task<ContainerInfo> CreateAsync(ContainerCreateOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.CreateOperation, VeKind.Container, options.Name.ToString(), _ => Driver.CreateAsync(options, cancellationToken));
    }

    /// <summary>Lists containers: all of them, or only the running ones.</summary>
    /// <remarks>The equivalent of <c>prlctl list [-a] --vmtype ct</c>.</remarks>
    public virtual Task<IReadOnlyList<ContainerInfo>> ListAsync(bool all = true, CancellationToken cancellationToken = default)
        => Driver.ListAsync(all, cancellationToken);

    /// <summary>Gets a container by name or UUID.</summary>
    /// <remarks>The equivalent of <c>prlctl list -i NAME</c>.</remarks>
    /// <exception cref="NotFoundException">No such container.</exception>
    public virtual Task<ContainerInfo> GetAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.GetAsync(container.Value, cancellationToken);

    /// <summary>Starts a stopped container. A failed start rolls back completely.</summary>
    /// <remarks>The equivalent of <c>prlctl start NAME</c>.</remarks>
    /// <exception cref="InvalidStateException">It is already running, suspended or mounted.</exception>
    /// <exception cref="InsufficientResourcesException">Its memory guarantee cannot be admitted.</exception>
    public virtual Task<ContainerInfo> StartAsync(VeRef container, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.StartOperation, VeKind.Container, container.Value, _ => Driver.StartAsync(container.Value, cancellationToken));

    /// <summary>
    /// Stops a container: the template's stop signal to its init, up to <see cref="VeStopOptions.Timeout"/>, then SIGKILL to
    /// every process; or SIGKILL at once with <see cref="VeStopOptions.Kill"/>. Stopping a stopped container does nothing.
    /// Returns how it stopped.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME [--kill]</c>.</remarks>
    /// <exception cref="InvalidStateException">It is mounted, not running.</exception>
    public virtual Task<VeStopMethod> StopAsync(VeRef container, VeStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        options?.Validate();
        return SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.StopOperation, VeKind.Container, container.Value, _ => Driver.StopAsync(container.Value, options, cancellationToken));
    }

    /// <summary>Stops (if running) and starts a container.</summary>
    /// <remarks>The equivalent of <c>prlctl restart NAME</c>.</remarks>
    public virtual Task<ContainerInfo> RestartAsync(VeRef container, VeStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        options?.Validate();
        return Driver.RestartAsync(container.Value, options, cancellationToken);
    }

    /// <summary>Freezes every process of a running container; <see cref="ResumeAsync"/> continues them.</summary>
    /// <remarks>The equivalent of <c>prlctl suspend NAME</c> (on the local runtime memory stays in RAM).</remarks>
    public virtual Task<ContainerInfo> SuspendAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.SuspendAsync(container.Value, cancellationToken);

    /// <summary>Continues a suspended container.</summary>
    /// <remarks>The equivalent of <c>prlctl resume NAME</c>.</remarks>
    public virtual Task<ContainerInfo> ResumeAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.ResumeAsync(container.Value, cancellationToken);

    /// <summary>
    /// Suspends a running container to disk: CRIU saves its processes (memory, open files, sockets) beside its disk and
    /// the container stops, releasing its memory; <see cref="StartAsync"/> or <see cref="ResumeAsync"/> restores them,
    /// with the same process IDs, where they were. Stopping a container suspended to disk discards the saved processes.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl suspend NAME</c> (and <c>vzctl suspend</c>) for a container.</remarks>
    /// <exception cref="InvalidStateException">The container is not running, or CRIU could not save one of its processes (they keep running).</exception>
    /// <exception cref="UnsupportedOnHostException">CRIU does not work on this host (see <see cref="GetCheckpointSupportAsync"/>).</exception>
    public virtual Task<ContainerInfo> SuspendToDiskAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.SuspendToDiskAsync(container.Value, cancellationToken);

    /// <summary>
    /// Takes a snapshot: an internal snapshot of the container's disk and, when it runs, its processes (CRIU images),
    /// both of one instant (the container is paused for it). Taken of a running or stopped container.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl snapshot NAME [--name S] [--description D]</c>.</remarks>
    /// <exception cref="AlreadyExistsException">The container has a snapshot of that name.</exception>
    /// <exception cref="InvalidStateException">The container is mounted or suspended to disk.</exception>
    public virtual Task<ContainerSnapshotInfo> CreateSnapshotAsync(VeRef container, string snapshotName, string? description = null, CancellationToken cancellationToken = default)
        => Driver.CreateSnapshotAsync(container.Value, snapshotName, description, cancellationToken);

    /// <summary>
    /// Compacts a container's disk: blocks its file system no longer uses are given back to the host, so the image
    /// shrinks; the disk's size limit does not change.
    /// </summary>
    /// <remarks>
    /// The equivalent of <c>vzctl compact CTID</c> on a Virtuozzo node (containers' ploop disks grow but do not shrink by
    /// themselves). The local runtime does not compact disks and refuses with <see cref="UnsupportedOnHostException"/>
    /// (see <c>HostCapabilities.Features["disk_compaction"]</c>).
    /// </remarks>
    /// <exception cref="NotFoundException">No such container.</exception>
    /// <exception cref="UnsupportedOnHostException">The runtime cannot compact disks (the local runtime).</exception>
    public virtual Task CompactDiskAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.CompactDiskAsync(container.Value, cancellationToken);

    /// <summary>Lists a container's snapshots; <see cref="ContainerSnapshotInfo.ParentId"/> links them into a tree.</summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-list NAME</c>.</remarks>
    public virtual Task<IReadOnlyList<ContainerSnapshotInfo>> ListSnapshotsAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.ListSnapshotsAsync(container.Value, cancellationToken);

    /// <summary>
    /// Reverts a container to a snapshot: what runs now is discarded; a snapshot taken running restores its processes
    /// (the container runs afterwards), one taken stopped leaves the container stopped.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-switch NAME --id ID</c>.</remarks>
    /// <exception cref="NotFoundException">No such snapshot.</exception>
    public virtual Task SwitchSnapshotAsync(VeRef container, string snapshotIdOrName, CancellationToken cancellationToken = default)
        => Driver.SwitchSnapshotAsync(container.Value, snapshotIdOrName, cancellationToken);

    /// <summary>Deletes a snapshot (its children then descend from its parent).</summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-delete NAME --id ID</c>.</remarks>
    /// <exception cref="NotFoundException">No such snapshot.</exception>
    public virtual Task DeleteSnapshotAsync(VeRef container, string snapshotIdOrName, CancellationToken cancellationToken = default)
        => Driver.DeleteSnapshotAsync(container.Value, snapshotIdOrName, cancellationToken);

    /// <summary>Whether containers can be suspended to disk (and migrated live) here: the CRIU found and what it can do.</summary>
    /// <remarks>Probed once per boot (it includes a test dump of a sleeping process).</remarks>
    public virtual Task<CheckpointSupport> GetCheckpointSupportAsync(CancellationToken cancellationToken = default)
        => Driver.GetCheckpointSupportAsync(cancellationToken);

    /// <summary>
    /// Runs a program inside a running container (the argument vector as is, no shell unless asked) and returns its exit
    /// code. Output streams to the given streams as it is produced, or is collected into the result.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl exec NAME CMD…</c>. A program that is not found exits 127; not executable, 126.</remarks>
    /// <exception cref="InvalidStateException">The container is not running.</exception>
    public virtual Task<VeExecResult> ExecAsync(VeRef container, VeExecOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return Driver.ExecAsync(container.Value, options, cancellationToken);
    }

    /// <summary>
    /// Changes a container's resources: applied live while it runs (memory, swap, CPU, processes, disk growth, host name)
    /// and persisted always. A raised guarantee goes through the resource ledger first; if refused, nothing changes.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --memsize … --cpus … --diskspace …</c>.</remarks>
    /// <exception cref="InvalidStateException">The disk would shrink (disks only grow).</exception>
    public virtual Task<ContainerInfo> SetAsync(VeRef container, ContainerSetOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Driver.SetAsync(container.Value, options, cancellationToken);
    }

    /// <summary>Copies a stopped container (its disk and configuration) under a new name. Addresses are not copied.</summary>
    /// <remarks>The equivalent of <c>prlctl clone NAME --name NEW</c>.</remarks>
    public virtual Task<ContainerInfo> CloneAsync(VeRef container, VeName newName, CancellationToken cancellationToken = default)
        => Driver.CloneAsync(container.Value, newName, cancellationToken);

    /// <summary>Renames a container (running or not).</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --name NEW</c>.</remarks>
    public virtual Task<ContainerInfo> RenameAsync(VeRef container, VeName newName, CancellationToken cancellationToken = default)
        => Driver.RenameAsync(container.Value, newName, cancellationToken);

    /// <summary>
    /// Deletes a container and everything it has: a running container is killed first; nothing is left mounted, running,
    /// or on disk. Returns false when there was no such container (deleting twice is harmless; of two concurrent deletes,
    /// one returns true).
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl delete NAME</c>.</remarks>
    public virtual Task<bool> DeleteAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.DeleteAsync(container.Value, cancellationToken);

    /// <summary>Mounts a stopped container's disk on the host at the returned path (to inspect or repair its files).</summary>
    /// <remarks>The equivalent of <c>prlctl mount NAME</c>.</remarks>
    public virtual Task<string> MountAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.MountAsync(container.Value, cancellationToken);

    /// <summary>Unmounts a mounted container's disk.</summary>
    /// <remarks>The equivalent of <c>prlctl umount NAME</c>.</remarks>
    public virtual Task UnmountAsync(VeRef container, CancellationToken cancellationToken = default)
        => Driver.UnmountAsync(container.Value, cancellationToken);

    /// <summary>Lists the OS templates (the busybox template is built on first use).</summary>
    public virtual Task<IReadOnlyList<ContainerTemplate>> ListTemplatesAsync(CancellationToken cancellationToken = default)
        => Driver.ListTemplatesAsync(cancellationToken);

    /// <summary>Imports a root file system tarball as an OS template (replacing one of the same name).</summary>
    public virtual Task<ContainerTemplate> ImportTemplateAsync(ContainerTemplateImportOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Driver.ImportTemplateAsync(options, cancellationToken);
    }

    /// <summary>
    /// Builds an OS template from a distribution's packages, as Virtuozzo's EZ templates are (Debian 12 <c>debian-12</c> and
    /// 13 <c>debian-13</c>, through debootstrap), with systemd as its init, and caches it under the data root. The build
    /// downloads the packages; it takes about a minute.
    /// </summary>
    /// <exception cref="ToolNotFoundException">debootstrap is not installed.</exception>
    /// <exception cref="CommandFailedException">The packages could not be fetched or installed.</exception>
    public virtual Task<ContainerTemplate> CreateTemplateAsync(ContainerTemplateCreateOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Driver.CreateTemplateAsync(options, cancellationToken);
    }

    /// <summary>Rebuilds a template made by <see cref="CreateTemplateAsync"/> from the distribution's current packages (the cache is replaced only when the build succeeds).</summary>
    /// <exception cref="NotFoundException">No such template.</exception>
    /// <exception cref="InvalidStateException">The template was imported from a tarball: import it again instead.</exception>
    public virtual Task<ContainerTemplate> UpdateTemplateAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return Driver.UpdateTemplateAsync(name, cancellationToken);
    }

    /// <summary>
    /// Sets (or creates the password of) a user inside a running container, through the container's own <c>chpasswd</c>
    /// (<c>prlctl set --userpasswd</c>). The password never appears on a command line or in a log.
    /// </summary>
    /// <exception cref="InvalidStateException">The container is not running.</exception>
    /// <exception cref="CommandFailedException">The container's chpasswd refused it (no such user, or no chpasswd).</exception>
    public virtual Task SetUserPasswordAsync(VeRef container, string user, string password, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentNullException.ThrowIfNull(password);
        if (!System.Text.RegularExpressions.Regex.IsMatch(user, "^[a-z_][a-z0-9_.-]{0,31}$"))
            throw new ArgumentException($"'{user}' is not a user name (lower-case letters, digits, '_', '.', '-'; at most 32).", nameof(user));
        if (password.Length == 0 || password.Contains('\n') || password.Contains('\r') || password.Contains('\0'))
            throw new ArgumentException("A password must not be empty or contain a line break or NUL.", nameof(password));
        return Driver.SetUserPasswordAsync(container.Value, user, password, cancellationToken);
    }

    /// <summary>Starts every stopped container marked for autostart; returns those started. One failure does not stop the others.</summary>
    public virtual Task<IReadOnlyList<ContainerInfo>> StartAutostartAsync(CancellationToken cancellationToken = default)
        => Driver.StartAutostartAsync(cancellationToken);

    /// <summary>
    /// Cleans up after a crash or reboot: for every container that is not running, removes what it left on the host;
    /// removes what remains of containers that no longer exist (only those of this SDK instance's data root). Running
    /// containers are left alone. Returns how many leftovers were removed.
    /// </summary>
    public virtual Task<int> ReconcileAsync(CancellationToken cancellationToken = default)
        => Driver.ReconcileAsync(cancellationToken);
}
