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

    /// <summary>
    /// How a QCOW2 source is opened: set <see cref="Qcow2OpenOptions.AllowExternalDataFile"/> and
    /// <see cref="Qcow2OpenOptions.AllowedDirectory"/> to convert an image from an untrusted source without reading
    /// files its header names elsewhere on the host. The source is always opened read-only (and without locks when
    /// either <see cref="ForceShare"/> is set). Null opens it with the defaults.
    /// </summary>
    public Qcow2OpenOptions? SourceOpenOptions { get; init; }

    /// <summary>Flush the output to disk before it replaces the destination (default true; qemu-img's <c>-t</c> writeback vs unsafe only changes whether that final flush happens).</summary>
    public bool FlushAtEnd { get; init; } = true;

    /// <summary>
    /// Sees every guest range a QCOW2 output stores — data, and zeroes stored as zero clusters — once, as it is
    /// stored: to hash or index the output without reading it again. Called from worker threads, concurrently and in
    /// no particular order, with whole clusters (the image's last cluster may be short); ranges the output leaves
    /// unallocated are not passed. Not called for raw output.
    /// </summary>
    public Qcow2StoredDataObserver? StoredDataObserver { get; init; }
}

/// <summary>Receives a guest range a conversion stores; see <see cref="Qcow2ConvertOptions.StoredDataObserver"/>.</summary>
/// <param name="guestOffset">Where the range starts in the guest (cluster-aligned).</param>
/// <param name="data">Its bytes (all zero for zero clusters); valid only during the call.</param>
public delegate void Qcow2StoredDataObserver(long guestOffset, ReadOnlySpan<byte> data);

/// <summary>Progress of a conversion.</summary>
/// <param name="BytesDone">Guest bytes processed.</param>
/// <param name="TotalBytes">The virtual size.</param>
public readonly record struct Qcow2ConvertProgress(long BytesDone, long TotalBytes);

/// <summary>Converts between raw and QCOW2 images, skipping zero and unallocated ranges.</summary>
/// <remarks>Like <c>qemu-img convert</c>. The output is written to a temporary file next to the destination and renamed at the end, so cancellation or failure leaves the destination untouched.</remarks>
public static class Qcow2Converter
{
    private const int ChunkSize = 2 << 20;

    /// <summary>Zero detection granularity of raw output: runs of zeros this long stay holes (qemu-img's default -S 4k).</summary>
    private const int RawZeroBlock = 4096;

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
        // the name carries the writer's process id, and the writer holds the file open (locked) until it is
        // renamed, so that a later convert can tell a killed writer's leftover from a live writer's output
        var temp = Path.Combine(Path.GetDirectoryName(destFull)!, $".{Path.GetFileName(destFull)}.{Environment.ProcessId:x8}{Random.Shared.Next():x8}.tmp");
        RemoveStaleTemporaries(destFull);
        if (File.Exists(destFull))
        {
            // like qemu-img: refuse to replace an image that another process (QEMU) has open
            using var existing = new FileStorage(destFull, writable: true);
            FileLock.Acquire(existing.Handle, write: true, destFull);
        }
        string format = options.SourceFormat ?? (Qcow2Image.IsQcow2(source) ? "qcow2" : "raw");
        // created first and held open until after the rename: .NET takes a shared advisory lock (flock) on it
        using var guard = File.OpenHandle(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
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

    /// <summary>
    /// Removes the temporary outputs of earlier converts to the same destination whose writer is gone: its
    /// process (named in the file name) no longer runs and nobody holds the file open. A file whose writer
    /// may be alive is left alone.
    /// </summary>
    private static void RemoveStaleTemporaries(string destFull)
    {
        string dir = Path.GetDirectoryName(destFull)!;
        string prefix = "." + Path.GetFileName(destFull) + ".";
        string[] files;
        try
        {
            files = Directory.GetFiles(dir, prefix + "*.tmp");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return;
        }
        foreach (var file in files)
        {
            string name = Path.GetFileName(file);
            if (!name.StartsWith(prefix, StringComparison.Ordinal) || name.Length != prefix.Length + 16 + 4)
                continue;
            var hex = name.AsSpan(prefix.Length, 16);
            if (!ulong.TryParse(hex, System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out ulong id))
                continue;
            uint pid = (uint)(id >> 32);
            if (pid <= int.MaxValue && IsProcessAlive((int)pid))
                continue;
            try
            {
                // an exclusive lock fails while a writer holds the file open (its shared lock)
                using var probe = File.OpenHandle(file, FileMode.Open, FileAccess.Read, FileShare.None);
                File.Delete(file);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // held by a live writer, or not ours to remove
            }
        }
    }

    private static bool IsProcessAlive(int pid)
    {
        if (pid == Environment.ProcessId)
            return true;
        if (OperatingSystem.IsLinux())
            return Directory.Exists($"/proc/{pid}");
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
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
        public Microsoft.Win32.SafeHandles.SafeFileHandle? Raw;
        public string? Snapshot;
        public long Size;

        /// <summary>True when reading needs CPU (decompression), so that more reader threads help.</summary>
        public bool CpuBound;

        /// <summary>Reads <paramref name="count"/> bytes at <paramref name="off"/>; safe to call from several threads at once.</summary>
        public void Read(long off, byte[] array, int count)
        {
            var buf = array.AsSpan(0, count);
            if (Image is not null)
            {
                if (Snapshot is not null)
                    Image.ReadSnapshot(Snapshot, off, buf);
                else
                    Image.ReadBulk(off, array, count, parallel: false);
                return;
            }
            int done = 0;
            while (done < count)
            {
                int n = RandomAccess.Read(Raw!, buf[done..], off + done);
                if (n <= 0)
                    break;
                done += n;
            }
            buf[done..].Clear();
        }

        /// <summary>Extents: (start, length, kind). Raw files and snapshots are all "data" (zero detection applies).</summary>
        public IEnumerable<Qcow2Extent> Map(bool topOnly)
        {
            if (Image is null)
            {
                // holes of a sparse raw file read as zeros: skip them without reading
                var list = new List<Qcow2Extent>();
                long pos = 0;
                foreach (var (start, length) in Native.DataExtents(Raw!, Size))
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
            CpuBound = map.Any(e => e.Kind == Qcow2ExtentKind.Compressed);
            if (!topOnly)
                return map;
            return map.Select(e => e.Depth > 0 ? e with { Kind = Qcow2ExtentKind.Unallocated } : e).ToList();
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
            var open = (o.SourceOpenOptions ?? new Qcow2OpenOptions()) with { ReadOnly = true };
            var img = Qcow2Image.Open(path, open with { ForceShare = o.ForceShare || open.ForceShare });
            var s = new Source { Image = img, Snapshot = o.SnapshotName };
            s.Size = o.SnapshotName is null ? img.Size : img.GetSnapshotSize(o.SnapshotName);
            return s;
        }
        if (format != "raw")
            throw new ArgumentException($"Source format '{format}' is not supported (qcow2 or raw).", nameof(format));
        if (o.SnapshotName is not null)
            throw new ArgumentException("Raw images have no snapshots.", nameof(o));
        var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new Source { Raw = h, Size = RandomAccess.GetLength(h) };
    }

    /// <summary>A unit of the conversion, in guest order: a range to copy (read and prepared by a worker) or to zero.</summary>
    private readonly record struct Step(long Start, int Length, bool Copy);

    /// <summary>
    /// The ranges to copy, aligned to <paramref name="align"/> and merged so that no output cluster is written
    /// twice, cut into chunks of at most <paramref name="chunk"/> bytes; plus, when <paramref name="zeroes"/>,
    /// the zero ranges that must be written explicitly (over a backing file).
    /// </summary>
    private static List<Step> Plan(IEnumerable<Qcow2Extent> extents, long size, int align, int chunk, bool zeroes)
    {
        var copy = new List<(long Start, long End)>();
        var zero = new List<(long Start, long End)>();
        foreach (var e in extents)
        {
            if (e.Kind is Qcow2ExtentKind.Data or Qcow2ExtentKind.Compressed)
            {
                long s = e.Start / align * align, end = Math.Min(size, (e.Start + e.Length + align - 1) / align * align);
                if (copy.Count > 0 && s <= copy[^1].End)
                    copy[^1] = (copy[^1].Start, Math.Max(copy[^1].End, end));
                else
                    copy.Add((s, end));
            }
            else if (zeroes && e.Kind == Qcow2ExtentKind.Zero)
                zero.Add((e.Start, e.Start + e.Length));
        }
        var steps = new List<Step>();
        foreach (var (s, end) in copy)
            for (long off = s; off < end; off += chunk)
                steps.Add(new Step(off, (int)Math.Min(chunk, end - off), true));
        foreach (var (s, end) in zero)
            for (long off = s; off < end; off += 1L << 30)
                steps.Add(new Step(off, (int)Math.Min(1L << 30, end - off), false));
        steps.Sort((a, b) => a.Start.CompareTo(b.Start));
        return steps;
    }

    /// <summary>What a worker hands to the writer for one step.</summary>
    private sealed class Prepared
    {
        public required Step Step;
        public byte[] Data = [];

        /// <summary>Uncompressed qcow2 and raw output: which units (clusters, or raw zero blocks) hold only zeros.</summary>
        public bool[] Zero = [];

        /// <summary>Compressed output.</summary>
        public Qcow2Image.CompressedClusters? Compressed;
    }

    /// <summary>
    /// When the output is flushed at the end, starts writing it back behind the writer (from the worker
    /// threads), so that the disk works while the conversion does and the final fsync has little left.
    /// </summary>
    private sealed class EarlyWriteback(Microsoft.Win32.SafeHandles.SafeFileHandle? handle)
    {
        private const long Step = 32 << 20;
        private long _started;
        private long _written;

        /// <summary>Everything below <paramref name="upTo"/> has been written (writer thread).</summary>
        public void Written(long upTo)
        {
            if (upTo > Volatile.Read(ref _written))
                Volatile.Write(ref _written, upTo);
        }

        /// <summary>Starts writeback of what was written since the last call, in steps (worker threads).</summary>
        public void Kick()
        {
            if (handle is null)
                return;
            long w = Volatile.Read(ref _written), s = Volatile.Read(ref _started);
            if (w - s < Step || Interlocked.CompareExchange(ref _started, w, s) != s)
                return;
            Native.StartWriteback(handle, s, w - s);
        }
    }

    /// <summary>
    /// Chunks in flight: one per worker, one being written and one spare, so that memory stays bounded by
    /// (workers + 2) chunk buffers (twice that when compressing): 6 MiB for a plain convert, 16 MiB for a
    /// compressed one on 2 cores, 40 MiB with 8 workers.
    /// </summary>
    private static int Depth(int workers) => workers + 2;

    private static int Workers(bool cpuBound) => cpuBound ? Math.Clamp(Environment.ProcessorCount, 1, 8) : 1;

    /// <summary>
    /// Runs a conversion as a pipeline: workers read (and decompress, detect zeros, compress) chunks in
    /// parallel while the calling thread writes them in guest order. Reading from the page cache and
    /// writing to it each cost a memory copy, so even uncompressed converts gain from the overlap.
    /// </summary>
    private static void RunPipeline(List<Step> steps, bool cpuBound, Func<Step, int, Prepared> prepare, Action<Prepared> write, long total, IProgress<Qcow2ConvertProgress>? progress, CancellationToken ct)
    {
        int workers = Workers(cpuBound);
        using var pipeline = new OrderedPipeline<Prepared>(steps.Count, workers, Depth(workers), (i, slot) => prepare(steps[(int)i], slot), ct);
        foreach (var p in pipeline.Consume())
        {
            ct.ThrowIfCancellationRequested();
            write(p);
            progress?.Report(new Qcow2ConvertProgress(p.Step.Start + p.Step.Length, total));
        }
    }

    private static void ToRaw(Source src, string temp, Qcow2ConvertOptions o, IProgress<Qcow2ConvertProgress>? progress, CancellationToken ct)
    {
        using var handle = File.OpenHandle(temp, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        RandomAccess.SetLength(handle, src.Size);
        int chunk = ChunkSize;
        var steps = Plan(src.Map(topOnly: false), src.Size, RawZeroBlock, chunk, zeroes: false);
        var writeback = new EarlyWriteback(o.FlushAtEnd ? handle : null);
        int depth = Depth(Workers(src.CpuBound));
        var buffers = new byte[depth][];
        var zeroFlags = new bool[depth][];
        RunPipeline(steps, src.CpuBound, (step, slot) =>
        {
            var buf = buffers[slot] ??= GC.AllocateUninitializedArray<byte>(chunk);
            var zero = zeroFlags[slot] ??= new bool[chunk / RawZeroBlock];
            writeback.Kick();
            src.Read(step.Start, buf, step.Length);
            for (int i = 0, b = 0; i < step.Length; i += RawZeroBlock, b++)
                zero[b] = !buf.AsSpan(i, Math.Min(RawZeroBlock, step.Length - i)).ContainsAnyExcept((byte)0);
            return new Prepared { Step = step, Data = buf, Zero = zero };
        }, p =>
        {
            var data = p.Data.AsSpan(0, p.Step.Length);
            int blocks = (p.Step.Length + RawZeroBlock - 1) / RawZeroBlock;
            for (int b = 0; b < blocks;)
            {
                if (p.Zero[b])
                {
                    b++;
                    continue;
                }
                int e = b + 1;
                while (e < blocks && !p.Zero[e])
                    e++;
                int from = b * RawZeroBlock, to = Math.Min(e * RawZeroBlock, data.Length);
                RandomAccess.Write(handle, data[from..to], p.Step.Start + from);
                b = e;
            }
            writeback.Written(p.Step.Start + p.Step.Length);
        }, src.Size, progress, ct);
        progress?.Report(new Qcow2ConvertProgress(src.Size, src.Size));
        if (o.FlushAtEnd)
            RandomAccess.FlushToDisk(handle);
    }

    /// <summary>Passes the runs of a chunk the output stores to the observer: data clusters, and zero clusters when an output with a backing file stores them.</summary>
    private static void Observe(Qcow2StoredDataObserver see, long start, ReadOnlySpan<byte> data, int cs, Func<int, bool> isZero, bool zeroesStored)
    {
        int clusters = (data.Length + cs - 1) / cs;
        for (int k = 0; k < clusters;)
        {
            bool zero = isZero(k);
            int e = k + 1;
            while (e < clusters && isZero(e) == zero)
                e++;
            if (!zero || zeroesStored)
            {
                int from = k * cs, to = Math.Min(e * cs, data.Length);
                see(start + from, data[from..to]); // zero clusters hold zeroes: their bytes are the data's
            }
            k = e;
        }
    }

    private static void ToQcow2(Source src, string temp, Qcow2ConvertOptions o, IProgress<Qcow2ConvertProgress>? progress, CancellationToken ct)
    {
        // the temporary file exists already (empty, created and held by Convert)
        var create = o.Create with { Size = src.Size, Overwrite = true, Preallocation = Qcow2Preallocation.Off };
        bool hasBacking = !string.IsNullOrEmpty(create.BackingFile);
        using var dst = Qcow2Image.Create(temp, create, new Qcow2OpenOptions { CacheMode = Qcow2CacheMode.Unsafe });
        int cs = dst.ClusterSize;
        int chunk = Math.Max(cs, ChunkSize / cs * cs);
        // chunk boundaries fall on clusters, so that compressed writes cover whole clusters
        var steps = Plan(src.Map(topOnly: hasBacking), src.Size, cs, chunk, zeroes: hasBacking);
        bool compress = o.Compress;
        bool cpuBound = compress || src.CpuBound;
        int depth = Depth(Workers(cpuBound));
        var buffers = new byte[depth][];
        var zeroFlags = new bool[depth][];
        var packed = new Qcow2Image.CompressedClusters?[depth];
        var writeback = new EarlyWriteback(o.FlushAtEnd ? dst.FileHandle : null);
        RunPipeline(steps, cpuBound, (step, slot) =>
        {
            if (!step.Copy)
                return new Prepared { Step = step };
            writeback.Kick();
            var buf = buffers[slot] ??= GC.AllocateUninitializedArray<byte>(chunk);
            src.Read(step.Start, buf, step.Length);
            var data = buf.AsSpan(0, step.Length);
            if (compress)
            {
                var c = packed[slot] ??= dst.NewCompressedClusters(chunk / cs);
                dst.CompressClusters(data, c, skipZero: true);
                if (o.StoredDataObserver is { } seeCompressed)
                    Observe(seeCompressed, step.Start, data, cs, k => c.Lengths[k] == 0, hasBacking);
                return new Prepared { Step = step, Data = buf, Compressed = c };
            }
            var zero = zeroFlags[slot] ??= new bool[chunk / cs];
            for (int i = 0, k = 0; i < data.Length; i += cs, k++)
                zero[k] = !data.Slice(i, Math.Min(cs, data.Length - i)).ContainsAnyExcept((byte)0);
            if (o.StoredDataObserver is { } see)
                Observe(see, step.Start, data, cs, k => zero[k], hasBacking);
            return new Prepared { Step = step, Data = buf, Zero = zero };
        }, p =>
        {
            var step = p.Step;
            if (o.FlushAtEnd)
                writeback.Written(dst.FileLength);
            if (!step.Copy)
            {
                dst.WriteZeroes(step.Start, step.Length);
                if (o.StoredDataObserver is { } seeZeroes)
                {
                    var zeroes = new byte[Math.Min(chunk, step.Length)];
                    for (long at = 0; at < step.Length; at += zeroes.Length)
                        seeZeroes(step.Start + at, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, step.Length - at)));
                }
                return;
            }
            var data = p.Data.AsSpan(0, step.Length);
            if (p.Compressed is { } c)
            {
                dst.WriteCompressedClusters(step.Start, data, c);
                if (hasBacking)
                    for (int k = 0; k < c.Count; k++)
                        if (c.Lengths[k] == 0)
                            dst.WriteZeroes(step.Start + (long)k * cs, Math.Min(cs, step.Length - k * cs));
                return;
            }
            int clusters = (step.Length + cs - 1) / cs;
            for (int k = 0; k < clusters;)
            {
                int e = k + 1;
                while (e < clusters && p.Zero[e] == p.Zero[k])
                    e++;
                int from = k * cs, to = Math.Min(e * cs, data.Length);
                if (!p.Zero[k])
                    dst.Write(step.Start + from, data[from..to]);
                else if (hasBacking)
                    dst.WriteZeroes(step.Start + from, to - from);
                k = e;
            }
        }, src.Size, progress, ct);
        progress?.Report(new Qcow2ConvertProgress(src.Size, src.Size));
        if (o.FlushAtEnd)
            dst.Flush();
        else
            dst.SyncOnClose = false;
    }
}
