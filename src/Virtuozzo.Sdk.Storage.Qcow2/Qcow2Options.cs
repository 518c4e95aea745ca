namespace Virtuozzo.Sdk.Storage.Qcow2;

/// <summary>The compression algorithm of an image's compressed clusters (qemu-img's <c>compression_type</c>).</summary>
public enum Qcow2CompressionType
{
    /// <summary>zlib: raw deflate (qemu-img calls it <c>zlib</c>; <c>deflate</c> is accepted as an alias).</summary>
    Zlib = 0,

    /// <summary>zstd, through the system libzstd.</summary>
    Zstd = 1,
}

/// <summary>How much of a new image is allocated up front (qemu-img's <c>preallocation</c>).</summary>
public enum Qcow2Preallocation
{
    /// <summary>Nothing is allocated.</summary>
    Off = 0,

    /// <summary>L2 tables are allocated for the whole virtual size.</summary>
    Metadata = 1,

    /// <summary>L2 tables and data clusters are allocated and zero-filled.</summary>
    Full = 2,
}

/// <summary>How an image file is cached and synchronised (qemu-img's <c>-t</c>).</summary>
public enum Qcow2CacheMode
{
    /// <summary>Metadata updates are ordered with flush barriers so that a crash leaves at most leaked clusters.</summary>
    WriteBack = 0,

    /// <summary>No flush barriers; only <see cref="Qcow2Image.Flush"/> (and closing) makes data durable. Used by convert into a temporary file.</summary>
    Unsafe = 1,
}

/// <summary>Options for <see cref="Qcow2Image.Open(string, Qcow2OpenOptions?)"/>.</summary>
public sealed record Qcow2OpenOptions
{
    /// <summary>Open read-only. Dirty images open read-only as they are; corrupt images open only read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>Take no locks and ignore other processes' locks, like qemu-img's <c>-U</c>. Only allowed with <see cref="ReadOnly"/>.</summary>
    public bool ForceShare { get; init; }

    /// <summary>Do not open the backing file: unallocated clusters read as zeros.</summary>
    public bool NoBacking { get; init; }

    /// <summary>Cache mode (flush barriers or none).</summary>
    public Qcow2CacheMode CacheMode { get; init; }

    /// <summary>The most memory the L2 table cache may use, in bytes (default 32 MiB).</summary>
    public long L2CacheSize { get; init; } = 32L << 20;

    /// <summary>
    /// Confines the files an image may pull in. When set, every backing file in the chain and any external data
    /// file must lie inside this directory (symbolic links resolved); an image that names another file is refused
    /// with <see cref="Qcow2UnsafeReferenceException"/> before that file is opened. Null (the default) allows any
    /// path, as qemu-img does.
    /// </summary>
    /// <remarks>
    /// Set it, together with <see cref="AllowExternalDataFile"/> = <see langword="false"/>, when opening an image
    /// from an untrusted source (an upload, a backup from another host): an image's header can name any file on the
    /// host, for example <c>/etc/shadow</c> as a data file, and reading the image then reads that file.
    /// <c>qemu-img info</c> shows the names as <c>backing file</c> and <c>data file</c>.
    /// </remarks>
    public string? AllowedDirectory { get; init; }

    /// <summary>
    /// Allow images whose guest data lives in an external data file (the default, as qemu-img). When false, such an
    /// image is refused with <see cref="Qcow2UnsafeReferenceException"/> before the data file is opened.
    /// </summary>
    /// <remarks>See <see cref="AllowedDirectory"/> for opening untrusted images.</remarks>
    public bool AllowExternalDataFile { get; init; } = true;
}

/// <summary>Options for <see cref="Qcow2Image.Create(string, Qcow2CreateOptions)"/>; names follow qemu-img's <c>-o</c> options.</summary>
public sealed record Qcow2CreateOptions
{
    /// <summary>The virtual size in bytes, rounded up to a multiple of 512 as qemu-img does. When zero and a backing file is given, the backing file's size is used.</summary>
    public long Size { get; init; }

    /// <summary>The cluster size, a power of two from 512 B to 2 MiB (<c>cluster_size</c>, default 64 KiB).</summary>
    public int ClusterSize { get; init; } = 65536;

    /// <summary>The format version: 2 (<c>compat=0.10</c>) or 3 (<c>compat=1.1</c>, the default).</summary>
    public int Version { get; init; } = 3;

    /// <summary>The refcount width, a power of two from 1 to 64 (<c>refcount_bits</c>, default 16). Version 2 allows only 16.</summary>
    public int RefcountBits { get; init; } = 16;

    /// <summary>The algorithm for compressed clusters (<c>compression_type</c>).</summary>
    public Qcow2CompressionType CompressionType { get; init; }

    /// <summary>Use extended L2 entries with 32 subclusters per cluster (<c>extended_l2</c>).</summary>
    public bool ExtendedL2 { get; init; }

    /// <summary>Set the lazy-refcounts compatible feature (<c>lazy_refcounts</c>).</summary>
    public bool LazyRefcounts { get; init; }

    /// <summary>The backing file name as stored in the image (relative names resolve against the image's directory).</summary>
    public string? BackingFile { get; init; }

    /// <summary>The backing file's format, <c>qcow2</c> or <c>raw</c>; probed when null.</summary>
    public string? BackingFormat { get; init; }

    /// <summary>What to allocate up front (<c>preallocation</c>).</summary>
    public Qcow2Preallocation Preallocation { get; init; }

    /// <summary>Replace an existing file.</summary>
    public bool Overwrite { get; init; } = true;
}
