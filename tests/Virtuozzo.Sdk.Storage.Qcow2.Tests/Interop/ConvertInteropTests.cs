using System.Text.Json;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

/// <summary>The converter's pipelined paths, checked against qemu-img converting the same sources.</summary>
public class ConvertInteropTests
{
    /// <summary>
    /// A sparse raw file: extents that start and end inside clusters, data that spans several L2 tables
    /// and chunks, an extent of explicit zeros (allocated on disk, must not be stored), and a size that is
    /// not a multiple of the cluster size.
    /// </summary>
    private static string MakeSparseRaw(string dir, long size, int seed)
    {
        var raw = Path.Combine(dir, $"sparse{seed}.raw");
        using var fs = new FileStream(raw, FileMode.Create);
        fs.SetLength(size);
        void At(long off, byte[] data)
        {
            fs.Position = off;
            fs.Write(data);
        }
        At(5000, TestData.Pattern(70_000, seed));
        At(1 << 20, TestData.Compressible(3 << 20, seed));
        At((5 << 20) - 4096, new byte[200_000]);
        At((6 << 20) + 12_345, TestData.Pattern(40_000, seed + 1));
        At(size - 777, TestData.Pattern(777, seed + 2));
        return raw;
    }

    private static long DataBytes(string image)
    {
        using var doc = JsonDocument.Parse(Qemu.Img("map", "--output=json", image).Ok().StdOut);
        return doc.RootElement.EnumerateArray().Where(e => e.GetProperty("data").GetBoolean()).Sum(e => e.GetProperty("length").GetInt64());
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(4096)]
    [InlineData(65536)]
    [InlineData(2 << 20)]
    public void A_sparse_raw_source_converts_to_the_same_content_and_allocation_as_qemu_img(int clusterSize)
    {
        using var dir = new TempDirectory();
        long size = (8 << 20) + 3 * 512;
        var raw = MakeSparseRaw(dir.Path, size, clusterSize);
        var ours = dir.File("ours.qcow2");
        var theirs = dir.File("theirs.qcow2");
        Qcow2Converter.Convert(raw, ours, new Qcow2ConvertOptions { Create = new Qcow2CreateOptions { ClusterSize = clusterSize } });
        Qemu.Img("convert", "-f", "raw", "-O", "qcow2", "-o", $"cluster_size={clusterSize}", raw, theirs).Ok();

        Qemu.Img("check", ours).Ok();
        Qemu.Img("compare", "-f", "raw", "-F", "qcow2", raw, ours).Ok();
        DataBytes(ours).Should().Be(DataBytes(theirs), "zero clusters, holes included, are left unallocated as qemu-img leaves them");
    }

    [IntegrationTheory("qemu-img")]
    [InlineData(65536, Qcow2CompressionType.Zlib)]
    [InlineData(65536, Qcow2CompressionType.Zstd)]
    [InlineData(4096, Qcow2CompressionType.Zlib)]
    public void A_compressed_convert_stores_clusters_that_do_not_shrink_uncompressed_and_is_no_larger_than_qemu_img_s(int clusterSize, Qcow2CompressionType type)
    {
        using var dir = new TempDirectory();
        // random clusters (do not shrink), text (shrinks), zeros, and a random partial cluster at the end
        long size = (6 << 20) + 1536;
        var raw = dir.File("mixed.raw");
        using (var fs = new FileStream(raw, FileMode.Create))
        {
            fs.SetLength(size);
            fs.Write(TestData.Pattern(2 << 20, 1));
            fs.Write(TestData.Compressible(2 << 20, 2));
            fs.Position = size - 1536 - clusterSize;
            fs.Write(TestData.Pattern(clusterSize + 1536, 3));
        }
        var ours = dir.File("ours.qcow2");
        var theirs = dir.File("theirs.qcow2");
        string typeName = type == Qcow2CompressionType.Zstd ? "zstd" : "zlib";
        Qcow2Converter.Convert(raw, ours, new Qcow2ConvertOptions { Compress = true, Create = new Qcow2CreateOptions { ClusterSize = clusterSize, CompressionType = type } });
        Qemu.Img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", $"cluster_size={clusterSize},compression_type={typeName}", raw, theirs).Ok();

        Qemu.Img("check", ours).Ok();
        Qemu.Img("compare", "-f", "raw", "-F", "qcow2", raw, ours).Ok();
        using (var img = Qcow2Image.Open(ours, new Qcow2OpenOptions { ReadOnly = true }))
        {
            var map = img.GetAllocationMap();
            map.Where(e => e.Kind == Qcow2ExtentKind.Data).Sum(e => e.Length).Should().BeGreaterThanOrEqualTo(2 << 20, "random clusters stay uncompressed");
            map.Where(e => e.Kind == Qcow2ExtentKind.Compressed).Sum(e => e.Length).Should().BeGreaterThanOrEqualTo(2 << 20, "text clusters are compressed");
            map.Where(e => e.Start >= 4 << 20 && e.Start + e.Length <= size - 1536 - clusterSize).Should().OnlyContain(e => !e.Present, "zero clusters are not stored");
        }
        new FileInfo(ours).Length.Should().BeLessThanOrEqualTo((long)(new FileInfo(theirs).Length * 1.05) + clusterSize);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void An_overlay_converts_to_raw_through_its_backing_chain_with_holes_kept()
    {
        using var dir = new TempDirectory();
        const long size = 16 << 20;
        var baseFile = dir.File("base.qcow2");
        var top = dir.File("top.qcow2");
        Qemu.Img("create", "-f", "qcow2", baseFile, size.ToString(System.Globalization.CultureInfo.InvariantCulture)).Ok();
        Qemu.Io(baseFile, "write -P 0x11 0 4M", "write -c -P 0x22 8M 1M").Ok();
        Qemu.Img("create", "-f", "qcow2", "-b", baseFile, "-F", "qcow2", top).Ok();
        // over the base: new data, zeroes that hide base data, allocated clusters full of zeros, compressed
        // data, and a partial cluster; 4.75 MiB of the result is not zero
        Qemu.Io(top, "write -P 0x33 1M 1M", "write -z 2M 512k", "write -P 0 5M 2M", "write -c -P 0x44 12M 256k", "write -P 0x55 3000 100").Ok();

        var ours = dir.File("ours.raw");
        Qcow2Converter.Convert(top, ours, new Qcow2ConvertOptions { OutputFormat = "raw" });
        File.ReadAllBytes(ours).Should().Equal(Qemu.ToRaw(top, dir.Path));
        Qemu.Img("compare", "-f", "raw", "-F", "qcow2", ours, top).Ok();
        (Native.AllocatedBytes(ours) ?? 0).Should().BeLessThan(5 << 20, "zero, unallocated and all-zero data ranges stay holes in the raw output");
    }

    [IntegrationTheory("qemu-img")]
    [InlineData("zlib", "raw")]
    [InlineData("zstd", "raw")]
    [InlineData("zstd", "qcow2")]
    public void A_compressed_source_converts_with_parallel_decompression(string type, string outFormat)
    {
        using var dir = new TempDirectory();
        var raw = MakeSparseRaw(dir.Path, 9 << 20, 7);
        var compressed = dir.File("c.qcow2");
        Qemu.Img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", $"compression_type={type}", raw, compressed).Ok();
        var output = dir.File($"out.{outFormat}");
        Qcow2Converter.Convert(compressed, output, new Qcow2ConvertOptions { OutputFormat = outFormat });
        Qemu.Img("compare", "-f", "raw", "-F", outFormat, raw, output).Ok();
        if (outFormat == "qcow2")
            Qemu.Img("check", output).Ok();
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void WriteCompressed_of_mixed_clusters_reads_back_in_qemu()
    {
        using var dir = new TempDirectory();
        var file = dir.File("w.qcow2");
        var data = new byte[40 * 65536];
        for (int i = 0; i < 40; i++)
        {
            var cluster = (i % 3) switch
            {
                0 => TestData.Pattern(65536, i),
                1 => TestData.Compressible(65536, i),
                _ => new byte[65536],
            };
            cluster.CopyTo(data, i * 65536);
        }
        using (var img = Qcow2Image.Create(file, new Qcow2CreateOptions { Size = data.Length + 65536 }))
        {
            img.WriteCompressed(65536, data);
            img.WriteCompressed(3 * 65536, data.AsSpan(0, 5 * 65536));
        }
        var expected = new byte[data.Length + 65536];
        data.CopyTo(expected, 65536);
        data.AsSpan(0, 5 * 65536).CopyTo(expected.AsSpan(3 * 65536));
        Qemu.Img("check", file).Ok();
        Qemu.ToRaw(file, dir.Path).Should().Equal(expected);
    }
}
