using System.Buffers.Binary;
using System.Text;

namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>An entry of the snapshot table, kept verbatim so it can be rewritten.</summary>
internal sealed class SnapshotEntry
{
    public long L1Offset;
    public uint L1Size;
    public string Id = "";
    public string Name = "";
    public uint DateSec, DateNsec;
    public ulong VmClockNsec;
    public uint VmStateSize;
    public byte[] Extra = [];

    public long DiskSize => Extra.Length >= 16 ? (long)BinaryPrimitives.ReadUInt64BigEndian(Extra.AsSpan(8)) : -1;

    public ulong VmStateSizeLarge => Extra.Length >= 8 ? BinaryPrimitives.ReadUInt64BigEndian(Extra) : VmStateSize;

    public Qcow2SnapshotInfo ToInfo() => new(Id, Name, DateTimeOffset.FromUnixTimeSeconds(DateSec).AddTicks(DateNsec / 100), VmClockNsec, VmStateSizeLarge, DiskSize);

    /// <summary>The most bytes a snapshot table may take (qemu's QCOW_MAX_SNAPSHOTS_SIZE).</summary>
    public const int MaxTableBytes = 64 << 20;

    /// <summary>
    /// Parses the snapshot table as qemu reads it: bytes past the end of <paramref name="t"/> (the end of the
    /// file) read as zeros. Entries are not validated here: check reports bad L1 pointers as corruptions, and
    /// every use of a snapshot's L1 table validates it first.
    /// </summary>
    public static List<SnapshotEntry> Parse(ReadOnlySpan<byte> t, uint count)
    {
        var list = new List<SnapshotEntry>((int)Math.Min(count, 1024));
        long p = 0;
        Span<byte> h = stackalloc byte[40];
        for (uint i = 0; i < count; i++)
        {
            Copy(t, p, h);
            var s = new SnapshotEntry
            {
                L1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(h),
                L1Size = BinaryPrimitives.ReadUInt32BigEndian(h[8..]),
            };
            int idLen = BinaryPrimitives.ReadUInt16BigEndian(h[12..]);
            int nameLen = BinaryPrimitives.ReadUInt16BigEndian(h[14..]);
            s.DateSec = BinaryPrimitives.ReadUInt32BigEndian(h[16..]);
            s.DateNsec = BinaryPrimitives.ReadUInt32BigEndian(h[20..]);
            s.VmClockNsec = BinaryPrimitives.ReadUInt64BigEndian(h[24..]);
            s.VmStateSize = BinaryPrimitives.ReadUInt32BigEndian(h[32..]);
            uint extra = BinaryPrimitives.ReadUInt32BigEndian(h[36..]);
            if (extra > 1024)
                throw new Qcow2FormatException($"Too much extra metadata in snapshot table entry {i} ({extra} bytes).");
            p += 40;
            s.Extra = new byte[extra];
            Copy(t, p, s.Extra);
            p += extra;
            var id = new byte[idLen];
            Copy(t, p, id);
            s.Id = Encoding.UTF8.GetString(id);
            p += idLen;
            var name = new byte[nameLen];
            Copy(t, p, name);
            s.Name = Encoding.UTF8.GetString(name);
            p += nameLen;
            p = (p + 7) & ~7L;
            if (p > MaxTableBytes)
                throw new Qcow2FormatException("The snapshot table is too big.");
            list.Add(s);
        }
        return list;
    }

    private static void Copy(ReadOnlySpan<byte> t, long at, Span<byte> to)
    {
        to.Clear();
        if (at < t.Length)
            t.Slice((int)at, (int)Math.Min(to.Length, t.Length - at)).CopyTo(to);
    }

    public static int SizeOf(SnapshotEntry s) => (40 + s.Extra.Length + Encoding.UTF8.GetByteCount(s.Id) + Encoding.UTF8.GetByteCount(s.Name) + 7) & ~7;
}

/// <summary>An entry of the bitmap directory.</summary>
internal sealed class BitmapEntry
{
    public long TableOffset;
    public uint TableSize;
    public uint Flags;
    public byte Type;
    public byte GranularityBits;
    public string Name = "";
    public byte[] Extra = [];

    public const uint FlagInUse = 1, FlagAuto = 2;

    public Qcow2BitmapInfo ToInfo() => new(Name, 1L << GranularityBits, (Flags & FlagAuto) != 0, (Flags & FlagInUse) != 0);

    public static List<BitmapEntry> Parse(ReadOnlySpan<byte> d, uint count, int clusterSize)
    {
        var list = new List<BitmapEntry>();
        int p = 0;
        for (uint i = 0; i < count; i++)
        {
            if (p + 24 > d.Length)
                throw new Qcow2FormatException("The bitmap directory is truncated.");
            var b = new BitmapEntry
            {
                TableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(d[p..]),
                TableSize = BinaryPrimitives.ReadUInt32BigEndian(d[(p + 8)..]),
                Flags = BinaryPrimitives.ReadUInt32BigEndian(d[(p + 12)..]),
                Type = d[p + 16],
                GranularityBits = d[p + 17],
            };
            int nameLen = BinaryPrimitives.ReadUInt16BigEndian(d[(p + 18)..]);
            uint extra = BinaryPrimitives.ReadUInt32BigEndian(d[(p + 20)..]);
            if (b.GranularityBits is < 9 or > 31 || (b.TableOffset & (clusterSize - 1)) != 0 || b.TableOffset < 0 || (long)b.TableSize * 8 > Header.MaxL1Bytes || extra > 1024)
                throw new Qcow2FormatException($"Bitmap directory entry {i} is invalid.");
            p += 24;
            if (p + extra + nameLen > d.Length)
                throw new Qcow2FormatException("The bitmap directory is truncated.");
            b.Extra = d.Slice(p, (int)extra).ToArray();
            p += (int)extra;
            b.Name = Encoding.UTF8.GetString(d.Slice(p, nameLen));
            p += nameLen;
            p = (p + 7) & ~7;
            list.Add(b);
        }
        return list;
    }
}
