using System.Buffers.Binary;
using System.Text;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

/// <summary>A run of dirty guest bytes in a persistent bitmap.</summary>
/// <param name="Start">Guest offset in bytes.</param>
/// <param name="Length">Length in bytes.</param>
public readonly record struct Qcow2DirtyExtent(long Start, long Length);

public sealed partial class Qcow2Image
{
    private readonly Dictionary<string, ulong[]> _bitmapTables = [];
    private BlockCache? _bmCache;

    private bool BitmapUsable(BitmapEntry b) => b.Type == 1 && (b.Flags & BitmapEntry.FlagInUse) == 0;

    private long BitmapTableSize(int granularityBits)
    {
        long bits = (_h.Size + (1L << granularityBits) - 1) >> granularityBits;
        return (bits + (long)_cs * 8 - 1) / ((long)_cs * 8);
    }

    private ulong[] BitmapTable(BitmapEntry b)
    {
        if (!_bitmapTables.TryGetValue(b.Name, out var t))
        {
            t = ReadTable(b.TableOffset, b.TableSize, "bitmap table");
            var seen = new HashSet<ulong>();
            foreach (var e in t)
                if ((e & OffsetMask) != 0 && !seen.Add(e & OffsetMask))
                    throw new Qcow2FormatException($"Bitmap '{b.Name}' uses data cluster 0x{e & OffsetMask:x} twice.");
            _bitmapTables[b.Name] = t;
        }
        return t;
    }

    private BitmapEntry FindBitmap(string name)
        => _bitmaps.FirstOrDefault(b => b.Name == name) ?? throw new ArgumentException($"No bitmap '{name}' in the image.", nameof(name));

    /// <summary>Adds a persistent dirty bitmap; while enabled, every write through this library sets its bits.</summary>
    /// <param name="name">A unique name.</param>
    /// <param name="granularity">Bytes per bit, a power of two from 512 B to 2 GiB (default: 64 KiB).</param>
    /// <param name="enabled">Track writes from now on (the <c>auto</c> flag).</param>
    /// <remarks>Like <c>qemu-img bitmap --add [-g GRANULARITY] [--disable] FILE NAME</c>.</remarks>
    public void AddBitmap(string name, long granularity = 65536, bool enabled = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (granularity < 512 || granularity > (1L << 31) || (granularity & (granularity - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(granularity), "Granularity must be a power of two from 512 B to 2 GiB.");
        if (Encoding.UTF8.GetByteCount(name) > 1023)
            throw new ArgumentException("The bitmap name is too long.", nameof(name));
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            if (_h.Version < 3)
                throw new Qcow2NotSupportedException("Persistent bitmaps need compat=1.1.");
            if (_bitmaps.Any(b => b.Name == name))
                throw new ArgumentException($"A bitmap named '{name}' already exists.", nameof(name));
            int gbits = System.Numerics.BitOperations.Log2((ulong)granularity);
            long entries = BitmapTableSize(gbits);
            long off = AllocateClusters(Math.Max(1, (entries * 8 + _cs - 1) / _cs));
            _file.Write(off, new byte[Math.Max(1, (entries * 8 + _cs - 1) / _cs) * _cs]);
            var entry = new BitmapEntry { Name = name, TableOffset = off, TableSize = (uint)entries, Type = 1, GranularityBits = (byte)gbits, Flags = enabled ? BitmapEntry.FlagAuto : 0 };
            var list = new List<BitmapEntry>(_bitmaps) { entry };
            WriteBitmapDirectory(list);
        }
    }

    /// <summary>Removes a bitmap and frees its clusters.</summary>
    /// <param name="name">The bitmap.</param>
    /// <remarks>Like <c>qemu-img bitmap --remove FILE NAME</c>.</remarks>
    public void RemoveBitmap(string name)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            var b = FindBitmap(name);
            var table = BitmapTable(b);
            var list = new List<BitmapEntry>(_bitmaps);
            list.Remove(b);
            WriteBitmapDirectory(list);
            FreeBitmapClusters(b, table, freeTable: true);
            _bitmapTables.Remove(name);
        }
    }

    /// <summary>Clears every bit of a bitmap.</summary>
    /// <param name="name">The bitmap.</param>
    /// <remarks>Like <c>qemu-img bitmap --clear FILE NAME</c>.</remarks>
    public void ClearBitmap(string name)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            var b = FindBitmap(name);
            var table = BitmapTable(b);
            var old = (ulong[])table.Clone();
            Array.Clear(table);
            _file.Write(b.TableOffset, SerializeTable(table, (long)table.Length * 8));
            Barrier();
            FreeBitmapClusters(b, old, freeTable: false);
        }
    }

    /// <summary>Starts or stops tracking writes in a bitmap.</summary>
    /// <param name="name">The bitmap.</param>
    /// <param name="enabled">True to track writes.</param>
    /// <remarks>Like <c>qemu-img bitmap --enable|--disable FILE NAME</c>.</remarks>
    public void SetBitmapEnabled(string name, bool enabled)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            var b = FindBitmap(name);
            b.Flags = enabled ? b.Flags | BitmapEntry.FlagAuto : b.Flags & ~BitmapEntry.FlagAuto;
            WriteBitmapDirectory([.. _bitmaps]);
        }
    }

    /// <summary>Sets in <paramref name="target"/> every bit set in <paramref name="source"/>.</summary>
    /// <param name="source">The bitmap to read.</param>
    /// <param name="target">The bitmap to update.</param>
    /// <remarks>Like <c>qemu-img bitmap --merge SOURCE FILE TARGET</c>.</remarks>
    public void MergeBitmap(string source, string target)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            var s = FindBitmap(source);
            var t = FindBitmap(target);
            foreach (var e in DirtyExtents(s))
                SetBits(t, e.Start, e.Length);
            Barrier();
        }
    }

    /// <summary>Sets in <paramref name="target"/> every bit set in bitmap <paramref name="source"/> of another image.</summary>
    /// <param name="sourceImage">The image that holds the source bitmap.</param>
    /// <param name="source">The bitmap to read.</param>
    /// <param name="target">The bitmap of this image to update.</param>
    /// <remarks>Like <c>qemu-img bitmap --merge SOURCE -b SOURCE_FILE FILE TARGET</c>.</remarks>
    public void MergeBitmap(Qcow2Image sourceImage, string source, string target)
    {
        ArgumentNullException.ThrowIfNull(sourceImage);
        if (ReferenceEquals(sourceImage, this))
        {
            MergeBitmap(source, target);
            return;
        }
        var extents = sourceImage.GetDirtyExtents(source);
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            var t = FindBitmap(target);
            foreach (var e in extents)
            {
                long len = Math.Min(e.Length, _h.Size - e.Start);
                if (len > 0)
                    SetBits(t, e.Start, len);
            }
            Barrier();
        }
    }

    /// <summary>The dirty ranges of a bitmap, merged and clipped to the virtual size.</summary>
    /// <param name="name">The bitmap.</param>
    /// <returns>Dirty extents in guest order.</returns>
    public IReadOnlyList<Qcow2DirtyExtent> GetDirtyExtents(string name)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            return DirtyExtents(FindBitmap(name));
        }
    }

    private List<Qcow2DirtyExtent> DirtyExtents(BitmapEntry b)
    {
        var result = new List<Qcow2DirtyExtent>();
        var table = BitmapTable(b);
        long g = 1L << b.GranularityBits;
        long bpc = (long)_cs * 8;
        long totalBits = (_h.Size + g - 1) / g;
        void Add(long bit, long count)
        {
            long start = bit * g;
            long len = Math.Min(count * g, _h.Size - start);
            if (len <= 0)
                return;
            if (result.Count > 0 && result[^1].Start + result[^1].Length == start)
                result[^1] = result[^1] with { Length = result[^1].Length + len };
            else
                result.Add(new Qcow2DirtyExtent(start, len));
        }
        for (long ci = 0; ci < table.Length; ci++)
        {
            ulong te = table[ci];
            long host = (long)(te & OffsetMask);
            long firstBit = ci * bpc;
            long bits = Math.Min(bpc, totalBits - firstBit);
            if (bits <= 0)
                break;
            if (host == 0)
            {
                if ((te & 1) != 0)
                    Add(firstBit, bits);
                continue;
            }
            var data = BitmapCluster(host);
            for (long i = 0; i < bits; i++)
            {
                if (data[i >> 3] == 0 && (i & 7) == 0)
                {
                    i += 7;
                    continue;
                }
                if ((data[i >> 3] & (1 << (int)(i & 7))) != 0)
                    Add(firstBit + i, 1);
            }
        }
        return result;
    }

    private byte[] BitmapCluster(long host)
    {
        _bmCache ??= new BlockCache(64);
        if (_bmCache.TryGet(host, out var d))
            return d;
        if (host + _cs > _file.Length)
            throw new Qcow2FormatException($"Bitmap data cluster at 0x{host:x} lies outside the image file.");
        d = new byte[_cs];
        _file.Read(host, d);
        _bmCache.Put(host, d);
        return d;
    }

    /// <summary>Sets the bits of every enabled bitmap for a guest range, durably, before the data is written.</summary>
    private void MarkDirty(long offset, long length)
    {
        if (_bitmaps.Count == 0 || length <= 0)
            return;
        bool changed = false;
        foreach (var b in _bitmaps)
            if ((b.Flags & BitmapEntry.FlagAuto) != 0 && BitmapUsable(b))
                changed |= SetBits(b, offset, length);
        if (changed)
            Barrier();
    }

    private bool SetBits(BitmapEntry b, long offset, long length)
    {
        var table = BitmapTable(b);
        long g = 1L << b.GranularityBits;
        long bpc = (long)_cs * 8;
        long first = offset / g, last = (offset + length - 1) / g;
        bool changed = false;
        for (long ci = first / bpc; ci <= last / bpc && ci < table.Length; ci++)
        {
            ulong te = table[ci];
            long host = (long)(te & OffsetMask);
            if (host == 0 && (te & 1) != 0)
                continue;
            long from = Math.Max(first, ci * bpc) - ci * bpc;
            long to = Math.Min(last, (ci + 1) * bpc - 1) - ci * bpc;
            byte[] data = host == 0 ? new byte[_cs] : (byte[])BitmapCluster(host).Clone();
            bool any = false;
            for (long i = from; i <= to; i++)
            {
                byte mask = (byte)(1 << (int)(i & 7));
                if ((data[i >> 3] & mask) == 0)
                {
                    data[i >> 3] |= mask;
                    any = true;
                }
            }
            if (!any)
                continue;
            changed = true;
            if (host == 0)
            {
                host = AllocateClusters(1);
                _file.Write(host, data);
                Barrier();
                table[ci] = (ulong)host;
                var e = new byte[8];
                BinaryPrimitives.WriteUInt64BigEndian(e, table[ci]);
                _file.Write(b.TableOffset + ci * 8, e);
            }
            else
                _file.Write(host, data);
            (_bmCache ??= new BlockCache(64)).Put(host, data);
        }
        return changed;
    }

    private void FreeBitmapClusters(BitmapEntry b, ulong[] table, bool freeTable)
    {
        foreach (var te in table)
            if ((te & OffsetMask) != 0)
            {
                _bmCache?.Remove((long)(te & OffsetMask));
                AddRef((long)(te & OffsetMask) >> _cb, -1);
            }
        if (freeTable)
        {
            long clusters = Math.Max(1, ((long)b.TableSize * 8 + _cs - 1) / _cs);
            for (long i = 0; i < clusters; i++)
                AddRef((b.TableOffset >> _cb) + i, -1);
        }
    }

    /// <summary>Writes a new bitmap directory, points the header extension at it, then frees the old one.</summary>
    private void WriteBitmapDirectory(List<BitmapEntry> list)
    {
        FlushMetadata();
        long size = 0;
        foreach (var b in list)
            size += (24 + b.Extra.Length + Encoding.UTF8.GetByteCount(b.Name) + 7) & ~7;
        long off = 0;
        if (size > 0)
        {
            var raw = new byte[(size + _cs - 1) / _cs * _cs];
            int p = 0;
            foreach (var b in list)
            {
                var name = Encoding.UTF8.GetBytes(b.Name);
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(p), (ulong)b.TableOffset);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 8), b.TableSize);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 12), b.Flags);
                raw[p + 16] = b.Type;
                raw[p + 17] = b.GranularityBits;
                BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(p + 18), (ushort)name.Length);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 20), (uint)b.Extra.Length);
                b.Extra.CopyTo(raw, p + 24);
                name.CopyTo(raw, p + 24 + b.Extra.Length);
                p += (24 + b.Extra.Length + name.Length + 7) & ~7;
            }
            off = AllocateClusters(raw.Length / _cs);
            _file.Write(off, raw);
        }
        long oldOff = _bitmapDirOffset, oldSize = _bitmapDirSize;
        _h.Extensions.RemoveAll(e => e.Type == Header.ExtBitmaps);
        if (list.Count > 0)
        {
            var ext = new byte[24];
            BinaryPrimitives.WriteUInt32BigEndian(ext, (uint)list.Count);
            BinaryPrimitives.WriteUInt64BigEndian(ext.AsSpan(8), (ulong)size);
            BinaryPrimitives.WriteUInt64BigEndian(ext.AsSpan(16), (ulong)off);
            _h.Extensions.Add((Header.ExtBitmaps, ext));
            _h.Autoclear |= Header.AutoclearBitmaps;
        }
        else
            _h.Autoclear &= ~Header.AutoclearBitmaps;
        RewriteHeader();
        _bitmapDirOffset = off;
        _bitmapDirSize = size;
        if (!ReferenceEquals(list, _bitmaps))
        {
            _bitmaps.Clear();
            _bitmaps.AddRange(list);
        }
        if (oldOff != 0 && oldSize > 0)
            for (long c = oldOff >> _cb; c <= (oldOff + oldSize - 1) >> _cb; c++)
                AddRef(c, -1);
    }
}
