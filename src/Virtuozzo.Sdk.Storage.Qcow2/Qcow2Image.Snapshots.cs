using System.Buffers.Binary;
using System.Text;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    /// <summary>Takes an internal snapshot of the disk (no VM state).</summary>
    /// <param name="name">The snapshot name (tag); must be unique.</param>
    /// <returns>The new snapshot.</returns>
    /// <remarks>Like <c>qemu-img snapshot -c NAME FILE</c>. Later writes copy shared clusters, so the snapshot never changes.</remarks>
    public Qcow2SnapshotInfo CreateSnapshot(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            if (_snapshots.Any(s => s.Name == name))
                throw new ArgumentException($"A snapshot named '{name}' already exists.", nameof(name));
            if (_h.RefcountBits < 2)
                throw new Qcow2NotSupportedException("Internal snapshots need refcount_bits of at least 2.");
            if (_snapshots.Count >= 65536)
                throw new InvalidOperationException("Too many snapshots.");
            BeginMetadataTransaction();
            // 1. every table and cluster the active L1 reaches gains a reference (refused up front on overflow)
            UpdateReferences(_l1, +1);
            // 2. copy the active L1; COPIED drops where clusters are now shared
            long l1Bytes = (long)_l1.Length * 8;
            long l1Off = l1Bytes == 0 ? 0 : AllocateClusters((l1Bytes + _cs - 1) / _cs);
            if (l1Bytes > 0)
                _file.Write(l1Off, SerializeTable(_l1, (l1Bytes + _cs - 1) / _cs * _cs));
            FixCopiedFlags();
            Barrier();
            // 3. the new table, then the header switch
            int next = _snapshots.Select(s => int.TryParse(s.Id, out int n) ? n : 0).DefaultIfEmpty(0).Max() + 1;
            var now = DateTimeOffset.UtcNow;
            var extra = new byte[24];
            BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(8), (ulong)_h.Size);
            BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(16), ulong.MaxValue);
            var entry = new SnapshotEntry
            {
                L1Offset = l1Off,
                L1Size = (uint)_l1.Length,
                Id = next.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Name = name,
                DateSec = (uint)now.ToUnixTimeSeconds(),
                DateNsec = (uint)(now.Ticks % TimeSpan.TicksPerSecond * 100),
                Extra = _h.Version >= 3 ? extra : [],
            };
            var list = new List<SnapshotEntry>(_snapshots) { entry };
            WriteSnapshotTable(list);
            EndMetadataTransaction();
            return entry.ToInfo();
        }
    }

    /// <summary>Reverts the disk to an internal snapshot; data written since is lost.</summary>
    /// <param name="snapshot">The snapshot id or name.</param>
    /// <remarks>Like <c>qemu-img snapshot -a NAME FILE</c>.</remarks>
    public void ApplySnapshot(string snapshot)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            var s = FindSnapshot(snapshot);
            var snapL1 = ReadSnapshotL1(s);
            BeginMetadataTransaction();
            UpdateReferences(snapL1, +1);
            Barrier();
            var old = _l1;
            long size = s.DiskSize >= 0 ? s.DiskSize : _h.Size;
            long l2Span = (long)_l2Entries << _cb;
            long need = Math.Max(snapL1.Length, (size + l2Span - 1) / l2Span);
            if (need > _l1.Length)
                GrowL1(need);
            // every table the snapshot reaches is shared now: no COPIED until the old tree is released
            var active = new ulong[_l1.Length];
            for (int i = 0; i < snapL1.Length; i++)
                active[i] = snapL1[i] & ~Copied;
            _file.Write(_h.L1TableOffset, SerializeTable(active, (long)active.Length * 8));
            _l1 = active;
            if (size != _h.Size)
                SetSize(size);
            _l2Cache.Clear();
            Barrier();
            UpdateReferences(old, -1);
            FixCopiedFlags();
            EndMetadataTransaction();
        }
    }

    /// <summary>Deletes an internal snapshot and frees the clusters only it used.</summary>
    /// <param name="snapshot">The snapshot id or name.</param>
    /// <remarks>Like <c>qemu-img snapshot -d NAME FILE</c>.</remarks>
    public void DeleteSnapshot(string snapshot)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            var s = FindSnapshot(snapshot);
            var snapL1 = ReadSnapshotL1(s);
            BeginMetadataTransaction();
            var list = new List<SnapshotEntry>(_snapshots);
            list.Remove(s);
            WriteSnapshotTable(list);
            UpdateReferences(snapL1, -1);
            long l1Clusters = ((long)s.L1Size * 8 + _cs - 1) / _cs;
            for (long i = 0; i < l1Clusters; i++)
                AddRef((s.L1Offset >> _cb) + i, -1);
            FixCopiedFlags();
            EndMetadataTransaction();
        }
    }

    /// <summary>
    /// Snapshot operations change refcounts and COPIED flags in separate clusters, which no write order
    /// makes atomic (QEMU has the same window). The dirty bit covers them: after a crash inside, the next
    /// read-write open (here or in QEMU) rebuilds the refcounts and flags.
    /// </summary>
    private void BeginMetadataTransaction()
    {
        FlushMetadata();
        _file.Flush();
        if (_h.Version < 3)
            return;
        _h.Incompatible |= Header.IncompatDirty;
        WriteHeaderU64(72, _h.Incompatible);
        _file.Flush();
    }

    private void EndMetadataTransaction()
    {
        FlushMetadata();
        _file.Flush();
        if (_h.Version < 3)
            return;
        _h.Incompatible &= ~Header.IncompatDirty;
        WriteHeaderU64(72, _h.Incompatible);
        _file.Flush();
    }

    private byte[] SerializeTable(ulong[] t, long bytes)
    {
        var raw = new byte[bytes];
        for (int i = 0; i < t.Length; i++)
            BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), t[i]);
        return raw;
    }

    /// <summary>Adds <paramref name="delta"/> to the refcount of every L2 table and data cluster an L1 table reaches.</summary>
    private void UpdateReferences(ulong[] l1, int delta)
    {
        if (delta > 0)
        {
            // refuse before changing anything when a refcount would overflow (narrow refcount_bits)
            var adds = new Dictionary<long, ulong>();
            ForEachReferencedCluster(l1, c => adds[c] = adds.GetValueOrDefault(c) + (ulong)delta);
            foreach (var (c, add) in adds)
                if (GetRefcount(c) + add > MaxRefcount)
                    throw new Qcow2Exception($"Refcount overflow: cluster {c} would need more references than refcount_bits={_h.RefcountBits} holds. Widen the refcounts (convert with -o refcount_bits=16) to take more snapshots.");
        }
        ForEachReferencedCluster(l1, c => AddRef(c, delta));
    }

    /// <summary>Calls <paramref name="visit"/> for every cluster an L1 table reaches: each data cluster (every host cluster a compressed one spans), then its L2 table.</summary>
    private void ForEachReferencedCluster(ulong[] l1, Action<long> visit)
    {
        foreach (var l1e in l1)
        {
            long l2 = (long)(l1e & OffsetMask);
            if (l2 == 0)
                continue;
            var table = GetL2(l2);
            for (int j = 0; j < _l2Entries; j++)
            {
                ulong e = L2Entry(table, j);
                if ((e & CompressedFlag) != 0)
                {
                    var (coff, csize) = CompressedRange(e);
                    for (long c = coff >> _cb; c <= (coff + csize - 1) >> _cb; c++)
                        visit(c);
                }
                else if ((e & OffsetMask) != 0)
                    visit((long)(e & OffsetMask) >> _cb);
            }
            visit(l2 >> _cb);
        }
    }

    /// <summary>Writes a new snapshot table, switches the header to it, then frees the old one.</summary>
    private void WriteSnapshotTable(List<SnapshotEntry> list)
    {
        long bytes = list.Sum(s => (long)SnapshotEntry.SizeOf(s));
        long off = 0;
        if (bytes > 0)
        {
            var raw = new byte[(bytes + _cs - 1) / _cs * _cs];
            int p = 0;
            foreach (var s in list)
            {
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(p), (ulong)s.L1Offset);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 8), s.L1Size);
                var id = Encoding.UTF8.GetBytes(s.Id);
                var name = Encoding.UTF8.GetBytes(s.Name);
                BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(p + 12), (ushort)id.Length);
                BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(p + 14), (ushort)name.Length);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 16), s.DateSec);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 20), s.DateNsec);
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(p + 24), s.VmClockNsec);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 32), s.VmStateSize);
                BinaryPrimitives.WriteUInt32BigEndian(raw.AsSpan(p + 36), (uint)s.Extra.Length);
                int q = p + 40;
                s.Extra.CopyTo(raw, q);
                q += s.Extra.Length;
                id.CopyTo(raw, q);
                q += id.Length;
                name.CopyTo(raw, q);
                p += SnapshotEntry.SizeOf(s);
            }
            off = AllocateClusters(raw.Length / _cs);
            _file.Write(off, raw);
        }
        Barrier();
        long oldOff = _h.SnapshotsOffset;
        long oldBytes = _snapshots.Sum(s => (long)SnapshotEntry.SizeOf(s));
        Span<byte> hdr = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32BigEndian(hdr, (uint)list.Count);
        BinaryPrimitives.WriteUInt64BigEndian(hdr[4..], (ulong)off);
        _file.Write(60, hdr);
        Barrier();
        _h.NbSnapshots = (uint)list.Count;
        _h.SnapshotsOffset = off;
        _snapshots.Clear();
        _snapshots.AddRange(list);
        if (oldOff != 0 && oldBytes > 0)
            for (long c = oldOff >> _cb; c <= (oldOff + oldBytes - 1) >> _cb; c++)
                AddRef(c, -1);
    }
}
