using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>
    /// The reference counts the check computes, one per host cluster of the file (plus the one cluster past
    /// its end that qemu-img tolerates). Pages are allocated on first use, so memory follows the metadata
    /// that references clusters, never what a bad entry claims: references further out are corruptions
    /// and are not stored.
    /// </summary>
    private sealed class RefCounts(long capacity)
    {
        private const int PageBits = 16;
        private const int PageMask = (1 << PageBits) - 1;
        private readonly uint[]?[] _pages = new uint[]?[(capacity >> PageBits) + 1];

        /// <summary>Clusters in use by the check: the file's clusters, or more when a table ends in the cluster past the end.</summary>
        public long Length { get; set; }

        public long Capacity => capacity;

        public uint this[long i]
        {
            get => i < capacity && _pages[i >> PageBits] is { } p ? p[i & PageMask] : 0;
            set => (_pages[i >> PageBits] ??= new uint[1 << PageBits])[i & PageMask] = value;
        }

        /// <summary>True when no cluster in [start, end) is referenced (cheap over pages never touched).</summary>
        public bool IsZero(long start, long end)
        {
            end = Math.Min(end, capacity);
            for (long i = start; i < end;)
            {
                long pageEnd = Math.Min(end, ((i >> PageBits) + 1) << PageBits);
                if (_pages[i >> PageBits] is { } p)
                    for (long j = i; j < pageEnd; j++)
                        if (p[j & PageMask] != 0)
                            return false;
                i = pageEnd;
            }
            return true;
        }
    }

    /// <summary>Formats a check message only when the check still keeps messages.</summary>
    [InterpolatedStringHandler]
    private ref struct MessageHandler
    {
        private DefaultInterpolatedStringHandler _inner;

        public MessageHandler(int literalLength, int formattedCount, CheckState state, out bool shouldAppend)
        {
            Enabled = shouldAppend = state.WantsMessages;
            _inner = shouldAppend ? new DefaultInterpolatedStringHandler(literalLength, formattedCount, CultureInfo.InvariantCulture) : default;
        }

        public bool Enabled { get; }

        public void AppendLiteral(string value) => _inner.AppendLiteral(value);

        public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);

        public void AppendFormatted<T>(T value, string? format) => _inner.AppendFormatted(value, format);

        public string ToStringAndClear() => _inner.ToStringAndClear();
    }

    /// <summary>The check ran out of its work budget or could not read: qemu-img's "check not completed".</summary>
    private sealed class CheckIncompleteException(string message) : Qcow2FormatException(message);

    private sealed class CheckState
    {
        public CheckState(long fileLength, int clusterSize, int clusterBits, ulong maxRefcount)
        {
            FileLength = fileLength;
            long clusters = (fileLength + clusterSize - 1) >> clusterBits;
            Refs = new RefCounts(clusters + 2) { Length = clusters };
            MaxRef = (uint)Math.Min(maxRefcount, uint.MaxValue);
            Table = new byte[clusterSize];
        }

        public readonly long FileLength;
        public readonly RefCounts Refs;
        public readonly uint MaxRef;
        /// <summary>One reusable buffer for the L2 tables the check reads.</summary>
        public readonly byte[] Table;
        public List<string> Messages = [];
        public int Corruptions;
        public int CheckErrors;
        public long Allocated, Fragmented, Compressed;
        public long Budget;

        public const int MaxMessages = 10000;

        public bool WantsMessages => Messages.Count < MaxMessages;

        // Messages are formatted only while they are kept: a hostile table can hold millions of bad
        // entries, and formatting a string for each would allocate per bad entry.

        public void Corrupt(string msg)
        {
            Corruptions++;
            Note(msg);
        }

        public void Corrupt([InterpolatedStringHandlerArgument("")] ref MessageHandler msg)
        {
            Corruptions++;
            Note(ref msg);
        }

        public void Error([InterpolatedStringHandlerArgument("")] ref MessageHandler msg)
        {
            CheckErrors++;
            Note(ref msg);
        }

        public void Note(string msg)
        {
            if (WantsMessages)
                Messages.Add(msg);
        }

        public void Note([InterpolatedStringHandlerArgument("")] ref MessageHandler msg)
        {
            if (msg.Enabled)
                Messages.Add(msg.ToStringAndClear());
        }

        public void Spend(long work)
        {
            Budget -= work;
            if (Budget < 0)
                throw new CheckIncompleteException("The image's tables reference far more metadata than the file can hold (hostile or corrupt tables): the check was stopped.");
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

    // The check is a port of qemu's qcow2_check_refcounts (block/qcow2-refcount.c): the same walk, the
    // same rules for what is a corruption, a leak or an error that stops the check, so that the exit
    // class agrees with qemu-img check. Tables are read as qemu reads them: past the end of the file
    // they read as zeros. Memory is one counter per cluster of the file (paged) and one table buffer;
    // time is bounded by a budget proportional to the file.

    private const ulong L1ReservedMask = 0x7f00_0000_0000_01ffUL;
    private const ulong L2ReservedMask = 0x3f00_0000_0000_01feUL;
    private const ulong BitmapEntryReservedMask = 0xff00_0000_0000_01feUL;

    private Qcow2CheckResult CheckCore()
    {
        long totalClusters = (_h.Size + _cs - 1) / _cs;
        CheckState st;
        try
        {
            st = Walk(includeRefcountStructures: true);
            var rt = new CheckRefblocks(this, st.FileLength);
            int leaks = 0;
            long highest = 0;
            long length = st.Refs.Length;
            for (long i = 0; i < length; i++)
            {
                if (i % _rbEntries == 0 && rt.IsAbsent(i / _rbEntries))
                {
                    // no refblock: every count is zero, so only referenced clusters can differ
                    long end = Math.Min(length, i + _rbEntries);
                    if (st.Refs.IsZero(i, end))
                    {
                        i = end - 1;
                        continue;
                    }
                }
                if (!rt.TryGet(i, out ulong disk, out string? why))
                {
                    st.Error($"Can't get refcount for cluster {i}: {why}");
                    continue;
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
                    st.Note($"Leaked cluster {i} refcount={disk} reference={want}");
                }
            }
            CheckCopiedFlags(st, rt);
            return new Qcow2CheckResult
            {
                Corruptions = st.Corruptions,
                Leaks = leaks,
                CheckErrors = st.CheckErrors,
                ImageEndOffset = (highest + 1) * _cs,
                TotalClusters = totalClusters,
                AllocatedClusters = st.Allocated,
                FragmentedClusters = st.Fragmented,
                CompressedClusters = st.Compressed,
                Messages = st.Messages,
            };
        }
        catch (IOException ex)
        {
            // the budget ran out, or a read failed (Qcow2Exception is an IOException too): "not completed"
            return new Qcow2CheckResult { CheckErrors = 1, Messages = [$"Check not completed: {ex.Message}"], TotalClusters = totalClusters };
        }
    }

    /// <summary>Reads refcounts for the check as qemu's qcow2_get_refcount does, without trusting the refcount table.</summary>
    private sealed class CheckRefblocks
    {
        private readonly Qcow2Image _img;
        private readonly ulong[] _rt;
        private readonly long[] _keys;
        private readonly byte[][] _blocks;
        private int _next;
        private int _last;

        public CheckRefblocks(Qcow2Image img, long fileLength)
        {
            _img = img;
            _rt = img.ReadTableForCheck(img._h.RefcountTableOffset, (long)img._h.RefcountTableClusters * img._cs / 8, fileLength);
            int slots = (int)Math.Clamp((4L << 20) / img._cs, 2, 64);
            _keys = new long[slots];
            Array.Fill(_keys, -1);
            _blocks = new byte[slots][];
        }

        public ulong[] Table => _rt;

        public bool IsAbsent(long rtIdx) => rtIdx >= _rt.Length || (_rt[rtIdx] & ~0x1ffUL) == 0;

        public bool TryGet(long cluster, out ulong refcount, out string? why)
        {
            refcount = 0;
            why = null;
            long rtIdx = cluster / _img._rbEntries;
            if (rtIdx >= _rt.Length)
                return true;
            ulong off = _rt[rtIdx] & ~0x1ffUL;
            if (off == 0)
                return true;
            if ((off & (ulong)(_img._cs - 1)) != 0)
            {
                why = $"refcount block offset 0x{off:x} is not cluster-aligned (refcount table index {rtIdx})";
                return false;
            }
            if (off > (ulong)(long.MaxValue - _img._cs))
            {
                why = $"refcount block offset 0x{off:x} cannot be read (refcount table index {rtIdx})";
                return false;
            }
            int slot = _keys[_last] == (long)off ? _last : Array.IndexOf(_keys, (long)off);
            if (slot < 0)
            {
                slot = _next;
                _next = (_next + 1) % _keys.Length;
                var b = _blocks[slot] ??= new byte[_img._cs];
                _keys[slot] = -1;
                _img._file.Read((long)off, b);
                _keys[slot] = (long)off;
            }
            _last = slot;
            refcount = _img.ReadRefEntry(_blocks[slot], cluster % _img._rbEntries);
            return true;
        }
    }

    /// <summary>Reads a table as qemu's check does: entries past the end of the file are zeros (and are not stored).</summary>
    private ulong[] ReadTableForCheck(long offset, long entries, long fileLength)
    {
        if (entries <= 0 || offset < 0 || offset >= fileLength)
            return [];
        long stored = Math.Min(entries, (fileLength - offset + 7) / 8);
        var raw = new byte[stored * 8];
        _file.Read(offset, raw);
        var t = new ulong[stored];
        for (int i = 0; i < t.Length; i++)
            t[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        return t;
    }

    private CheckState Walk(bool includeRefcountStructures)
    {
        long fileLength = _file.Length;
        if (((fileLength + _cs - 1) >> _cb) > int.MaxValue)
            throw new CheckIncompleteException($"The image file has more than {int.MaxValue} clusters.");
        var st = new CheckState(fileLength, _cs, _cb, MaxRefcount)
        {
            // bounds the work on hostile images whose tables overlap or repeat
            Budget = (32L << 20) + (Math.Min(_snapshots.Count, 256) + 2L) * (fileLength / 8 + _l2Entries),
        };
        Inc(st, 0, _cs);
        WalkL1(st, _l1, _h.L1TableOffset, (long)_h.L1Size * 8, active: true);
        if (_h.HasDataFile && _snapshots.Count > 0)
            st.Corrupt($"ERROR {_snapshots.Count} snapshots in image with data file");
        for (int i = 0; i < _snapshots.Count; i++)
        {
            // version 3 needs the extra data up to the disk size (qemu's "incomplete" entry)
            if (_h.Version >= 3 && _snapshots[i].Extra.Length < 16)
                st.Corrupt($"ERROR snapshot table entry {i} is incomplete");
        }
        foreach (var s in _snapshots)
        {
            if ((s.L1Offset & (_cs - 1)) != 0)
            {
                st.Corrupt($"ERROR snapshot {s.Id} ({s.Name}) l1_offset=0x{s.L1Offset:x}: L1 table is not cluster aligned; snapshot table entry corrupted");
                continue;
            }
            if ((long)s.L1Size * 8 > Header.MaxL1Bytes)
            {
                st.Corrupt($"ERROR snapshot {s.Id} ({s.Name}) l1_size=0x{s.L1Size:x}: L1 table is too large; snapshot table entry corrupted");
                continue;
            }
            if (s.L1Size > 0 && (s.L1Offset < 0 || s.L1Offset > long.MaxValue - (long)s.L1Size * 8))
            {
                // qemu cannot read there either: its check stops with an I/O error
                Inc(st, s.L1Offset, (long)s.L1Size * 8);
                throw new CheckIncompleteException($"Snapshot {s.Id} ({s.Name}): cannot read the L1 table at 0x{(ulong)s.L1Offset:x}.");
            }
            st.Spend(s.L1Size);
            WalkL1(st, ReadTableForCheck(s.L1Offset, s.L1Size, fileLength), s.L1Offset, (long)s.L1Size * 8, active: false);
        }
        if (_snapshots.Count > 0)
            Inc(st, _h.SnapshotsOffset, _snapshots.Sum(s => (long)SnapshotEntry.SizeOf(s)));
        if (includeRefcountStructures)
            Inc(st, _h.RefcountTableOffset, (long)_h.RefcountTableClusters * _cs);
        if (_bitmaps.Count > 0)
        {
            Inc(st, _bitmapDirOffset, _bitmapDirSize);
            foreach (var b in _bitmaps)
            {
                Inc(st, b.TableOffset, (long)b.TableSize * 8);
                st.Spend(b.TableSize);
                var t = ReadTableForCheck(b.TableOffset, b.TableSize, fileLength);
                foreach (var e in t)
                {
                    ulong off = e & OffsetMask;
                    if ((e & BitmapEntryReservedMask) != 0 || (off != 0 && ((e & 1) != 0 || (off & (ulong)(_cs - 1)) != 0)))
                    {
                        st.Corrupt($"ERROR bitmap {b.Name}: invalid bitmap table entry 0x{e:x}");
                        continue;
                    }
                    if (off != 0)
                        Inc(st, (long)off, _cs);
                }
            }
        }
        if (includeRefcountStructures)
            CheckRefblockEntries(st);
        return st;
    }

    /// <summary>qemu's check_refblocks: every refcount block is inside the image, aligned, and counted exactly once.</summary>
    private void CheckRefblockEntries(CheckState st)
    {
        var rt = ReadTableForCheck(_h.RefcountTableOffset, (long)_h.RefcountTableClusters * _cs / 8, st.FileLength);
        for (long i = 0; i < rt.Length; i++)
        {
            ulong e = rt[i];
            ulong off = e & ~0x1ffUL;
            if ((e & 0x1ff) != 0)
            {
                st.Corrupt($"ERROR refcount table entry {i} has reserved bits set");
                continue;
            }
            if ((off & (ulong)(_cs - 1)) != 0)
            {
                st.Corrupt($"ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted");
                continue;
            }
            if ((off >> _cb) >= (ulong)st.Refs.Length)
            {
                st.Corrupt($"ERROR refcount block {i} is outside image");
                continue;
            }
            if (off != 0)
            {
                Inc(st, (long)off, _cs);
                uint rc = st.Refs[(long)(off >> _cb)];
                if (rc != 1)
                    st.Corrupt($"ERROR refcount block {i} refcount={rc}");
            }
        }
    }

    /// <summary>Counts one reference to each cluster of a host range (qemu's qcow2_inc_refcounts_imrt).</summary>
    private void Inc(CheckState st, long offset, long length)
    {
        if (length <= 0)
            return;
        if (offset < 0 || offset + length - st.FileLength >= _cs)
        {
            st.Corrupt($"ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x{offset:x} size 0x{length:x}");
            return;
        }
        var refs = st.Refs;
        long last = (offset + length - 1) >> _cb;
        if (last >= refs.Length)
            refs.Length = last + 1;
        for (long c = offset >> _cb; c <= last; c++)
        {
            uint v = refs[c];
            if (v >= st.MaxRef)
            {
                st.Corrupt($"ERROR: overflow cluster offset=0x{c << _cb:x}");
                continue;
            }
            refs[c] = v + 1;
        }
    }

    /// <summary>qemu's check_refcounts_l1.</summary>
    private void WalkL1(CheckState st, ulong[] l1, long l1Offset, long l1Bytes, bool active)
    {
        if (l1Bytes == 0)
            return;
        Inc(st, l1Offset, l1Bytes);
        for (int i = 0; i < l1.Length; i++)
        {
            ulong e = l1[i];
            if (e == 0)
                continue;
            if ((e & L1ReservedMask) != 0)
                st.Corrupt($"ERROR found L1 entry with reserved bits set: {e:x}");
            long l2 = (long)(e & OffsetMask);
            Inc(st, l2, _cs);
            if ((l2 & (_cs - 1)) != 0)
                st.Corrupt($"ERROR l2_offset={l2:x}: Table is not cluster aligned; L1 entry corrupted");
            WalkL2(st, l2, active);
        }
    }

    /// <summary>Reads an L2 table (or whatever an L1 entry points at) into the check's buffer; false when it reads as all zeros.</summary>
    private bool ReadL2ForCheck(CheckState st, long l2)
    {
        st.Spend(1);
        if (l2 >= st.FileLength)
            return false;
        st.Spend(_l2Entries);
        _file.Read(l2, st.Table);
        return true;
    }

    /// <summary>qemu's check_refcounts_l2.</summary>
    private void WalkL2(CheckState st, long l2, bool active)
    {
        if (!ReadL2ForCheck(st, l2))
            return;
        var table = st.Table;
        long nextContiguous = 0;
        for (int j = 0; j < _l2Entries; j++)
        {
            ulong e = L2Entry(table, j);
            ulong bitmap = L2Bitmap(table, j);
            if (e == 0 && bitmap == 0)
                continue;
            var type = CheckClusterType(e);
            if (type != CheckCluster.Compressed && (e & L2ReservedMask) != 0)
                st.Corrupt($"ERROR found l2 entry with reserved bits set: {e:x}");
            switch (type)
            {
                case CheckCluster.Compressed:
                {
                    if ((e & Copied) != 0)
                    {
                        st.Corrupt($"ERROR: coffset=0x{CompressedRange(e).Offset:x}: copied flag must never be set for compressed clusters");
                        e &= ~Copied;
                    }
                    if (_h.HasDataFile)
                    {
                        st.Corrupt($"ERROR compressed cluster {j} with data file, entry=0x{e:x}");
                        break;
                    }
                    if (bitmap != 0)
                    {
                        st.Corrupt($"ERROR compressed cluster {j} with non-zero subcluster allocation bitmap, entry=0x{e:x}");
                        break;
                    }
                    var (coff, csize) = CompressedRange(e);
                    Inc(st, coff, csize);
                    if (active)
                    {
                        st.Allocated++;
                        st.Compressed++;
                        st.Fragmented++;
                    }
                    break;
                }
                case CheckCluster.Normal:
                case CheckCluster.ZeroAllocated:
                {
                    long host = (long)(e & OffsetMask);
                    if (((bitmap >> 32) & bitmap) != 0)
                        st.Corrupt($"ERROR offset={host:x}: Allocated cluster has corrupted subcluster allocation bitmap");
                    if ((host & (_cs - 1)) != 0)
                    {
                        bool data = _eb == 16 ? (bitmap & 0xffff_ffffUL) != 0 : (e & ZeroFlag) == 0;
                        st.Corrupt($"ERROR offset={host:x}: {(data ? "Data" : "Preallocated")} cluster is not properly aligned; L2 entry corrupted.");
                    }
                    if (active)
                    {
                        st.Allocated++;
                        if (nextContiguous != 0 && host != nextContiguous)
                            st.Fragmented++;
                        nextContiguous = host + _cs;
                    }
                    if (!_h.HasDataFile)
                        Inc(st, host, _cs);
                    break;
                }
                case CheckCluster.Unallocated:
                    if ((bitmap & 0xffff_ffffUL) != 0)
                        st.Corrupt("ERROR: Unallocated cluster has non-zero subcluster allocation map");
                    break;
            }
        }
    }

    private enum CheckCluster { Unallocated, ZeroPlain, ZeroAllocated, Normal, Compressed }

    /// <summary>qemu's qcow2_get_cluster_type.</summary>
    private CheckCluster CheckClusterType(ulong e)
    {
        if ((e & CompressedFlag) != 0)
            return CheckCluster.Compressed;
        bool hasOffset = (e & OffsetMask) != 0;
        if ((e & ZeroFlag) != 0 && _eb == 8)
            return hasOffset ? CheckCluster.ZeroAllocated : CheckCluster.ZeroPlain;
        if (!hasOffset)
            return _h.HasDataFile && (e & Copied) != 0 ? CheckCluster.Normal : CheckCluster.Unallocated;
        return CheckCluster.Normal;
    }

    /// <summary>qemu's check_oflag_copied: the COPIED flags of the active L1 and L2 tables agree with the refcounts.</summary>
    private void CheckCopiedFlags(CheckState st, CheckRefblocks rt)
    {
        for (int i = 0; i < _l1.Length; i++)
        {
            ulong l1e = _l1[i];
            long l2 = (long)(l1e & OffsetMask);
            if (l2 == 0)
                continue;
            if (!rt.TryGet(l2 >> _cb, out ulong rc, out _))
                continue;
            if ((rc == 1) != ((l1e & Copied) != 0))
                st.Corrupt($"ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1e:x} refcount={rc}");
            if (!ReadL2ForCheck(st, l2))
                continue;
            var table = st.Table;
            for (int j = 0; j < _l2Entries; j++)
            {
                ulong e = L2Entry(table, j);
                if (e == 0)
                    continue;
                var type = CheckClusterType(e);
                if (type is not (CheckCluster.Normal or CheckCluster.ZeroAllocated))
                    continue;
                ulong drc = 1;
                if (!_h.HasDataFile && !rt.TryGet((long)(e & OffsetMask) >> _cb, out drc, out _))
                    continue;
                if ((drc == 1) != ((e & Copied) != 0))
                    st.Corrupt($"ERROR OFLAG_COPIED data cluster: l2_entry={e:x} refcount={drc}");
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
