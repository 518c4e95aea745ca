namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

public class ConverterTests
{
    private static string MakeRaw(string dir, int seed, long size = 4 << 20)
    {
        var raw = Path.Combine(dir, $"src{seed}.raw");
        using var fs = new FileStream(raw, FileMode.Create);
        fs.SetLength(size);
        fs.Position = 100_000;
        fs.Write(TestData.Pattern(300_000, seed));
        fs.Position = 2 << 20;
        fs.Write(TestData.Compressible(500_000, seed));
        return raw;
    }

    [Theory]
    [InlineData(false, 65536, Qcow2CompressionType.Zlib)]
    [InlineData(true, 65536, Qcow2CompressionType.Zlib)]
    [InlineData(true, 4096, Qcow2CompressionType.Zstd)]
    [InlineData(false, 512, Qcow2CompressionType.Zlib)]
    public void Raw_to_qcow2_and_back_preserves_every_byte_and_skips_zero_ranges(bool compress, int clusterSize, Qcow2CompressionType type)
    {
        using var dir = new Virtuozzo.Sdk.Testing.TempDirectory();
        var raw = MakeRaw(dir.Path, clusterSize);
        var q = dir.File("out.qcow2");
        var reports = new List<Qcow2ConvertProgress>();
        Qcow2Converter.Convert(raw, q, new Qcow2ConvertOptions { Compress = compress, Create = new Qcow2CreateOptions { ClusterSize = clusterSize, CompressionType = type } }, new SyncProgress(reports.Add));
        reports.Should().NotBeEmpty();
        reports[^1].BytesDone.Should().Be(reports[^1].TotalBytes);
        using (var img = Qcow2Image.Open(q, new Qcow2OpenOptions { ReadOnly = true }))
        {
            TestData.ReadAll(img).Should().Equal(File.ReadAllBytes(raw));
            var map = img.GetAllocationMap();
            map.Where(e => e.Data).Sum(e => e.Length).Should().BeLessThan(1_000_000, "zero ranges are not stored");
            if (compress)
                map.Should().Contain(e => e.Kind == Qcow2ExtentKind.Compressed);
            img.Check().IsClean.Should().BeTrue();
        }
        var back = dir.File("back.raw");
        Qcow2Converter.Convert(q, back, new Qcow2ConvertOptions { OutputFormat = "raw" });
        File.ReadAllBytes(back).Should().Equal(File.ReadAllBytes(raw));
    }

    [Fact]
    public async Task Cancelling_a_conversion_leaves_the_destination_untouched_and_no_temporary_file()
    {
        using var dir = new Virtuozzo.Sdk.Testing.TempDirectory();
        var raw = MakeRaw(dir.Path, 7, 64 << 20);
        var dest = dir.File("dest.qcow2");
        File.WriteAllText(dest, "previous contents");
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.BytesDone > 0) cts.Cancel(); });
        var act = () => Qcow2Converter.ConvertAsync(raw, dest, new Qcow2ConvertOptions { Compress = true }, progress, cts.Token);
        await act.Should().ThrowAsync<OperationCanceledException>();
        File.ReadAllText(dest).Should().Be("previous contents");
        Directory.GetFiles(dir.Path).Select(Path.GetFileName).Should().BeEquivalentTo(["src7.raw", "dest.qcow2"]);
    }

    [Fact]
    public void Converting_an_overlay_with_a_backing_option_copies_only_the_overlay_data()
    {
        using var dir = new Virtuozzo.Sdk.Testing.TempDirectory();
        using (var b = Qcow2Image.Create(dir.File("base.qcow2"), new Qcow2CreateOptions { Size = 2 << 20 }))
            b.Write(0, TestData.Pattern(2 << 20, 1));
        using (var t = Qcow2Image.Create(dir.File("top.qcow2"), new Qcow2CreateOptions { BackingFile = "base.qcow2", BackingFormat = "qcow2" }))
        {
            t.Write(65536, TestData.Pattern(65536, 2));
            t.WriteZeroes(1 << 20, 65536);
        }
        Qcow2Converter.Convert(dir.File("top.qcow2"), dir.File("copy.qcow2"), new Qcow2ConvertOptions { Create = new Qcow2CreateOptions { BackingFile = "base.qcow2", BackingFormat = "qcow2" } });
        using var top = Qcow2Image.Open(dir.File("top.qcow2"), new Qcow2OpenOptions { ReadOnly = true });
        using var copy = Qcow2Image.Open(dir.File("copy.qcow2"), new Qcow2OpenOptions { ReadOnly = true });
        TestData.ReadAll(copy).Should().Equal(TestData.ReadAll(top));
        copy.GetAllocationMap().Where(e => e.Depth == 0 && e.Present).Sum(e => e.Length).Should().Be(2 * 65536);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    [InlineData(false, true)]
    public void The_stored_data_observer_sees_exactly_the_clusters_the_output_stores_with_their_bytes(bool compress, bool withBacking)
    {
        using var dir = new Virtuozzo.Sdk.Testing.TempDirectory();
        string source;
        var create = new Qcow2CreateOptions();
        if (withBacking)
        {
            using (var b = Qcow2Image.Create(dir.File("base.qcow2"), new Qcow2CreateOptions { Size = 8 << 20 }))
                b.Write(0, TestData.Pattern(8 << 20, 1));
            using (var t = Qcow2Image.Create(dir.File("top.qcow2"), new Qcow2CreateOptions { BackingFile = "base.qcow2", BackingFormat = "qcow2" }))
            {
                t.Write(65536, TestData.Pattern(3 * 65536, 2));
                t.Write(5 << 20, new byte[65536]); // data that happens to be zero, over non-zero base data
                t.WriteZeroes(6 << 20, 2 * 65536);
            }
            source = dir.File("top.qcow2");
            create = new Qcow2CreateOptions { BackingFile = "base.qcow2", BackingFormat = "qcow2" };
        }
        else
        {
            source = MakeRaw(dir.Path, 3, (8 << 20) + 1000); // a short last cluster
        }
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<long, byte[]>();
        var output = dir.File("out.qcow2");
        Qcow2Converter.Convert(source, output, new Qcow2ConvertOptions
        {
            Compress = compress,
            Create = create,
            StoredDataObserver = (offset, data) =>
            {
                for (var at = 0; at < data.Length; at += 65536)
                    seen.TryAdd(offset + at, data.Slice(at, Math.Min(65536, data.Length - at)).ToArray()).Should().BeTrue("each cluster is passed once");
            },
        });
        using var img = Qcow2Image.Open(output, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
        var stored = new List<long>();
        foreach (var e in img.GetAllocationMap().Where(e => e.Kind != Qcow2ExtentKind.Unallocated))
            for (var off = e.Start; off < e.Start + e.Length; off += 65536)
                stored.Add(off);
        seen.Keys.Order().Should().Equal(stored, "the observer sees the clusters the output stores, and no others");
        foreach (var (offset, bytes) in seen)
        {
            var actual = new byte[bytes.Length];
            img.Read(offset, actual);
            actual.Should().Equal(bytes, "the observed bytes at {0} are what the output holds", offset);
        }
        seen.Should().NotBeEmpty();
    }

    private sealed class SyncProgress(Action<Qcow2ConvertProgress> on) : IProgress<Qcow2ConvertProgress>
    {
        public void Report(Qcow2ConvertProgress value) => on(value);
    }

    private static int DeadPid()
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        return p.Id;
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qcow2")]
    public void A_convert_removes_stale_temporary_files_of_dead_writers_but_never_a_live_writer_s(string format)
    {
        using var dir = new Virtuozzo.Sdk.Testing.TempDirectory();
        var raw = MakeRaw(dir.Path, 3);
        var dst = dir.File("out.img");
        string Temp(string hex)
        {
            var t = dir.File($".out.img.{hex}.tmp");
            File.WriteAllBytes(t, new byte[4096]);
            return t;
        }
        int dead = DeadPid();
        var stale = Temp($"{dead:x8}0123abcd");
        var staleOldName = Temp("9ffffff07a3b5c11");
        var livePid = Temp($"{Environment.ProcessId:x8}0123abcd");
        var locked = Temp($"{dead:x8}feedf00d");
        var other = dir.File(".out.img.notes.tmp");
        File.WriteAllText(other, "not ours");
        var otherImage = dir.File(".other.img.0000000100000000.tmp");
        File.WriteAllText(otherImage, "another destination's");

        // a writer that is alive holds its temporary file open (and locked)
        using (var writer = File.OpenHandle(locked, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete))
        {
            Qcow2Converter.Convert(raw, dst, new Qcow2ConvertOptions { OutputFormat = format });
            File.Exists(locked).Should().BeTrue("a file a live writer holds is never removed");
        }
        File.Exists(stale).Should().BeFalse("the writer is gone and nobody holds the file");
        File.Exists(staleOldName).Should().BeFalse("older versions named the file with random hex only");
        File.Exists(livePid).Should().BeTrue("its writer's process is alive");
        File.Exists(other).Should().BeTrue("only the converter's own names are touched");
        File.Exists(otherImage).Should().BeTrue("only temporaries of this destination are touched");
        File.Exists(dst).Should().BeTrue();
        Directory.GetFiles(dir.Path, ".out.img.*.tmp").Should().HaveCount(3);
    }
}

public class ChainReadTests
{
    /// <summary>
    /// An overlay over a compressed full (a restore's chain): the backing's compressed clusters are read outside its lock,
    /// a run of them with one read, whole clusters decompressed in place and partial ones through a scratch cluster.
    /// Every way of reading the chain must give the bytes written: converted (parallel workers), and read at unaligned
    /// offsets and lengths from several threads at once.
    /// </summary>
    [Theory]
    [InlineData(65536, Qcow2CompressionType.Zstd)]
    [InlineData(4096, Qcow2CompressionType.Zlib)]
    [InlineData(512, Qcow2CompressionType.Zstd)]
    public void An_overlay_over_a_compressed_full_reads_and_converts_to_exactly_its_bytes(int clusterSize, Qcow2CompressionType type)
    {
        using var dir = new Virtuozzo.Sdk.Testing.TempDirectory();
        const int size = 12 << 20;
        var expected = new byte[size];
        TestData.Pattern(3 << 20, clusterSize).CopyTo(expected, 1 << 20);
        TestData.Compressible(4 << 20, clusterSize).CopyTo(expected, 5 << 20);
        TestData.Pattern(1 << 20, 3).CopyTo(expected, size - (1 << 20)); // up to the end: the file's last compressed cluster
        var raw = dir.File("src.raw");
        File.WriteAllBytes(raw, expected);
        var full = dir.File("full.qcow2");
        Qcow2Converter.Convert(raw, full, new Qcow2ConvertOptions { Compress = true, Create = new Qcow2CreateOptions { ClusterSize = clusterSize, CompressionType = type } });
        var top = dir.File("top.qcow2");
        using (var overlay = Qcow2Image.Create(top, new Qcow2CreateOptions { Size = size, ClusterSize = clusterSize, BackingFile = "full.qcow2", BackingFormat = "qcow2" }))
        {
            var rng = new Random(clusterSize);
            for (var i = 0; i < 40; i++)
            {
                var data = new byte[rng.Next(1, 3 * clusterSize)];
                rng.NextBytes(data);
                var at = rng.NextInt64(0, size - data.Length);
                overlay.Write(at, data);
                data.CopyTo(expected, at);
            }
        }
        using (var image = Qcow2Image.Open(top, new Qcow2OpenOptions { ReadOnly = true }))
        {
            image.GetAllocationMap().Should().Contain(e => e.Kind == Qcow2ExtentKind.Compressed && e.Depth == 1);
            TestData.ReadAll(image).Should().Equal(expected);
            Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            {
                var rng = new Random(i);
                var length = rng.Next(1, 5 * clusterSize);
                var at = rng.NextInt64(0, size - length);
                var buffer = new byte[length];
                image.Read(at, buffer);
                buffer.Should().Equal(expected.AsSpan((int)at, length).ToArray(), $"read {i} at {at}, {length} bytes");
            });
        }
        var back = dir.File("back.raw");
        Qcow2Converter.Convert(top, back, new Qcow2ConvertOptions { OutputFormat = "raw" });
        File.ReadAllBytes(back).Should().Equal(expected);
        var restored = dir.File("restored.qcow2");
        Qcow2Converter.Convert(top, restored, new Qcow2ConvertOptions());
        using (var image = Qcow2Image.Open(restored, new Qcow2OpenOptions { ReadOnly = true }))
            TestData.ReadAll(image).Should().Equal(expected);
    }
}
