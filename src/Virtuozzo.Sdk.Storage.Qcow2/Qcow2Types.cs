namespace Virtuozzo.Sdk.Storage.Qcow2;

/// <summary>What a range of the virtual disk holds, as <c>qemu-img map</c> reports it.</summary>
public enum Qcow2ExtentKind
{
    /// <summary>Not allocated in any layer: reads as zeros.</summary>
    Unallocated = 0,

    /// <summary>Allocated as zeros (the zero flag, or zero subclusters).</summary>
    Zero = 1,

    /// <summary>Plain data at <see cref="Qcow2Extent.Offset"/> in the layer's file.</summary>
    Data = 2,

    /// <summary>Compressed data (no usable host offset).</summary>
    Compressed = 3,
}

/// <summary>One run of the allocation map.</summary>
/// <param name="Start">Guest offset in bytes.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="Kind">What the range holds.</param>
/// <param name="Depth">The layer that provides it: 0 is the image itself, 1 its backing file, and so on.</param>
/// <param name="Offset">The host offset in that layer's file for <see cref="Qcow2ExtentKind.Data"/> and for preallocated zero clusters; otherwise null.</param>
public sealed record Qcow2Extent(long Start, long Length, Qcow2ExtentKind Kind, int Depth, long? Offset)
{
    /// <summary>True when some layer allocates the range (qemu-img map's <c>present</c>).</summary>
    public bool Present => Kind != Qcow2ExtentKind.Unallocated;

    /// <summary>True when the range reads as zeros without reading data (qemu-img map's <c>zero</c>).</summary>
    public bool Zero => Kind is Qcow2ExtentKind.Zero or Qcow2ExtentKind.Unallocated;

    /// <summary>True when the range holds data (qemu-img map's <c>data</c>).</summary>
    public bool Data => Kind is Qcow2ExtentKind.Data or Qcow2ExtentKind.Compressed;
}

/// <summary>What <see cref="Qcow2Image.Check"/> repairs, as <c>qemu-img check -r</c>.</summary>
public enum Qcow2RepairMode
{
    /// <summary>Only check.</summary>
    None = 0,

    /// <summary>Fix leaked clusters (<c>-r leaks</c>).</summary>
    Leaks = 1,

    /// <summary>Fix leaks and refcount/flag errors by rebuilding the refcount structure (<c>-r all</c>).</summary>
    All = 2,
}

/// <summary>The result of a consistency check, with <c>qemu-img check</c>'s counters.</summary>
public sealed record Qcow2CheckResult
{
    /// <summary>Corruptions found (refcount lower than the references, bad COPIED flags, tables outside the file). Exit code 2 in qemu-img.</summary>
    public int Corruptions { get; init; }

    /// <summary>Leaked clusters (refcount higher than the references). Exit code 3 in qemu-img.</summary>
    public int Leaks { get; init; }

    /// <summary>Errors that stopped the check from completing.</summary>
    public int CheckErrors { get; init; }

    /// <summary>Corruptions that the repair fixed.</summary>
    public int CorruptionsFixed { get; init; }

    /// <summary>Leaks that the repair fixed.</summary>
    public int LeaksFixed { get; init; }

    /// <summary>The end of the last cluster in use (qemu-img's <c>image-end-offset</c>).</summary>
    public long ImageEndOffset { get; init; }

    /// <summary>Guest clusters in the virtual size.</summary>
    public long TotalClusters { get; init; }

    /// <summary>Guest clusters allocated in the active layer.</summary>
    public long AllocatedClusters { get; init; }

    /// <summary>Allocated clusters that do not follow their predecessor on the host.</summary>
    public long FragmentedClusters { get; init; }

    /// <summary>Compressed clusters in the active layer.</summary>
    public long CompressedClusters { get; init; }

    /// <summary>One line per problem, worded like qemu-img's messages.</summary>
    public IReadOnlyList<string> Messages { get; init; } = [];

    /// <summary>True when there are no corruptions, leaks or check errors.</summary>
    public bool IsClean => Corruptions == 0 && Leaks == 0 && CheckErrors == 0;

    /// <summary>The exit code qemu-img check would return: 0 clean, 1 not completed, 2 corruptions, 3 only leaks.</summary>
    public int ExitCode => CheckErrors > 0 ? 1 : Corruptions > 0 ? 2 : Leaks > 0 ? 3 : 0;
}

/// <summary>An internal snapshot as listed by <c>qemu-img snapshot -l</c>.</summary>
/// <param name="Id">The snapshot id.</param>
/// <param name="Name">The snapshot name (tag).</param>
/// <param name="Date">When it was taken.</param>
/// <param name="VmClockNanoseconds">The guest clock at that time.</param>
/// <param name="VmStateSize">Bytes of saved VM state.</param>
/// <param name="DiskSize">The virtual disk size at that time.</param>
public sealed record Qcow2SnapshotInfo(string Id, string Name, DateTimeOffset Date, ulong VmClockNanoseconds, ulong VmStateSize, long DiskSize);

/// <summary>A persistent dirty bitmap as listed in the image's bitmaps extension.</summary>
/// <param name="Name">The bitmap name.</param>
/// <param name="Granularity">Bytes per bit.</param>
/// <param name="Enabled">True when writes are tracked (the <c>auto</c> flag).</param>
/// <param name="InUse">True when the bitmap was not stored cleanly (its contents are unusable).</param>
public sealed record Qcow2BitmapInfo(string Name, long Granularity, bool Enabled, bool InUse);

/// <summary>Facts about an image, with <c>qemu-img info</c>'s meaning.</summary>
public sealed record Qcow2ImageInfo
{
    /// <summary>The image file.</summary>
    public string? Filename { get; init; }

    /// <summary>Virtual size in bytes.</summary>
    public long VirtualSize { get; init; }

    /// <summary>Bytes the file occupies.</summary>
    public long ActualSize { get; init; }

    /// <summary>The cluster size in bytes.</summary>
    public int ClusterSize { get; init; }

    /// <summary>Format version, 2 or 3.</summary>
    public int Version { get; init; }

    /// <summary>qemu-img's <c>compat</c>: "0.10" or "1.1".</summary>
    public string Compat => Version == 2 ? "0.10" : "1.1";

    /// <summary>Refcount width in bits.</summary>
    public int RefcountBits { get; init; }

    /// <summary>The compression type of compressed clusters.</summary>
    public Qcow2CompressionType CompressionType { get; init; }

    /// <summary>True with extended L2 entries.</summary>
    public bool ExtendedL2 { get; init; }

    /// <summary>True when the lazy-refcounts feature is set.</summary>
    public bool LazyRefcounts { get; init; }

    /// <summary>True when the dirty bit is set.</summary>
    public bool Dirty { get; init; }

    /// <summary>True when the corrupt bit is set.</summary>
    public bool Corrupt { get; init; }

    /// <summary>The backing file name as stored, or null.</summary>
    public string? BackingFile { get; init; }

    /// <summary>The backing file resolved to a full path, or null.</summary>
    public string? FullBackingFile { get; init; }

    /// <summary>The backing format as stored, or null.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>The external data file name as stored in the image (qemu-img's <c>data-file</c>), or null when the image holds its own data.</summary>
    /// <remarks>Guest data is read from (and written to) this file, which may lie anywhere: see <see cref="Qcow2OpenOptions.AllowedDirectory"/>.</remarks>
    public string? DataFile { get; init; }

    /// <summary>True when the external data file is kept a valid raw image (qemu-img's <c>data-file-raw</c>).</summary>
    public bool DataFileRaw { get; init; }

    /// <summary>The internal snapshots.</summary>
    public IReadOnlyList<Qcow2SnapshotInfo> Snapshots { get; init; } = [];

    /// <summary>The persistent dirty bitmaps.</summary>
    public IReadOnlyList<Qcow2BitmapInfo> Bitmaps { get; init; } = [];
}
