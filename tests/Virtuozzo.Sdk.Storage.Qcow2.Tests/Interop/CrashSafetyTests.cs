using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class CrashSafetyTests
{
    private static void Workload(Qcow2Image img, int seed)
    {
        var rnd = new Random(seed);
        long size = img.Size;
        int cs = img.ClusterSize;
        img.AddBitmap("b", 65536);
        for (int i = 0; i < 40; i++)
        {
            if (i == 15)
                img.CreateSnapshot("s");
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
        img.RemoveBitmap("b");
        img.Resize(size + (1 << 20));
        img.Write(size + 1000, TestData.Pattern(50_000, 77));
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(512, 16, false)]
    [InlineData(4096, 4, false)]
    [InlineData(65536, 64, false)]
    [InlineData(4096, 16, true)]
    public void Losing_power_at_any_write_leaves_an_image_qemu_img_check_finds_free_of_corruption(int clusterSize, int refBits, bool tinyCache)
    {
        // a tiny L2 cache makes delayed metadata flush mid-operation, on evictions
        var open = new Qcow2OpenOptions { L2CacheSize = tinyCache ? 2L * clusterSize : 32L << 20 };
        using var dir = new TempDirectory();
        // dry run: count the writes
        var dry = new PowerLossStorage();
        int start;
        using (var img = Qcow2Image.Create(dry, new Qcow2CreateOptions { Size = 2 << 20, ClusterSize = clusterSize, RefcountBits = refBits }, open))
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
        int dirtyCount = 0;
        for (int p = 0; p < points; p++)
        {
            int crashAt = start + 1 + (int)((long)total * p / points) + rnd.Next(Math.Max(1, total / points));
            var s = new PowerLossStorage();
            var img = Qcow2Image.Create(s, new Qcow2CreateOptions { Size = 2 << 20, ClusterSize = clusterSize, RefcountBits = refBits }, open);
            img.Flush();
            s.WritesBeforePowerLoss = crashAt;
            try
            {
                Workload(img, clusterSize);
            }
            catch (PowerLossStorage.PowerLostException)
            {
            }
            // even points: the process is killed (every issued write lands); odd points: power loss (a random subset)
            File.WriteAllBytes(file, s.Survivors(rnd, processKill: p % 2 == 0));
            bool dirty = Qemu.Json("info", "--output=json", "-U", file).GetProperty("dirty-flag").GetBoolean();
            if (dirty)
            {
                // a crash inside a snapshot operation: the dirty bit makes the next read-write open repair it,
                // here and in QEMU
                dirtyCount++;
                var qemuCopy = dir.File("crash-qemu.qcow2");
                File.Copy(file, qemuCopy, overwrite: true);
                Qemu.Io(qemuCopy, "flush").Ok();
                Qemu.Img("check", qemuCopy).ExitCode.Should().BeOneOf([0, 3], "QEMU repairs a dirty image when it opens it read-write");
                using (Qcow2Image.Open(file)) { }
            }
            var check = Qemu.Img("check", file);
            check.ExitCode.Should().BeOneOf([0, 3], $"a power loss at write {crashAt} must leave at most leaks:\n{check.StdOut}{check.StdErr}");
            using var reopened = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
            reopened.Check().Corruptions.Should().Be(0);
        }
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Losing_power_inside_snapshot_operations_leaves_an_image_that_a_read_write_open_repairs()
    {
        using var dir = new TempDirectory();
        var expected = TestData.Pattern(300_000, 5);
        Qcow2Image Build(PowerLossStorage st)
        {
            var img = Qcow2Image.Create(st, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 4096 });
            img.Write(0, expected);
            img.CreateSnapshot("keep");
            img.Flush();
            return img;
        }
        var dry = new PowerLossStorage();
        int from, to;
        using (var img = Build(dry))
        {
            from = dry.Writes;
            img.CreateSnapshot("s2");
            img.DeleteSnapshot("keep");
            to = dry.Writes;
        }
        var rnd = new Random(3);
        var file = dir.File("snap-crash.qcow2");
        int dirty = 0;
        for (int crashAt = from + 1; crashAt <= to; crashAt += Math.Max(1, (to - from) / 25))
        {
            var st = new PowerLossStorage();
            var img = Build(st);
            st.WritesBeforePowerLoss = crashAt;
            try
            {
                img.CreateSnapshot("s2");
                img.DeleteSnapshot("keep");
            }
            catch (PowerLossStorage.PowerLostException)
            {
            }
            File.WriteAllBytes(file, st.Survivors(rnd));
            using (var ro = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true }))
            {
                var b = new byte[expected.Length];
                ro.Read(0, b);
                b.Should().Equal(expected, "the guest view never changes");
                if (ro.GetInfo().Dirty)
                    dirty++;
            }
            using (Qcow2Image.Open(file)) { }
            Qemu.Img("check", file).ExitCode.Should().BeOneOf([0, 3], $"after a power loss at write {crashAt} and a read-write open");
        }
        dirty.Should().BeGreaterThan(0, "some crash points fall inside the dirty window");
    }
}
