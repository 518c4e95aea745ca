using System.Net;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Migration.Internal;
using Virtuozzo.Sdk.Vm.Runtime;

namespace Virtuozzo.Sdk.Migration;

/// <summary>Where a VE migrates to.</summary>
public abstract class MigrationDestination
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

    internal abstract IVmMigrationPeer CreateVmPeer();

    internal abstract VirtuozzoRuntime? LocalRuntime { get; }
}

internal sealed class RuntimeDestination(VirtuozzoRuntime runtime, string listenAddress) : MigrationDestination
{
    internal override VirtuozzoRuntime? LocalRuntime => runtime;

    internal override IVmMigrationPeer CreateVmPeer() => new InProcessVmPeer(runtime, listenAddress);

    public override string ToString() => $"the runtime at '{runtime.Options.DataRoot}' (receiving on {listenAddress})";
}
