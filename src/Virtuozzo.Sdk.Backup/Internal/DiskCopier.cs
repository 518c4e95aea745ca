using System.Buffers.Binary;
using System.Security.Cryptography;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>
/// Copies guest data between images with the managed QCOW2 engine, hashing what it stores as it writes:
/// SHA-256 over (offset, length, bytes) of every stored range, in offset order. The same walk over a backup
/// file's own clusters recomputes the digest for verification.
/// </summary>
internal static class DiskCopier
{
    private const int Chunk = 1 << 20;

    /// <summary>Copies the given guest ranges of <paramref name="source"/> into <paramref name="target"/>; returns the digest.</summary>
    public static string Copy(Qcow2Image source, Qcow2Image target, IEnumerable<(long Start, long Length)> ranges, bool compress, IProgress<long>? progress, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[Chunk];
        var cluster = target.GetInfo().ClusterSize;
        long done = 0;
        foreach (var (start, length) in Normalize(ranges, cluster, source.Size))
        {
            for (long off = start; off < start + length; off += Chunk)
            {
                ct.ThrowIfCancellationRequested();
                var n = (int)Math.Min(Chunk, start + length - off);
                var span = buffer.AsSpan(0, n);
                source.Read(off, span);
                Append(hash, off, span);
                if (compress && off % cluster == 0)
                    WriteCompressedRun(target, off, span, cluster);
                else
                    target.Write(off, span);
                done += n;
                progress?.Report(done);
            }
        }
        target.Flush();
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static void WriteCompressedRun(Qcow2Image target, long offset, ReadOnlySpan<byte> data, int cluster)
    {
        for (var i = 0; i < data.Length; i += cluster)
        {
            var n = Math.Min(cluster, data.Length - i);
            if (n == cluster)
                target.WriteCompressed(offset + i, data.Slice(i, n));
            else
                target.Write(offset + i, data.Slice(i, n));
        }
    }

    private static void Append(IncrementalHash hash, long offset, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[16];
        BinaryPrimitives.WriteInt64LittleEndian(header, offset);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], data.Length);
        hash.AppendData(header);
        hash.AppendData(data);
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

    /// <summary>Recomputes the digest of what a backup file stores, as <see cref="Copy"/> computed it.</summary>
    public static string DigestOfOwnData(Qcow2Image image, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[Chunk];
        foreach (var (start, length) in Normalize(OwnRanges(image), image.GetInfo().ClusterSize, image.Size))
        {
            for (long off = start; off < start + length; off += Chunk)
            {
                ct.ThrowIfCancellationRequested();
                var n = (int)Math.Min(Chunk, start + length - off);
                image.Read(off, buffer.AsSpan(0, n));
                Append(hash, off, buffer.AsSpan(0, n));
            }
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
