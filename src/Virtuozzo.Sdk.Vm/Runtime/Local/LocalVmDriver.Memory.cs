using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

/// <summary>What the memory manager needs to know of a running VM's memory.</summary>
/// <param name="ConfiguredBytes">The configured RAM.</param>
/// <param name="PluggedBytes">RAM plugged now (boot RAM plus DIMMs).</param>
/// <param name="BalloonBytes">The guest's memory as the balloon leaves it (<c>query-balloon</c> actual).</param>
/// <param name="HotplugMaxBytes">The most RAM DIMM hotplug can reach; equal to <paramref name="PluggedBytes"/> without hotplug.</param>
/// <param name="Guest">What the guest itself reports through the balloon's statistics; null until it has reported.</param>
internal sealed record VmMemoryStatus(long ConfiguredBytes, long PluggedBytes, long BalloonBytes, long HotplugMaxBytes, GuestMemoryStats? Guest = null);

/// <summary>The guest's own view of its memory, from the virtio balloon's statistics (the guest's <c>/proc/meminfo</c>).</summary>
/// <param name="TotalBytes">The guest's <c>MemTotal</c> (what the balloon leaves it).</param>
/// <param name="AvailableBytes">The guest's <c>MemAvailable</c>: what its programs could still get without swapping.</param>
/// <param name="MajorFaults">Major page faults since the guest booted (they grow when it thrashes).</param>
internal sealed record GuestMemoryStats(long TotalBytes, long AvailableBytes, long? MajorFaults)
{
    /// <summary>QOM path of the balloon device (<c>-device virtio-balloon-pci,id=balloon0</c>).</summary>
    internal const string BalloonPath = "/machine/peripheral/balloon0";

    /// <summary>How often the guest reports (QEMU's <c>guest-stats-polling-interval</c>, off until set): 1 s.</summary>
    internal const int PollingIntervalSeconds = 1;

    /// <summary>
    /// True when QEMU's <c>guest-stats</c> were updated within the last five polling intervals (<c>last-update</c> is the
    /// host's clock, in seconds). The guest reports once when its balloon driver loads and then only while polling is on,
    /// so an old report says nothing about the guest now.
    /// </summary>
    internal static bool IsFresh(JsonNode? node, DateTimeOffset now)
        => node is JsonObject o && o["last-update"] is JsonValue v && v.TryGetValue<long>(out var seconds) && seconds > 0
           && now.ToUnixTimeSeconds() - seconds <= 5 * PollingIntervalSeconds;

    /// <summary>
    /// Reads QEMU's <c>guest-stats</c> property; null when the guest has not reported yet (<c>last-update</c> 0) or does
    /// not report total and available memory (QEMU gives such statistics as −1, that is 2^64 − 1).
    /// </summary>
    internal static GuestMemoryStats? Parse(JsonNode? node)
    {
        if (node is not JsonObject o || o["last-update"] is not JsonValue v || !v.TryGetValue<long>(out var seconds) || seconds <= 0 || o["stats"] is not JsonObject stats)
            return null;
        static long? Stat(JsonObject stats, string name)
            => stats[name] is JsonValue v && v.TryGetValue<ulong>(out var u) && u < long.MaxValue ? (long)u
               : stats[name] is JsonValue w && w.TryGetValue<long>(out var l) && l >= 0 ? l : null;
        return Stat(stats, "stat-total-memory") is { } total && Stat(stats, "stat-available-memory") is { } available
            ? new GuestMemoryStats(total, Math.Min(available, total), Stat(stats, "stat-major-faults"))
            : null;
    }
}

internal sealed partial class LocalVmDriver
{
    /// <summary>The memory of a running VM; null when it does not run.</summary>
    internal Task<VmMemoryStatus?> GetMemoryStatusAsync(VeId id, CancellationToken ct)
        => WithVmAsync(id.ToString(), async s =>
        {
            if (s.Runtime is not { } rt)
                return null;
            var plugged = rt.BaseMemoryBytes + rt.Dimms.Sum(d => d.SizeBytes);
            var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                var balloon = (await qmp.ExecuteAsync("query-balloon", null, QmpTimeout, ct).ConfigureAwait(false))?["actual"]?.GetValue<long>() ?? plugged;
                return new VmMemoryStatus(s.Config.MemoryBytes, plugged, balloon, s.Config.MemoryHotplug ? s.Config.MaxMemoryBytes : plugged,
                    await ReadGuestStatsAsync(s, qmp, ct).ConfigureAwait(false));
            }
        }, ct);

    /// <summary>
    /// The guest's memory statistics through the balloon. QEMU collects them only while a polling interval is set, so a
    /// call that finds no fresh report turns polling on (the next report arrives a second later) and gives null, as does
    /// a QEMU or guest without them (the manager then knows the VM from the host side only).
    /// </summary>
    private async Task<GuestMemoryStats?> ReadGuestStatsAsync(VmSession s, QmpClient qmp, CancellationToken ct)
    {
        try
        {
            var node = await qmp.ExecuteAsync("qom-get", new JsonObject { ["path"] = GuestMemoryStats.BalloonPath, ["property"] = "guest-stats" }, QmpTimeout, ct).ConfigureAwait(false);
            if (GuestMemoryStats.IsFresh(node, DateTimeOffset.UtcNow) && GuestMemoryStats.Parse(node) is { } stats)
                return stats;
            // Stale (the guest sends one report when its driver loads, then only while polling is on): turn polling on.
            await qmp.ExecuteAsync("qom-set", new JsonObject
            {
                ["path"] = GuestMemoryStats.BalloonPath, ["property"] = "guest-stats-polling-interval", ["value"] = GuestMemoryStats.PollingIntervalSeconds,
            }, QmpTimeout, ct).ConfigureAwait(false);
            return null;
        }
        catch (QmpException ex)
        {
            _logger.LogDebug("VM {Name}: no balloon statistics ({Error})", s.Config.Name, ex.Message);
            return null;
        }
    }

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
