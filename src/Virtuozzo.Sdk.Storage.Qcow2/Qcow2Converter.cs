using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

/// <summary>Options for <see cref="Qcow2Converter.Convert"/>; names follow qemu-img convert's.</summary>
public sealed record Qcow2ConvertOptions
{
    /// <summary>The source format, <c>qcow2</c> or <c>raw</c>; probed when null (<c>-f</c>).</summary>
    public string? SourceFormat { get; init; }

    /// <summary>The output format, <c>qcow2</c> (default) or <c>raw</c> (<c>-O</c>).</summary>
    public string OutputFormat { get; init; } = "qcow2";

    /// <summary>Compress the output clusters (<c>-c</c>, qcow2 output only).</summary>
    public bool Compress { get; init; }

    /// <summary>Output image options (cluster size, version, refcount bits, compression type, extended L2, backing file). Size is taken from the source.</summary>
    public Qcow2CreateOptions Create { get; init; } = new();

    /// <summary>Read the source through this internal snapshot (id or name), like <c>-l snapshot.name=S</c>.</summary>
    public string? SnapshotName { get; init; }

    /// <summary>Open the source without taking locks (<c>-U</c>).</summary>
    public bool ForceShare { get; init; }

    /// <summary>Flush the output to disk before it replaces the destination (default true; qemu-img's <c>-t</c> writeback vs unsafe only changes whether that final flush happens).</summary>
    public bool FlushAtEnd { get; init; } = true;
}

/// <summary>Progress of a conversion.</summary>
/// <param name="BytesDone">Guest bytes processed.</param>
/// <param name="TotalBytes">The virtual size.</param>
public readonly record struct Qcow2ConvertProgress(long BytesDone, long TotalBytes);

/// <summary>Converts between raw and QCOW2 images, skipping zero and unallocated ranges.</summary>
/// <remarks>Like <c>qemu-img convert</c>. The output is written to a temporary file next to the destination and renamed at the end, so cancellation or failure leaves the destination untouched.</remarks>
public static class Qcow2Converter
{
    private const int ChunkSize = 2 << 20;

    /// <summary>Converts <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <param name="source">The source image file.</param>
    /// <param name="destination">The output file (replaced atomically at the end).</param>
    /// <param name="options">Formats, compression and output options.</param>
    /// <param name="progress">Receives progress after each chunk.</param>
    /// <param name="cancellationToken">Stops the conversion; the destination is left untouched.</param>
    public static void Convert(string source, string destination, Qcow2ConvertOptions? options = null, IProgress<Qcow2ConvertProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        ArgumentException.ThrowIfNullOrEmpty(destination);
        options ??= new Qcow2ConvertOptions();
        if (options.OutputFormat is not ("qcow2" or "raw"))
            throw new ArgumentException($"Output format '{options.OutputFormat}' is not supported (qcow2 or raw).", nameof(options));
        if (options.Compress && options.OutputFormat != "qcow2")
            throw new ArgumentException("Compression needs qcow2 output.", nameof(options));
        var destFull = Path.GetFullPath(destination);
        var temp = Path.Combine(Path.GetDirectoryName(destFull)!, $".{Path.GetFileName(destFull)}.{Guid.NewGuid():N}.tmp");
        if (File.Exists(destFull))
        {
            // like qemu-img: refuse to replace an image that another process (QEMU) has open
            using var existing = new FileStorage(destFull, writable: true);
            FileLock.Acquire(existing.Handle, write: true, destFull);
        }
        string format = options.SourceFormat ?? (Qcow2Image.IsQcow2(source) ? "qcow2" : "raw");
        try
        {
            using (var src = OpenSource(source, format, options))
            {
                if (options.OutputFormat == "raw")
                    ToRaw(src, temp, options, progress, cancellationToken);
                else
                    ToQcow2(src, temp, options, progress, cancellationToken);
            }
            File.Move(temp, destFull, overwrite: true);
        }
        catch
        {
            Qcow2Image.TryDelete(temp);
            throw;
        }
    }

    /// <summary>Converts on a thread-pool thread (the work is CPU- and I/O-bound; see <see cref="Convert"/>).</summary>
    /// <param name="source">The source image file.</param>
    /// <param name="destination">The output file.</param>
    /// <param name="options">Formats, compression and output options.</param>
    /// <param name="progress">Receives progress after each chunk.</param>
    /// <param name="cancellationToken">Stops the conversion; the destination is left untouched.</param>
    /// <returns>A task that completes when the destination is in place.</returns>
    public static Task ConvertAsync(string source, string destination, Qcow2ConvertOptions? options = null, IProgress<Qcow2ConvertProgress>? progress = null, CancellationToken cancellationToken = default)
        => Task.Run(() => Convert(source, destination, options, progress, cancellationToken), cancellationToken);

    private sealed class Source : IDisposable
    {
        public Qcow2Image? Image;
        public FileStream? Raw;
        public string? Snapshot;
        public long Size;

        public void Read(long off, byte[] array, int count)
        {
            var buf = array.AsSpan(0, count);
            if (Image is not null)
            {
                if (Snapshot is not null)
                    Image.ReadSnapshot(Snapshot, off, buf);
                else
                    Image.ReadBulk(off, array, count);
                return;
            }
            int n = RandomAccess.Read(Raw!.SafeFileHandle, buf, off);
            buf[Math.Max(0, n)..].Clear();
        }

        /// <summary>Extents: (start, length, kind). Raw files and snapshots are all "data" (zero detection applies).</summary>
        public IEnumerable<Qcow2Extent> Map(bool topOnly)
        {
            if (Image is null)
            {
                // holes of a sparse raw file read as zeros: skip them without reading
                var list = new List<Qcow2Extent>();
                long pos = 0;
                foreach (var (start, length) in Native.DataExtents(Raw!.SafeFileHandle, Size))
                {
                    if (start > pos)
                        list.Add(new Qcow2Extent(pos, start - pos, Qcow2ExtentKind.Zero, 0, null));
                    list.Add(new Qcow2Extent(start, length, Qcow2ExtentKind.Data, 0, start));
                    pos = start + length;
                }
                if (pos < Size)
                    list.Add(new Qcow2Extent(pos, Size - pos, Qcow2ExtentKind.Zero, 0, null));
                return list;
            }
            if (Snapshot is not null)
                return [new Qcow2Extent(0, Size, Qcow2ExtentKind.Data, 0, null)];
            var map = Image.GetAllocationMap();
            if (!topOnly)
                return map;
            return map.Select(e => e.Depth > 0 ? e with { Kind = Qcow2ExtentKind.Unallocated } : e);
        }

        public void Dispose()
        {
            Image?.Dispose();
            Raw?.Dispose();
        }
    }

    private static Source OpenSource(string path, string format, Qcow2ConvertOptions o)
    {
        if (format == "qcow2")
        {
            var img = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = o.ForceShare });
            var s = new Source { Image = img, Snapshot = o.SnapshotName };
            s.Size = o.SnapshotName is null ? img.Size : img.GetSnapshotSize(o.SnapshotName);
            return s;
        }
        if (format != "raw")
            throw new ArgumentException($"Source format '{format}' is not supported (qcow2 or raw).", nameof(format));
        if (o.SnapshotName is not null)
            throw new ArgumentException("Raw images have no snapshots.", nameof(o));
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.RandomAccess);
        return new Source { Raw = fs, Size = fs.Length };
    }

    private static void ToRaw(Source src, string temp, Qcow2ConvertOptions o, IProgress<Qcow2ConvertProgress>? progress, CancellationToken ct)
    {
        using var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1);
        fs.SetLength(src.Size);
        var buf = new byte[ChunkSize];
        long done = 0;
        foreach (var e in src.Map(topOnly: false))
        {
            if (e.Kind is Qcow2ExtentKind.Data or Qcow2ExtentKind.Compressed)
            {
                for (long off = e.Start; off < e.Start + e.Length; off += ChunkSize)
                {
                    ct.ThrowIfCancellationRequested();
                    int n = (int)Math.Min(ChunkSize, e.Start + e.Length - off);
                    var span = buf.AsSpan(0, n);
                    src.Read(off, buf, n);
                    WriteNonZero(fs, off, span);
                    progress?.Report(new Qcow2ConvertProgress(off + n, src.Size));
                }
            }
            done = e.Start + e.Length;
            progress?.Report(new Qcow2ConvertProgress(done, src.Size));
        }
        if (o.FlushAtEnd)
            fs.Flush(flushToDisk: true);
    }

    private static void WriteNonZero(FileStream fs, long off, ReadOnlySpan<byte> data)
    {
        const int block = 4096;
        int i = 0;
        while (i < data.Length)
        {
            int n = Math.Min(block, data.Length - i);
            if (data.Slice(i, n).IndexOfAnyExcept((byte)0) < 0)
            {
                i += n;
                continue;
            }
            int j = i + n;
            while (j < data.Length && data.Slice(j, Math.Min(block, data.Length - j)).IndexOfAnyExcept((byte)0) >= 0)
                j += Math.Min(block, data.Length - j);
            RandomAccess.Write(fs.SafeFileHandle, data[i..j], off + i);
            i = j;
        }
    }

    private static void ToQcow2(Source src, string temp, Qcow2ConvertOptions o, IProgress<Qcow2ConvertProgress>? progress, CancellationToken ct)
    {
        var create = o.Create with { Size = src.Size, Overwrite = false, Preallocation = Qcow2Preallocation.Off };
        bool hasBacking = !string.IsNullOrEmpty(create.BackingFile);
        using var dst = Qcow2Image.Create(temp, create, new Qcow2OpenOptions { CacheMode = Qcow2CacheMode.Unsafe });
        int cs = dst.ClusterSize;
        int chunk = Math.Max(cs, ChunkSize / cs * cs);
        var buf = new byte[chunk];
        foreach (var e in src.Map(topOnly: hasBacking))
        {
            if (e.Kind is Qcow2ExtentKind.Data or Qcow2ExtentKind.Compressed)
            {
                // align chunk boundaries to clusters so that compressed writes cover whole clusters
                long off = e.Start;
                long end = e.Start + e.Length;
                while (off < end)
                {
                    ct.ThrowIfCancellationRequested();
                    long alignedStart = off / cs * cs;
                    long stop = Math.Min(Math.Min(alignedStart + chunk, src.Size), ((end + cs - 1) / cs) * cs);
                    stop = Math.Min(stop, src.Size);
                    var span = buf.AsSpan(0, (int)(stop - alignedStart));
                    src.Read(alignedStart, buf, span.Length);
                    WriteClusters(dst, alignedStart, span, o.Compress, hasBacking);
                    off = stop;
                    progress?.Report(new Qcow2ConvertProgress(off, src.Size));
                }
            }
            else if (hasBacking && e.Kind == Qcow2ExtentKind.Zero)
            {
                dst.WriteZeroes(e.Start, e.Length);
            }
            progress?.Report(new Qcow2ConvertProgress(e.Start + e.Length, src.Size));
        }
        if (o.FlushAtEnd)
            dst.Flush();
    }

    private static void WriteClusters(Qcow2Image dst, long start, ReadOnlySpan<byte> data, bool compress, bool hasBacking)
    {
        int cs = dst.ClusterSize;
        int i = 0;
        while (i < data.Length)
        {
            int n = Math.Min(cs, data.Length - i);
            var c = data.Slice(i, n);
            bool zero = c.IndexOfAnyExcept((byte)0) < 0;
            if (zero)
            {
                if (hasBacking)
                    dst.WriteZeroes(start + i, n);
                i += n;
                continue;
            }
            // group consecutive non-zero clusters into one write
            int j = i + n;
            while (j < data.Length && data.Slice(j, Math.Min(cs, data.Length - j)).IndexOfAnyExcept((byte)0) >= 0)
                j += Math.Min(cs, data.Length - j);
            if (compress)
                dst.WriteCompressed(start + i, data[i..j]);
            else
                dst.Write(start + i, data[i..j]);
            i = j;
        }
    }
}
