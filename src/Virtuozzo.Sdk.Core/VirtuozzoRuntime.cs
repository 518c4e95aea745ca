using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core;

/// <summary>Which runtime does the work behind the SDK's clients.</summary>
public enum RuntimeKind
{
    /// <summary>
    /// The SDK itself on this machine: containers through an OCI runtime, VMs through an emulator it starts, disks in
    /// QCOW2 through the SDK's own engine. The default.
    /// </summary>
    Local,

    /// <summary>
    /// <c>prlctl</c> and <c>vzctl</c> on a Virtuozzo Hybrid Server 7 / OpenVZ 7 node, locally or over SSH
    /// (<see cref="VirtuozzoRuntime.CreateVirtuozzo"/>). Verified against the tools' documented formats; not yet run against a live node.
    /// </summary>
    Virtuozzo,

    /// <summary>
    /// A libvirt daemon, locally (<c>qemu:///system</c>) or remotely (<c>qemu+ssh://root@host/system</c>), through libvirt's C
    /// library (<see cref="VirtuozzoRuntime.CreateLibvirt"/>). VMs only, except on Virtuozzo's <c>vz</c> driver.
    /// </summary>
    Libvirt,
}

/// <summary>
/// One SDK instance's runtime: the host it manages, its state (data root, VE registry), its resource ledger, and the
/// drivers of each VE kind. Every client built on the same runtime shares all of it — one ledger admits every
/// guarantee, one registry keeps names unique — so create one per host and pass it to every client (DI does this).
/// </summary>
/// <example>
/// <code>
/// var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = "/srv/vzsdk" });
/// var containers = new ContainerClient(runtime);
/// var vms = new VirtualMachineClient(runtime);
/// var all = new VirtualEnvironmentClient(runtime); // sees the containers and VMs of both clients
/// </code>
/// </example>
public sealed class VirtuozzoRuntime
{
    private readonly ConcurrentDictionary<VeKind, IVeDriver> _drivers = new();
    private readonly ConcurrentDictionary<Type, object> _services = new();
    private readonly Lazy<CgroupManager> _cgroups;

    private VirtuozzoRuntime(RuntimeKind kind, VirtuozzoSdkOptions options, IVirtuozzoHost host, ILoggerFactory? loggerFactory, IVeInventory? inventory = null)
    {
        Kind = kind;
        Options = options;
        Host = host;
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        Store = new StateStore(options.DataRoot, options.LockTimeout);
        Registry = new VeRegistry(Store);
        Inventory = inventory ?? new LocalInventory(Registry);
        Ledger = new ResourceLedger(Store, ResourceLedger.LocalCapacity(options));
        Bridge = new HostBridge(host, options.BridgeName, options.BridgeAddress, options.BridgeNat);
        _cgroups = new Lazy<CgroupManager>(() => CgroupManager.Detect(options.DataRoot));
    }

    /// <summary>
    /// Creates the local runtime: this machine, managed by the SDK itself, with its state in
    /// <see cref="VirtuozzoSdkOptions.DataRoot"/>.
    /// </summary>
    /// <param name="options">Data root, bridge, locking and host-reserve options; null for the defaults.</param>
    /// <param name="loggerFactory">Receives what the SDK does (commands at Debug level); null for none.</param>
    /// <exception cref="ArgumentException">The options are invalid; the message lists every problem.</exception>
    /// <exception cref="UnsupportedOnHostException">The options name a remote host: the local runtime manages this machine only.</exception>
    public static VirtuozzoRuntime CreateLocal(VirtuozzoSdkOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        options ??= new VirtuozzoSdkOptions();
        var errors = options.Validate();
        if (errors.Count > 0)
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        if (options.RemoteHost is not null)
            throw new UnsupportedOnHostException(
                $"The local runtime manages this machine only, and the options name the remote host '{options.RemoteHost.HostName}'. " +
                "Remote Virtuozzo nodes are managed through the Virtuozzo runtime: VirtuozzoRuntime.CreateVirtuozzo(new SshHost(...)).");
        return new VirtuozzoRuntime(RuntimeKind.Local, options, new LocalHost(loggerFactory?.CreateLogger<LocalHost>()), loggerFactory);
    }

    /// <summary>
    /// Creates the Virtuozzo runtime: a Virtuozzo Hybrid Server 7 / OpenVZ 7 node driven through its own tools
    /// (<c>prlctl</c>, <c>vzctl</c>) on <paramref name="host"/> — <see cref="LocalHost"/> on the node itself, or an
    /// <see cref="SshHost"/>. The node owns its VEs, their state and their memory guarantees; the SDK keeps no registry or
    /// ledger of its own for them. Operations the node's tools do not offer throw <see cref="UnsupportedOnHostException"/>
    /// naming the feature.
    /// </summary>
    /// <remarks>
    /// Verified against the documented formats of prlctl's output (JSON of <c>prlctl list -i -f -j</c>, the plain text of
    /// snapshots and backups); not yet run against a live node. See the article "The Virtuozzo runtime".
    /// </remarks>
    /// <param name="host">The node: <see cref="LocalHost"/> or an <see cref="SshHost"/>.</param>
    /// <param name="options">SDK options (<see cref="VirtuozzoSdkOptions.DataRoot"/> is not used by this runtime); null for the defaults.</param>
    /// <param name="loggerFactory">Receives what the SDK does (each prlctl command at Debug level); null for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="host"/> is null.</exception>
    /// <exception cref="ArgumentException">The options are invalid; the message lists every problem.</exception>
    /// <example>
    /// <code>
    /// await using var node = new SshHost(new SshHostOptions { HostName = "node1.example.com", UserName = "root" });
    /// var runtime = VirtuozzoRuntime.CreateVirtuozzo(node);
    /// var all = await new VirtualEnvironmentClient(runtime).ListAsync(all: true); // prlctl list -a
    /// </code>
    /// </example>
    public static VirtuozzoRuntime CreateVirtuozzo(IVirtuozzoHost host, VirtuozzoSdkOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new VirtuozzoSdkOptions();
        var errors = options.Validate();
        if (errors.Count > 0)
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        var node = new VirtuozzoNode(host, loggerFactory?.CreateLogger<VirtuozzoNode>());
        return new VirtuozzoRuntime(RuntimeKind.Virtuozzo, options, host, loggerFactory, node) { Node = node };
    }

    /// <summary>
    /// Creates the libvirt runtime: VMs defined and driven by the libvirt daemon at <paramref name="uri"/> —
    /// <c>qemu:///system</c> on this machine, <c>qemu+ssh://root@host/system</c> on another, or Virtuozzo's
    /// <c>vz+ssh://root@node/system</c>. libvirt owns the VMs' definitions and state (what <c>virsh</c> shows is what the
    /// SDK sees); on a local URI the SDK makes the VMs' QCOW2 disks under <see cref="VirtuozzoSdkOptions.DataRoot"/> with its
    /// own engine. Operations libvirt cannot do here throw <see cref="UnsupportedOnHostException"/> naming the feature.
    /// </summary>
    /// <remarks>The connection is opened here, so that an unreachable daemon fails at once. See the article "The libvirt runtime".</remarks>
    /// <param name="uri">The libvirt connection URI.</param>
    /// <param name="options">SDK options (data root, bridge); null for the defaults.</param>
    /// <param name="loggerFactory">Receives what the SDK does; null for none.</param>
    /// <exception cref="ArgumentException">The URI is malformed, or the options are invalid.</exception>
    /// <exception cref="ToolNotFoundException">libvirt's client library (Debian's libvirt0) is not installed.</exception>
    /// <exception cref="HostConnectionException">The daemon cannot be reached.</exception>
    /// <example>
    /// <code>
    /// var runtime = VirtuozzoRuntime.CreateLibvirt("qemu:///system");
    /// var vms = new VirtualMachineClient(runtime);       // defines, starts and changes libvirt domains
    /// var all = new VirtualEnvironmentClient(runtime);   // virsh list --all, as VEs
    /// </code>
    /// </example>
    public static VirtuozzoRuntime CreateLibvirt(string uri, VirtuozzoSdkOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        if (LibvirtConnection.ValidateUri(uri) is { } problem)
            throw new ArgumentException(problem, nameof(uri));
        options ??= new VirtuozzoSdkOptions();
        var errors = options.Validate();
        if (errors.Count > 0)
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        var connection = LibvirtConnection.OpenAsync(uri, loggerFactory?.CreateLogger<LibvirtConnection>(), CancellationToken.None).GetAwaiter().GetResult();
        var runtime = new VirtuozzoRuntime(RuntimeKind.Libvirt, options, new LocalHost(loggerFactory?.CreateLogger<LocalHost>()), loggerFactory, connection) { Libvirt = connection };
        connection.DomainChanged += _ => runtime.Changes.Pulse();
        return runtime;
    }

    /// <summary>A runtime whose VEs come from <paramref name="inventory"/> and whatever drivers the caller registers (unit tests, test doubles).</summary>
    internal static VirtuozzoRuntime ForTesting(IVeInventory inventory, VirtuozzoSdkOptions? options = null)
        => new(RuntimeKind.Local, options ?? new VirtuozzoSdkOptions { DataRoot = Path.Combine(Path.GetTempPath(), "vzsdk-unit-" + Guid.NewGuid().ToString("N")) },
            new LocalHost(), null, inventory);

    /// <summary>Which runtime this is.</summary>
    public RuntimeKind Kind { get; }

    /// <summary>The options the runtime was created with.</summary>
    public VirtuozzoSdkOptions Options { get; }

    /// <summary>The host the runtime manages.</summary>
    public IVirtuozzoHost Host { get; }

    /// <summary>
    /// What the managed host is and what this runtime can do there: the host's facts (kernel, cgroups, CPUs, memory),
    /// the tools the runtime drives with their versions, the virtualization product (a Virtuozzo node's release) and
    /// <see cref="HostCapabilities.Features"/> — the same feature names on every runtime.
    /// </summary>
    /// <remarks>
    /// The local runtime: <see cref="IVirtuozzoHost.GetCapabilitiesAsync"/> (the KVM probe boots a tiny guest; CRIU is
    /// checked) plus the features those facts allow. The Virtuozzo runtime: the node's facts, and <c>prlctl --version</c>,
    /// <c>vzctl --version</c>, <c>cat /etc/virtuozzo-release</c>, <c>test -x /usr/sbin/prl_disk_tool</c>,
    /// <c>test -c /dev/kvm</c>, <c>criu --version</c> (and <c>criu check</c> unless <see cref="CapabilityProbeOptions.SkipProbes"/>)
    /// on the node; <see cref="HostCapabilities.Tools"/> then names prlctl, vzctl, prl_disk_tool and criu.
    /// <c>vzsdk host info</c> prints this.
    /// </remarks>
    /// <param name="options">What to probe; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the probes.</param>
    /// <exception cref="ToolNotFoundException">The Virtuozzo runtime's node has no prlctl.</exception>
    /// <exception cref="HostConnectionException">The node cannot be reached.</exception>
    public async Task<HostCapabilities> GetHostCapabilitiesAsync(CapabilityProbeOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new CapabilityProbeOptions();
        if (Node is { } node)
            return await node.GetCapabilitiesAsync(options, cancellationToken).ConfigureAwait(false);
        var caps = await Host.GetCapabilitiesAsync(options, cancellationToken).ConfigureAwait(false);
        if (Libvirt is { } libvirt)
        {
            var v = await libvirt.GetLibraryVersionAsync(cancellationToken).ConfigureAwait(false);
            var version = $"{v / 1_000_000}.{v / 1000 % 1000}.{v % 1000}";
            return caps with { Runtime = Kind, Product = $"libvirt {version} at {libvirt.Uri}", Features = LibvirtFeatures(libvirt) };
        }
        return caps with { Runtime = Kind, Features = LocalFeatures(caps) };
    }

    /// <summary>What the libvirt runtime does (the same names as the other runtimes').</summary>
    internal static IReadOnlyDictionary<string, FeatureStatus> LibvirtFeatures(LibvirtConnection libvirt)
        => new Dictionary<string, FeatureStatus>(StringComparer.Ordinal)
        {
            ["containers"] = libvirt.HasContainers
                ? new(true, "the driver's exe domains: lifecycle, suspend, memory, snapshots, rename, delete (create, exec and the rest: the Virtuozzo runtime)")
                : new(false, "libvirt's QEMU driver runs VMs only (containers: the local or Virtuozzo runtime, or libvirt's vz driver)"),
            ["vms"] = new(true, "libvirt domains"),
            ["snapshots"] = new(true, "libvirt's internal snapshots"),
            ["backups"] = libvirt.IsLocal
                ? new(true, "VMs: libvirt's push-mode backup job and checkpoints, stored in the SDK's backup repository")
                : new(false, "a remote libvirt host: backups need the disks and the backup location on this machine"),
            ["live_migration"] = new(true, "libvirt peer to peer (virDomainMigrateToURI3); disks on local storage are copied"),
            ["memory_guarantees"] = new(false, "recorded with the VM; libvirt has no guarantee to enforce"),
            ["memory_hotplug"] = new(true, "DIMM devices and the balloon"),
            ["disk_compaction"] = new(false, "the libvirt runtime does not compact disks (UnsupportedOnHostException)"),
        };

    /// <summary>What the local runtime can do with the tools and accelerators it found.</summary>
    internal static IReadOnlyDictionary<string, FeatureStatus> LocalFeatures(HostCapabilities caps)
    {
        static bool Has(HostCapabilities c, string tool) => c.Tools.TryGetValue(tool, out var v) && v is not null;
        var qemu = Has(caps, "qemu-system-x86_64");
        var vms = !qemu ? new FeatureStatus(false, "qemu-system-x86_64 is not installed")
            : caps.Kvm.Usable ? new FeatureStatus(true, "QEMU with KVM")
            : new FeatureStatus(true, "QEMU without KVM (software emulation, slow): " + caps.Kvm.Reason);
        return new Dictionary<string, FeatureStatus>(StringComparer.Ordinal)
        {
            ["containers"] = Has(caps, "runc") ? new(true, "runc") : new(false, "runc is not installed"),
            ["vms"] = vms,
            ["snapshots"] = new(true, "the SDK's snapshots"),
            ["backups"] = new(true, "the SDK's backup repository (QCOW2 images)"),
            ["live_migration"] = caps.Criu.Usable
                ? new(true, qemu ? "QEMU live migration for VMs; CRIU for containers" : "CRIU for containers")
                : new(qemu, (qemu ? "QEMU live migration for VMs; " : string.Empty) + "containers cannot migrate live: " + caps.Criu.Reason),
            ["memory_guarantees"] = new(true, "the SDK's resource ledger"),
            ["memory_hotplug"] = qemu ? new(true, "QEMU memory hotplug (VMs)") : new(false, "qemu-system-x86_64 is not installed"),
            ["disk_compaction"] = new(false, "the local runtime does not compact disks (UnsupportedOnHostException)"),
        };
    }

    /// <summary>The host-wide account of memory guarantees that admits or refuses every start and change, for every VE kind.</summary>
    public ResourceLedger Ledger { get; }

    internal ILoggerFactory LoggerFactory { get; }

    internal StateStore Store { get; }

    internal VeRegistry Registry { get; }

    internal IVeInventory Inventory { get; }

    /// <summary>The node's tools, for the Virtuozzo runtime; null for the others.</summary>
    internal VirtuozzoNode? Node { get; private init; }

    /// <summary>The node's tools, or a refusal naming the runtime that lacks them.</summary>
    internal VirtuozzoNode RequireNode() => Node ?? throw new UnsupportedOnHostException($"The {Kind} runtime does not drive prlctl.");

    /// <summary>The libvirt connection, for the libvirt runtime; null for the others.</summary>
    internal LibvirtConnection? Libvirt { get; private init; }

    /// <summary>The libvirt connection, or a refusal naming the runtime that lacks it.</summary>
    internal LibvirtConnection RequireLibvirt() => Libvirt ?? throw new UnsupportedOnHostException($"The {Kind} runtime does not drive libvirt.");

    /// <summary>Pulsed when a runtime learns that a VE changed (libvirt's domain events), so that watches look at once.</summary>
    internal VeChangeSignal Changes { get; } = new();

    internal HostBridge Bridge { get; }

    /// <summary>The SDK's cgroups on this host (detected on first use; refused where no cgroup file system is mounted).</summary>
    internal CgroupManager Cgroups => _cgroups.Value;

    /// <summary>The VE kinds whose drivers are registered with this runtime.</summary>
    internal IReadOnlyCollection<IVeDriver> Drivers => _drivers.Values.OrderBy(d => d.Kind).ToList();

    /// <summary>The driver of a VE kind, created once per runtime by <paramref name="factory"/>.</summary>
    internal T GetDriver<T>(VeKind kind, Func<VirtuozzoRuntime, T> factory)
        where T : class, IVeDriver
        => (T)_drivers.GetOrAdd(kind, (_, rt) => factory(rt), this);

    /// <summary>The driver of a VE kind, or a clear refusal when that kind's package is not in use.</summary>
    internal IVeDriver DriverFor(VeKind kind)
        => _drivers.TryGetValue(kind, out var d) ? d
            : throw new UnsupportedOnHostException(kind == VeKind.Container
                ? "Containers are not enabled in this SDK instance: reference Virtuozzo.Sdk.Containers and call AddContainers() (or create a ContainerClient on this runtime)."
                : "VMs are not enabled in this SDK instance: reference Virtuozzo.Sdk.Vm and call AddVirtualMachines() (or create a VirtualMachineClient on this runtime).");

    /// <summary>A service shared by every client of this runtime (a backup source, a repository…), created once.</summary>
    internal T GetService<T>(Func<VirtuozzoRuntime, T> factory)
        where T : class
        => (T)_services.GetOrAdd(typeof(T), (_, rt) => factory(rt), this);

    /// <summary>Creates a logger for a client or driver.</summary>
    internal ILogger CreateLogger<T>() => LoggerFactory.CreateLogger<T>();

    private sealed class LocalInventory(VeRegistry registry) : IVeInventory
    {
        public Task<IReadOnlyList<VeIdentity>> ListAsync(CancellationToken cancellationToken, VeKind? kind = null) => registry.ListAsync(cancellationToken, kind);

        public Task<VeIdentity?> FindAsync(string nameOrId, CancellationToken cancellationToken) => registry.FindAsync(nameOrId, cancellationToken);
    }
}

/// <summary>A pulse that wakes whoever waits for "something changed" (the unified client's watch).</summary>
internal sealed class VeChangeSignal
{
    private TaskCompletionSource _current = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the next pulse comes; take it before looking, so that a change made meanwhile is not missed.</summary>
    public Task Next => Volatile.Read(ref _current).Task;

    public void Pulse() => Interlocked.Exchange(ref _current, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
}
