using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    internal enum MapKind : byte { Unallocated, Zero, Data, Compressed }

    internal readonly record struct Mapping(MapKind Kind, long Host, long Length, ulong Entry);

    /// <summary>Reads guest data. Reads past the virtual size are not allowed.</summary>
    /// <param name="offset">Guest byte offset.</param>
    /// <param name="buffer">Where to put the bytes; its length is the amount to read.</param>
    /// <returns>The number of bytes read (the buffer length).</returns>
    /// <remarks>Like <c>qemu-io -c 'read OFF LEN'</c>.</remarks>
    public int Read(long offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            CheckRange(offset, buffer.Length);
            ReadCore(_l1, offset, buffer);
            return buffer.Length;
        }
    }

    /// <summary>Reads guest data (see <see cref="Read"/>; completes synchronously).</summary>
    /// <param name="offset">Guest byte offset.</param>
    /// <param name="buffer">Where to put the bytes.</param>
    /// <param name="cancellationToken">Cancels before the read starts.</param>
    /// <returns>The number of bytes read.</returns>
    public ValueTask<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Read(offset, buffer.Span));
    }

    /// <summary>
    /// Read for bulk copies (convert): on a read-only image the mapping is resolved under the lock and the
    /// clusters are then read and decompressed in parallel outside it. Read-only opens hold QEMU's lock that
    /// denies writers, so no cluster can be freed and reused meanwhile.
    /// </summary>
    internal void ReadBulk(long offset, byte[] buffer, int count, bool parallel = true)
    {
        if (!_options.ReadOnly)
        {
            Read(offset, buffer.AsSpan(0, count));
            return;
        }
        var maps = ResolveMaps(offset, count);
        int compressed = maps.Count(x => x.Map.Kind == MapKind.Compressed);
        if (parallel && compressed > 1 && Environment.ProcessorCount > 1)
        {
            var type = (Qcow2CompressionType)_h.CompressionType;
            void One(int i)
            {
                var (guest, at, m) = maps[i];
                var part = buffer.AsSpan(at, (int)m.Length);
                if (m.Kind == MapKind.Compressed)
                {
                    var (coff, csize) = CompressedRange(m.Entry);
                    if (coff < _cs)
                        throw new Qcow2FormatException($"Compressed cluster at host offset 0x{coff:x} overlaps the header.");
                    var input = new byte[csize];
                    _file.Read(coff, input);
                    var output = new byte[_cs];
                    Compression.Decompress(type, input, output);
                    output.AsSpan((int)(guest & (_cs - 1)), part.Length).CopyTo(part);
                }
                else
                {
                    ReadUncompressed(m, guest, part);
                }
            }
            Parallel.For(0, maps.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Min(Environment.ProcessorCount, 8) }, One);
        }
        else
        {
            ReadMaps(maps, buffer.AsSpan(0, count));
        }
    }

    /// <summary>
    /// Reads a read-only image the way <see cref="ReadBulk"/> does on one thread: the mapping under the lock, the
    /// data and its decompression outside it, so that several threads reading one chain (a convert's workers reading
    /// through an incremental into its compressed full) decompress at the same time. Other images read under the lock.
    /// </summary>
    internal void ReadShared(long offset, Span<byte> buffer)
    {
        if (!_options.ReadOnly)
        {
            ReadUnlocked(offset, buffer);
            return;
        }
        ReadMaps(ResolveMaps(offset, buffer.Length), buffer);
    }

    /// <summary>The mappings of [offset, offset + count), resolved under the lock.</summary>
    private List<(long Guest, int BufferOffset, Mapping Map)> ResolveMaps(long offset, int count)
    {
        var maps = new List<(long Guest, int BufferOffset, Mapping Map)>();
        lock (_lock)
        {
            ThrowIfDisposed();
            CheckRange(offset, count);
            long pos = offset;
            int done = 0;
            while (done < count)
            {
                var m = Lookup(_l1, pos, count - done);
                maps.Add((pos, done, m));
                pos += m.Length;
                done += (int)m.Length;
            }
        }
        return maps;
    }

    /// <summary>Largest host range read at once for a run of compressed clusters.</summary>
    private const int CompressedBatchBytes = 2 << 20;

    [ThreadStatic] private static byte[]? t_compressedInput;
    [ThreadStatic] private static byte[]? t_clusterOutput;

    /// <summary>
    /// Reads resolved mappings into <paramref name="buffer"/> on the calling thread, outside the lock (read-only images
    /// only). Compressed clusters stored close together in the file (as a convert or a backup writes them: back to back)
    /// are read with one <c>pread</c> per run and decompressed straight into the buffer when they cover a whole cluster.
    /// </summary>
    private void ReadMaps(List<(long Guest, int BufferOffset, Mapping Map)> maps, Span<byte> buffer)
    {
        var type = (Qcow2CompressionType)_h.CompressionType;
        for (int i = 0; i < maps.Count;)
        {
            var (guest, at, m) = maps[i];
            if (m.Kind != MapKind.Compressed)
            {
                ReadUncompressed(m, guest, buffer.Slice(at, (int)m.Length));
                i++;
                continue;
            }
            // a run of compressed clusters whose stored bytes lie within one batch of the file, in file order
            var (runStart, first) = CompressedRange(m.Entry);
            if (runStart < _cs)
                throw new Qcow2FormatException($"Compressed cluster at host offset 0x{runStart:x} overlaps the header.");
            long runEnd = runStart + first;
            int j = i + 1;
            while (j < maps.Count && maps[j].Map.Kind == MapKind.Compressed)
            {
                var (coff, csize) = CompressedRange(maps[j].Map.Entry);
                if (coff < runStart || coff > runEnd + 4096 || Math.Max(runEnd, coff + csize) - runStart > CompressedBatchBytes)
                    break;
                runEnd = Math.Max(runEnd, coff + csize);
                j++;
            }
            int runLength = (int)(runEnd - runStart);
            var input = t_compressedInput is { } ti && ti.Length >= runLength ? ti : t_compressedInput = GC.AllocateUninitializedArray<byte>(Math.Max(runLength, CompressedBatchBytes + (2 << 16)));
            _file.Read(runStart, input.AsSpan(0, runLength)); // a short read (the file's last sectors) leaves zeroes
            for (int k = i; k < j; k++)
            {
                var (g, a, mk) = maps[k];
                var (coff, csize) = CompressedRange(mk.Entry);
                var src = input.AsSpan((int)(coff - runStart), csize);
                var part = buffer.Slice(a, (int)mk.Length);
                int inCluster = (int)(g & (_cs - 1));
                if (inCluster == 0 && part.Length == _cs)
                {
                    Compression.Decompress(type, src, part);
                }
                else
                {
                    var output = t_clusterOutput is { } to && to.Length >= _cs ? to : t_clusterOutput = new byte[_cs];
                    Compression.Decompress(type, src, output.AsSpan(0, _cs));
                    output.AsSpan(inCluster, part.Length).CopyTo(part);
                }
            }
            i = j;
        }
    }

    internal void ReadUnlocked(long offset, Span<byte> buffer)
    {
        lock (_lock)
            ReadCore(_l1, offset, buffer);
    }

    private void CheckRange(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset + length > _h.Size)
            throw new ArgumentOutOfRangeException(nameof(offset), $"The range [{offset}, {offset + length}) ends past the virtual size {_h.Size}.");
    }

    private void ReadCore(ulong[] l1, long offset, Span<byte> dst)
    {
        while (dst.Length > 0)
        {
            var m = Lookup(l1, offset, dst.Length);
            var part = dst[..(int)m.Length];
            if (m.Kind == MapKind.Compressed)
                Decompress(m.Entry).AsSpan((int)(offset & (_cs - 1)), part.Length).CopyTo(part);
            else
                ReadUncompressed(m, offset, part);
            offset += m.Length;
            dst = dst[(int)m.Length..];
        }
    }

    /// <summary>Reads a data, zero or unallocated mapping (the backing file serves unallocated ranges).</summary>
    private void ReadUncompressed(Mapping m, long guest, Span<byte> part)
    {
        switch (m.Kind)
        {
            case MapKind.Data:
                if (_dataFile is not null)
                    _dataFile.Read(m.Host, part);
                else if (_file.Read(m.Host, part) < part.Length)
                    ThrowIfPastEnd(m.Host, part.Length);
                break;
            case MapKind.Unallocated when _backing is not null:
                _backing.Read(guest, part);
                break;
            default:
                part.Clear();
                break;
        }
    }

    /// <summary>
    /// A short read of a data cluster: the file ends inside the last cluster (tolerated, the rest reads as
    /// zeros, as qemu reads it) or a whole cluster lies past the end of the file (a truncated image).
    /// </summary>
    private void ThrowIfPastEnd(long host, int length)
    {
        long fileLength = _file.Length;
        long clusterStart = host & ~(long)(_cs - 1);
        if (clusterStart < fileLength)
            clusterStart = (fileLength + _cs - 1) & ~(long)(_cs - 1);
        if (clusterStart < host + length)
            throw new Qcow2FormatException($"Data cluster at host offset 0x{clusterStart:x} lies past the end of the image file ({fileLength} bytes): the image is truncated or corrupt (see check).") { ImagePath = _file.Path };
    }

    internal (long Offset, int Length) CompressedRange(ulong entry)
    {
        int shift = 62 - (_cb - 8);
        long coff = (long)(entry & ((1UL << shift) - 1));
        long nb = (long)((entry >> shift) & ((1UL << (_cb - 8)) - 1));
        long csize = (nb + 1) * 512 - (coff & 511);
        return (coff, (int)csize);
    }

    private byte[] Decompress(ulong entry)
    {
        var (coff, csize) = CompressedRange(entry);
        if (_compCacheKey == coff && _compCache is not null)
            return _compCache;
        if (coff < _cs)
            throw new Qcow2FormatException($"Compressed cluster at host offset 0x{coff:x} overlaps the header.");
        var input = new byte[csize];
        _file.Read(coff, input);
        var output = _compCache is { } reuse && _compCacheKey == -1 ? reuse : new byte[_cs];
        _compCacheKey = -1;
        Compression.Decompress((Qcow2CompressionType)_h.CompressionType, input, output);
        _compCache = output;
        _compCacheKey = coff;
        return output;
    }

    private byte[] GetL2(long l2Offset)
    {
        if (_l2Cache.TryGet(l2Offset, out var t))
            return t;
        if ((l2Offset & (_cs - 1)) != 0)
            throw new Qcow2FormatException($"L2 table offset 0x{l2Offset:x} is not cluster-aligned.");
        if (l2Offset < _cs || l2Offset + _cs > _file.Length)
            throw new Qcow2FormatException($"L2 table at 0x{l2Offset:x} lies outside the image file.");
        EnsureL2CacheRoom();
        t = new byte[_cs];
        _file.Read(l2Offset, t);
        _l2Cache.Put(l2Offset, t);
        return t;
    }

    private ulong L2Entry(byte[] table, int index) => BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(index * _eb));

    private ulong L2Bitmap(byte[] table, int index) => _eb == 16 ? BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(index * 16 + 8)) : 0;

    /// <summary>Classifies the guest range starting at <paramref name="offset"/>, coalescing within one L2 table.</summary>
    private Mapping Lookup(ulong[] l1, long offset, long maxLen)
    {
        long vcl = offset >> _cb;
        long l1Idx = vcl / _l2Entries;
        int l2Idx = (int)(vcl % _l2Entries);
        long tableEnd = ((l1Idx + 1) * _l2Entries << _cb) - offset;
        long limit = Math.Min(maxLen, tableEnd);
        if (l1Idx >= l1.Length)
            return new Mapping(MapKind.Unallocated, 0, limit, 0);
        long l2Off = (long)(l1[l1Idx] & OffsetMask);
        if (l2Off == 0)
            return new Mapping(MapKind.Unallocated, 0, limit, 0);
        var table = GetL2(l2Off);
        int inCl = (int)(offset & (_cs - 1));
        var (kind, host, unit, entry) = Classify(table, l2Idx, inCl);
        long len = Math.Min(unit, limit);
        if (kind == MapKind.Compressed)
            return new Mapping(kind, 0, len, entry);
        while (len < limit)
        {
            long pos = offset + len;
            int idx = (int)((pos >> _cb) % _l2Entries);
            var (k2, h2, u2, _) = Classify(table, idx, (int)(pos & (_cs - 1)));
            if (k2 != kind || h2 != (host == 0 ? 0 : host + len))
                break;
            len = Math.Min(len + u2, limit);
        }
        return new Mapping(kind, host, len, entry);
    }

    private (MapKind Kind, long Host, long Unit, ulong Entry) Classify(byte[] table, int idx, int inCl)
    {
        ulong e = L2Entry(table, idx);
        if ((e & CompressedFlag) != 0)
            return (MapKind.Compressed, 0, _cs - inCl, e);
        long host = (long)(e & OffsetMask);
        if (host != 0 && (host & (_cs - 1)) != 0)
            throw new Qcow2FormatException($"Data cluster offset 0x{host:x} is not cluster-aligned.");
        if (_eb == 8)
        {
            if ((e & ZeroFlag) != 0 && _h.Version >= 3)
                return (MapKind.Zero, host != 0 ? host + inCl : 0, _cs - inCl, e);
            // with an external data file, offset 0 with COPIED set is a real cluster at offset 0
            if (host != 0 || (_dataFile is not null && (e & Copied) != 0))
                return (MapKind.Data, host + inCl, _cs - inCl, e);
            return (MapKind.Unallocated, 0, _cs - inCl, e);
        }
        ulong bitmap = L2Bitmap(table, idx);
        int sub = _cs / 32;
        int sc = inCl / sub;
        long unit = sub - (inCl % sub);
        if (((bitmap >> sc) & 1) != 0)
        {
            if (host == 0 && (_dataFile is null || (e & Copied) == 0))
                throw new Qcow2FormatException("An extended L2 entry marks subclusters allocated without a host cluster.");
            return (MapKind.Data, host + inCl, unit, e);
        }
        if (((bitmap >> (32 + sc)) & 1) != 0)
            return (MapKind.Zero, host != 0 ? host + inCl : 0, unit, e);
        return (MapKind.Unallocated, 0, unit, e);
    }

    /// <summary>The allocation map of the whole virtual disk, like <c>qemu-img map --output=json</c>.</summary>
    /// <returns>Extents in guest order, adjacent runs of the same kind merged.</returns>
    public IReadOnlyList<Qcow2Extent> GetAllocationMap() => GetAllocationMap(0, Size);

    /// <summary>The allocation map of a guest range.</summary>
    /// <param name="offset">Guest start offset.</param>
    /// <param name="length">Length in bytes.</param>
    /// <returns>Extents in guest order, adjacent runs of the same kind merged.</returns>
    public IReadOnlyList<Qcow2Extent> GetAllocationMap(long offset, long length)
    {
        var list = new List<Qcow2Extent>();
        lock (_lock)
        {
            ThrowIfDisposed();
            CheckRange(offset, length);
            MapInto(offset, length, 0, list);
        }
        return Merge(list);
    }

    internal void MapInto(long offset, long length, int depth, List<Qcow2Extent> into)
    {
        lock (_lock)
        {
            long end = offset + length;
            while (offset < end)
            {
                var m = Lookup(_l1, offset, end - offset);
                switch (m.Kind)
                {
                    case MapKind.Data:
                        into.Add(new Qcow2Extent(offset, m.Length, Qcow2ExtentKind.Data, depth, m.Host));
                        break;
                    case MapKind.Zero:
                        // preallocated zero clusters keep their host offset, which qemu-img map shows
                        into.Add(new Qcow2Extent(offset, m.Length, Qcow2ExtentKind.Zero, depth, m.Host != 0 ? m.Host : null));
                        break;
                    case MapKind.Compressed:
                        into.Add(new Qcow2Extent(offset, m.Length, Qcow2ExtentKind.Compressed, depth, null));
                        break;
                    default:
                        if (_backing is null)
                            into.Add(new Qcow2Extent(offset, m.Length, Qcow2ExtentKind.Unallocated, depth, null));
                        else
                            _backing.Map(offset, m.Length, depth + 1, into);
                        break;
                }
                offset += m.Length;
            }
        }
    }

    private static List<Qcow2Extent> Merge(List<Qcow2Extent> list)
    {
        var r = new List<Qcow2Extent>(list.Count);
        foreach (var e in list)
        {
            if (r.Count > 0)
            {
                var p = r[^1];
                bool contiguous = p.Offset is null ? e.Offset is null : e.Offset == p.Offset + p.Length;
                if (p.Kind == e.Kind && p.Depth == e.Depth && contiguous && p.Start + p.Length == e.Start)
                {
                    r[^1] = p with { Length = p.Length + e.Length };
                    continue;
                }
            }
            r.Add(e);
        }
        return r;
    }
}
