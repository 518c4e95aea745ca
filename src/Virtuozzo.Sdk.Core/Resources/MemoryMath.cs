namespace Virtuozzo.Sdk.Core.Resources;

/// <summary>
/// The memory arithmetic the ledger's callers share (VCMMD's): what a VM costs the host besides its RAM. One place, so
/// that the VM driver's reservations and the Memory package's accounting never disagree.
/// </summary>
internal static class MemoryMath
{
    /// <summary>The fixed part of a VM's overhead: QEMU's own memory (VCMMD's <c>VE.VM.MemOverhead</c>).</summary>
    public const long VmOverheadBaseBytes = 64 * ByteSize.MiB;

    /// <summary>The per-page part of a VM's overhead: 8 bytes of host memory per 4 KiB page of guest RAM.</summary>
    public const long VmOverheadBytesPerPage = 8;

    /// <summary>The page size the per-page overhead is counted in.</summary>
    public const long PageBytes = 4096;

    /// <summary>The host memory a VM of <paramref name="ramBytes"/> costs besides its RAM: 64 MiB + 8 B per 4 KiB page.</summary>
    public static long VmOverhead(long ramBytes) => VmOverheadBaseBytes + Math.Max(0, ramBytes) / PageBytes * VmOverheadBytesPerPage;
}
