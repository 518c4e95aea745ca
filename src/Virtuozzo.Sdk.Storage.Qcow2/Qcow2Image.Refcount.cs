using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    private ulong MaxRefcount => _h.RefcountBits == 64 ? ulong.MaxValue : (1UL << _h.RefcountBits) - 1;

    /// <summary>Flush barrier: what was written before reaches the disk before what is written after.</summary>
    private void Barrier()
    {
        if (_options.CacheMode != Qcow2CacheMode.Unsafe)
            _file.Flush();
    }

    private void LoadReftable()
    {
        _reftable ??= ReadTable(_h.RefcountTableOffset, (long)_h.RefcountTableClusters * _cs / 8, "refcount table");
        foreach (var e in _reftable)
            if ((e & 0x1ff) != 0 && (e & ~0x1ffUL) != 0 || ((e & ~0x1ffUL) & (ulong)(_cs - 1)) != 0)
                throw new Qcow2FormatException($"Refcount table entry 0x{e:x} is not cluster-aligned.");
            else if ((e & ~0x1ffUL) > (ulong)Header.MaxVirtualSize)
                throw new Qcow2FormatException($"Refcount table entry 0x{e:x} points far past the end of the image file (run check).");
    }

    private byte[]? GetRefblock(long rtIdx)
    {
        var rt = _reftable!;
        if (rtIdx >= rt.Length)
            return null;
        long off = (long)(rt[rtIdx] & ~0x1ffUL);
        if (off == 0)
            return null;
        if (_rbCache.TryGet(off, out var b))
            return b;
        if (off < 0 || off + _cs > _file.Length)
            throw new Qcow2FormatException($"Refcount block at 0x{(ulong)off:x} lies outside the image file.");
        b = new byte[_cs];
        _file.Read(off, b);
        _rbCache.Put(off, b);
        return b;
    }

    private ulong ReadRefEntry(byte[] block, long i)
    {
        int bits = _h.RefcountBits;
        if (bits >= 8)
        {
            int w = bits / 8;
            var s = block.AsSpan((int)(i * w), w);
            return w switch
            {
                1 => s[0],
                2 => BinaryPrimitives.ReadUInt16BigEndian(s),
                4 => BinaryPrimitives.ReadUInt32BigEndian(s),
                _ => BinaryPrimitives.ReadUInt64BigEndian(s),
            };
        }
        long bit = i * bits;
        return (ulong)((block[bit >> 3] >> (int)(bit & 7)) & ((1 << bits) - 1));
    }

    /// <summary>Sets an entry in a refblock buffer; returns the byte range that changed.</summary>
    private (int Start, int Length) WriteRefEntry(byte[] block, long i, ulong v)
    {
        int bits = _h.RefcountBits;
        if (bits >= 8)
        {
            int w = bits / 8;
            var s = block.AsSpan((int)(i * w), w);
            switch (w)
            {
                case 1: s[0] = (byte)v; break;
                case 2: BinaryPrimitives.WriteUInt16BigEndian(s, (ushort)v); break;
                case 4: BinaryPrimitives.WriteUInt32BigEndian(s, (uint)v); break;
                default: BinaryPrimitives.WriteUInt64BigEndian(s, v); break;
            }
            return ((int)(i * w), w);
        }
        long bit = i * bits;
        int mask = ((1 << bits) - 1) << (int)(bit & 7);
        block[bit >> 3] = (byte)((block[bit >> 3] & ~mask) | (((int)v << (int)(bit & 7)) & mask));
        return ((int)(bit >> 3), 1);
    }

    internal ulong GetRefcount(long cluster)
    {
        var b = GetRefblock(cluster / _rbEntries);
        return b is null ? 0 : ReadRefEntry(b, cluster % _rbEntries);
    }

    private void SetRefcount(long cluster, ulong value)
    {
        if (value > MaxRefcount)
            throw new Qcow2Exception($"Refcount overflow on cluster {cluster} (refcount_bits={_h.RefcountBits}).");
        long rtIdx = cluster / _rbEntries;
        if (rtIdx >= _reftable!.Length)
            GrowReftable(rtIdx);
        if (GetRefblock(rtIdx) is null)
            CreateRefblock(rtIdx, cluster);
        var block = GetRefblock(rtIdx)!;
        var (start, len) = WriteRefEntry(block, cluster % _rbEntries, value);
        _file.Write((long)(_reftable[rtIdx] & ~0x1ffUL) + start, block.AsSpan(start, len));
        if (value == 0)
        {
            // a free cluster is no table any more (the overlap check trusts the caches)
            if (!_dirtyL2.Contains(cluster << _cb))
                _l2Cache.Remove(cluster << _cb);
            _bmCache?.Remove(cluster << _cb);
            if (cluster < _freeHint)
                _freeHint = cluster;
            if (_compCursor >= 0 && (_compCursor >> _cb) == cluster)
                _compCursor = -1;
        }
    }

    private void CreateRefblock(long rtIdx, long target)
    {
        long start = rtIdx * _rbEntries;
        long c = start;
        while (c == target || (c >= _resStart && c < _resEnd))
            c++;
        var block = new byte[_cs];
        if (c < start + _rbEntries)
        {
            // self-describing: the block sits in the range it counts
            WriteRefEntry(block, c - start, 1);
        }
        else
        {
            // the whole range is being allocated right now: put the block after everything in use and
            // count it in the refblock of its own range first, so it is never referenced uncounted
            c = Math.Max(Math.Max(_allocHigh, _resEnd), (_file.Length + _cs - 1) >> _cb);
            _allocHigh = c + 1;
            SetRefcount(c, 1);
        }
        _file.Write(c << _cb, block);
        Barrier();
        _reftable![rtIdx] = (ulong)(c << _cb);
        Span<byte> e = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(e, _reftable[rtIdx]);
        _file.Write(_h.RefcountTableOffset + rtIdx * 8, e);
        _rbCache.Put(c << _cb, block);
        _allocHigh = Math.Max(_allocHigh, c + 1);
    }

    private void GrowReftable(long neededIdx)
    {
        var old = _reftable!;
        long s = Math.Max((_file.Length + _cs - 1) >> _cb, _allocHigh);
        if (_resEnd > s)
            s = _resEnd;
        long k = 0;
        var newIdx = new List<long>();
        long entries = 0;
        for (int iter = 0; iter < 64; iter++)
        {
            long total = Math.Max(1, k + newIdx.Count);
            long lastIdx = (s + total - 1) / _rbEntries;
            entries = Math.Max(Math.Max(neededIdx + 1, old.Length + old.Length / 2 + 1), lastIdx + 1);
            long k2 = (entries * 8 + _cs - 1) / _cs;
            entries = k2 * _cs / 8;
            var idx2 = new List<long>();
            long span = k2 + newIdx.Count;
            for (long r = s / _rbEntries; r <= (s + span - 1) / _rbEntries; r++)
                if (r >= old.Length || old[r] == 0)
                    idx2.Add(r);
            // the refblocks themselves may extend into further ranges
            while (true)
            {
                long end = s + k2 + idx2.Count;
                long lr = (end - 1) / _rbEntries;
                if (lr >= old.Length || old[lr] == 0)
                {
                    if (!idx2.Contains(lr))
                    {
                        idx2.Add(lr);
                        continue;
                    }
                }
                break;
            }
            if (k2 == k && idx2.Count == newIdx.Count)
                break;
            k = k2;
            newIdx = idx2;
        }
        if (k * _cs > Internal.Header.MaxReftableBytes)
            throw new Qcow2Exception("The refcount table would exceed 8 MiB.");
        long m = newIdx.Count;
        var blocks = new Dictionary<long, byte[]>();
        for (int i = 0; i < m; i++)
            blocks[newIdx[i]] = new byte[_cs];
        var rt = new ulong[entries];
        old.CopyTo(rt, 0);
        for (int i = 0; i < m; i++)
            rt[newIdx[i]] = (ulong)((s + k + i) << _cb);
        for (long x = s; x < s + k + m; x++)
        {
            long r = x / _rbEntries;
            if (blocks.TryGetValue(r, out var blk))
                WriteRefEntry(blk, x % _rbEntries, 1);
            else
            {
                var existing = GetRefblock(r)!;
                var (st, ln) = WriteRefEntry(existing, x % _rbEntries, 1);
                _file.Write((long)(old[r] & ~0x1ffUL) + st, existing.AsSpan(st, ln));
            }
        }
        for (int i = 0; i < m; i++)
            _file.Write((s + k + i) << _cb, blocks[newIdx[i]]);
        var raw = new byte[k * _cs];
        for (long i = 0; i < rt.Length; i++)
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan((int)(i * 8)), rt[i]);
        _file.Write(s << _cb, raw);
        Barrier();
        long oldOffset = _h.RefcountTableOffset;
        long oldClusters = _h.RefcountTableClusters;
        _h.RefcountTableOffset = s << _cb;
        _h.RefcountTableClusters = (uint)k;
        Span<byte> hdr = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(hdr, (ulong)_h.RefcountTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(hdr[8..], (uint)k);
        _file.Write(48, hdr);
        Barrier();
        _reftable = rt;
        foreach (var (r, blk) in blocks)
            _rbCache.Put((long)rt[r], blk);
        _allocHigh = Math.Max(_allocHigh, s + k + m);
        for (long i = 0; i < oldClusters; i++)
        {
            long c = (oldOffset >> _cb) + i;
            SetRefcount(c, GetRefcount(c) - 1);
        }
    }

    /// <summary>Allocates <paramref name="n"/> contiguous clusters with refcount 1; returns the host offset.</summary>
    private long AllocateClusters(long n)
    {
        long c = _freeHint;
        bool skippedFree = false;
        while (true)
        {
            long k = 0;
            while (k < n && GetRefcount(c + k) == 0)
                k++;
            if (k == n)
                break;
            skippedFree |= k > 0;
            c += k + 1;
        }
        // every cluster from the hint up to c is in use: the next search may start after this run
        if (!skippedFree)
            _freeHint = c + n;
        _resStart = c;
        _resEnd = c + n;
        _allocHigh = Math.Max(_allocHigh, c + n);
        try
        {
            // one refblock write per refblock the run touches
            long i = 0;
            while (i < n)
            {
                long cl = c + i;
                long rt = cl / _rbEntries;
                SetRefcount(cl, 1);
                long end = Math.Min(n, (rt + 1) * _rbEntries - c);
                if (end - i > 1)
                {
                    var block = GetRefblock(rt)!;
                    int first = -1, last = -1;
                    for (long j = i + 1; j < end; j++)
                    {
                        var (st, len) = WriteRefEntry(block, (c + j) % _rbEntries, 1);
                        if (first < 0)
                            first = st;
                        last = st + len;
                    }
                    _file.Write((long)(_reftable![rt] & ~0x1ffUL) + first, block.AsSpan(first, last - first));
                }
                i = end;
            }
        }
        finally
        {
            _resStart = _resEnd = -1;
        }
        return c << _cb;
    }

    private void AddRef(long cluster, long delta)
    {
        ulong v = GetRefcount(cluster);
        if (delta < 0 && v < (ulong)-delta)
            throw new Qcow2FormatException($"Refcount of cluster {cluster} would drop below zero: the image is corrupt (run check -r all).");
        SetRefcount(cluster, (ulong)((long)v + delta));
    }

    /// <summary>Drops the references an L2 entry held (after the entry itself is gone from disk).</summary>
    private void FreeEntry(ulong entry)
    {
        _compCacheKey = -1;
        if ((entry & CompressedFlag) != 0)
        {
            var (coff, csize) = CompressedRange(entry);
            for (long c = coff >> _cb; c <= (coff + csize - 1) >> _cb; c++)
                AddRef(c, -1);
            return;
        }
        long host = (long)(entry & OffsetMask);
        if (host != 0)
            AddRef(host >> _cb, -1);
    }
}
