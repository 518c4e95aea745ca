using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Containers;

/// <summary>A container's resources; names as <c>prlctl set</c> uses them.</summary>
public sealed record ContainerResources
{
    /// <summary>Memory hard limit (<c>--memsize</c>). Default 512 MiB.</summary>
    public ByteSize MemorySize { get; init; } = ByteSize.FromMiB(512);

    /// <summary>Swap the container may use beyond <see cref="MemorySize"/> (<c>--swap</c>). Default 0.</summary>
    public ByteSize Swap { get; init; } = ByteSize.Zero;

    /// <summary>Memory guaranteed while running, in percent of <see cref="MemorySize"/> (<c>--memguarantee</c>). Containers default to 0.</summary>
    public int MemoryGuaranteePercent { get; init; }

    /// <summary>CPUs' worth of time the container may use (<c>--cpus</c>); null for all.</summary>
    public int? Cpus { get; init; }

    /// <summary>CPU limit in percent, 100 = one CPU (<c>--cpulimit</c>); null for none.</summary>
    public int? CpuLimitPercent { get; init; }

    /// <summary>CPU weight relative to other VEs (<c>--cpuunits</c>). Default 1000.</summary>
    public int CpuUnits { get; init; } = 1000;

    /// <summary>CPUs the container may run on, such as <c>0-1,3</c> (<c>--cpumask</c>); null for all.</summary>
    public string? CpuMask { get; init; }

    /// <summary>Disk quota = the size of the container's disk (<c>--diskspace</c>; thin). Default 2 GiB.</summary>
    public ByteSize DiskSpace { get; init; } = ByteSize.FromGiB(2);

    /// <summary>The most processes the container may have (<c>--numproc</c>). Default 4096.</summary>
    public long MaxProcesses { get; init; } = 4096;

    /// <summary>The guaranteed memory in bytes.</summary>
    public long GuaranteeBytes => MemorySize.Bytes / 100 * MemoryGuaranteePercent + MemorySize.Bytes % 100 * MemoryGuaranteePercent / 100;
}

/// <summary>Options of <see cref="ContainerClient.CreateAsync"/>.</summary>
public sealed record ContainerCreateOptions
{
    /// <summary>The container's unique name.</summary>
    public required VeName Name { get; init; }

    /// <summary>The OS template (see <see cref="ContainerClient.ListTemplatesAsync"/>). Default <c>busybox</c>.</summary>
    public string Template { get; init; } = ContainerClient.BusyboxTemplate;

    /// <summary>Resources.</summary>
    public ContainerResources Resources { get; init; } = new();

    /// <summary>Host name inside the container; default its name.</summary>
    public string? Hostname { get; init; }

    /// <summary>Addresses with prefix (<c>10.209.0.2/24</c>) on <c>eth0</c>, attached to the host bridge; empty for loopback only.</summary>
    public IReadOnlyList<string> IpAddresses { get; init; } = [];

    /// <summary>DNS servers written to the container's <c>/etc/resolv.conf</c>.</summary>
    public IReadOnlyList<string> Nameservers { get; init; } = [];

    /// <summary>Start the container when <c>vzsdk host autostart</c> runs at boot.</summary>
    public bool Autostart { get; init; }

    /// <summary>The container's sandbox: its own id range (unprivileged, the default) and its system-call filter.</summary>
    public ContainerSecurityOptions Security { get; init; } = new();
}

/// <summary>
/// How tightly a container is confined beyond its namespaces and capabilities (see <c>docs/articles/containers/sandbox.md</c>).
/// Set when the container is created; a clone or a restored copy keeps it.
/// </summary>
public sealed record ContainerSecurityOptions
{
    /// <summary>
    /// False (the default): the container runs in a user namespace with an id range of its own, so that its root is an
    /// unprivileged user on the host and its files belong to that range. True: the container's root is the host's root
    /// (as containers created before user namespaces are) — only for software that needs it; the capability set and the
    /// system-call filter still apply.
    /// </summary>
    public bool Privileged { get; init; }

    /// <summary>The system-call filter. Default <see cref="ContainerSyscallFilter.Default"/>.</summary>
    public ContainerSyscallFilter SyscallFilter { get; init; } = ContainerSyscallFilter.Default;

    /// <summary>System calls allowed beyond the default filter's list, by name (such as <c>keyctl</c>). Empty by default.</summary>
    public IReadOnlyList<string> AllowedSyscalls { get; init; } = [];
}

/// <summary>The system-call filter a container runs under.</summary>
public enum ContainerSyscallFilter
{
    /// <summary>The SDK's default allow-list, at least as strict as Docker's default profile.</summary>
    Default,

    /// <summary>No filter: every call the kernel and the container's capabilities allow.</summary>
    Unconfined,
}

/// <summary>Changes applied by <see cref="ContainerClient.SetAsync"/>; null leaves a setting as it is.</summary>
public sealed record ContainerSetOptions
{
    /// <summary>New memory limit (live).</summary>
    public ByteSize? MemorySize { get; init; }

    /// <summary>New swap (live).</summary>
    public ByteSize? Swap { get; init; }

    /// <summary>New guarantee in percent (admitted by the resource ledger while running).</summary>
    public int? MemoryGuaranteePercent { get; init; }

    /// <summary>New CPU count (live); 0 for all.</summary>
    public int? Cpus { get; init; }

    /// <summary>New CPU limit in percent (live); 0 for none.</summary>
    public int? CpuLimitPercent { get; init; }

    /// <summary>New CPU weight (live).</summary>
    public int? CpuUnits { get; init; }

    /// <summary>New CPU mask (live); empty for all.</summary>
    public string? CpuMask { get; init; }

    /// <summary>New disk size: growing works online; shrinking is refused.</summary>
    public ByteSize? DiskSpace { get; init; }

    /// <summary>New process limit (live).</summary>
    public long? MaxProcesses { get; init; }

    /// <summary>New host name: written into a running container's <c>/etc/hostname</c> and applied to its UTS namespace at once, and persisted.</summary>
    public string? Hostname { get; init; }

    /// <summary>Autostart on or off.</summary>
    public bool? Autostart { get; init; }
}

/// <summary>A container as the SDK knows it: the common <see cref="VeInfo"/> plus the container's template and resources.</summary>
public sealed record ContainerInfo : VeInfo
{
    /// <summary>The OS template it was created from.</summary>
    public required string Template { get; init; }

    /// <summary>Its configured resources.</summary>
    public required ContainerResources Resources { get; init; }

    /// <summary>Its sandbox settings.</summary>
    public ContainerSecurityOptions Security { get; init; } = new();

    /// <summary>
    /// For an unprivileged container, the host id its root is: container user and group id N is host id
    /// <c>HostIdStart + N</c>, for 65,536 ids. Null for a privileged container.
    /// </summary>
    public long? HostIdStart { get; init; }
}

/// <summary>An OS template: a root file system tarball and its manifest.</summary>
/// <param name="Name">The template's name (<c>busybox</c>, <c>debian-12</c>…).</param>
/// <param name="Init">The init command the container runs.</param>
/// <param name="StopSignal">The signal that stops the init cleanly.</param>
/// <param name="SizeBytes">The tarball's size.</param>
public sealed record ContainerTemplate(string Name, IReadOnlyList<string> Init, string StopSignal, long SizeBytes);

/// <summary>Options of <see cref="ContainerClient.CreateTemplateAsync"/>: an OS template built from a distribution's packages.</summary>
public sealed record ContainerTemplateCreateOptions
{
    /// <summary>
    /// The template's name: <c>debian-12</c> or <c>debian-13</c> (the distribution and suite follow from it), or any name
    /// with <see cref="Suite"/> set.
    /// </summary>
    public required string Name { get; init; }

    /// <summary>The Debian suite (<c>bookworm</c>, <c>trixie</c>); null to take it from <see cref="Name"/>.</summary>
    public string? Suite { get; init; }

    /// <summary>Packages installed beyond the base (systemd, iproute2, dbus, login tools, ping, procps).</summary>
    public IReadOnlyList<string> Packages { get; init; } = [];

    /// <summary>The package mirror. Default <c>http://deb.debian.org/debian</c>.</summary>
    public Uri Mirror { get; init; } = new("http://deb.debian.org/debian");
}

/// <summary>Options of <see cref="ContainerClient.ImportTemplateAsync"/>.</summary>
public sealed record ContainerTemplateImportOptions
{
    /// <summary>The template's name.</summary>
    public required string Name { get; init; }

    /// <summary>A root file system tarball (gzip, xz or plain tar).</summary>
    public required string TarballPath { get; init; }

    /// <summary>The init command. Default <c>/sbin/init</c>.</summary>
    public IReadOnlyList<string> Init { get; init; } = ["/sbin/init"];

    /// <summary>The signal that stops the init cleanly. Default <c>SIGTERM</c> (systemd wants <c>SIGRTMIN+3</c>).</summary>
    public string StopSignal { get; init; } = "SIGTERM";
}

/// <summary>What CRIU (checkpoint/restore in user space) can do on a host: suspending containers to disk and migrating them live.</summary>
/// <param name="Usable">True when containers can be checkpointed and restored here.</param>
/// <param name="CriuPath">The CRIU program found (usable or not), or null.</param>
/// <param name="CriuVersion">Its version, or null.</param>
/// <param name="HardwareBreakpointsWork">
/// False on hosts (some virtual machines) where CRIU's hardware breakpoints never fire; CRIU then stops tasks by tracing
/// system calls instead (<c>CRIU_FAULT=130</c>), which the SDK sets.
/// </param>
/// <param name="MemoryDirtyTracking">Whether the kernel tracks dirtied memory (soft-dirty bits), which iterative pre-dumps need.</param>
/// <param name="LazyPages">Whether CRIU can restore with lazy pages (post-copy).</param>
/// <param name="Reason">Why CRIU is not usable, or null.</param>
public sealed record CheckpointSupport(bool Usable, string? CriuPath, string? CriuVersion, bool HardwareBreakpointsWork, bool MemoryDirtyTracking, bool LazyPages, string? Reason);

/// <summary>A container's snapshot.</summary>
/// <param name="Id">Its UUID.</param>
/// <param name="Name">Its name.</param>
/// <param name="Description">Its description, or null.</param>
/// <param name="CreatedAt">When it was taken (UTC).</param>
/// <param name="ParentId">The snapshot it descends from, or null: snapshots form a tree.</param>
/// <param name="IncludesMemory">True when it was taken from a running container and holds its processes (CRIU images): switching to it resumes them.</param>
/// <param name="IsCurrent">True for the snapshot the container's present state descends from.</param>
public sealed record ContainerSnapshotInfo(Guid Id, string Name, string? Description, DateTimeOffset CreatedAt, Guid? ParentId, bool IncludesMemory, bool IsCurrent);
