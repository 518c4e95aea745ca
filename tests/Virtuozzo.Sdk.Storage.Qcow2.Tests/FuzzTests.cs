using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

public class FuzzTests
{
    private static byte[] BaseImage(int version, bool extL2, out int cs)
    {
        cs = extL2 ? 16384 : 512;
        var s = new MemoryStorage();
        using (var img = Qcow2Image.Create(s, new Qcow2CreateOptions { Size = 512 << 10, ClusterSize = cs, Version = version, ExtendedL2 = extL2, RefcountBits = version == 2 ? 16 : 8 }))
        {
            img.Write(1000, TestData.Pattern(30_000, 1));
            img.WriteCompressed(64 << 10, TestData.Compressible(32 << 10, 2));
            img.WriteZeroes(100 << 10, 8 << 10);
            img.Write(200 << 10, TestData.Pattern(20_000, 3));
            if (version == 3)
            {
                img.CreateSnapshot("s1");
                img.AddBitmap("b1", 4096);
                img.Write(300 << 10, TestData.Pattern(10_000, 4));
            }
        }
        return s.ToArray();
    }

    [Theory]
    [InlineData(3, false, 2500)]
    [InlineData(2, false, 800)]
    [InlineData(3, true, 700)]
    public void Mutated_images_fail_only_with_the_format_exception(int version, bool extL2, int cases)
    {
        var pristine = BaseImage(version, extL2, out int cs);
        var rnd = new Random(version * 100 + (extL2 ? 1 : 0));
        for (int n = 0; n < cases; n++)
        {
            var bytes = (byte[])pristine.Clone();
            int mutations = rnd.Next(1, 4);
            for (int m = 0; m < mutations; m++)
            {
                int where = rnd.Next(4) switch
                {
                    0 => rnd.Next(0, 112),                      // header fields
                    1 => rnd.Next(0, Math.Min(cs, bytes.Length)), // header cluster incl. extensions
                    _ => rnd.Next(0, bytes.Length - 8),         // tables, refblocks, L2 entries, compressed data
                };
                switch (rnd.Next(4))
                {
                    case 0: bytes[where] ^= (byte)(1 << rnd.Next(8)); break;
                    case 1: bytes[where] = (byte)rnd.Next(256); break;
                    case 2: BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(where & ~7), (ulong)rnd.NextInt64()); break;
                    default: BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(where & ~3), (uint)rnd.Next()); break;
                }
            }
            Exercise(bytes, n);
        }
    }

    private static void Exercise(byte[] bytes, int n)
    {
        try
        {
            using (var img = Qcow2Image.Open(new MemoryStorage(bytes), new Qcow2OpenOptions { ReadOnly = true }))
            {
                var buf = new byte[Math.Min(img.Size, 1 << 20)];
                img.Read(0, buf);
                img.GetAllocationMap(0, buf.Length);
                img.Check();
                foreach (var s in img.Snapshots)
                    img.ReadSnapshot(s.Id, 0, new byte[Math.Min(img.GetSnapshotSize(s.Id), 4096)]);
                foreach (var b in img.Bitmaps)
                    img.GetDirtyExtents(b.Name);
            }
            using (var img = Qcow2Image.Open(new MemoryStorage(bytes)))
            {
                long size = img.Size;
                if (size > 70_000)
                {
                    img.Write(5000, new byte[70_000]);
                    img.WriteCompressed(0, TestData.Compressible(img.ClusterSize, n));
                    img.Discard(0, size);
                }
                foreach (var b in img.Bitmaps)
                    img.ClearBitmap(b.Name);
                foreach (var s in img.Snapshots)
                    img.DeleteSnapshot(s.Id);
                img.Check(Qcow2RepairMode.All);
            }
        }
        catch (Qcow2FormatException)
        {
            // the only acceptable failure for a hostile image
        }
        catch (Exception ex)
        {
            throw new InvalidOperationException($"Fuzz case {n} escaped with {ex.GetType().Name}: {ex.Message}", ex);
        }
    }

    [Theory]
    [InlineData(false, 1500)]
    [InlineData(true, 600)]
    public void Hostile_table_entries_fail_only_with_the_format_exception(bool extL2, int cases)
    {
        var pristine = BaseImage(3, extL2, out int cs);
        var h = Header.Parse(pristine);
        int eb = extL2 ? 16 : 8;
        ulong U(long at) => BinaryPrimitives.ReadUInt64BigEndian(pristine.AsSpan((int)at));
        // where the tables are: L1 entries, L2 entries, reftable entries, snapshot table, bitmap directory
        var l1 = Enumerable.Range(0, (int)h.L1Size).Select(i => h.L1TableOffset + i * 8L).ToList();
        var l2 = l1.Select(a => (long)(U(a) & 0x00ff_ffff_ffff_fe00UL)).Where(o => o != 0)
            .SelectMany(t => Enumerable.Range(0, cs / eb).Select(i => t + (long)i * eb)).ToList();
        var rt = Enumerable.Range(0, (int)(h.RefcountTableClusters * cs / 8)).Select(i => h.RefcountTableOffset + i * 8L).ToList();
        var snap = Enumerable.Range(0, 64).Select(i => h.SnapshotsOffset + i).ToList();
        var rnd = new Random(extL2 ? 7 : 8);
        int shift = 62 - (h.ClusterBits - 8);
        for (int n = 0; n < cases; n++)
        {
            var bytes = (byte[])pristine.Clone();
            int kind = rnd.Next(6);
            long at = kind switch
            {
                0 => l1[rnd.Next(l1.Count)],
                1 or 2 or 3 => l2[rnd.Next(l2.Count)],
                4 => rt[rnd.Next(rt.Count)],
                _ => snap[rnd.Next(snap.Count)] & ~7L,
            };
            ulong value = rnd.Next(6) switch
            {
                // a compressed descriptor with a random host offset and sector count
                0 => (1UL << 62) | ((ulong)rnd.NextInt64(1L << (h.ClusterBits - 8)) << shift) | (ulong)rnd.NextInt64(bytes.Length + 4096),
                // a standard entry at a random, possibly unaligned or far, offset
                1 => (rnd.Next(2) == 0 ? 1UL << 63 : 0UL) | ((ulong)rnd.NextInt64(bytes.Length * 2L) & 0x00ff_ffff_ffff_fe00UL) | (ulong)(uint)rnd.Next(2),
                2 => (ulong)rnd.NextInt64(bytes.Length) & ~511UL,
                3 => (ulong)rnd.NextInt64() | (1UL << 63),
                4 => 1UL << 63,
                _ => (ulong)rnd.Next(16),
            };
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)at), value);
            if (extL2 && kind is 1 or 2 or 3)
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)at + 8), (ulong)rnd.NextInt64());
            Exercise(bytes, n);
        }
    }

    [Fact]
    public void A_bitmap_directory_offset_that_wraps_around_fails_only_with_the_format_exception()
    {
        var bytes = BaseImage(3, false, out _);
        // the bitmaps header extension: magic, length 24, nb_bitmaps, reserved, directory size, directory offset
        int at = -1;
        for (int i = 104; i + 8 <= 4096; i += 8)
            if (BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(i)) == 0x23852875)
            {
                at = i;
                break;
            }
        at.Should().BePositive("the base image has a bitmap");
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(at + 8 + 8), 0x20000);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(at + 8 + 16), 0xffff_ffff_ffff_0000UL);
        var act = () => Qcow2Image.Open(new MemoryStorage(bytes), new Qcow2OpenOptions { ReadOnly = true }).Dispose();
        act.Should().Throw<Qcow2FormatException>();
    }
}
