using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class CrashSafetyTests
{
    private static void Workload(Qcow2Image img, int seed)
    {
        var rnd = new Random(seed);
        long size = img.Size;
        int cs = img.ClusterSize;
        for (int i = 0; i < 40; i++)
        {
            long off = rnd.NextInt64(size - 1);
            int len = (int)Math.Min(size - off, rnd.Next(1, 40_000));
            switch (rnd.Next(6))
            {
                case 0 or 1:
                    img.Write(off, TestData.Pattern(len, i));
                    break;
                case 2:
                    img.WriteZeroes(off, len, unmap: true);
                    break;
                case 3:
                    img.Discard(off, len);
                    break;
                case 4:
                    long co = off / cs * cs;
                    img.WriteCompressed(co, TestData.Compressible((int)Math.Min(size - co, cs * 3), i));
                    break;
                default:
                    img.Flush();
                    break;
            }
        }
        img.Resize(size + (1 << 20));
        img.Write(size + 1000, TestData.Pattern(50_000, 77));
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(512, 16)]
    [InlineData(4096, 1)]
    [InlineData(65536, 64)]
    public void Losing_power_at_any_write_leaves_an_image_qemu_img_check_finds_free_of_corruption(int clusterSize, int refBits)
    {
        using var dir = new TempDirectory();
        // dry run: count the writes
        var dry = new PowerLossStorage();
        int start;
        using (var img = Qcow2Image.Create(dry, new Qcow2CreateOptions { Size = 2 << 20, ClusterSize = clusterSize, RefcountBits = refBits }))
        {
            img.Flush();
            start = dry.Writes;
            Workload(img, clusterSize);
        }
        int total = dry.Writes - start;
        total.Should().BeGreaterThan(50);
        var rnd = new Random(refBits);
        var file = dir.File("crash.qcow2");
        int points = 30;
        for (int p = 0; p < points; p++)
        {
            int crashAt = start + 1 + (int)((long)total * p / points) + rnd.Next(Math.Max(1, total / points));
            var s = new PowerLossStorage();
            var img = Qcow2Image.Create(s, new Qcow2CreateOptions { Size = 2 << 20, ClusterSize = clusterSize, RefcountBits = refBits });
            img.Flush();
            s.WritesBeforePowerLoss = crashAt;
            try
            {
                Workload(img, clusterSize);
            }
            catch (PowerLossStorage.PowerLostException)
            {
            }
            File.WriteAllBytes(file, s.Survivors(rnd));
            var check = Qemu.Img("check", file);
            check.ExitCode.Should().BeOneOf([0, 3], $"a power loss at write {crashAt} must leave at most leaks:\n{check.StdOut}{check.StdErr}");
            using var reopened = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
            reopened.Check().Corruptions.Should().Be(0);
        }
    }
}
