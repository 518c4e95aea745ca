using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

public sealed partial class Qcow2Image
{
    private long _bitmapDirOffset;
    private long _bitmapDirSize;

    private List<SnapshotEntry> ReadSnapshots()
    {
        if (_h.NbSnapshots == 0)
            return [];
        // as qemu reads it: the part past the end of the file reads as zeros
        long inFile = Math.Clamp(_file.Length - _h.SnapshotsOffset, 0, SnapshotEntry.MaxTableBytes);
        var t = new byte[inFile];
        _file.Read(_h.SnapshotsOffset, t);
        return SnapshotEntry.Parse(t, _h.NbSnapshots);
    }

    /// <summary>A snapshot's L1 table, after the checks that parsing leaves to its users.</summary>
    private ulong[] ReadSnapshotL1(SnapshotEntry s)
    {
        if ((s.L1Offset & (_cs - 1)) != 0 || s.L1Offset <= 0 || (long)s.L1Size * 8 > Header.MaxL1Bytes)
            throw new Qcow2FormatException($"Snapshot {s.Id} ({s.Name}) has an invalid L1 table (offset 0x{s.L1Offset:x}, {s.L1Size} entries).");
        return ReadTable(s.L1Offset, s.L1Size, "snapshot L1 table");
    }

    private List<BitmapEntry> ReadBitmaps()
    {
        var ext = _h.Extensions.FirstOrDefault(e => e.Type == Header.ExtBitmaps);
        if (ext.Data is null)
            return [];
        bool valid = ext.Data.Length >= 24;
        uint nb = valid ? BinaryPrimitives.ReadUInt32BigEndian(ext.Data) : 0;
        ulong size = valid ? BinaryPrimitives.ReadUInt64BigEndian(ext.Data.AsSpan(8)) : 0;
        ulong off = valid ? BinaryPrimitives.ReadUInt64BigEndian(ext.Data.AsSpan(16)) : 0;
        valid = valid && nb <= 65535 && size <= 64UL << 20 && (off & (ulong)(_cs - 1)) == 0 && off <= (ulong)_file.Length && size <= (ulong)_file.Length + (ulong)_cs - off;
        if ((_h.Autoclear & Header.AutoclearBitmaps) == 0)
        {
            // without the autoclear bit the bitmaps are stale and ignored, their extension unchecked (as in
            // qemu); a valid directory is still known, so that rewriting it frees the old one
            if (valid)
            {
                _bitmapDirOffset = (long)off;
                _bitmapDirSize = (long)size;
            }
            return [];
        }
        if (!valid)
            throw new Qcow2FormatException("The bitmaps header extension is invalid.");
        _bitmapDirOffset = (long)off;
        _bitmapDirSize = (long)size;
        // a directory whose tail (padding) lies past the end of the file reads as zeros there, as in qemu
        var d = new byte[size];
        _file.Read((long)off, d);
        var list = BitmapEntry.Parse(d, nb, _cs);
        foreach (var b in list)
            if (b.Type == 1 && b.TableSize != BitmapTableSize(b.GranularityBits))
                throw new Qcow2FormatException($"Bitmap '{b.Name}' has {b.TableSize} table entries; its granularity and the disk size need {BitmapTableSize(b.GranularityBits)}.");
        return list;
    }

    /// <summary>The internal snapshots, like <c>qemu-img snapshot -l</c>.</summary>
    public IReadOnlyList<Qcow2SnapshotInfo> Snapshots
    {
        get { lock (_lock) return _snapshots.Select(s => s.ToInfo()).ToList(); }
    }

    /// <summary>The persistent dirty bitmaps stored in the image.</summary>
    public IReadOnlyList<Qcow2BitmapInfo> Bitmaps
    {
        get { lock (_lock) return _bitmaps.Select(b => b.ToInfo()).ToList(); }
    }

    /// <summary>Reads from an internal snapshot's view of the disk.</summary>
    /// <param name="snapshot">The snapshot id or name.</param>
    /// <param name="offset">Guest offset.</param>
    /// <param name="buffer">Where to put the bytes.</param>
    /// <remarks>Like <c>qemu-img convert -l snapshot.name=NAME</c>.</remarks>
    public void ReadSnapshot(string snapshot, long offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            var s = FindSnapshot(snapshot);
            long size = s.DiskSize >= 0 ? s.DiskSize : _h.Size;
            ArgumentOutOfRangeException.ThrowIfNegative(offset);
            if (offset + buffer.Length > size)
                throw new ArgumentOutOfRangeException(nameof(offset), "The range ends past the snapshot's disk size.");
            var l1 = ReadSnapshotL1(s);
            ReadCore(l1, offset, buffer);
        }
    }

    /// <summary>The virtual size recorded by a snapshot.</summary>
    /// <param name="snapshot">The snapshot id or name.</param>
    /// <returns>The size in bytes.</returns>
    public long GetSnapshotSize(string snapshot)
    {
        lock (_lock)
        {
            var s = FindSnapshot(snapshot);
            return s.DiskSize >= 0 ? s.DiskSize : _h.Size;
        }
    }

    private SnapshotEntry FindSnapshot(string snapshot)
        => _snapshots.FirstOrDefault(s => s.Id == snapshot) ?? _snapshots.FirstOrDefault(s => s.Name == snapshot)
           ?? throw new ArgumentException($"No snapshot '{snapshot}' in the image.", nameof(snapshot));
}
