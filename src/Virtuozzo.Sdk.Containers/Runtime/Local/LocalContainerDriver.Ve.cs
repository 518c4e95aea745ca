using System.Globalization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Containers.Runtime.Local;

// The verbs every VE has, for the unified client: the container's own verbs, by UUID.
internal sealed partial class LocalContainerDriver
{
    async Task<IReadOnlyList<VeInfo>> Core.Runtime.IVeDriver.ListVesAsync(CancellationToken cancellationToken)
        => await ListAsync(true, cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> Core.Runtime.IVeDriver.GetVeAsync(VeId id, CancellationToken cancellationToken)
        => await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> Core.Runtime.IVeDriver.StartVeAsync(VeId id, CancellationToken cancellationToken)
        => await StartAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    Task<VeStopMethod> Core.Runtime.IVeDriver.StopVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken)
        => StopAsync(id.ToString(), options, cancellationToken);

    async Task<VeInfo> Core.Runtime.IVeDriver.RestartVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken)
        => await RestartAsync(id.ToString(), options, cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> Core.Runtime.IVeDriver.SuspendVeAsync(VeId id, CancellationToken cancellationToken)
        => await SuspendAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> Core.Runtime.IVeDriver.ResumeVeAsync(VeId id, CancellationToken cancellationToken)
        => await ResumeAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    Task<bool> Core.Runtime.IVeDriver.DeleteVeAsync(VeId id, CancellationToken cancellationToken)
        => DeleteAsync(id.ToString(), cancellationToken);

    async Task<VeInfo> Core.Runtime.IVeDriver.RenameVeAsync(VeId id, VeName newName, CancellationToken cancellationToken)
        => await RenameAsync(id.ToString(), newName, cancellationToken).ConfigureAwait(false);

    Task<VeExecResult> Core.Runtime.IVeDriver.ExecVeAsync(VeId id, VeExecOptions options, CancellationToken cancellationToken)
        => ExecAsync(id.ToString(), options, cancellationToken);

    async Task<VeUsage> Core.Runtime.IVeDriver.GetVeUsageAsync(VeId id, CancellationToken cancellationToken)
    {
        var info = await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        var disk = new FileInfo(DiskPath(id));
        var running = info.State is VeState.Running or VeState.Suspended;
        TimeSpan cpu = TimeSpan.Zero;
        long? memory = null;
        if (running && Cgroups.Exists(id))
        {
            var cg = Cgroups.Open(id);
            cpu = cg.CpuTime();
            try { memory = cg.MemoryUsage(); }
            catch (Exception ex) when (ex is IOException or FormatException) { }
        }
        // The host's end of the container's veth pair: what it sends, the container receives.
        var link = HostBridge.HostLinkName(id);
        return new VeUsage(id, VeKind.Container, info.State, cpu, memory, disk.Exists ? disk.Length : 0, info.Resources.DiskSpace.Bytes,
            NetworkReceivedBytes: HostBridge.LinkCounter(link, "tx_bytes"), NetworkSentBytes: HostBridge.LinkCounter(link, "rx_bytes"), DateTimeOffset.UtcNow);
    }
}
