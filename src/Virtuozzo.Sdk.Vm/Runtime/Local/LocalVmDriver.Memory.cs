using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

/// <summary>What the memory manager needs to know of a running VM's memory.</summary>
/// <param name="ConfiguredBytes">The configured RAM.</param>
/// <param name="PluggedBytes">RAM plugged now (boot RAM plus DIMMs).</param>
/// <param name="BalloonBytes">The guest's memory as the balloon leaves it (<c>query-balloon</c> actual).</param>
/// <param name="HotplugMaxBytes">The most RAM DIMM hotplug can reach; equal to <paramref name="PluggedBytes"/> without hotplug.</param>
internal sealed record VmMemoryStatus(long ConfiguredBytes, long PluggedBytes, long BalloonBytes, long HotplugMaxBytes);

internal sealed partial class LocalVmDriver
{
    /// <summary>The memory of a running VM; null when it does not run.</summary>
    internal Task<VmMemoryStatus?> GetMemoryStatusAsync(VeId id, CancellationToken ct)
        => WithVmAsync(id.ToString(), async s =>
        {
            if (s.Runtime is not { } rt)
                return null;
            var plugged = rt.BaseMemoryBytes + rt.Dimms.Sum(d => d.SizeBytes);
            var balloon = (await QmpAsync(s, "query-balloon", null, ct).ConfigureAwait(false))?["actual"]?.GetValue<long>() ?? plugged;
            return new VmMemoryStatus(s.Config.MemoryBytes, plugged, balloon, s.Config.MemoryHotplug ? s.Config.MaxMemoryBytes : plugged);
        }, ct);

    /// <summary>
    /// Sets the balloon of a running VM so that the guest has <paramref name="bytes"/> (the memory manager's target). The
    /// VM's configured memory and its ledger reservation stay as they are: this moves memory, it does not resize the VM.
    /// </summary>
    internal Task SetBalloonTargetAsync(VeId id, long bytes, CancellationToken ct)
        => WithVmAsync(id.ToString(), async s =>
        {
            if (s.Runtime is null)
                throw new InvalidStateException($"The VM '{s.Config.Name}' is not running; its balloon cannot be set.");
            await QmpAsync(s, "balloon", new JsonObject { ["value"] = bytes }, ct).ConfigureAwait(false);
            return true;
        }, ct);
}
