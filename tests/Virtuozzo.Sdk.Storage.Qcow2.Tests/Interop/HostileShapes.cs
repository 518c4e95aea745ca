using System.Buffers.Binary;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

/// <summary>
/// The committed corpus of crafted hostile images (issue 15): each shape is made from a small image that
/// qemu-img creates and qemu-io fills, then damaged in place the way the issue describes.
/// </summary>
internal static class HostileShapes
{
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;

    public static ulong U64(string file, long at)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var b = new byte[8];
        fs.Position = at;
        fs.ReadExactly(b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    public static void Poke(string file, long at, ulong value)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        fs.Position = at;
        fs.Write(b);
    }

    public static long L1Offset(string file) => (long)U64(file, 40);

    public static long ReftableOffset(string file) => (long)U64(file, 48);

    /// <summary>The host offset of the first L2 table.</summary>
    public static long FirstL2(string file) => (long)(U64(file, L1Offset(file)) & OffsetMask);

    /// <summary>A 3 GiB image with 2 MiB clusters whose one L2 table holds <paramref name="entries"/> random 64-bit entries.</summary>
    public static string RandomL2(string dir, int entries, int seed = 1, string name = "random-l2.qcow2")
    {
        var file = Path.Combine(dir, name);
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", file, "3G").Ok();
        Qemu.Io(file, "write -P 7 0 4M").Ok();
        long l2 = FirstL2(file);
        var rnd = new Random(seed);
        var table = new byte[entries * 8];
        rnd.NextBytes(table);
        using (var fs = new FileStream(file, FileMode.Open))
        {
            fs.Position = l2;
            fs.Write(table);
        }
        return file;
    }

    /// <summary>A 64 MiB image with 1 MiB of data, then 256 KiB cut off the end of the file.</summary>
    public static string Truncated(string dir, string name = "truncated.qcow2")
    {
        var file = Path.Combine(dir, name);
        Qemu.Img("create", "-q", "-f", "qcow2", file, "64M").Ok();
        Qemu.Io(file, "write -P 1 0 1M").Ok();
        using (var fs = new FileStream(file, FileMode.Open))
            fs.SetLength(fs.Length - (256 << 10));
        return file;
    }

    /// <summary>An image whose first data cluster's L2 entry has reserved bits (1..8 and 56..61) set.</summary>
    public static string ReservedL2Bits(string dir, ulong bits = 0x0100_0000_0000_0002UL, string name = "reserved.qcow2")
    {
        var file = Path.Combine(dir, name);
        Qemu.Img("create", "-q", "-f", "qcow2", file, "4M").Ok();
        Qemu.Io(file, "write -P 3 0 64k").Ok();
        long l2 = FirstL2(file);
        Poke(file, l2, U64(file, l2) | bits);
        return file;
    }

    /// <summary>A 1 GiB image with data at 0 and at 512 MiB whose L1[0] is 1&lt;&lt;63: offset 0 (the header) with the COPIED flag.</summary>
    public static string L1PointsAtHeader(string dir, string name = "l1-header.qcow2")
    {
        var file = Path.Combine(dir, name);
        Qemu.Img("create", "-q", "-f", "qcow2", file, "1G").Ok();
        Qemu.Io(file, "write -P 5 0 64k", "write -P 6 512M 64k").Ok();
        Poke(file, L1Offset(file), 1UL << 63);
        return file;
    }

    /// <summary>An image whose first refcount-table entry is 0x8000000000020000 (bit 63 set on a valid refblock offset).</summary>
    public static string ReftableTopBit(string dir, string name = "reftable-top-bit.qcow2")
    {
        var file = Path.Combine(dir, name);
        Qemu.Img("create", "-q", "-f", "qcow2", file, "4M").Ok();
        Qemu.Io(file, "write -P 9 0 64k").Ok();
        Poke(file, ReftableOffset(file), 0x8000_0000_0002_0000UL);
        return file;
    }

    /// <summary>A small image with data, a compressed cluster, zeros and a snapshot: the seed of the mutation fuzzer.</summary>
    public static string Seed(string dir, int clusterSize, bool snapshot, string name, string extra = "", bool bitmap = false)
    {
        var file = Path.Combine(dir, name);
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}{extra}", file, "1M").Ok();
        Qemu.Io(file, "write -P 1 0 8k", "write -c -P 2 64k 64k", "write -z 192k 16k", "write -P 4 300k 20k").Ok();
        if (snapshot)
        {
            Qemu.Img("snapshot", "-c", "s1", file).Ok();
            Qemu.Io(file, "write -P 5 4k 8k").Ok();
        }
        if (bitmap)
        {
            Qemu.Img("bitmap", "--add", file, "b1").Ok();
            Qemu.Img("bitmap", "--add", "-g", "4k", file, "b2").Ok();
        }
        return file;
    }
}
