using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class ChainAndSnapshotTests
{
    [IntegrationFact("qemu-img")]
    public void Snapshots_made_by_the_library_are_listed_read_reverted_and_deleted_like_qemu_does()
    {
        using var dir = new TempDirectory();
        var file = dir.File("s.qcow2");
        var first = TestData.Pattern(300_000, 1);
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 4096 }))
        {
            img.Write(0, first);
            img.CreateSnapshot("one");
            img.Write(1000, TestData.Pattern(50_000, 2));
            img.WriteCompressed(512 << 10, TestData.Compressible(64 << 10, 3));
            img.CreateSnapshot("two");
            img.Discard(0, 1 << 20);
            var view = new byte[300_000];
            img.ReadSnapshot("one", 0, view);
            view.Should().Equal(first);
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0);
        Qemu.Img("snapshot", "-l", file).Ok().StdOut.Should().Contain("one").And.Contain("two");
        var snapRaw = dir.File("one.raw");
        Qemu.Img("convert", "-l", "snapshot.name=one", "-O", "raw", file, snapRaw).Ok();
        File.ReadAllBytes(snapRaw).AsSpan(0, first.Length).SequenceEqual(first).Should().BeTrue();

        using (var img = Qcow2Image.Open(file))
        {
            img.ApplySnapshot("one");
            var now = new byte[300_000];
            img.Read(0, now);
            now.Should().Equal(first);
            img.DeleteSnapshot("two");
            img.Snapshots.Select(s => s.Name).Should().Equal("one");
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0, "deleting a snapshot frees what only it used");
        Qemu.ToRaw(file, dir.Path).AsSpan(0, first.Length).SequenceEqual(first).Should().BeTrue();
        using (var img = Qcow2Image.Open(file))
            img.DeleteSnapshot("one");
        var final = Qemu.CheckJson(file, out var rc);
        rc.Should().Be(0);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Safe_rebase_keeps_the_guest_view_and_unsafe_rebase_only_renames()
    {
        using var dir = new TempDirectory();
        Qemu.Img("create", "-f", "qcow2", dir.File("b1.qcow2"), "2M").Ok();
        Qemu.Io(dir.File("b1.qcow2"), "write -P 1 0 1M").Ok();
        Qemu.Img("create", "-f", "qcow2", dir.File("b2.qcow2"), "2M").Ok();
        Qemu.Io(dir.File("b2.qcow2"), "write -P 2 512k 1M").Ok();
        Qemu.Img("create", "-f", "qcow2", "-b", "b1.qcow2", "-F", "qcow2", dir.File("top.qcow2")).Ok();
        Qemu.Io(dir.File("top.qcow2"), "write -P 3 100k 50k").Ok();
        var before = Qemu.ToRaw(dir.File("top.qcow2"), dir.Path);
        using (var img = Qcow2Image.Open(dir.File("top.qcow2")))
            img.Rebase("b2.qcow2", "qcow2");
        Qemu.Img("check", dir.File("top.qcow2")).ExitCode.Should().Be(0);
        Qemu.Json("info", "--output=json", dir.File("top.qcow2")).GetProperty("backing-filename").GetString().Should().Be("b2.qcow2");
        Qemu.ToRaw(dir.File("top.qcow2"), dir.Path).SequenceEqual(before).Should().BeTrue();

        using (var img = Qcow2Image.Open(dir.File("top.qcow2")))
            img.Rebase("b1.qcow2", "qcow2", unsafeMode: true);
        Qemu.Json("info", "--output=json", dir.File("top.qcow2")).GetProperty("backing-filename").GetString().Should().Be("b1.qcow2");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Commit_writes_the_overlay_into_its_base_and_empties_the_overlay()
    {
        using var dir = new TempDirectory();
        Qemu.Img("create", "-f", "qcow2", dir.File("base.qcow2"), "2M").Ok();
        Qemu.Io(dir.File("base.qcow2"), "write -P 1 0 2M").Ok();
        Qemu.Img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("top.qcow2")).Ok();
        Qemu.Io(dir.File("top.qcow2"), "write -P 9 64k 64k", "write -z 1M 64k").Ok();
        var view = Qemu.ToRaw(dir.File("top.qcow2"), dir.Path);
        using (var img = Qcow2Image.Open(dir.File("top.qcow2")))
        {
            img.Commit();
            img.GetAllocationMap().Should().OnlyContain(e => e.Depth == 1);
            TestData.ReadAll(img).SequenceEqual(view).Should().BeTrue();
        }
        Qemu.ToRaw(dir.File("base.qcow2"), dir.Path).SequenceEqual(view).Should().BeTrue();
        Qemu.Img("check", dir.File("base.qcow2")).ExitCode.Should().Be(0);
        Qemu.Img("check", dir.File("top.qcow2")).ExitCode.Should().Be(0);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Amend_switches_between_compat_0_10_and_1_1_without_changing_data()
    {
        using var dir = new TempDirectory();
        var file = dir.File("a.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "2M").Ok();
        Qemu.Io(file, "write -P 5 0 1M", "write -z 64k 128k").Ok();
        var before = Qemu.ToRaw(file, dir.Path);
        using (var img = Qcow2Image.Open(file))
            img.Amend(new Qcow2AmendOptions { Version = 2 });
        Qemu.Json("info", "--output=json", file).GetProperty("format-specific").GetProperty("data").GetProperty("compat").GetString().Should().Be("0.10");
        Qemu.Img("check", file).ExitCode.Should().Be(0);
        Qemu.ToRaw(file, dir.Path).SequenceEqual(before).Should().BeTrue();
        using (var img = Qcow2Image.Open(file))
            img.Amend(new Qcow2AmendOptions { Version = 3, LazyRefcounts = true });
        var data = Qemu.Json("info", "--output=json", file).GetProperty("format-specific").GetProperty("data");
        data.GetProperty("compat").GetString().Should().Be("1.1");
        data.GetProperty("lazy-refcounts").GetBoolean().Should().BeTrue();
        Qemu.Img("check", file).ExitCode.Should().Be(0);
    }

    [IntegrationTheory("qemu-img", "qemu-io")]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(64)]
    public void Amend_changes_the_refcount_width_like_qemu_img_amend(int bits)
    {
        using var dir = new TempDirectory();
        var file = dir.File("w.qcow2");
        Qemu.Img("create", "-f", "qcow2", "-o", "cluster_size=4096", file, "4M").Ok();
        // compressed clusters share host clusters (refcount > 1), so only the wide case writes them
        Qemu.Io(file, "write -P 7 0 1M", bits >= 16 ? "write -c -P 8 2M 64k" : "write -P 8 2M 64k").Ok();
        var before = Qemu.ToRaw(file, dir.Path);
        using (var img = Qcow2Image.Open(file))
        {
            img.Amend(new Qcow2AmendOptions { RefcountBits = bits });
            img.GetInfo().RefcountBits.Should().Be(bits);
            img.Write(3 << 20, new byte[8192]);
        }
        Qemu.Json("info", "--output=json", file).GetProperty("format-specific").GetProperty("data").GetProperty("refcount-bits").GetInt32().Should().Be(bits);
        Qemu.Img("check", file).ExitCode.Should().Be(0);
        var after = Qemu.ToRaw(file, dir.Path);
        Array.Clear(before, 3 << 20, 8192);
        after.SequenceEqual(before).Should().BeTrue();
    }

    [IntegrationFact("qemu-img")]
    public void Narrowing_refcounts_below_what_snapshots_need_is_refused_without_changes()
    {
        using var dir = new TempDirectory();
        var file = dir.File("n.qcow2");
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = 1 << 20 }))
        {
            img.Write(0, new byte[65536]);
            img.CreateSnapshot("s");
            img.Invoking(i => i.Amend(new Qcow2AmendOptions { RefcountBits = 1 })).Should().Throw<Qcow2Exception>();
            img.GetInfo().RefcountBits.Should().Be(16);
            img.Write(0, new byte[10]);
        }
        Qemu.Img("check", file).ExitCode.Should().BeOneOf(0, 3);
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(1L << 30, 65536, 16)]
    [InlineData(100L << 20, 4096, 64)]
    [InlineData(5L << 40, 2 << 20, 1)]
    public void Measure_of_an_empty_image_matches_qemu_img_measure(long size, int clusterSize, int refBits)
    {
        var q = Qemu.Json("measure", "--output=json", "-O", "qcow2", "-o", $"cluster_size={clusterSize},refcount_bits={refBits}", "--size", size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var m = Qcow2Image.Measure(new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, RefcountBits = refBits });
        m.Required.Should().Be(q.GetProperty("required").GetInt64());
        m.FullyAllocated.Should().Be(q.GetProperty("fully-allocated").GetInt64());
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Measure_of_a_qcow2_source_matches_qemu_img_measure()
    {
        using var dir = new TempDirectory();
        var file = dir.File("m.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "64M").Ok();
        Qemu.Io(file, "write -P 1 0 3M", "write -P 2 10M 100k", "write -z 20M 1M").Ok();
        var q = Qemu.Json("measure", "--output=json", "-O", "qcow2", file);
        var m = Qcow2Image.Measure(new Qcow2CreateOptions(), file);
        m.Required.Should().Be(q.GetProperty("required").GetInt64());
        m.FullyAllocated.Should().Be(q.GetProperty("fully-allocated").GetInt64());
    }

    [IntegrationFact("qemu-img")]
    public void Measure_of_a_sparse_raw_source_matches_qemu_img_measure()
    {
        using var dir = new TempDirectory();
        var raw = dir.File("s.raw");
        using (var fs = new FileStream(raw, FileMode.Create))
        {
            fs.SetLength(256 << 20);
            fs.Position = 10 << 20;
            fs.Write(TestData.Pattern(3 << 20, 1));
            fs.Position = 100 << 20;
            fs.Write(TestData.Pattern(70_000, 2));
        }
        var q = Qemu.Json("measure", "--output=json", "-O", "qcow2", "-f", "raw", raw);
        var m = Qcow2Image.Measure(new Qcow2CreateOptions(), raw);
        m.Required.Should().Be(q.GetProperty("required").GetInt64());
        m.FullyAllocated.Should().Be(q.GetProperty("fully-allocated").GetInt64());
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Bitmaps_written_by_qemu_read_back_and_library_writes_set_bits_qemu_accepts()
    {
        using var dir = new TempDirectory();
        var file = dir.File("b.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "4M").Ok();
        Qemu.Img("bitmap", "--add", "-g", "64k", file, "qb").Ok();
        Qemu.Io(file, "write -P 1 100k 10k", "write -P 2 1M 200k").Ok();
        using (var img = Qcow2Image.Open(file))
        {
            img.Bitmaps.Should().ContainSingle(b => b.Name == "qb" && b.Enabled && !b.InUse);
            img.GetDirtyExtents("qb").Should().Equal(new Qcow2DirtyExtent(64 << 10, 64 << 10), new Qcow2DirtyExtent(1 << 20, 256 << 10));
            img.AddBitmap("ours", 65536);
            img.Write(3 << 20, new byte[100]);
            img.WriteZeroes(2 << 20, 65536);
            img.GetDirtyExtents("ours").Should().Equal(new Qcow2DirtyExtent(2 << 20, 64 << 10), new Qcow2DirtyExtent(3 << 20, 64 << 10));
            img.GetDirtyExtents("qb").Should().HaveCount(4);
            img.SetBitmapEnabled("qb", false);
            img.Write(0, new byte[10]);
            img.GetDirtyExtents("qb").Should().HaveCount(4);
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0);
        var info = Qemu.Json("info", "--output=json", file).GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps");
        info.GetArrayLength().Should().Be(2);
        // qemu reads our bits: merge ours into a new bitmap made by qemu, then read that back
        Qemu.Img("bitmap", "--add", file, "merged").Ok();
        Qemu.Img("bitmap", "--merge", "ours", file, "merged").Ok();
        using (var img = Qcow2Image.Open(file))
        {
            img.GetDirtyExtents("merged").Should().Equal(img.GetDirtyExtents("ours"));
            // merging from another image
            using var other = Qcow2Image.Create(dir.File("other.qcow2"), new Qcow2CreateOptions { Size = 4 << 20 });
            other.AddBitmap("x", 65536);
            other.MergeBitmap(img, "ours", "x");
            other.GetDirtyExtents("x").Should().Equal(img.GetDirtyExtents("ours"));
            img.RemoveBitmap("ours");
            img.ClearBitmap("qb");
            img.GetDirtyExtents("qb").Should().BeEmpty();
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0);
    }
}
