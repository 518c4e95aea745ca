namespace Virtuozzo.Sdk.Core.Hosts;

/// <summary>How the host mounts cgroups.</summary>
public enum CgroupLayout
{
    /// <summary>No cgroup file system found.</summary>
    None,

    /// <summary>cgroup v1 controllers only.</summary>
    V1,

    /// <summary>cgroup v1 controllers plus an (empty) v2 hierarchy at <c>/sys/fs/cgroup/unified</c>.</summary>
    Hybrid,

    /// <summary>The unified cgroup v2 hierarchy.</summary>
    V2,
}

/// <summary>Whether a host feature can be used, and why not.</summary>
/// <param name="Usable">True when the feature works here.</param>
/// <param name="Reason">Why it does or does not work, in one sentence.</param>
public sealed record FeatureStatus(bool Usable, string Reason);

/// <summary>What a host is and can do.</summary>
/// <param name="HostName">The host's own name.</param>
/// <param name="Kernel">The kernel release (<c>uname -r</c>).</param>
/// <param name="Cgroup">The cgroup layout.</param>
/// <param name="Cpus">Online CPUs.</param>
/// <param name="MemoryBytes">Total RAM in bytes.</param>
/// <param name="Kvm">Whether KVM guests actually run (probed by booting a tiny guest, not by the presence of /dev/kvm).</param>
/// <param name="Tools">Programs the SDK uses, each with its version, or null when missing.</param>
/// <param name="Criu">Whether <c>criu check</c> passes (live container migration needs it).</param>
public sealed record HostCapabilities(
    string HostName,
    string Kernel,
    CgroupLayout Cgroup,
    int Cpus,
    long MemoryBytes,
    FeatureStatus Kvm,
    IReadOnlyDictionary<string, string?> Tools,
    FeatureStatus Criu)
{
    /// <summary>The programs whose presence and version are reported.</summary>
    public static IReadOnlyList<string> KnownTools { get; } =
        ["runc", "qemu-system-x86_64", "qemu-img", "qemu-storage-daemon", "criu"];

    /// <summary>
    /// The runtime these capabilities were read for: <see cref="RuntimeKind.Local"/> (the default, and what
    /// <see cref="IVirtuozzoHost.GetCapabilitiesAsync"/> reports) or <see cref="RuntimeKind.Virtuozzo"/> (a node, read by
    /// <see cref="VirtuozzoRuntime.GetHostCapabilitiesAsync"/>, where <see cref="Tools"/> names the node's tools).
    /// </summary>
    public RuntimeKind Runtime { get; init; } = RuntimeKind.Local;

    /// <summary>
    /// The virtualization product and its release, as the host names it (on a Virtuozzo node the first line of
    /// <c>/etc/virtuozzo-release</c>, else of <c>/etc/vzlinux-release</c>); null on the local runtime or when the host names none.
    /// </summary>
    public string? Product { get; init; }

    /// <summary>
    /// What the runtime can do on this host: feature name (<c>containers</c>, <c>vms</c>, <c>snapshots</c>, <c>backups</c>,
    /// <c>live_migration</c>, <c>memory_guarantees</c>, <c>memory_hotplug</c>, <c>disk_compaction</c>…) → whether it is
    /// usable and why. Empty when only the host was probed (<see cref="IVirtuozzoHost.GetCapabilitiesAsync"/>); filled by
    /// <see cref="VirtuozzoRuntime.GetHostCapabilitiesAsync"/>.
    /// </summary>
    public IReadOnlyDictionary<string, FeatureStatus> Features { get; init; } = new Dictionary<string, FeatureStatus>();
}

/// <summary>Options for <see cref="IVirtuozzoHost.GetCapabilitiesAsync"/>.</summary>
public sealed record CapabilityProbeOptions
{
    /// <summary>Probe KVM again even when a result for this boot is cached.</summary>
    public bool RefreshKvmProbe { get; init; }

    /// <summary>
    /// How long the KVM probe guest may take before it is killed and KVM reported unusable. Default 3 s: the guest
    /// takes about 0.15 s under TCG and well under 1 s under a healthy KVM.
    /// </summary>
    public TimeSpan KvmProbeTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Skip the KVM and CRIU probes (they start programs); report them as not probed.</summary>
    public bool SkipProbes { get; init; }
}
