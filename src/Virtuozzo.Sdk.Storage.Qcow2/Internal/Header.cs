using System.Buffers.Binary;
using System.Text;

namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>The QCOW2 header and its extensions, parsed with every field bounded, and serialised back with unknown fields and extensions preserved.</summary>
internal sealed class Header
{
    public const uint Magic = 0x514649fb;
    public const uint ExtEnd = 0;
    public const uint ExtBackingFormat = 0xe2792aca;
    public const uint ExtFeatureTable = 0x6803f857;
    public const uint ExtBitmaps = 0x23852875;
    public const uint ExtCrypto = 0x0537be77;
    public const uint ExtDataFile = 0x44415441;

    public const ulong IncompatDirty = 1, IncompatCorrupt = 2, IncompatDataFile = 4, IncompatCompression = 8, IncompatExtL2 = 16;
    public const ulong IncompatKnown = 0x1f;
    public const ulong CompatLazyRefcounts = 1;
    public const ulong AutoclearBitmaps = 1, AutoclearDataFileRaw = 2;
    public const ulong AutoclearKnown = AutoclearBitmaps;

    public const int MaxClusterBits = 21;
    public const long MaxL1Bytes = 32L << 20;
    public const long MaxReftableBytes = 8L << 20;
    public const long MaxVirtualSize = 1L << 55;

    public uint Version;
    public ulong BackingFileOffset;
    public uint BackingFileSize;
    public int ClusterBits;
    public long Size;
    public uint CryptMethod;
    public uint L1Size;
    public long L1TableOffset;
    public long RefcountTableOffset;
    public uint RefcountTableClusters;
    public uint NbSnapshots;
    public long SnapshotsOffset;
    public ulong Incompatible;
    public ulong Compatible;
    public ulong Autoclear;
    public int RefcountOrder = 4;
    public uint HeaderLength;
    public byte CompressionType;
    /// <summary>Header bytes from 105 to header_length: unknown optional fields, preserved verbatim.</summary>
    public byte[] Tail = [];
    /// <summary>Extensions other than the backing format one, in file order, preserved verbatim.</summary>
    public List<(uint Type, byte[] Data)> Extensions = [];
    public string? BackingFile;
    public string? BackingFormat;

    public int ClusterSize => 1 << ClusterBits;
    public bool ExtendedL2 => (Incompatible & IncompatExtL2) != 0;
    public int RefcountBits => 1 << RefcountOrder;

    public bool HasDataFile => (Incompatible & IncompatDataFile) != 0;

    public string? DataFileName => Extensions.FirstOrDefault(e => e.Type == ExtDataFile).Data is { } d ? Encoding.UTF8.GetString(d) : null;

    public static Header Parse(ReadOnlySpan<byte> b)
    {
        if (b.Length < 72 || BinaryPrimitives.ReadUInt32BigEndian(b) != Magic)
            throw new Qcow2FormatException("Not a QCOW2 image (bad magic).");
        var h = new Header
        {
            Version = BinaryPrimitives.ReadUInt32BigEndian(b[4..]),
            BackingFileOffset = BinaryPrimitives.ReadUInt64BigEndian(b[8..]),
            BackingFileSize = BinaryPrimitives.ReadUInt32BigEndian(b[16..]),
        };
        uint cb = BinaryPrimitives.ReadUInt32BigEndian(b[20..]);
        if (h.Version is not (2 or 3))
            throw new Qcow2NotSupportedException($"Unsupported QCOW version {h.Version}.");
        if (cb < 9 || cb > MaxClusterBits)
            throw new Qcow2FormatException($"Invalid cluster_bits {cb} (must be 9..{MaxClusterBits}).");
        h.ClusterBits = (int)cb;
        int cs = h.ClusterSize;
        ulong size = BinaryPrimitives.ReadUInt64BigEndian(b[24..]);
        if (size > MaxVirtualSize)
            throw new Qcow2FormatException($"Virtual size {size} is too large.");
        h.Size = (long)size;
        h.CryptMethod = BinaryPrimitives.ReadUInt32BigEndian(b[32..]);
        h.L1Size = BinaryPrimitives.ReadUInt32BigEndian(b[36..]);
        h.L1TableOffset = CheckOffset(BinaryPrimitives.ReadUInt64BigEndian(b[40..]), cs, "l1_table_offset", h.L1Size * 8L);
        h.RefcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(b[56..]);
        h.RefcountTableOffset = CheckOffset(BinaryPrimitives.ReadUInt64BigEndian(b[48..]), cs, "refcount_table_offset", (long)h.RefcountTableClusters * cs);
        h.NbSnapshots = BinaryPrimitives.ReadUInt32BigEndian(b[60..]);
        ulong snapshotsOffset = BinaryPrimitives.ReadUInt64BigEndian(b[64..]);
        // qemu's qcow2_validate_table: aligned, and the table ends below 2^63 (past the end of the file it
        // reads as zeros, which check reports)
        if ((snapshotsOffset & (ulong)(cs - 1)) != 0 || snapshotsOffset > (ulong)(long.MaxValue - h.NbSnapshots * 40L))
            throw new Qcow2FormatException($"Invalid snapshots_offset 0x{snapshotsOffset:x} (must be cluster-aligned).");
        h.SnapshotsOffset = (long)snapshotsOffset;
        int extStart;
        if (h.Version == 2)
        {
            h.HeaderLength = 72;
            h.RefcountOrder = 4;
            extStart = 72;
        }
        else
        {
            if (b.Length < 104)
                throw new Qcow2FormatException("Truncated version 3 header.");
            h.Incompatible = BinaryPrimitives.ReadUInt64BigEndian(b[72..]);
            h.Compatible = BinaryPrimitives.ReadUInt64BigEndian(b[80..]);
            h.Autoclear = BinaryPrimitives.ReadUInt64BigEndian(b[88..]);
            uint order = BinaryPrimitives.ReadUInt32BigEndian(b[96..]);
            if (order > 6)
                throw new Qcow2FormatException($"Invalid refcount_order {order}.");
            h.RefcountOrder = (int)order;
            h.HeaderLength = BinaryPrimitives.ReadUInt32BigEndian(b[100..]);
            if (h.HeaderLength < 104 || h.HeaderLength > cs || h.HeaderLength > b.Length)
                throw new Qcow2FormatException($"Invalid header_length {h.HeaderLength}.");
            if (h.HeaderLength > 104)
            {
                h.CompressionType = b[104];
                h.Tail = b[105..(int)h.HeaderLength].ToArray();
            }
            extStart = (int)((h.HeaderLength + 7) & ~7u);
        }
        if (h.CryptMethod != 0)
            throw new Qcow2NotSupportedException($"Encrypted images (crypt_method {h.CryptMethod}) are not supported.");
        ulong unknown = h.Incompatible & ~IncompatKnown;
        if (unknown != 0)
            throw new Qcow2NotSupportedException($"Unsupported incompatible feature bits 0x{unknown:x}.");
        bool compressionBit = (h.Incompatible & IncompatCompression) != 0;
        if (compressionBit != (h.CompressionType != 0))
            throw new Qcow2FormatException("The compression type field and the compression-type feature bit disagree.");
        if (h.CompressionType > 1)
            throw new Qcow2NotSupportedException($"Unknown compression type {h.CompressionType}.");
        if (h.ExtendedL2 && h.ClusterBits < 14)
            throw new Qcow2FormatException("Extended L2 entries need clusters of at least 16 KiB.");
        if ((long)h.L1Size * 8 > MaxL1Bytes)
            throw new Qcow2FormatException($"L1 table too large ({h.L1Size} entries).");
        long l2Entries = cs / (h.ExtendedL2 ? 16 : 8);
        long needL1 = (h.Size + (cs * l2Entries) - 1) / (cs * l2Entries);
        if (h.L1Size < needL1)
            throw new Qcow2FormatException("L1 table is too small for the virtual size.");
        // an L1 table at offset 0 or an empty refcount table open read-only, as in qemu (check reports
        // them); the image constructor refuses them for writing
        if ((long)h.RefcountTableClusters * cs > MaxReftableBytes)
            throw new Qcow2FormatException($"Invalid refcount table size ({h.RefcountTableClusters} clusters).");
        if (h.NbSnapshots > 65536)
            throw new Qcow2FormatException("Too many snapshots.");
        if (h.BackingFileOffset != 0)
        {
            if (h.BackingFileSize > 1023 || h.BackingFileOffset > (ulong)cs || h.BackingFileOffset + h.BackingFileSize > (ulong)Math.Min(cs, b.Length))
                throw new Qcow2FormatException("Invalid backing file name location.");
            h.BackingFile = Encoding.UTF8.GetString(b.Slice((int)h.BackingFileOffset, (int)h.BackingFileSize));
        }
        // Extensions
        int end = h.BackingFileOffset != 0 ? (int)h.BackingFileOffset : Math.Min(cs, b.Length);
        int p = extStart;
        var seen = new HashSet<uint>();
        while (p + 8 <= end)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(b[p..]);
            uint len = BinaryPrimitives.ReadUInt32BigEndian(b[(p + 4)..]);
            if (type == ExtEnd)
                break;
            if (len > end - p - 8)
                throw new Qcow2FormatException($"Header extension 0x{type:x8} is too long.");
            var data = b.Slice(p + 8, (int)len);
            if (!seen.Add(type))
                throw new Qcow2FormatException($"Duplicate header extension 0x{type:x8}.");
            if (type == ExtBackingFormat)
                h.BackingFormat = Encoding.UTF8.GetString(data);
            else
            {
                if (type == ExtCrypto)
                    throw new Qcow2NotSupportedException("Encrypted images are not supported.");
                h.Extensions.Add((type, data.ToArray()));
            }
            p += 8 + (int)((len + 7) & ~7u);
        }
        if ((h.Incompatible & IncompatDataFile) != 0 && !h.Extensions.Any(e => e.Type == ExtDataFile))
            throw new Qcow2FormatException("The image needs an external data file but does not name it.");
        return h;
    }

    /// <summary>qemu's qcow2_validate_table: a table is cluster-aligned and ends below 2^63 (it may lie past the end of the file, which check reports).</summary>
    private static long CheckOffset(ulong v, int cs, string name, long bytes)
    {
        if ((v & (ulong)(cs - 1)) != 0 || v > (ulong)(long.MaxValue - bytes))
            throw new Qcow2FormatException($"Invalid {name} 0x{v:x} (must be cluster-aligned).");
        return (long)v;
    }

    /// <summary>Serialises the header, extensions and backing name into a buffer of cluster size.</summary>
    public byte[] Serialize()
    {
        try
        {
            return SerializeCore();
        }
        catch (Qcow2Exception) when (Extensions.Any(e => e.Type == ExtFeatureTable))
        {
            // the feature-name table is optional: drop it when the first cluster is too small
            Extensions.RemoveAll(e => e.Type == ExtFeatureTable);
            return SerializeCore();
        }
    }

    private byte[] SerializeCore()
    {
        var b = new byte[ClusterSize];
        BinaryPrimitives.WriteUInt32BigEndian(b, Magic);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), Version);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(20), (uint)ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(24), (ulong)Size);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(32), CryptMethod);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(36), L1Size);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(40), (ulong)L1TableOffset);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(48), (ulong)RefcountTableOffset);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(56), RefcountTableClusters);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(60), NbSnapshots);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(64), (ulong)SnapshotsOffset);
        int p;
        if (Version >= 3)
        {
            BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(72), Incompatible);
            BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(80), Compatible);
            BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(88), Autoclear);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(96), (uint)RefcountOrder);
            uint hl = Math.Max(HeaderLength, 112);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(100), hl);
            b[104] = CompressionType;
            Tail.AsSpan(0, Math.Min(Tail.Length, (int)hl - 105)).CopyTo(b.AsSpan(105));
            p = (int)((hl + 7) & ~7u);
        }
        else
            p = 72;
        void Ext(uint type, ReadOnlySpan<byte> data)
        {
            if (p + 8 + data.Length > b.Length)
                throw new Qcow2Exception("The header extensions do not fit in the first cluster.");
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(p), type);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(p + 4), (uint)data.Length);
            data.CopyTo(b.AsSpan(p + 8));
            p += 8 + ((data.Length + 7) & ~7);
        }
        if (BackingFormat is not null)
            Ext(ExtBackingFormat, Encoding.UTF8.GetBytes(BackingFormat));
        foreach (var (type, data) in Extensions)
            Ext(type, data);
        Ext(ExtEnd, []);
        if (BackingFile is not null)
        {
            var name = Encoding.UTF8.GetBytes(BackingFile);
            if (name.Length > 1023)
                throw new ArgumentException("The backing file name is too long.");
            if (p + name.Length > b.Length)
                throw new Qcow2Exception("The backing file name does not fit in the first cluster.");
            name.CopyTo(b.AsSpan(p));
            BackingFileOffset = (ulong)p;
            BackingFileSize = (uint)name.Length;
        }
        else
        {
            BackingFileOffset = 0;
            BackingFileSize = 0;
        }
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), BackingFileOffset);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), BackingFileSize);
        if (HeaderLength < 112 && Version >= 3)
            HeaderLength = 112;
        return b;
    }

    /// <summary>The feature-name table qemu-img writes, so that tools can name the bits.</summary>
    public static byte[] FeatureTable()
    {
        (byte Type, byte Bit, string Name)[] rows =
        [
            (0, 0, "dirty bit"), (0, 1, "corrupt bit"), (0, 2, "external data file"), (0, 3, "compression type"), (0, 4, "extended L2 entries"),
            (1, 0, "lazy refcounts"), (2, 0, "bitmaps"), (2, 1, "raw external data"),
        ];
        var t = new byte[rows.Length * 48];
        for (int i = 0; i < rows.Length; i++)
        {
            t[i * 48] = rows[i].Type;
            t[i * 48 + 1] = rows[i].Bit;
            Encoding.ASCII.GetBytes(rows[i].Name).CopyTo(t.AsSpan(i * 48 + 2));
        }
        return t;
    }
}
