using System.Buffers.Binary;
using System.Security.Cryptography;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>
/// Copies guest data between images with the managed QCOW2 engine, hashing what it stores as it writes
/// (<see cref="ClusterDigest"/>: one SHA-256 per stored cluster, summed). The same hashes over a backup file's own
/// clusters recompute the digest for verification.
/// </summary>
internal static class DiskCopier
{
    private const int Chunk = 4 << 20;

    /// <summary>The cluster size of backup files (QEMU's default).</summary>
    public const int ClusterSize = 65536;

    /// <summary>
    /// Copies the given guest ranges of <paramref name="source"/> into <paramref name="target"/>; returns the digest.
    /// Chunks of up to 4 MiB are read, hashed, compressed and written on every core at once (the digest does not
    /// depend on their order; the engine takes concurrent reads and writes).
    /// </summary>
    /// <remarks>With <paramref name="flush"/> false the caller flushes the target (concurrently with other work).</remarks>
    public static string Copy(Qcow2Image source, Qcow2Image target, IEnumerable<(long Start, long Length)> ranges, bool compress, IProgress<long>? progress, CancellationToken ct, bool flush = true)
    {
        var digest = new ClusterDigest();
        var cluster = target.GetInfo().ClusterSize;
        var chunks = new List<(long Start, int Length)>();
        foreach (var (start, length) in Normalize(ranges, cluster, source.Size))
        {
            for (long off = start; off < start + length; off += Chunk)
                chunks.Add((off, (int)Math.Min(Chunk, start + length - off)));
        }
        long done = 0;
        try
        {
            Parallel.ForEach(chunks, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount, CancellationToken = ct }, c =>
            {
                var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(c.Length);
                try
                {
                    var span = buffer.AsSpan(0, c.Length);
                    source.Read(c.Start, span);
                    digest.AddRun(c.Start, span, cluster);
                    if (compress)
                        WriteCompressedRun(target, c.Start, span, cluster);
                    else
                        target.Write(c.Start, span);
                    progress?.Report(Interlocked.Add(ref done, c.Length));
                }
                finally
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                }
            });
        }
        catch (AggregateException ex) when (ex.InnerExceptions.Count > 0)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerExceptions[0]).Throw();
        }
        if (flush)
            target.Flush();
        return digest.Result();
    }

    /// <summary>Writes whole clusters compressed in one call (the engine compresses them in parallel); a partial tail uncompressed.</summary>
    private static void WriteCompressedRun(Qcow2Image target, long offset, ReadOnlySpan<byte> data, int cluster)
    {
        var whole = data.Length / cluster * cluster;
        if (offset + data.Length == target.Size)
            whole = data.Length; // the image's last cluster may be short
        if (whole > 0)
            target.WriteCompressed(offset, data[..whole]);
        if (whole < data.Length)
            target.Write(offset + whole, data[whole..]);
    }

    /// <summary>
    /// Merges a backup into its child before the backup is deleted: every range the backup stores itself and the child
    /// does not is copied into the child (zeros as zeros), flushed, and only then is the child pointed at
    /// <paramref name="newBacking"/> (relative name, or null for standalone). Work is proportional to the backup's own
    /// data, not the disk's size. A kill at any point leaves the child correct: until the pointer switch it still reads
    /// through the backup, whose data it partly holds already.
    /// </summary>
    /// <param name="parentFile">The backup being deleted.</param>
    /// <param name="childFile">Its child, which receives its data.</param>
    /// <param name="newBacking">The child's backing file afterwards.</param>
    /// <param name="progress">Told the bytes merged so far after each chunk, synchronously; or null.</param>
    /// <param name="ct">Cancels between chunks.</param>
    public static void MergeParentInto(string parentFile, string childFile, string? newBacking, IProgress<long>? progress, CancellationToken ct)
    {
        using var parent = Qcow2Image.Open(parentFile, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
        using var child = Qcow2Image.Open(childFile);
        var cluster = child.GetInfo().ClusterSize;
        var childOwn = Normalize(OwnRanges(child), cluster, child.Size);
        var parentExtents = parent.GetAllocationMap().Where(e => e.Kind != Qcow2ExtentKind.Unallocated).ToList();
        var buffer = new byte[Chunk];
        long merged = 0;
        foreach (var e in parentExtents)
        {
            foreach (var (start, length) in Subtract(Normalize([(e.Start, e.Length)], cluster, child.Size), childOwn))
            {
                for (long off = start; off < start + length; off += Chunk)
                {
                    ct.ThrowIfCancellationRequested();
                    var n = (int)Math.Min(Chunk, start + length - off);
                    if (e.Kind == Qcow2ExtentKind.Zero)
                    {
                        child.WriteZeroes(off, n);
                    }
                    else
                    {
                        var span = buffer.AsSpan(0, n);
                        parent.Read(off, span);
                        if (e.Kind == Qcow2ExtentKind.Compressed)
                            WriteCompressedRun(child, off, span, cluster);
                        else
                            child.Write(off, span);
                    }
                    progress?.Report(merged += n);
                }
            }
        }
        child.Flush();
        child.Rebase(newBacking, newBacking is null ? null : "qcow2", unsafeMode: true);
        child.Flush();
    }

    /// <summary>Ranges of <paramref name="a"/> not covered by the sorted, merged <paramref name="b"/>.</summary>
    internal static IEnumerable<(long Start, long Length)> Subtract(List<(long Start, long Length)> a, List<(long Start, long Length)> b)
    {
        foreach (var (s0, l0) in a)
        {
            var s = s0;
            var end = s0 + l0;
            foreach (var (bs, bl) in b)
            {
                if (bs + bl <= s)
                    continue;
                if (bs >= end)
                    break;
                if (bs > s)
                    yield return (s, bs - s);
                s = Math.Max(s, bs + bl);
                if (s >= end)
                    break;
            }
            if (s < end)
                yield return (s, end - s);
        }
    }

    /// <summary>Rounds ranges out to whole clusters, merges overlaps, and clips to the disk.</summary>
    internal static List<(long Start, long Length)> Normalize(IEnumerable<(long Start, long Length)> ranges, long cluster, long size)
    {
        var list = ranges.Where(r => r.Length > 0)
            .Select(r => (Start: r.Start / cluster * cluster, End: Math.Min(size, (r.Start + r.Length + cluster - 1) / cluster * cluster)))
            .OrderBy(r => r.Start).ToList();
        var merged = new List<(long Start, long Length)>();
        foreach (var (s, e) in list)
        {
            if (merged.Count > 0 && s <= merged[^1].Start + merged[^1].Length)
            {
                var last = merged[^1];
                merged[^1] = (last.Start, Math.Max(last.Start + last.Length, e) - last.Start);
            }
            else if (e > s)
            {
                merged.Add((s, e - s));
            }
        }
        return merged;
    }

    /// <summary>The guest ranges an image stores in its own file (not in its backing chain).</summary>
    public static List<(long Start, long Length)> OwnRanges(Qcow2Image image)
        => image.GetAllocationMap().Where(e => e.Depth == 0 && e.Kind != Qcow2ExtentKind.Unallocated).Select(e => (e.Start, e.Length)).ToList();

    /// <summary>Recomputes the digest of what a backup file stores, as <see cref="Copy"/> computed it (clusters hashed in parallel).</summary>
    public static string DigestOfOwnData(Qcow2Image image, CancellationToken ct)
    {
        var digest = new ClusterDigest();
        var cluster = image.GetInfo().ClusterSize;
        var buffers = new[] { new byte[Chunk], new byte[Chunk] };
        Task hashing = Task.CompletedTask;
        var turn = 0;
        foreach (var (start, length) in Normalize(OwnRanges(image), cluster, image.Size))
        {
            for (long off = start; off < start + length; off += Chunk)
            {
                ct.ThrowIfCancellationRequested();
                var n = (int)Math.Min(Chunk, start + length - off);
                var buffer = buffers[turn++ & 1];
                image.Read(off, buffer.AsSpan(0, n)); // while the previous chunk is being hashed
                hashing.GetAwaiter().GetResult();
                var at = off;
                hashing = Task.Run(() => digest.AddRun(at, buffer.AsSpan(0, n), cluster), CancellationToken.None);
            }
        }
        hashing.GetAwaiter().GetResult();
        return digest.Result();
    }
}
