using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Resources;

namespace Virtuozzo.Sdk.Memory;

/// <summary>
/// How much memory the host keeps for itself: <c>clamp(Share × total, Min, Max)</c>, as VCMMD configures its service
/// reservations (<c>Share</c>/<c>Min</c>/<c>Max</c>).
/// </summary>
/// <param name="Share">The fraction of host RAM kept back, 0 to 1.</param>
/// <param name="MinBytes">The least kept back.</param>
/// <param name="MaxBytes">The most kept back (<see cref="long.MaxValue"/> for no cap).</param>
public sealed record HostMemoryReserve(double Share, long MinBytes, long MaxBytes)
{
    /// <summary>The default: 4 % of RAM, at least 128 MiB, at most 320 MiB (the SDK's ledger default, VCMMD's old host reserve).</summary>
    public static HostMemoryReserve Default { get; } = new(0.04, 128 * ByteSize.MiB, 320 * ByteSize.MiB);

    /// <summary>The reserve on a host with <paramref name="totalBytes"/> of RAM.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The share is not in [0, 1], or the bounds are negative or crossed.</exception>
    public long For(long totalBytes)
    {
        if (Share is < 0 or > 1 || double.IsNaN(Share))
            throw new ArgumentOutOfRangeException(nameof(Share), Share, "Share is a fraction between 0 and 1.");
        if (MinBytes < 0 || MaxBytes < MinBytes)
            throw new ArgumentOutOfRangeException(nameof(MinBytes), MinBytes, "MinBytes must be at least 0 and at most MaxBytes.");
        var share = (long)Math.Min(long.MaxValue, Share * Math.Max(0, totalBytes));
        return Math.Min(Math.Clamp(share, MinBytes, MaxBytes), Math.Max(0, totalBytes));
    }
}

/// <summary>
/// The memory arithmetic of VCMMD that every policy and the manager share. The SDK's resource ledger (Core) stays the one
/// authority that admits or refuses a guarantee; this class supplies the same numbers to balancing and reporting.
/// </summary>
public static class MemoryAccounting
{
    /// <summary>The fixed part of a VM's overhead, 64 MiB: QEMU's own memory (VCMMD's <c>VE.VM.MemOverhead</c>).</summary>
    public const long VmOverheadBaseBytes = MemoryMath.VmOverheadBaseBytes;

    /// <summary>The per-page part of a VM's overhead: 8 bytes per 4 KiB page of guest RAM (≈ 0.2 % of the RAM).</summary>
    public const long VmOverheadBytesPerPage = MemoryMath.VmOverheadBytesPerPage;

    /// <summary>The granularity of DIMM hotplug, 128 MiB (VCMMD's <c>VE.VM.MemHotplugGrain</c>).</summary>
    public const long HotplugGrainBytes = 128 * ByteSize.MiB;

    /// <summary>
    /// The host memory a VE costs besides its guarantee: for a VM, <see cref="VmOverheadBaseBytes"/> + 8 bytes per 4 KiB of
    /// <paramref name="ramBytes"/>; for a container, nothing.
    /// </summary>
    public static long Overhead(VeKind kind, long ramBytes) => kind == VeKind.Vm ? MemoryMath.VmOverhead(ramBytes) : 0;

    /// <summary>A guarantee given in percent of RAM, in bytes.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The percentage is not in [0, 100] or the RAM is negative.</exception>
    public static long GuaranteeBytes(long ramBytes, int percent)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ramBytes);
        if (percent is < 0 or > 100)
            throw new ArgumentOutOfRangeException(nameof(percent), percent, "A guarantee is a percentage between 0 and 100.");
        return ramBytes / 100 * percent + ramBytes % 100 * percent / 100;
    }

    /// <summary>What a VE holds of the host while it runs: <c>mem_min = guarantee + vram + overhead</c>.</summary>
    public static long Minimum(long guaranteeBytes, long vramBytes, long overheadBytes) => guaranteeBytes + vramBytes + overheadBytes;

    /// <summary>
    /// What a VE counts against the host: an active VE its <c>mem_min</c>; an inactive one (paused, being migrated)
    /// <c>max(mem_min, resident)</c>, because nothing balances its memory meanwhile.
    /// </summary>
    public static long Charge(long memMinBytes, long residentBytes, bool active) => active ? memMinBytes : Math.Max(memMinBytes, residentBytes);

    /// <summary>
    /// The memory available to VEs on a host of <paramref name="totalBytes"/>: total minus the reserve, capped by
    /// <paramref name="budgetBytes"/> when one is given (to run a host as if it were smaller).
    /// </summary>
    public static long Available(long totalBytes, HostMemoryReserve reserve, long? budgetBytes = null)
    {
        ArgumentNullException.ThrowIfNull(reserve);
        var available = Math.Max(0, totalBytes - reserve.For(totalBytes));
        return budgetBytes is { } b ? Math.Min(available, Math.Max(0, b)) : available;
    }

    /// <summary>
    /// The admission rule: may a VE whose <c>mem_min</c> goes from <paramref name="previousBytes"/> to
    /// <paramref name="wantedBytes"/> be admitted, when the others already charge <paramref name="othersBytes"/> of
    /// <paramref name="availableBytes"/>? Lowering is always admitted.
    /// </summary>
    public static bool Admits(long availableBytes, long othersBytes, long previousBytes, long wantedBytes)
        => wantedBytes <= previousBytes || othersBytes + wantedBytes <= availableBytes;
}
