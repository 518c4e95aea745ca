using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    private void PrepareForWriting()
    {
        RefuseOverlappingTables();
        LoadReftable();
        bool headerChanged = false;
        if ((_h.Incompatible & Header.IncompatDirty) != 0)
        {
            RebuildRefcounts();
            FixCopiedFlags();
            _file.Flush();
            _h.Incompatible &= ~Header.IncompatDirty;
            WriteHeaderU64(72, _h.Incompatible);
            headerChanged = true;
        }
        // Bits this library does not know are cleared (the spec's rule for autoclear features); the
        // bitmaps bit stays: writes here keep enabled bitmaps in step, bit before data.
        ulong autoclear = _h.Autoclear & Header.AutoclearKnown;
        if (autoclear != _h.Autoclear)
        {
            _h.Autoclear = autoclear;
            if (_h.Version >= 3)
                WriteHeaderU64(88, autoclear);
            headerChanged = true;
        }
        if (headerChanged)
            Barrier();
    }

    private void WriteHeaderU64(int offset, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        _file.Write(offset, b);
    }

    /// <summary>Writes guest data, allocating clusters (and copying from the backing file) as needed.</summary>
    /// <param name="offset">Guest byte offset.</param>
    /// <param name="data">The bytes to write.</param>
    /// <remarks>Like <c>qemu-io -c 'write OFF LEN'</c>.</remarks>
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            CheckRange(offset, data.Length);
            WriteCore(offset, data);
        }
    }

    /// <summary>Writes guest data (see <see cref="Write"/>; completes synchronously).</summary>
    /// <param name="offset">Guest byte offset.</param>
    /// <param name="data">The bytes to write.</param>
    /// <param name="cancellationToken">Cancels before the write starts.</param>
    /// <returns>A completed task.</returns>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Write(offset, data.Span);
        return ValueTask.CompletedTask;
    }

    /// <summary>Makes everything written so far durable.</summary>
    public void Flush()
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            if (!_options.ReadOnly)
            {
                FlushMetadata();
                _file.Flush();
            }
        }
    }

    /// <summary>Makes everything written so far durable (completes synchronously).</summary>
    /// <param name="cancellationToken">Cancels before the flush starts.</param>
    /// <returns>A completed task.</returns>
    public ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Flush();
        return ValueTask.CompletedTask;
    }

    private readonly record struct PendingEntry(long L2Offset, int Index, ulong Entry, ulong Bitmap);

    private void WriteCore(long offset, ReadOnlySpan<byte> data)
    {
        MarkDirty(offset, data.Length);
        var pending = new List<PendingEntry>();
        var frees = new List<ulong>();
        bool allocated = false;
        byte[]? scratch = null;
        while (data.Length > 0)
        {
            long vcl = offset >> _cb;
            int inCl = (int)(offset & (_cs - 1));
            int n = Math.Min(data.Length, _cs - inCl);
            var chunk = data[..n];
            long l2Off = GetWritableL2(vcl / _l2Entries);
            var table = GetL2(l2Off);
            int idx = (int)(vcl % _l2Entries);
            ulong e = L2Entry(table, idx);
            ulong bm = L2Bitmap(table, idx);
            long host = (long)(e & OffsetMask);
            bool compressed = (e & CompressedFlag) != 0;
            bool owned = !compressed && host != 0 && (e & Copied) != 0;
            bool fullyAllocated = _eb == 8 ? (e & ZeroFlag) == 0 : (uint)bm == 0xffff_ffffu;
            if (owned && host >= _file.Length)
                throw new Qcow2FormatException($"Data cluster at host offset 0x{host:x} lies past the end of the image file: the image is corrupt (run check -r all).");
            if (owned)
                CheckNotMetadata(host);
            if (owned && fullyAllocated)
            {
                _file.Write(host + inCl, chunk);
            }
            else if (!owned && n == _cs)
            {
                // a run of whole clusters that all need fresh clusters: one allocation, one data write
                int k = 1;
                while (k < 512 && data.Length >= (k + 1) * _cs && idx + k < _l2Entries)
                {
                    ulong ek = L2Entry(table, idx + k);
                    if ((ek & CompressedFlag) == 0 && (ek & OffsetMask) != 0 && (ek & Copied) != 0)
                        break;
                    k++;
                }
                long target = AllocateClusters(k);
                allocated = true;
                _file.Write(target, data[..(k * _cs)]);
                for (int j = 0; j < k; j++)
                {
                    ulong ej = L2Entry(table, idx + j);
                    if ((ej & CompressedFlag) != 0 || (ej & OffsetMask) != 0)
                        frees.Add(ej);
                    pending.Add(new PendingEntry(l2Off, idx + j, (ulong)(target + (long)j * _cs) | Copied, _eb == 16 ? 0xffff_ffffUL : 0));
                }
                offset += (long)k * _cs;
                data = data[(k * _cs)..];
                continue;
            }
            else if (_eb == 16 && !compressed)
            {
                allocated |= WriteSubclusters(vcl, inCl, chunk, l2Off, idx, e, bm, pending, frees);
            }
            else
            {
                ReadOnlySpan<byte> full;
                if (n == _cs)
                    full = chunk;
                else
                {
                    scratch ??= new byte[_cs];
                    ReadCore(_l1, vcl << _cb, ClusterView(vcl, scratch));
                    chunk.CopyTo(scratch.AsSpan(inCl));
                    full = scratch;
                }
                long target;
                if (owned)
                    target = host;
                else
                {
                    target = AllocateClusters(1);
                    allocated = true;
                    if (host != 0 || compressed)
                        frees.Add(e);
                }
                _file.Write(target, full);
                pending.Add(new PendingEntry(l2Off, idx, (ulong)target | Copied, _eb == 16 ? 0xffff_ffffUL : 0));
            }
            offset += n;
            data = data[n..];
        }
        Commit(pending, frees, allocated);
    }

    /// <summary>
    /// Extended L2: writes only the subclusters a request touches (partial ones read-modify-write from the
    /// current view), so a small write into a cluster neither copies the rest from the backing file nor
    /// allocates it. Returns true when a new cluster was allocated.
    /// </summary>
    private bool WriteSubclusters(long vcl, int inCl, ReadOnlySpan<byte> chunk, long l2Off, int idx, ulong e, ulong bm, List<PendingEntry> pending, List<ulong> frees)
    {
        int sub = _cs / 32;
        int s0 = inCl / sub, s1 = (inCl + chunk.Length - 1) / sub;
        uint mask = (uint)(((1UL << (s1 - s0 + 1)) - 1) << s0);
        long clusterStart = vcl << _cb;
        int from = s0 * sub;
        int len = (int)Math.Min((s1 + 1) * sub, _h.Size - clusterStart) - from;
        var buf = new byte[(s1 - s0 + 1) * sub];
        ReadCore(_l1, clusterStart + from, buf.AsSpan(0, len));
        chunk.CopyTo(buf.AsSpan(inCl - from));
        long host = (long)(e & OffsetMask);
        bool owned = host != 0 && (e & Copied) != 0;
        if (owned)
            CheckNotMetadata(host);
        uint alloc = (uint)bm | mask;
        uint zero = (uint)(bm >> 32) & ~mask;
        ulong bitmap = ((ulong)zero << 32) | alloc;
        if (owned)
        {
            _file.Write(host + from, buf);
            pending.Add(new PendingEntry(l2Off, idx, (ulong)host | Copied, bitmap));
            return false;
        }
        long target = AllocateClusters(1);
        if (host != 0)
        {
            // shared cluster: carry its allocated subclusters over
            var whole = new byte[_cs];
            _file.Read(host, whole);
            buf.CopyTo(whole, from);
            _file.Write(target, whole);
            frees.Add(e);
        }
        else
            _file.Write(target + from, buf);
        pending.Add(new PendingEntry(l2Off, idx, (ulong)target | Copied, bitmap));
        return true;
    }

    /// <summary>
    /// Refuses to write to an image whose fixed tables (header, L1 table, refcount table, snapshot table,
    /// bitmap directory) overlap: a write to one would overwrite another. Check cannot see it (each table is
    /// counted, so the refcounts agree); QEMU refuses such writes with its overlap checks.
    /// </summary>
    private void RefuseOverlappingTables()
    {
        var tables = new List<(string Name, long Start, long Length)>
        {
            ("header", 0, _cs),
            ("L1 table", _h.L1TableOffset, (long)_h.L1Size * 8),
            ("refcount table", _h.RefcountTableOffset, (long)_h.RefcountTableClusters * _cs),
            ("snapshot table", _h.SnapshotsOffset, _snapshots.Sum(s => (long)SnapshotEntry.SizeOf(s))),
            ("bitmap directory", _bitmapDirOffset, _bitmapDirSize),
        };
        for (int i = 0; i < tables.Count; i++)
            for (int j = i + 1; j < tables.Count; j++)
            {
                var (a, b) = (tables[i], tables[j]);
                if (a.Length > 0 && b.Length > 0 && a.Start < b.Start + b.Length && b.Start < a.Start + a.Length)
                    throw new Qcow2FormatException($"The {a.Name} (0x{a.Start:x}) and the {b.Name} (0x{b.Start:x}) overlap: the image is corrupt and can only be opened read-only (qemu-img convert or Qcow2Converter makes a clean copy).");
            }
    }

    /// <summary>
    /// Refuses an in-place data write into a cluster that holds metadata (a corrupt or hostile L2 entry),
    /// like QEMU's overlap checks: the header, the L1 table, the refcount table, the snapshot table, and
    /// every cached L2 table and refcount block.
    /// </summary>
    private void CheckNotMetadata(long host)
    {
        static bool In(long x, long start, long length) => length > 0 && x >= start && x < start + length;
        long snapBytes = _snapshots.Count == 0 ? 0 : _snapshots.Sum(s => (long)SnapshotEntry.SizeOf(s));
        if (host < _cs
            || In(host, _h.L1TableOffset, (long)_l1.Length * 8)
            || In(host, _h.RefcountTableOffset, (long)_h.RefcountTableClusters * _cs)
            || In(host, _h.SnapshotsOffset, snapBytes)
            || _l2Cache.Contains(host) || _rbCache.Contains(host))
            throw new Qcow2FormatException($"An L2 entry points guest data at metadata (host offset 0x{host:x}): the image is corrupt (run check -r all); nothing was written.");
    }

    /// <summary>A cluster-sized buffer for a guest cluster; the last cluster may be shorter than a cluster past the virtual end.</summary>
    private Span<byte> ClusterView(long vcl, byte[] scratch)
    {
        long start = vcl << _cb;
        int len = (int)Math.Min(_cs, _h.Size - start);
        if (len < _cs)
            scratch.AsSpan(len).Clear();
        return scratch.AsSpan(0, len);
    }

    private readonly HashSet<long> _dirtyL2 = [];
    private readonly SortedSet<long> _dirtyL1 = [];
    private readonly List<ulong> _deferredFrees = [];
    private readonly List<long> _deferredClusterFrees = [];

    /// <summary>
    /// Applies new L2 entries to the cached tables and marks them dirty; the references they replace are
    /// released later. Metadata reaches the disk in <see cref="FlushMetadata"/>, in crash-safe order.
    /// </summary>
    private void Commit(List<PendingEntry> pending, List<ulong> frees, bool barrierFirst)
    {
        _ = barrierFirst;
        foreach (var p in pending)
        {
            var table = GetL2(p.L2Offset);
            BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(p.Index * _eb), p.Entry);
            if (_eb == 16)
                BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(p.Index * _eb + 8), p.Bitmap);
            _dirtyL2.Add(p.L2Offset);
        }
        _deferredFrees.AddRange(frees);
        if (_dirtyL2.Count >= Math.Min(256, _l2Cache.Capacity / 2) || _deferredFrees.Count >= 4096)
            FlushMetadata();
    }

    /// <summary>
    /// Writes delayed metadata in the order that keeps a crash at any instant down to leaks: data and
    /// refcounts first (barrier), then the L2 tables, then (barrier) the L1 entries that point at new
    /// tables, then (barrier) the refcount decrements of what the new entries replaced.
    /// </summary>
    private void FlushMetadata()
    {
        if (_dirtyL2.Count > 0 || _dirtyL1.Count > 0)
        {
            Barrier();
            foreach (var off in _dirtyL2.Order())
            {
                if (!_l2Cache.TryGet(off, out var t))
                    throw new InvalidOperationException("A dirty L2 table left the cache.");
                _file.Write(off, t);
            }
            _dirtyL2.Clear();
            if (_dirtyL1.Count > 0)
            {
                Barrier();
                foreach (var idx in _dirtyL1)
                    WriteL1Entry(idx);
                _dirtyL1.Clear();
            }
        }
        if (_deferredFrees.Count > 0 || _deferredClusterFrees.Count > 0)
        {
            Barrier();
            var frees = _deferredFrees.ToArray();
            var clusters = _deferredClusterFrees.ToArray();
            _deferredFrees.Clear();
            _deferredClusterFrees.Clear();
            foreach (var e in frees)
                FreeEntry(e);
            foreach (var c in clusters)
                AddRef(c, -1);
        }
    }

    /// <summary>Makes room in the L2 cache without ever evicting a dirty table.</summary>
    private void EnsureL2CacheRoom()
    {
        if (_dirtyL2.Count > 0 && _l2Cache.Count >= _l2Cache.Capacity)
            FlushMetadata();
    }

    /// <summary>Returns the offset of a writable (COPIED) L2 table for an L1 index, allocating or copying it first.</summary>
    private long GetWritableL2(long l1Idx)
    {
        if (l1Idx >= _l1.Length)
            throw new Qcow2FormatException("L1 index beyond the L1 table.");
        ulong l1e = _l1[l1Idx];
        long old = (long)(l1e & OffsetMask);
        if (old != 0 && (l1e & Copied) != 0)
            return old;
        byte[] table;
        if (old == 0)
            table = new byte[_cs];
        else
        {
            table = (byte[])GetL2(old).Clone();
            // entries of a shared table: COPIED must reflect the refcount now that the table splits
            for (int i = 0; i < _l2Entries; i++)
            {
                ulong e = L2Entry(table, i);
                long h = (long)(e & OffsetMask);
                if ((e & CompressedFlag) == 0 && h != 0)
                {
                    ulong ne = GetRefcount(h >> _cb) == 1 ? e | Copied : e & ~Copied;
                    BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(i * _eb), ne);
                }
            }
        }
        EnsureL2CacheRoom();
        long off = AllocateClusters(1);
        _l2Cache.Put(off, table);
        _dirtyL2.Add(off);
        _l1[l1Idx] = (ulong)off | Copied;
        _dirtyL1.Add(l1Idx);
        if (old != 0)
            _deferredClusterFrees.Add(old >> _cb);
        return off;
    }

    private void SetL1(long idx, ulong value)
    {
        _l1[idx] = value;
        WriteL1Entry(idx);
    }

    private void WriteL1Entry(long idx)
    {
        ulong value = _l1[idx];
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        _file.Write(_h.L1TableOffset + idx * 8, b);
    }

    /// <summary>Writes whole clusters compressed (qemu-img's <c>-c</c>); a cluster that does not shrink is stored uncompressed.</summary>
    /// <param name="offset">Guest offset, cluster-aligned.</param>
    /// <param name="data">Whole clusters (the last may end at the virtual size).</param>
    /// <remarks>Like <c>qemu-io -c 'write -c OFF LEN'</c>.</remarks>
    public void WriteCompressed(long offset, ReadOnlySpan<byte> data)
    {
        ThrowIfDisposed();
        ThrowIfReadOnly();
        CheckCompressedRange(offset, data.Length);
        // compress outside the lock, clusters in parallel (qemu-img uses up to 4 threads per image)
        int count = (data.Length + _cs - 1) / _cs;
        var run = NewCompressedClusters(count);
        if (count > 1 && Environment.ProcessorCount > 1)
        {
            int parts = Math.Min(count, Math.Min(Environment.ProcessorCount, 8));
            var input = data.ToArray();
            var outputs = new CompressedClusters[parts];
            Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, p =>
            {
                int first = (int)((long)count * p / parts), last = (int)((long)count * (p + 1) / parts);
                int from = first * _cs, to = Math.Min(input.Length, last * _cs);
                var part = NewCompressedClusters(last - first);
                CompressClusters(input.AsSpan(from, to - from), part, skipZero: false);
                outputs[p] = part;
            });
            run.Concat(outputs);
        }
        else
            CompressClusters(data, run, skipZero: false);
        WriteCompressedClusters(offset, data, run);
    }

    private void CheckCompressedRange(long offset, long length)
    {
        if ((offset & (_cs - 1)) != 0 || ((length & (_cs - 1)) != 0 && offset + length != Size))
            throw new ArgumentException("Compressed writes must cover whole clusters.", "data");
        CheckRange(offset, length);
    }

    /// <summary>Clusters compressed ahead of writing (outside the image lock, on any thread): their bytes back to back, and per cluster the length, -1 (store uncompressed) or 0 (all zero, skipped).</summary>
    internal sealed class CompressedClusters(int capacity, int clusterSize)
    {
        public byte[] Packed = GC.AllocateUninitializedArray<byte>(capacity * clusterSize);
        public int[] Lengths = new int[capacity];
        public int[] Offsets = new int[capacity];
        public int Count;

        /// <summary>Joins parts compressed separately, in order.</summary>
        public void Concat(CompressedClusters[] parts)
        {
            int n = 0, pos = 0;
            foreach (var part in parts)
            {
                int bytes = part.Count == 0 ? 0 : part.Offsets[part.Count - 1] + Math.Max(0, part.Lengths[part.Count - 1]);
                part.Packed.AsSpan(0, bytes).CopyTo(Packed.AsSpan(pos));
                for (int i = 0; i < part.Count; i++)
                {
                    Lengths[n + i] = part.Lengths[i];
                    Offsets[n + i] = part.Offsets[i] + pos;
                }
                n += part.Count;
                pos += bytes;
            }
            Count = n;
        }
    }

    internal CompressedClusters NewCompressedClusters(int clusters) => new(clusters, _cs);

    [ThreadStatic] private static byte[]? t_clusterScratch;

    /// <summary>
    /// Compresses the clusters of <paramref name="data"/> (the last may be short: it is padded with zeros, as
    /// QEMU compresses whole clusters) into <paramref name="into"/>. Thread-safe and lock-free: it only reads
    /// the image's cluster size and compression type.
    /// </summary>
    internal void CompressClusters(ReadOnlySpan<byte> data, CompressedClusters into, bool skipZero)
    {
        var type = (Qcow2CompressionType)_h.CompressionType;
        if (type == Qcow2CompressionType.Zstd)
            Compression.Zstd.EnsureAvailable();
        int count = (data.Length + _cs - 1) / _cs;
        if (count > into.Lengths.Length)
            throw new ArgumentException("Too many clusters for the buffer.", nameof(data));
        int pos = 0;
        for (int i = 0; i < count; i++)
        {
            var c = data.Slice(i * _cs, Math.Min(_cs, data.Length - i * _cs));
            into.Offsets[i] = pos;
            if (skipZero && !c.ContainsAnyExcept((byte)0))
            {
                into.Lengths[i] = 0;
                continue;
            }
            if (c.Length < _cs)
            {
                var full = t_clusterScratch is { } sc && sc.Length == _cs ? sc : t_clusterScratch = new byte[_cs];
                c.CopyTo(full);
                full.AsSpan(c.Length).Clear();
                c = full;
            }
            int n = Compression.Compress(type, c, into.Packed.AsSpan(pos, _cs), _cs);
            into.Lengths[i] = n;
            if (n > 0)
                pos += n;
        }
        into.Count = count;
    }

    /// <summary>
    /// Writes clusters compressed by <see cref="CompressClusters"/>: compressed ones packed back to back, in as
    /// few writes as their placement allows; those that did not shrink as normal clusters, runs of them
    /// allocated together and written straight from <paramref name="data"/>.
    /// </summary>
    internal void WriteCompressedClusters(long offset, ReadOnlySpan<byte> data, CompressedClusters run)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            CheckCompressedRange(offset, data.Length);
            if ((Qcow2CompressionType)_h.CompressionType == Qcow2CompressionType.Zstd)
                Compression.Zstd.EnsureAvailable();
            MarkDirty(offset, data.Length);
            var pending = new List<PendingEntry>();
            var frees = new List<ulong>();
            int shift = 62 - (_cb - 8);
            // a write of packed compressed bytes not issued yet: host offset, packed offset, length
            long stageHost = -1;
            int stageFrom = 0, stageLen = 0;
            void FlushStage(ReadOnlySpan<byte> packed)
            {
                if (stageLen > 0)
                    _file.Write(stageHost, packed.Slice(stageFrom, stageLen));
                stageLen = 0;
                stageHost = -1;
            }
            for (int i = 0; i < run.Count;)
            {
                int clen = run.Lengths[i];
                if (clen == 0)
                {
                    i++;
                    continue;
                }
                long vcl = (offset >> _cb) + i;
                long l2Off = GetWritableL2(vcl / _l2Entries);
                int idx = (int)(vcl % _l2Entries);
                var table = GetL2(l2Off);
                if (clen < 0)
                {
                    // a run of clusters that stay uncompressed, within this L2 table
                    int k = 1;
                    while (i + k < run.Count && run.Lengths[i + k] < 0 && idx + k < _l2Entries)
                        k++;
                    int from = i * _cs, to = Math.Min(data.Length, (i + k) * _cs);
                    long target = AllocateClusters(k);
                    if (to - from == k * _cs)
                        _file.Write(target, data[from..to]);
                    else
                    {
                        // the last cluster ends at the virtual size: store it padded to a whole cluster
                        var full = new byte[k * _cs];
                        data[from..to].CopyTo(full);
                        _file.Write(target, full);
                    }
                    for (int j = 0; j < k; j++)
                    {
                        ulong old = L2Entry(table, idx + j);
                        if ((old & CompressedFlag) != 0 || (old & OffsetMask) != 0)
                            frees.Add(old);
                        pending.Add(new PendingEntry(l2Off, idx + j, (ulong)(target + (long)j * _cs) | Copied, _eb == 16 ? 0xffff_ffffUL : 0));
                    }
                    i += k;
                    continue;
                }
                long coff = PlaceCompressed(clen);
                if (stageLen > 0 && (coff != stageHost + stageLen || run.Offsets[i] != stageFrom + stageLen))
                    FlushStage(run.Packed);
                if (stageLen == 0)
                {
                    stageHost = coff;
                    stageFrom = run.Offsets[i];
                }
                stageLen += clen;
                long nb = ((coff + clen - 1) >> 9) - (coff >> 9);
                ulong prev = L2Entry(table, idx);
                if ((prev & CompressedFlag) != 0 || (prev & OffsetMask) != 0)
                    frees.Add(prev);
                pending.Add(new PendingEntry(l2Off, idx, CompressedFlag | ((ulong)nb << shift) | (ulong)coff, 0));
                i++;
            }
            FlushStage(run.Packed);
            Commit(pending, frees, true);
        }
    }

    /// <summary>Finds room for <paramref name="len"/> compressed bytes, refcounting every host cluster they touch.</summary>
    private long PlaceCompressed(int len)
    {
        // a freed compressed range can be reused: forget the decompressed copy
        _compCacheKey = -1;
        long cur = _compCursor;
        if (cur > 0 && (cur & (_cs - 1)) != 0)
        {
            long cl = cur >> _cb;
            long room = ((cl + 1) << _cb) - cur;
            ulong rc = GetRefcount(cl);
            if (rc > 0 && rc < MaxRefcount)
            {
                if (len <= room)
                {
                    AddRef(cl, 1);
                    _compCursor = cur + len;
                    return cur;
                }
                if (GetRefcount(cl + 1) == 0 && cl + 1 >= _freeHint)
                {
                    long saved = _freeHint;
                    _freeHint = cl + 1;
                    long got = AllocateClusters(1);
                    if (got == (cl + 1) << _cb)
                    {
                        AddRef(cl, 1);
                        _compCursor = cur + len;
                        return cur;
                    }
                    _freeHint = Math.Min(saved, _freeHint);
                    _compCursor = (got) + len;
                    return got;
                }
            }
        }
        long c = AllocateClusters(1);
        _compCursor = c + len;
        return c;
    }

    /// <summary>Makes a range read as zeros: whole clusters get the zero flag (version 3) or are unallocated; partial clusters are written.</summary>
    /// <param name="offset">Guest offset.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="unmap">Also release the host clusters of whole zeroed clusters.</param>
    /// <remarks>Like <c>qemu-io -c 'write -z [-u] OFF LEN'</c>.</remarks>
    public void WriteZeroes(long offset, long length, bool unmap = false)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            CheckRange(offset, length);
            ZeroOrDiscard(offset, length, zero: true, unmap);
        }
    }

    /// <summary>Releases whole clusters in a range; they then read as zeros (or, in version 2 images with a backing file, from the backing file as qemu does). Partial clusters are left alone.</summary>
    /// <param name="offset">Guest offset.</param>
    /// <param name="length">Length in bytes.</param>
    /// <remarks>Like <c>qemu-io -c 'discard OFF LEN'</c>.</remarks>
    public void Discard(long offset, long length)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            CheckRange(offset, length);
            ZeroOrDiscard(offset, length, zero: false, unmap: true);
        }
    }

    private void ZeroOrDiscard(long offset, long length, bool zero, bool unmap)
    {
        MarkDirty(offset, length);
        long end = offset + length;
        var pending = new List<PendingEntry>();
        var frees = new List<ulong>();
        byte[]? zeros = null;
        bool v3 = _h.Version >= 3;
        while (offset < end)
        {
            long vcl = offset >> _cb;
            long clStart = vcl << _cb;
            long clEnd = Math.Min(clStart + _cs, _h.Size);
            long n = Math.Min(end, clStart + _cs) - offset;
            bool whole = offset == clStart && offset + n >= clEnd;
            if (!whole)
            {
                if (zero)
                {
                    Commit(pending, frees, false);
                    pending.Clear();
                    frees.Clear();
                    zeros ??= new byte[_cs];
                    WriteCore(offset, zeros.AsSpan(0, (int)n));
                }
                offset += n;
                continue;
            }
            long l1Idx = vcl / _l2Entries;
            ulong l1e = _l1[l1Idx];
            bool needZeroFlag = zero || (_backing is not null && v3);
            if ((l1e & OffsetMask) == 0 && (_backing is null || (!zero && !v3)))
            {
                offset += n;
                continue;
            }
            if (zero && !v3)
            {
                if (_backing is not null)
                {
                    Commit(pending, frees, false);
                    pending.Clear();
                    frees.Clear();
                    zeros ??= new byte[_cs];
                    WriteCore(offset, zeros.AsSpan(0, (int)n));
                    offset += n;
                    continue;
                }
                needZeroFlag = false;
            }
            long l2Off = GetWritableL2(l1Idx);
            int idx = (int)(vcl % _l2Entries);
            var table = GetL2(l2Off);
            ulong e = L2Entry(table, idx);
            long host = (long)(e & OffsetMask);
            bool compressed = (e & CompressedFlag) != 0;
            bool keep = needZeroFlag && !unmap && !compressed && host != 0 && (e & Copied) != 0;
            ulong ne;
            ulong nb = 0;
            if (_eb == 16)
            {
                ne = keep ? e : 0;
                nb = needZeroFlag ? 0xffff_ffff_0000_0000UL : 0;
            }
            else
                ne = (keep ? e : 0) | (needZeroFlag ? ZeroFlag : 0);
            if (!keep && (host != 0 || compressed))
                frees.Add(e);
            pending.Add(new PendingEntry(l2Off, idx, ne, nb));
            offset += n;
        }
        Commit(pending, frees, false);
    }

    /// <summary>Changes the virtual size. Growing keeps data; shrinking drops clusters past the new end and requires <paramref name="allowShrink"/>.</summary>
    /// <param name="newSize">The new virtual size in bytes, rounded up to a multiple of 512.</param>
    /// <param name="allowShrink">Allow making the disk smaller (qemu-img's <c>--shrink</c>).</param>
    /// <remarks>Like <c>qemu-img resize [--shrink] FILE SIZE</c>.</remarks>
    public void Resize(long newSize, bool allowShrink = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(newSize);
        newSize = (newSize + 511) & ~511L; // whole sectors: QEMU sees a qcow2 disk in 512-byte sectors
        if (newSize > Header.MaxVirtualSize)
            throw new ArgumentOutOfRangeException(nameof(newSize), "The size is too large.");
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            if (_snapshots.Count > 0 && newSize < _h.Size)
                throw new InvalidOperationException("Cannot shrink an image that has internal snapshots.");
            if (_bitmaps.Count > 0 && newSize != _h.Size)
                throw new InvalidOperationException("Cannot resize an image with persistent bitmaps; remove them first (as qemu-img requires).");
            long oldSize = _h.Size;
            if (newSize < oldSize)
            {
                if (!allowShrink)
                    throw new ArgumentException("Shrinking needs allowShrink (qemu-img resize --shrink): data past the new end is lost.", nameof(allowShrink));
                long firstDrop = (newSize + _cs - 1) & ~(long)(_cs - 1);
                if (firstDrop < oldSize)
                    ZeroOrDiscard(firstDrop, oldSize - firstDrop, zero: false, unmap: true);
                FlushMetadata();
                Barrier();
                SetSize(newSize);
                return;
            }
            long l2Span = (long)_l2Entries << _cb;
            long needL1 = (newSize + l2Span - 1) / l2Span;
            if (needL1 > _l1.Length)
                GrowL1(needL1);
            long tailEnd = Math.Min(newSize, (oldSize + _cs - 1) & ~(long)(_cs - 1));
            // the old partial last cluster may hold stale bytes past the old end; the backing file may be
            // longer: zero both, durably, before the new size is published
            _h.Size = newSize;
            if (tailEnd > oldSize)
                ZeroOrDiscard(oldSize, tailEnd - oldSize, zero: true, unmap: false);
            if (_backing is not null && _backing.Size > tailEnd && newSize > tailEnd)
                ZeroOrDiscard(tailEnd, Math.Min(newSize, (_backing.Size + _cs - 1) & ~(long)(_cs - 1)) - tailEnd, zero: true, unmap: false);
            FlushMetadata();
            Barrier();
            SetSize(newSize);
            Barrier();
        }
    }

    private void SetSize(long size)
    {
        _h.Size = size;
        WriteHeaderU64(24, (ulong)size);
    }

    private void GrowL1(long entries)
    {
        FlushMetadata();
        if (entries * 8 > Header.MaxL1Bytes)
            throw new ArgumentOutOfRangeException(nameof(entries), "The L1 table would exceed 32 MiB.");
        long clusters = (entries * 8 + _cs - 1) / _cs;
        long newOff = AllocateClusters(clusters);
        var raw = new byte[clusters * _cs];
        var l1 = new ulong[entries];
        _l1.CopyTo(l1, 0);
        for (int i = 0; i < l1.Length; i++)
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), l1[i]);
        _file.Write(newOff, raw);
        Barrier();
        long oldOff = _h.L1TableOffset;
        long oldClusters = ((long)_h.L1Size * 8 + _cs - 1) / _cs;
        Span<byte> hdr = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(hdr, (uint)entries);
        BinaryPrimitives.WriteUInt64BigEndian(hdr[4..], (ulong)newOff);
        _file.Write(36, hdr);
        Barrier();
        _h.L1Size = (uint)entries;
        _h.L1TableOffset = newOff;
        _l1 = l1;
        if (oldOff != 0)
            for (long i = 0; i < oldClusters; i++)
                AddRef((oldOff >> _cb) + i, -1);
    }
}
