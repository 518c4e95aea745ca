using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    private sealed class CheckState(long fileClusters)
    {
        public uint[] Refs = new uint[fileClusters];
        public List<string> Messages = [];
        public int Corruptions;
        public int CheckErrors;
        public long Allocated, Fragmented, Compressed;
        public long NextContiguous;
        public long Slack = 1 << 20;
        public long Budget;

        public void Corrupt(string msg)
        {
            Corruptions++;
            if (Messages.Count < 10000)
                Messages.Add(msg);
        }
    }

    /// <summary>Checks the image's metadata like <c>qemu-img check</c>, and optionally repairs it.</summary>
    /// <param name="repair">What to repair; repairs need a read-write image.</param>
    /// <returns>The counters after the check (and after the repair, with what was fixed).</returns>
    /// <remarks>Like <c>qemu-img check [-r leaks|all] FILE</c>.</remarks>
    public Qcow2CheckResult Check(Qcow2RepairMode repair = Qcow2RepairMode.None)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            if (repair != Qcow2RepairMode.None)
                ThrowIfReadOnly();
            if (!_options.ReadOnly)
                FlushMetadata();
            var before = CheckCore();
            if (repair == Qcow2RepairMode.None || before.IsClean)
                return before;
            if (repair == Qcow2RepairMode.All)
            {
                RebuildRefcounts();
                FixCopiedFlags();
            }
            else
            {
                var st = Walk(includeRefcountStructures: true);
                for (long i = 0; i < st.Refs.Length; i++)
                {
                    ulong disk = GetRefcount(i);
                    if (disk > st.Refs[i])
                        SetRefcount(i, st.Refs[i]);
                }
            }
            _file.Flush();
            var after = CheckCore();
            return after with
            {
                LeaksFixed = Math.Max(0, before.Leaks - after.Leaks),
                CorruptionsFixed = Math.Max(0, before.Corruptions - after.Corruptions),
            };
        }
    }

    /// <summary>Checks the image (see <see cref="Check"/>; completes synchronously).</summary>
    /// <param name="repair">What to repair.</param>
    /// <param name="cancellationToken">Cancels before the check starts.</param>
    /// <returns>The check result.</returns>
    public ValueTask<Qcow2CheckResult> CheckAsync(Qcow2RepairMode repair = Qcow2RepairMode.None, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Check(repair));
    }

    private Qcow2CheckResult CheckCore()
    {
        CheckState st;
        try
        {
            LoadReftable();
            st = Walk(includeRefcountStructures: true);
        }
        catch (Qcow2FormatException ex)
        {
            return new Qcow2CheckResult { CheckErrors = 1, Messages = [ex.Message], TotalClusters = (_h.Size + _cs - 1) / _cs };
        }
        int leaks = 0;
        long highest = -1;
        for (long i = 0; i < st.Refs.Length; i++)
        {
            ulong disk;
            try
            {
                disk = GetRefcount(i);
            }
            catch (Qcow2FormatException ex)
            {
                st.CheckErrors++;
                st.Messages.Add(ex.Message);
                break;
            }
            uint want = st.Refs[i];
            if (disk > 0 || want > 0)
                highest = i;
            if (disk == want)
                continue;
            if (disk < want)
                st.Corrupt($"ERROR cluster {i} refcount={disk} reference={want}");
            else
            {
                leaks++;
                if (st.Messages.Count < 10000)
                    st.Messages.Add($"Leaked cluster {i} refcount={disk} reference={want}");
            }
        }
        CheckCopiedFlags(st);
        return new Qcow2CheckResult
        {
            Corruptions = st.Corruptions,
            Leaks = leaks,
            CheckErrors = st.CheckErrors,
            ImageEndOffset = (highest + 1) * _cs,
            TotalClusters = (_h.Size + _cs - 1) / _cs,
            AllocatedClusters = st.Allocated,
            FragmentedClusters = st.Fragmented,
            CompressedClusters = st.Compressed,
            Messages = st.Messages,
        };
    }

    private CheckState Walk(bool includeRefcountStructures)
    {
        long fileClusters = (_file.Length + _cs - 1) >> _cb;
        var st = new CheckState(fileClusters)
        {
            // bounds the walk on hostile images whose snapshot L1 tables overlap
            Budget = (32L << 20) + (Math.Min(_snapshots.Count, 256) + 1L) * (_file.Length / 8 + _l2Entries),
        };
        Inc(st, 0, _cs);
        WalkL1(st, _l1, _h.L1TableOffset, active: true);
        if (_h.NbSnapshots > 0)
        {
            long tableBytes = _snapshots.Sum(s => (long)SnapshotEntry.SizeOf(s));
            Inc(st, _h.SnapshotsOffset, tableBytes);
            foreach (var s in _snapshots)
            {
                ulong[] l1;
                try
                {
                    l1 = ReadTable(s.L1Offset, s.L1Size, "snapshot L1 table");
                }
                catch (Qcow2FormatException ex)
                {
                    st.Corrupt($"ERROR snapshot {s.Id}: {ex.Message}");
                    continue;
                }
                WalkL1(st, l1, s.L1Offset, active: false);
            }
        }
        if (_bitmaps.Count > 0)
        {
            Inc(st, _bitmapDirOffset, _bitmapDirSize);
            foreach (var b in _bitmaps)
            {
                Inc(st, b.TableOffset, (long)b.TableSize * 8);
                ulong[] t;
                try
                {
                    t = ReadTable(b.TableOffset, b.TableSize, "bitmap table");
                }
                catch (Qcow2FormatException ex)
                {
                    st.Corrupt($"ERROR bitmap {b.Name}: {ex.Message}");
                    continue;
                }
                foreach (var e in t)
                    if ((e & OffsetMask) != 0)
                        Inc(st, (long)(e & OffsetMask), _cs);
            }
        }
        if (includeRefcountStructures)
        {
            Inc(st, _h.RefcountTableOffset, (long)_h.RefcountTableClusters * _cs);
            foreach (var e in _reftable!)
            {
                long off = (long)(e & ~0x1ffUL);
                if (off == 0)
                    continue;
                if (off + _cs > _file.Length)
                {
                    st.Corrupt($"ERROR refcount block at 0x{off:x} is outside the image");
                    continue;
                }
                Inc(st, off, _cs);
            }
        }
        return st;
    }

    private void Inc(CheckState st, long offset, long length)
    {
        if (length <= 0)
            return;
        if (offset < 0 || offset > (1L << 56) || length > (1L << 40))
        {
            st.Corrupt($"ERROR: invalid metadata range offset=0x{offset:x} length={length}");
            return;
        }
        for (long c = offset >> _cb; c <= (offset + length - 1) >> _cb; c++)
        {
            if (c >= st.Refs.Length)
            {
                if (c >= st.Refs.Length + st.Slack)
                {
                    st.Corrupt($"ERROR: cluster {c} is far beyond the end of the image file");
                    return;
                }
                Array.Resize(ref st.Refs, (int)Math.Min(int.MaxValue, Math.Max(c + 1, st.Refs.Length + st.Refs.Length / 4 + 16)));
            }
            if (st.Refs[c] < uint.MaxValue)
                st.Refs[c]++;
        }
    }

    private void WalkL1(CheckState st, ulong[] l1, long l1Offset, bool active)
    {
        if (l1.Length > 0)
            Inc(st, l1Offset, (long)l1.Length * 8);
        var seen = new HashSet<long>();
        for (int i = 0; i < l1.Length; i++)
        {
            long l2 = (long)(l1[i] & OffsetMask);
            if (l2 == 0)
                continue;
            if (!seen.Add(l2))
            {
                // a valid L1 never names one L2 table twice; walking it again would only multiply the work
                st.Corrupt($"ERROR l2_offset=0x{l2:x}: L2 table referenced twice by one L1 table");
                Inc(st, l2, _cs);
                continue;
            }
            st.Budget -= _l2Entries;
            if (st.Budget < 0)
                throw new Qcow2FormatException("The image's tables reference far more metadata than the file can hold (hostile or corrupt snapshot tables).");
            if ((l2 & (_cs - 1)) != 0)
            {
                st.Corrupt($"ERROR l2_offset=0x{l2:x}: Table is not cluster aligned; L1 entry corrupted");
                continue;
            }
            Inc(st, l2, _cs);
            byte[] table;
            try
            {
                table = GetL2(l2);
            }
            catch (Qcow2FormatException ex)
            {
                st.Corrupt("ERROR " + ex.Message);
                continue;
            }
            for (int j = 0; j < _l2Entries; j++)
            {
                ulong e = L2Entry(table, j);
                if ((e & CompressedFlag) != 0)
                {
                    var (coff, csize) = CompressedRange(e);
                    if (coff < _cs)
                    {
                        st.Corrupt($"ERROR compressed cluster at 0x{coff:x} overlaps the header");
                        continue;
                    }
                    Inc(st, coff, csize);
                    if (active)
                    {
                        st.Allocated++;
                        st.Compressed++;
                        st.Fragmented++;
                    }
                    continue;
                }
                long host = (long)(e & OffsetMask);
                if (host == 0)
                    continue;
                if ((host & (_cs - 1)) != 0)
                {
                    st.Corrupt($"ERROR offset=0x{host:x}: Cluster is not properly aligned; L2 entry corrupted");
                    continue;
                }
                if (!_h.HasDataFile)
                    Inc(st, host, _cs);
                if (active)
                {
                    st.Allocated++;
                    if (st.NextContiguous != 0 && host != st.NextContiguous)
                        st.Fragmented++;
                    st.NextContiguous = host + _cs;
                }
            }
        }
    }

    private void CheckCopiedFlags(CheckState st)
    {
        for (int i = 0; i < _l1.Length; i++)
        {
            long l2 = (long)(_l1[i] & OffsetMask);
            if (l2 == 0 || (l2 & (_cs - 1)) != 0)
                continue;
            ulong rc = GetRefcount(l2 >> _cb);
            if (((_l1[i] & Copied) != 0) != (rc == 1))
                st.Corrupt($"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={_l1[i] & ~Copied:x} refcount={rc}");
            byte[] table;
            try { table = GetL2(l2); }
            catch (Qcow2FormatException) { continue; }
            for (int j = 0; j < _l2Entries; j++)
            {
                ulong e = L2Entry(table, j);
                long host = (long)(e & OffsetMask);
                if ((e & CompressedFlag) != 0 || host == 0 || (host & (_cs - 1)) != 0 || _h.HasDataFile)
                    continue;
                ulong drc = GetRefcount(host >> _cb);
                if (((e & Copied) != 0) != (drc == 1))
                    st.Corrupt($"ERROR OFLAG_COPIED data cluster: l2_entry={e & ~Copied:x} refcount={drc}");
            }
        }
    }

    private void FixCopiedFlags()
    {
        for (int i = 0; i < _l1.Length; i++)
        {
            long l2 = (long)(_l1[i] & OffsetMask);
            if (l2 == 0 || (l2 & (_cs - 1)) != 0)
                continue;
            ulong rc = GetRefcount(l2 >> _cb);
            ulong want = rc == 1 ? _l1[i] | Copied : _l1[i] & ~Copied;
            if (want != _l1[i])
                SetL1(i, want);
            var table = GetL2(l2);
            bool changed = false;
            for (int j = 0; j < _l2Entries; j++)
            {
                ulong e = L2Entry(table, j);
                long host = (long)(e & OffsetMask);
                if ((e & CompressedFlag) != 0 || host == 0)
                    continue;
                ulong ne = GetRefcount(host >> _cb) == 1 ? e | Copied : e & ~Copied;
                if (ne != e)
                {
                    BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(j * _eb), ne);
                    changed = true;
                }
            }
            if (changed)
                _file.Write(l2, table);
        }
    }

    /// <summary>Writes a fresh refcount structure computed from the metadata, at the end of the file, and switches the header to it.</summary>
    private void RebuildRefcounts(int? newOrder = null)
    {
        var st = Walk(includeRefcountStructures: false);
        int oldOrder = _h.RefcountOrder;
        long oldRbEntries = _rbEntries;
        if (newOrder is { } order && order != oldOrder)
        {
            _h.RefcountOrder = order;
            _rbEntries = (long)_cs * 8 / _h.RefcountBits;
        }
        try
        {
            RebuildRefcountsCore(st, oldOrder);
        }
        catch
        {
            _h.RefcountOrder = oldOrder;
            _rbEntries = oldRbEntries;
            throw;
        }
    }

    private void RebuildRefcountsCore(CheckState st, int oldOrder)
    {
        // refuse before writing anything when a count does not fit the width
        for (long i = 0; i < st.Refs.Length; i++)
            if (st.Refs[i] > MaxRefcount)
                throw new Qcow2Exception($"Cluster {i} needs refcount {st.Refs[i]}, more than refcount_bits={_h.RefcountBits} holds.");
        var refs = st.Refs;
        long fileClusters = (_file.Length + _cs - 1) >> _cb;
        for (long i = fileClusters; i < refs.Length; i++)
            if (refs[i] != 0)
                throw new Qcow2FormatException($"Metadata references cluster {i}, past the end of the image file: the refcounts cannot be rebuilt safely.");
        long s = Math.Max(fileClusters, refs.Length);
        var used = new SortedSet<long>();
        for (long i = 0; i < refs.Length; i++)
            if (refs[i] != 0)
            {
                used.Add(i / _rbEntries);
                i = (i / _rbEntries + 1) * _rbEntries - 1;
            }
        long k = 1;
        SortedSet<long> all = used;
        for (int iter = 0; iter < 64; iter++)
        {
            all = new SortedSet<long>(used);
            long m = all.Count;
            for (int inner = 0; inner < 64; inner++)
            {
                for (long r = s / _rbEntries; r <= (s + k + m - 1) / _rbEntries; r++)
                    all.Add(r);
                if (all.Count == m)
                    break;
                m = all.Count;
            }
            long entries = Math.Max(all.Max + 1, 1);
            long k2 = Math.Max(1, (entries * 8 + _cs - 1) / _cs);
            if (k2 == k)
                break;
            k = k2;
        }
        if (k * _cs > Header.MaxReftableBytes)
            throw new Qcow2Exception("The rebuilt refcount table would exceed 8 MiB.");
        var rt = new ulong[k * _cs / 8];
        long pos = s + k;
        foreach (var r in all)
            rt[r] = (ulong)(pos++ << _cb);
        long areaEnd = pos;
        var block = new byte[_cs];
        foreach (var r in all)
        {
            Array.Clear(block);
            for (long x = 0; x < _rbEntries; x++)
            {
                long c = r * _rbEntries + x;
                ulong v = c < refs.Length ? refs[c] : 0;
                if (c >= s && c < areaEnd)
                    v++;
                if (v > MaxRefcount)
                    throw new Qcow2Exception($"Cluster {c} needs refcount {v}, more than refcount_bits={_h.RefcountBits} holds.");
                if (v != 0)
                    WriteRefEntry(block, x, v);
            }
            _file.Write((long)rt[r], block);
        }
        var raw = new byte[k * _cs];
        for (int i = 0; i < rt.Length; i++)
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), rt[i]);
        _file.Write(s << _cb, raw);
        Barrier();
        _h.RefcountTableOffset = s << _cb;
        _h.RefcountTableClusters = (uint)k;
        if (_h.RefcountOrder != oldOrder)
        {
            // the width and the table that uses it change in one header write (one sector)
            RewriteHeader();
        }
        else
        {
            Span<byte> hdr = stackalloc byte[12];
            BinaryPrimitives.WriteUInt64BigEndian(hdr, (ulong)_h.RefcountTableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(hdr[8..], (uint)k);
            _file.Write(48, hdr);
            Barrier();
        }
        _reftable = rt;
        _rbCache.Clear();
        _freeHint = 0;
        _allocHigh = areaEnd;
        _compCursor = -1;
    }
}
