using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class ReadInteropTests
{
    public static TheoryData<string, string[]> Matrix() => new()
    {
        { "cluster_size=512,refcount_bits=1", [] },
        { "cluster_size=4096,refcount_bits=8", [] },
        { "cluster_size=65536", [] },
        { "cluster_size=2097152,refcount_bits=64", [] },
        { "cluster_size=1024,refcount_bits=2", [] },
        { "cluster_size=8192,refcount_bits=4", [] },
        { "cluster_size=16384,refcount_bits=32", [] },
        { "compat=0.10", [] },
        { "compat=0.10,cluster_size=4096", [] },
        { "extended_l2=on,cluster_size=65536", [] },
        { "extended_l2=on,cluster_size=16384", [] },
        { "compression_type=zstd", [] },
        { "compression_type=zstd,cluster_size=4096", [] },
        { "lazy_refcounts=on", [] },
        { "preallocation=metadata,cluster_size=65536", [] },
    };

    [IntegrationTheory("qemu-img", "qemu-io")]
    [MemberData(nameof(Matrix))]
    public void Reading_an_image_made_by_qemu_img_matches_its_raw_conversion(string createOptions, string[] _)
    {
        using var dir = new TempDirectory();
        var file = dir.File("a.qcow2");
        Qemu.Img("create", "-f", "qcow2", "-o", createOptions, file, "6M").Ok();
        var v2 = createOptions.Contains("0.10");
        var cmds = new List<string>
        {
            "write -P 0x11 0 4k",
            "write -P 0x22 1000 3000",
            "write -P 0x33 1M 300k",
            "write -P 0x44 5M 1M",
            createOptions.Contains("preallocation") ? "write -P 0x55 2M 2M" : "write -c -P 0x55 2M 2M",
            "write -P 0x66 2200k 5k",
            "discard 5M 512k",
        };
        if (!v2)
            cmds.Add("write -z 1100k 100k");
        Qemu.Io(file, [.. cmds]).Ok();
        var expected = Qemu.ToRaw(file, dir.Path);

        using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
        var actual = TestData.ReadAll(img);
        actual.SequenceEqual(expected).Should().BeTrue("the library must read what qemu-img converts");
        // unaligned reads too
        var part = new byte[123457];
        img.Read(999, part);
        part.SequenceEqual(expected.AsSpan(999, part.Length).ToArray()).Should().BeTrue();
        img.Check().IsClean.Should().BeTrue(string.Join("\n", img.Check().Messages));
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Check_counters_match_qemu_img_check_on_a_compressed_and_fragmented_image()
    {
        using var dir = new TempDirectory();
        var file = dir.File("a.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "8M").Ok();
        Qemu.Io(file, "write -P 1 3M 64k", "write -P 2 0 128k", "write -c -P 3 1M 256k", "write -P 4 4M 64k").Ok();
        var json = Qemu.CheckJson(file, out var rc);
        rc.Should().Be(0);
        using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
        var r = img.Check();
        r.ExitCode.Should().Be(0);
        r.ImageEndOffset.Should().Be(json.GetProperty("image-end-offset").GetInt64());
        r.TotalClusters.Should().Be(json.GetProperty("total-clusters").GetInt64());
        r.AllocatedClusters.Should().Be(json.GetProperty("allocated-clusters").GetInt64());
        r.FragmentedClusters.Should().Be(json.GetProperty("fragmented-clusters").GetInt64());
        r.CompressedClusters.Should().Be(json.GetProperty("compressed-clusters").GetInt64());
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void A_backing_chain_with_relative_names_and_a_shorter_base_reads_like_qemu()
    {
        using var dir = new TempDirectory();
        var raw = dir.File("base.raw");
        File.WriteAllBytes(raw, TestData.Pattern(1 << 20, 1));
        Qemu.Img("create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", dir.File("mid.qcow2"), "3M").Ok();
        Qemu.Io(dir.File("mid.qcow2"), "write -P 0x77 512k 256k", "write -P 0x78 2M 64k").Ok();
        Qemu.Img("create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "mid.qcow2", "-F", "qcow2", dir.File("top.qcow2"), "4M").Ok();
        Qemu.Io(dir.File("top.qcow2"), "write -P 0x99 600k 10k", "write -z 0 4k", "write -P 0x9a 3M 100k").Ok();
        var expected = Qemu.ToRaw(dir.File("top.qcow2"), dir.Path);

        using var img = Qcow2Image.Open(dir.File("top.qcow2"), new Qcow2OpenOptions { ReadOnly = true });
        img.Backing.Should().NotBeNull();
        TestData.ReadAll(img).SequenceEqual(expected).Should().BeTrue();
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void The_allocation_map_matches_qemu_img_map()
    {
        using var dir = new TempDirectory();
        var file = dir.File("a.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "4M").Ok();
        Qemu.Io(file, "write -P 1 0 128k", "write -z 1M 128k", "write -c -P 2 2M 64k", "write -P 3 3M 64k").Ok();
        var qemu = Qemu.Json("map", "--output=json", file).EnumerateArray()
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean(), e.GetProperty("zero").GetBoolean(), e.GetProperty("present").GetBoolean(),
                e.TryGetProperty("offset", out var o) ? o.GetInt64() : (long?)null)).ToList();
        using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
        var ours = img.GetAllocationMap().Select(e => (e.Start, e.Length, e.Data, e.Zero, e.Present, e.Offset)).ToList();
        ours.Should().Equal(qemu);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void The_allocation_map_of_a_chain_with_a_short_raw_base_and_preallocated_zeros_matches_qemu_img_map()
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("r.raw"), TestData.Pattern(256 << 10, 3));
        Qemu.Img("create", "-f", "qcow2", "-b", "r.raw", "-F", "raw", dir.File("mid.qcow2"), "2M").Ok();
        Qemu.Io(dir.File("mid.qcow2"), "write -P 1 1M 128k", "write -z 1536k 64k", "write -P 3 1792k 64k", "write -z 1792k 64k").Ok();
        var top = dir.File("top.qcow2");
        Qemu.Img("create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top).Ok();
        Qemu.Io(top, "write -P 2 64k 64k").Ok();
        var qemu = Qemu.Json("map", "--output=json", top).EnumerateArray()
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("depth").GetInt32(), e.GetProperty("data").GetBoolean(), e.GetProperty("zero").GetBoolean(), e.GetProperty("present").GetBoolean(),
                e.TryGetProperty("offset", out var o) ? o.GetInt64() : (long?)null)).ToList();
        using var img = Qcow2Image.Open(top, new Qcow2OpenOptions { ReadOnly = true });
        var ours = img.GetAllocationMap().Select(e => (e.Start, e.Length, e.Depth, e.Data, e.Zero, e.Present, e.Offset)).ToList();
        ours.Should().Equal(qemu);
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(1000, false)]
    [InlineData(1, false)]
    [InlineData(513, true)]
    [InlineData((256 << 10) + 100, true)]
    public void The_allocation_map_over_a_raw_base_of_partial_sectors_matches_qemu_img_map(int baseSize, bool twoLevels)
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("r.raw"), TestData.Pattern(baseSize, 5));
        var top = dir.File("top.qcow2");
        if (twoLevels)
        {
            Qemu.Img("create", "-f", "qcow2", "-b", "r.raw", "-F", "raw", dir.File("mid.qcow2"), "1M").Ok();
            Qemu.Img("create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top).Ok();
        }
        else
        {
            Qemu.Img("create", "-f", "qcow2", "-b", "r.raw", "-F", "raw", top, "1M").Ok();
        }
        var qemu = Qemu.Json("map", "--output=json", top).EnumerateArray()
            .Select(e => (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("depth").GetInt32(), e.GetProperty("data").GetBoolean(), e.GetProperty("zero").GetBoolean(), e.GetProperty("present").GetBoolean(),
                e.TryGetProperty("offset", out var o) ? o.GetInt64() : (long?)null)).ToList();
        using var img = Qcow2Image.Open(top, new Qcow2OpenOptions { ReadOnly = true });
        var ours = img.GetAllocationMap().Select(e => (e.Start, e.Length, e.Depth, e.Data, e.Zero, e.Present, e.Offset)).ToList();
        ours.Should().Equal(qemu);
    }

    [IntegrationFact("qemu-img")]
    public void Images_backing_each_other_are_refused_as_a_loop()
    {
        using var dir = new TempDirectory();
        Qemu.Img("create", "-f", "qcow2", dir.File("a.qcow2"), "1M").Ok();
        Qemu.Img("create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", dir.File("b.qcow2"), "1M").Ok();
        Qemu.Img("rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", dir.File("a.qcow2")).Ok();
        var act = () => Qcow2Image.Open(dir.File("b.qcow2"), new Qcow2OpenOptions { ReadOnly = true });
        act.Should().Throw<Qcow2FormatException>().WithMessage("*loop*");
    }
}

public class ExternalDataFileTests
{
    [IntegrationFact("qemu-img", "qemu-io")]
    public void An_image_with_an_external_data_file_reads_like_qemu_and_refuses_writes()
    {
        using var dir = new TempDirectory();
        var file = dir.File("e.qcow2");
        Qemu.Img("create", "-f", "qcow2", "-o", $"data_file={dir.File("e.data")},data_file_raw=on", file, "4M").Ok();
        Qemu.Io(file, "write -P 0x21 0 100k", "write -P 0x22 2M 64k", "write -z 3M 64k").Ok();
        var expected = Qemu.ToRaw(file, dir.Path);
        using (var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true }))
        {
            TestData.ReadAll(img).SequenceEqual(expected).Should().BeTrue();
            img.Check().IsClean.Should().BeTrue(string.Join("; ", img.Check().Messages));
        }
        var rw = () => Qcow2Image.Open(file);
        rw.Should().Throw<Qcow2NotSupportedException>().WithMessage("*external data file*");
    }
}
