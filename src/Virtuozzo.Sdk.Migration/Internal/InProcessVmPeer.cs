using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.Migration.Internal;

/// <summary>The destination of a VM migration when it is another local runtime in this process: its VM driver, called directly.</summary>
internal sealed class InProcessVmPeer(VirtuozzoRuntime runtime, string listenAddress) : IVmOfflineMigrationPeer
{
    private LocalVmDriver Driver => runtime.GetDriver<IVmDriver>(VeKind.Vm, rt => VirtualMachineClient.CreateDriver(rt, new VirtualMachineClientOptions())) as LocalVmDriver
        ?? throw new UnsupportedOnHostException($"The destination runtime ({runtime.Kind}) cannot receive a live VM migration.");

    public Task<VmIncomingEndpoint> PrepareAsync(VmMigrationOffer offer, CancellationToken cancellationToken)
        => Driver.PrepareIncomingAsync(offer, listenAddress, cancellationToken);

    public Task CompleteAsync(VeId id, CancellationToken cancellationToken) => Driver.CompleteIncomingAsync(id, cancellationToken);

    public Task AbortAsync(VeId id, CancellationToken cancellationToken) => Driver.AbortIncomingAsync(id, cancellationToken);

    public Task<VmOfflineEndpoint> PrepareOfflineAsync(VmOfflineOffer offer, CancellationToken cancellationToken)
        => Driver.PrepareOfflineIncomingAsync(offer, listenAddress, cancellationToken);

    public Task CompleteOfflineAsync(VeId id, CancellationToken cancellationToken) => Driver.CompleteOfflineIncomingAsync(id, cancellationToken);
}
