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
}
