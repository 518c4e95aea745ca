using System.Net;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Migration.Internal;
using Virtuozzo.Sdk.Containers.Runtime;
using Virtuozzo.Sdk.Vm.Runtime;

namespace Virtuozzo.Sdk.Migration;

/// <summary>Where a VE migrates to.</summary>
public abstract partial class MigrationDestination
{
    private protected MigrationDestination()
    {
    }

    /// <summary>A description for messages and logs.</summary>
    public abstract override string ToString();

    /// <summary>
    /// Another SDK runtime in this process: another data root, typically on another machine's file system mounted here
    /// or in another network namespace. Disks and memory still travel over the network, to
    /// <paramref name="listenAddress"/>, where the destination's emulator listens; nothing is copied through files.
    /// </summary>
    /// <param name="runtime">The destination's runtime (a local runtime with its own data root).</param>
    /// <param name="listenAddress">The IP address the destination receives on (default 127.0.0.1).</param>
    /// <exception cref="ArgumentException">The address is not an IP address.</exception>
    public static MigrationDestination ToRuntime(VirtuozzoRuntime runtime, string listenAddress = "127.0.0.1")
    {
        ArgumentNullException.ThrowIfNull(runtime);
        if (!IPAddress.TryParse(listenAddress, out _))
            throw new ArgumentException($"'{listenAddress}' is not an IP address.", nameof(listenAddress));
        return new RuntimeDestination(runtime, listenAddress);
    }

    /// <summary>
    /// A remote host reached over SSH, where the SDK's <c>vzsdk</c> tool is installed: the source runs
    /// <c>vzsdk migrate-agent</c> there to prepare and complete the migration; disks and memory go straight over the
    /// network to <paramref name="listenAddress"/> (by default the SSH host name, when it is an IP address).
    /// </summary>
    /// <param name="ssh">How to reach the destination (batch mode, a known-hosts file, a key).</param>
    /// <param name="remoteDataRoot">The destination runtime's data root, or null for the default of the tool there.</param>
    /// <param name="remoteVzsdk">The <c>vzsdk</c> program on the destination.</param>
    /// <param name="listenAddress">The destination's IP address the source can reach, or null for the SSH host name.</param>
    /// <exception cref="ArgumentException">The options are invalid, or no listening address is known.</exception>
    /// <remarks>The equivalent of <c>prlctl migrate NAME root@HOST</c>.</remarks>
    public static MigrationDestination OverSsh(SshHostOptions ssh, string? remoteDataRoot = null, string remoteVzsdk = "vzsdk", string? listenAddress = null)
    {
        ArgumentNullException.ThrowIfNull(ssh);
        ssh.Validate();
        ArgumentException.ThrowIfNullOrWhiteSpace(remoteVzsdk);
        listenAddress ??= ssh.HostName;
        if (!IPAddress.TryParse(listenAddress, out _))
            throw new ArgumentException($"The destination's address for disks and memory must be an IP address; '{listenAddress}' is not (give listenAddress).", nameof(listenAddress));
        return new SshDestination(ssh, remoteDataRoot, remoteVzsdk, listenAddress);
    }

    /// <summary>
    /// Another Virtuozzo node, for a runtime created with <c>UseVirtuozzoRuntime</c>: the source node moves the VE there
    /// itself (its dispatcher talks to the destination's), live for a running VE.
    /// </summary>
    /// <param name="hostName">The destination node's host name or IP address, as the source node reaches it.</param>
    /// <param name="user">The account on the destination (default <c>root</c>); the nodes authenticate with keys.</param>
    /// <exception cref="ArgumentException">The host name or user is empty or not a plain name.</exception>
    /// <remarks>The equivalent of <c>prlctl migrate NAME USER@HOST</c>.</remarks>
    public static MigrationDestination ToVirtuozzoNode(string hostName, string user = "root")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(hostName);
        ArgumentException.ThrowIfNullOrWhiteSpace(user);
        if (!PlainName().IsMatch(hostName))
            throw new ArgumentException($"'{hostName}' is not a host name or IP address.", nameof(hostName));
        if (!PlainName().IsMatch(user))
            throw new ArgumentException($"'{user}' is not a user name.", nameof(user));
        return new NodeDestination(hostName, user);
    }

    /// <summary>
    /// Another libvirt daemon, for a runtime created with <c>UseLibvirtRuntime</c>: this runtime's libvirtd moves the VM
    /// there itself, peer to peer (<c>virDomainMigrateToURI3</c>), live for a running VM (offline, the definition only, for
    /// a stopped one). The VM's disks must be reachable at the same paths on the destination (shared storage).
    /// </summary>
    /// <param name="uri">The destination daemon's URI as the source's libvirtd reaches it (<c>qemu+ssh://root@host2/system</c>, <c>qemu+tcp://host2/system</c>).</param>
    /// <param name="migrationAddress">The destination's IP address for the memory stream (libvirt's <c>migrate_uri</c>
    /// <c>tcp://ADDRESS</c>), or null for libvirt's choice (the destination's host name, which must then resolve to it).</param>
    /// <exception cref="ArgumentException">The URI is malformed, or the address is not an IP address.</exception>
    /// <remarks>The equivalent of <c>virsh migrate --live --p2p --persistent --undefinesource NAME URI</c>.</remarks>
    public static MigrationDestination ToLibvirt(string uri, string? migrationAddress = null)
    {
        if (Core.Runtime.Libvirt.LibvirtConnection.ValidateUri(uri) is { } problem)
            throw new ArgumentException(problem, nameof(uri));
        if (migrationAddress is not null && !IPAddress.TryParse(migrationAddress, out _))
            throw new ArgumentException($"'{migrationAddress}' is not an IP address.", nameof(migrationAddress));
        return new LibvirtDestination(uri, migrationAddress);
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,252}$", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex PlainName();

    internal abstract Task<IVmMigrationPeer> CreateVmPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken);

    internal abstract Task<IContainerMigrationPeer> CreateContainerPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken);

    internal abstract VirtuozzoRuntime? LocalRuntime { get; }

    /// <summary>The destination as <c>prlctl migrate</c> names a node (<c>user@host</c>); null when it is not a node.</summary>
    internal virtual string? NodeAddress => null;
}

/// <summary>Another libvirt daemon, reached by the source's libvirtd (<see cref="MigrationDestination.ToLibvirt"/>).</summary>
internal sealed class LibvirtDestination(string uri, string? migrationAddress) : MigrationDestination
{
    public string Uri { get; } = uri;

    public string? MigrationAddress { get; } = migrationAddress;

    internal override VirtuozzoRuntime? LocalRuntime => null;

    private UnsupportedOnHostException NotHere() => new($"{this} is a libvirt daemon: only a runtime created with UseLibvirtRuntime migrates to it.");

    internal override Task<IVmMigrationPeer> CreateVmPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => Task.FromException<IVmMigrationPeer>(NotHere());

    internal override Task<IContainerMigrationPeer> CreateContainerPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => Task.FromException<IContainerMigrationPeer>(NotHere());

    public override string ToString() => $"the libvirt daemon at {Uri}";
}

internal sealed class RuntimeDestination(VirtuozzoRuntime runtime, string listenAddress) : MigrationDestination
{
    internal override VirtuozzoRuntime? LocalRuntime => runtime;

    internal override Task<IVmMigrationPeer> CreateVmPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => Task.FromResult<IVmMigrationPeer>(new InProcessVmPeer(runtime, listenAddress));

    // Two local runtimes on one kernel share the names of network namespaces, interfaces and runc containers, which a
    // container keeps when it moves: a container needs a destination that is another host (or another host's namespaces).
    internal override Task<IContainerMigrationPeer> CreateContainerPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => throw new UnsupportedOnHostException("A container migrates to another host (MigrationDestination.OverSsh), not to another runtime in this process: its network namespace and interface names would collide on one kernel.");

    public override string ToString() => $"the runtime at '{runtime.Options.DataRoot}' (receiving on {listenAddress})";
}

/// <summary>A Virtuozzo node, reached by the source node's own <c>prlctl migrate</c>.</summary>
internal sealed class NodeDestination(string hostName, string user) : MigrationDestination
{
    internal override VirtuozzoRuntime? LocalRuntime => null;

    internal override string? NodeAddress => $"{user}@{hostName}";

    private UnsupportedOnHostException NotHere() => new($"{this} is a Virtuozzo node: only a runtime created with UseVirtuozzoRuntime migrates to it.");

    internal override Task<IVmMigrationPeer> CreateVmPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => Task.FromException<IVmMigrationPeer>(NotHere());

    internal override Task<IContainerMigrationPeer> CreateContainerPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => Task.FromException<IContainerMigrationPeer>(NotHere());

    public override string ToString() => $"the Virtuozzo node {user}@{hostName}";
}

internal sealed class SshDestination(SshHostOptions ssh, string? remoteDataRoot, string remoteVzsdk, string listenAddress) : MigrationDestination
{
    internal override VirtuozzoRuntime? LocalRuntime => null;

    internal override string? NodeAddress => string.IsNullOrEmpty(ssh.User) ? ssh.HostName : $"{ssh.User}@{ssh.HostName}";

    internal override async Task<IVmMigrationPeer> CreateVmPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => await ConnectAsync(logger, cancellationToken).ConfigureAwait(false);

    internal override async Task<IContainerMigrationPeer> CreateContainerPeerAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
        => await ConnectAsync(logger, cancellationToken).ConfigureAwait(false);

    private async Task<SshPeer> ConnectAsync(Microsoft.Extensions.Logging.ILogger logger, CancellationToken cancellationToken)
    {
        var peer = new SshPeer(new SshHost(ssh), remoteVzsdk, remoteDataRoot, listenAddress, logger);
        try
        {
            await peer.HelloAsync(cancellationToken).ConfigureAwait(false);
            return peer;
        }
        catch
        {
            await peer.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public override string ToString() => $"{ssh.User}@{ssh.HostName} (receiving on {listenAddress})";
}
