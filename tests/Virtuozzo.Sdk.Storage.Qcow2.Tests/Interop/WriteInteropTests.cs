using System.Text.Json;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class WriteInteropTests
{
    public static TheoryData<int, int, int, bool, Qcow2CompressionType> Matrix() => new()
    {
        { 65536, 16, 3, false, Qcow2CompressionType.Zlib },
        { 512, 1, 3, false, Qcow2CompressionType.Zlib },
        { 512, 64, 3, false, Qcow2CompressionType.Zlib },
        { 4096, 2, 3, false, Qcow2CompressionType.Zstd },
        { 2 << 20, 8, 3, false, Qcow2CompressionType.Zlib },
        { 4096, 16, 2, false, Qcow2CompressionType.Zlib },
        { 65536, 32, 3, true, Qcow2CompressionType.Zlib },
        { 16384, 4, 3, true, Qcow2CompressionType.Zstd },
    };

    [IntegrationTheory("qemu-img", "qemu-io")]
    [MemberData(nameof(Matrix))]
    public void Random_writes_by_the_library_pass_qemu_img_check_and_compare_with_a_raw_twin(int clusterSize, int refBits, int version, bool extL2, Qcow2CompressionType comp)
    {
        using var dir = new TempDirectory();
        var file = dir.File("w.qcow2");
        const long size = 5 << 20;
        var model = new byte[size];
        var rnd = new Random(clusterSize ^ refBits ^ version);
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, RefcountBits = refBits, Version = version, ExtendedL2 = extL2, CompressionType = comp }))
        {
            for (int i = 0; i < 60; i++)
            {
                long off = rnd.NextInt64(size - 1);
                int len = (int)Math.Min(size - off, rnd.Next(1, 200_000));
                switch (rnd.Next(5))
                {
                    case 0 or 1:
                        var d = TestData.Pattern(len, i);
                        img.Write(off, d);
                        d.CopyTo(model, off);
                        break;
                    case 2:
                        img.WriteZeroes(off, len);
                        Array.Clear(model, (int)off, len);
                        break;
                    case 3:
                        long coff = off / clusterSize * clusterSize;
                        int clen = (int)Math.Min(size - coff, Math.Max(clusterSize, len / clusterSize * clusterSize));
                        var c = TestData.Compressible(clen, i);
                        img.WriteCompressed(coff, c);
                        c.CopyTo(model, coff);
                        break;
                    default:
                        long doff = (off + clusterSize - 1) / clusterSize * clusterSize;
                        long dend = Math.Min(size, off + len) / clusterSize * clusterSize;
                        img.Discard(off, len);
                        if (dend > doff)
                            Array.Clear(model, (int)doff, (int)(dend - doff));
                        break;
                }
            }
            TestData.ReadAll(img).SequenceEqual(model).Should().BeTrue("the library reads back what it wrote");
        }
        var raw = dir.File("twin.raw");
        File.WriteAllBytes(raw, model);
        var check = Qemu.Img("check", file);
        check.ExitCode.Should().Be(0, check.StdOut + check.StdErr);
        Qemu.Img("compare", "-f", "qcow2", "-F", "raw", file, raw).ExitCode.Should().Be(0);
        // qemu reads the pattern we wrote
        var probe = TestData.Pattern(4096, 12345).AsSpan()[0];
        using (var img = Qcow2Image.Open(file))
            img.Write(0, Enumerable.Repeat((byte)0xab, 8192).ToArray());
        Qemu.Io(file, "read -P 0xab 0 8k").Ok().StdOut.Should().NotContain("Pattern verification failed");
        _ = probe;
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(Qcow2CompressionType.Zlib)]
    [InlineData(Qcow2CompressionType.Zstd)]
    public void Compressed_writes_show_as_compressed_clusters_in_qemu_img_check(Qcow2CompressionType type)
    {
        using var dir = new TempDirectory();
        var file = dir.File("c.qcow2");
        var data = TestData.Compressible(1 << 20, 3);
        var random = TestData.Pattern(65536, 4);
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = 2 << 20, CompressionType = type }))
        {
            img.WriteCompressed(0, data);
            img.WriteCompressed(1 << 20, random);
        }
        var json = Qemu.CheckJson(file, out var rc);
        rc.Should().Be(0);
        json.GetProperty("compressed-clusters").GetInt64().Should().Be(16, "the compressible megabyte is 16 compressed clusters, the random cluster is stored plain");
        json.GetProperty("allocated-clusters").GetInt64().Should().Be(17);
        var expected = new byte[2 << 20];
        data.CopyTo(expected, 0);
        random.CopyTo(expected, 1 << 20);
        Qemu.ToRaw(file, dir.Path).SequenceEqual(expected).Should().BeTrue();
        Qemu.Json("info", "--output=json", file).GetProperty("format-specific").GetProperty("data").GetProperty("compression-type").GetString()
            .Should().Be(type == Qcow2CompressionType.Zstd ? "zstd" : "zlib");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Writing_an_overlay_copies_on_write_from_a_qcow2_backing_file_and_leaves_the_base_alone()
    {
        using var dir = new TempDirectory();
        var baseFile = dir.File("base.qcow2");
        Qemu.Img("create", "-f", "qcow2", baseFile, "4M").Ok();
        Qemu.Io(baseFile, "write -P 0x5a 0 4M").Ok();
        var baseBefore = Qemu.ToRaw(baseFile, dir.Path);
        var top = dir.File("top.qcow2");
        using (var img = Qcow2Image.Create(top, new Qcow2CreateOptions { BackingFile = "base.qcow2", BackingFormat = "qcow2", ClusterSize = 4096 }))
        {
            img.Size.Should().Be(4 << 20);
            img.Write(100, new byte[] { 1, 2, 3 });
            img.WriteZeroes(1 << 20, 8192);
            img.Discard(2 << 20, 4096);
        }
        Qemu.Img("check", top).ExitCode.Should().Be(0);
        var raw = Qemu.ToRaw(top, dir.Path);
        var expected = (byte[])baseBefore.Clone();
        expected[100] = 1; expected[101] = 2; expected[102] = 3;
        Array.Clear(expected, 1 << 20, 8192);
        Array.Clear(expected, 2 << 20, 4096);
        raw.SequenceEqual(expected).Should().BeTrue();
        Qemu.ToRaw(baseFile, dir.Path).SequenceEqual(baseBefore).Should().BeTrue();
        Qemu.Json("info", "--output=json", top).GetProperty("backing-filename-format").GetString().Should().Be("qcow2");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Writing_an_image_with_qemu_internal_snapshots_keeps_the_snapshot_intact()
    {
        using var dir = new TempDirectory();
        var file = dir.File("s.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "2M").Ok();
        Qemu.Io(file, "write -P 0x11 0 2M").Ok();
        Qemu.Img("snapshot", "-c", "snap1", file).Ok();
        using (var img = Qcow2Image.Open(file))
        {
            img.Snapshots.Should().ContainSingle(s => s.Name == "snap1");
            img.Write(4096, new byte[10000].Select(_ => (byte)0x22).ToArray());
            var snapView = new byte[8192];
            img.ReadSnapshot("snap1", 4096, snapView);
            snapView.Should().OnlyContain(b => b == 0x11);
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0);
        Qemu.Io(file, "read -P 0x22 4096 10000").Ok().StdOut.Should().NotContain("verification failed");
        var snapRaw = dir.File("snap.raw");
        Qemu.Img("convert", "-l", "snapshot.name=snap1", "-O", "raw", file, snapRaw).Ok();
        File.ReadAllBytes(snapRaw).Should().OnlyContain(b => b == 0x11);
    }

    [IntegrationFact("qemu-img")]
    public void Growing_the_reftable_with_tiny_clusters_passes_qemu_img_check()
    {
        using var dir = new TempDirectory();
        var file = dir.File("g.qcow2");
        var data = TestData.Pattern(3 << 20, 9);
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = 4 << 20, ClusterSize = 512, RefcountBits = 64 }))
            img.Write(0, data);
        var check = Qemu.Img("check", file);
        check.ExitCode.Should().Be(0, check.StdOut);
        Qemu.ToRaw(file, dir.Path).AsSpan(0, data.Length).SequenceEqual(data).Should().BeTrue();
    }

    [IntegrationFact("qemu-img")]
    public void Info_of_a_library_image_matches_the_create_options()
    {
        using var dir = new TempDirectory();
        var file = dir.File("i.qcow2");
        using (Qcow2Image.Create(file, new Qcow2CreateOptions { Size = 3L << 30, ClusterSize = 1 << 20, RefcountBits = 8, LazyRefcounts = true, ExtendedL2 = true })) { }
        var info = Qemu.Json("info", "--output=json", file);
        info.GetProperty("virtual-size").GetInt64().Should().Be(3L << 30);
        info.GetProperty("cluster-size").GetInt32().Should().Be(1 << 20);
        var data = info.GetProperty("format-specific").GetProperty("data");
        data.GetProperty("refcount-bits").GetInt32().Should().Be(8);
        data.GetProperty("lazy-refcounts").GetBoolean().Should().BeTrue();
        data.GetProperty("extended-l2").GetBoolean().Should().BeTrue();
        data.GetProperty("compat").GetString().Should().Be("1.1");
        Qemu.Img("check", file).ExitCode.Should().Be(0);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Resize_grows_and_shrinks_like_qemu_img_resize()
    {
        using var dir = new TempDirectory();
        var file = dir.File("r.qcow2");
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 4096 }))
        {
            img.Write(0, Enumerable.Repeat((byte)7, 1 << 20).ToArray());
            img.Resize(3L << 30);
            img.Write((3L << 30) - 4096, Enumerable.Repeat((byte)8, 4096).ToArray());
            img.Resize(512 << 10, allowShrink: true);
            img.Resize(2 << 20);
        }
        Qemu.Img("check", file).ExitCode.Should().BeOneOf(0, 3);
        var raw = Qemu.ToRaw(file, dir.Path);
        raw.Length.Should().Be(2 << 20);
        raw.AsSpan(0, 512 << 10).ToArray().Should().OnlyContain(b => b == 7);
        raw.AsSpan(512 << 10).ToArray().Should().OnlyContain(b => b == 0);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Small_writes_to_an_extended_l2_overlay_allocate_only_the_touched_subclusters()
    {
        using var dir = new TempDirectory();
        Qemu.Img("create", "-f", "qcow2", dir.File("base.qcow2"), "1M").Ok();
        Qemu.Io(dir.File("base.qcow2"), "write -P 0x61 0 1M").Ok();
        var top = dir.File("top.qcow2");
        Qemu.Img("create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", "-b", "base.qcow2", "-F", "qcow2", top).Ok();
        using (var img = Qcow2Image.Open(top))
        {
            img.Write(8192 + 100, new byte[3000]);      // subclusters 4 and 5 of cluster 0 (2 KiB each)
            img.Write(65536 + 30000, new byte[10]);     // one subcluster of cluster 1
            img.WriteZeroes(131072, 4096);              // two zero subclusters of cluster 2
        }
        Qemu.Img("check", top).ExitCode.Should().Be(0);
        var expected = Enumerable.Repeat((byte)0x61, 1 << 20).ToArray();
        Array.Clear(expected, 8192 + 100, 3000);
        Array.Clear(expected, 65536 + 30000, 10);
        Array.Clear(expected, 131072, 4096);
        Qemu.ToRaw(top, dir.Path).SequenceEqual(expected).Should().BeTrue();
        var map = Qemu.Json("map", "--output=json", top).EnumerateArray().Where(e => e.GetProperty("depth").GetInt32() == 0).ToList();
        map.Sum(e => e.GetProperty("length").GetInt64()).Should().Be(2 * 2048 + 2048 + 4096, "only the touched subclusters belong to the overlay");
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(Qcow2Preallocation.Metadata)]
    [InlineData(Qcow2Preallocation.Full)]
    public void Preallocated_images_pass_qemu_img_check_and_read_as_zeros(Qcow2Preallocation mode)
    {
        using var dir = new TempDirectory();
        var file = dir.File("p.qcow2");
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = (3 << 20) + 5000, ClusterSize = 65536, Preallocation = mode }))
        {
            img.GetAllocationMap().Should().OnlyContain(e => e.Present, "every cluster is allocated up front");
            img.Write(70_000, new byte[] { 9 });
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0);
        var raw = Qemu.ToRaw(file, dir.Path);
        raw.Length.Should().Be((3 << 20) + 5120, "sizes round up to whole sectors, as qemu-img create does");
        raw[70_000].Should().Be(9);
        raw.Count(b => b != 0).Should().Be(1);
        var check = Qemu.CheckJson(file, out _);
        check.GetProperty("allocated-clusters").GetInt64().Should().Be(check.GetProperty("total-clusters").GetInt64());
    }
}
