using System.Buffers.Binary;
using System.Numerics;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>Creates a new image file and opens it read-write.</summary>
    /// <param name="path">The file to create.</param>
    /// <param name="options">Size, cluster size, version, features and backing file.</param>
    /// <returns>The open image; dispose it to close.</returns>
    /// <remarks>Like <c>qemu-img create -f qcow2 -o … [-b BACKING -F FMT] FILE SIZE</c>.</remarks>
    public static Qcow2Image Create(string path, Qcow2CreateOptions options) => Create(path, options, new Qcow2OpenOptions());

    /// <summary>Creates a QCOW2 image and opens it with <paramref name="openOptions"/>.</summary>
    /// <param name="path">The file to create.</param>
    /// <param name="options">Size, cluster size, version, features and backing file.</param>
    /// <param name="openOptions">How to open it; with <see cref="Qcow2CacheMode.Unsafe"/> nothing, the new file included, is durable before <see cref="Flush"/> — for scratch and staging images that are published only after a final flush.</param>
    /// <returns>The open image; dispose it to close.</returns>
    public static Qcow2Image Create(string path, Qcow2CreateOptions options, Qcow2OpenOptions openOptions)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(openOptions);
        if (openOptions.ReadOnly)
            throw new ArgumentException("A new image is opened read-write.", nameof(openOptions));
        var full = System.IO.Path.GetFullPath(path);
        var header = BuildHeader(full, options, out long size);
        if (!options.Overwrite && File.Exists(full))
            throw new IOException($"{full} already exists.");
        using (var fs = new FileStorage(full, writable: true, create: true))
        {
            // like qemu-img create: never truncate an image another process (QEMU) has open
            FileLock.Acquire(fs.Handle, write: true, full);
            WriteSkeleton(fs, header);
            // unsafe mode (the converter's temporary output) makes the file durable only when asked
            if (openOptions.CacheMode != Qcow2CacheMode.Unsafe)
                fs.Flush();
        }
        Qcow2Image? img = null;
        try
        {
            img = Open(full, openOptions);
            img.Initialize(size, options.Preallocation);
            return img;
        }
        catch
        {
            img?.Dispose();
            TryDelete(full);
            throw;
        }
    }

    /// <summary>Creates a new image file (see <see cref="Create(string, Qcow2CreateOptions)"/>).</summary>
    /// <param name="path">The file to create.</param>
    /// <param name="options">Size, cluster size, version, features and backing file.</param>
    /// <param name="cancellationToken">Cancels before the work starts.</param>
    /// <returns>The open image.</returns>
    public static ValueTask<Qcow2Image> CreateAsync(string path, Qcow2CreateOptions options, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Create(path, options));
    }

    /// <summary>Creates an image on arbitrary storage (tests).</summary>
    internal static Qcow2Image Create(ImageStorage storage, Qcow2CreateOptions options, Qcow2OpenOptions? open = null)
    {
        var header = BuildHeader(null, options, out long size);
        WriteSkeleton(storage, header);
        var img = Open(storage, open ?? new Qcow2OpenOptions());
        img.Initialize(size, options.Preallocation);
        return img;
    }

    internal static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static Header BuildHeader(string? fullPath, Qcow2CreateOptions o, out long size)
    {
        if (o.ClusterSize < 512 || o.ClusterSize > (1 << Header.MaxClusterBits) || !BitOperations.IsPow2(o.ClusterSize))
            throw new ArgumentOutOfRangeException(nameof(o), "ClusterSize must be a power of two from 512 to 2 MiB.");
        if (o.Version is not (2 or 3))
            throw new ArgumentOutOfRangeException(nameof(o), "Version must be 2 (compat=0.10) or 3 (compat=1.1).");
        if (o.RefcountBits < 1 || o.RefcountBits > 64 || !BitOperations.IsPow2(o.RefcountBits))
            throw new ArgumentOutOfRangeException(nameof(o), "RefcountBits must be a power of two from 1 to 64.");
        if (o.Version == 2 && (o.RefcountBits != 16 || o.ExtendedL2 || o.LazyRefcounts || o.CompressionType != Qcow2CompressionType.Zlib))
            throw new ArgumentException("compat=0.10 images support only refcount_bits=16, zlib compression, no extended L2 and no lazy refcounts.", nameof(o));
        if (o.ExtendedL2 && o.ClusterSize < 16384)
            throw new ArgumentException("extended_l2 needs a cluster size of at least 16 KiB.", nameof(o));
        if (o.Size < 0 || o.Size > Header.MaxVirtualSize)
            throw new ArgumentOutOfRangeException(nameof(o), "Size is out of range.");
        if (o.CompressionType == Qcow2CompressionType.Zstd)
            Compression.Zstd.EnsureAvailable();
        size = (o.Size + 511) & ~511L; // whole sectors, as qemu-img create rounds them
        string? backingFormat = o.BackingFormat;
        if (o.BackingFile is { Length: > 0 } b)
        {
            if (fullPath is null && !System.IO.Path.IsPathRooted(b))
                throw new ArgumentException("A relative backing file needs a file-based image.", nameof(o));
            string resolved = System.IO.Path.IsPathRooted(b) ? b : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(fullPath!)!, b);
            if (!File.Exists(resolved))
                throw new ArgumentException($"Backing file {resolved} does not exist.", nameof(o));
            backingFormat ??= IsQcow2(resolved) ? "qcow2" : "raw";
            if (backingFormat is not ("qcow2" or "raw"))
                throw new ArgumentException($"Backing format '{backingFormat}' is not supported (qcow2 or raw).", nameof(o));
            if (size == 0)
            {
                if (backingFormat == "qcow2")
                {
                    using var bi = Open(resolved, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true, NoBacking = true });
                    size = bi.Size;
                }
                else
                    size = new FileInfo(resolved).Length;
            }
        }
        var h = new Header
        {
            Version = (uint)o.Version,
            ClusterBits = BitOperations.Log2((uint)o.ClusterSize),
            RefcountOrder = BitOperations.Log2((uint)o.RefcountBits),
            HeaderLength = o.Version == 3 ? 112u : 72u,
            RefcountTableOffset = o.ClusterSize,
            RefcountTableClusters = 1,
            CompressionType = (byte)o.CompressionType,
            BackingFile = string.IsNullOrEmpty(o.BackingFile) ? null : o.BackingFile,
            BackingFormat = string.IsNullOrEmpty(o.BackingFile) ? null : backingFormat,
        };
        if (o.CompressionType == Qcow2CompressionType.Zstd)
            h.Incompatible |= Header.IncompatCompression;
        if (o.ExtendedL2)
            h.Incompatible |= Header.IncompatExtL2;
        if (o.LazyRefcounts)
            h.Compatible |= Header.CompatLazyRefcounts;
        if (o.Version == 3)
            h.Extensions.Add((Header.ExtFeatureTable, Header.FeatureTable()));
        return h;
    }

    private static void WriteSkeleton(ImageStorage fs, Header h)
    {
        int cs = h.ClusterSize;
        var buf = new byte[3 * cs];
        h.Serialize().CopyTo(buf, 0);
        BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(cs), (ulong)(2 * cs));
        int bits = h.RefcountBits;
        for (int c = 0; c < 3; c++)
        {
            if (bits >= 8)
            {
                int w = bits / 8;
                buf[2 * cs + c * w + w - 1] = 1;
            }
            else
                buf[2 * cs + (c * bits >> 3)] |= (byte)(1 << (c * bits & 7));
        }
        fs.SetLength(0);
        fs.Write(0, buf);
    }

    private void Initialize(long size, Qcow2Preallocation prealloc)
    {
        lock (_lock)
        {
            long l2Span = (long)_l2Entries << _cb;
            long needL1 = Math.Max(1, (size + l2Span - 1) / l2Span);
            GrowL1(needL1);
            SetSize(size);
            if (prealloc != Qcow2Preallocation.Off)
                Preallocate(prealloc == Qcow2Preallocation.Full);
            FlushMetadata();
            Barrier();
        }
    }

    private void Preallocate(bool full)
    {
        long clusters = (_h.Size + _cs - 1) >> _cb;
        var pending = new List<PendingEntry>();
        byte[]? zeros = full ? new byte[_cs] : null;
        long last = 0;
        for (long vcl = 0; vcl < clusters; vcl++)
        {
            long l2Off = GetWritableL2(vcl / _l2Entries);
            long host = AllocateClusters(1);
            if (zeros is not null)
                _file.Write(host, zeros);
            last = Math.Max(last, host + _cs);
            pending.Add(new PendingEntry(l2Off, (int)(vcl % _l2Entries), (ulong)host | Copied, _eb == 16 ? 0xffff_ffffUL : 0));
        }
        if (_file.Length < last)
            _file.SetLength(last);
        Commit(pending, [], true);
    }
}
