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

    public static List<SnapshotEntry> Parse(ReadOnlySpan<byte> t, uint count, int clusterSize)
    {
        var list = new List<SnapshotEntry>((int)Math.Min(count, 1024));
        int p = 0;
        for (uint i = 0; i < count; i++)
        {
            if (p + 40 > t.Length)
                throw new Qcow2FormatException("The snapshot table is truncated.");
            var s = new SnapshotEntry
            {
                L1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(t[p..]),
                L1Size = BinaryPrimitives.ReadUInt32BigEndian(t[(p + 8)..]),
            };
            int idLen = BinaryPrimitives.ReadUInt16BigEndian(t[(p + 12)..]);
            int nameLen = BinaryPrimitives.ReadUInt16BigEndian(t[(p + 14)..]);
            s.DateSec = BinaryPrimitives.ReadUInt32BigEndian(t[(p + 16)..]);
            s.DateNsec = BinaryPrimitives.ReadUInt32BigEndian(t[(p + 20)..]);
            s.VmClockNsec = BinaryPrimitives.ReadUInt64BigEndian(t[(p + 24)..]);
            s.VmStateSize = BinaryPrimitives.ReadUInt32BigEndian(t[(p + 32)..]);
            uint extra = BinaryPrimitives.ReadUInt32BigEndian(t[(p + 36)..]);
            if (extra > 1024 || (s.L1Offset & (clusterSize - 1)) != 0 || s.L1Offset < 0 || (long)s.L1Size * 8 > Header.MaxL1Bytes)
                throw new Qcow2FormatException($"Snapshot table entry {i} is invalid.");
            p += 40;
            if (p + extra + idLen + nameLen > t.Length)
                throw new Qcow2FormatException("The snapshot table is truncated.");
            s.Extra = t.Slice(p, (int)extra).ToArray();
            p += (int)extra;
            s.Id = Encoding.UTF8.GetString(t.Slice(p, idLen));
            p += idLen;
            s.Name = Encoding.UTF8.GetString(t.Slice(p, nameLen));
            p += nameLen;
            p = (p + 7) & ~7;
            list.Add(s);
        }
        return list;
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
