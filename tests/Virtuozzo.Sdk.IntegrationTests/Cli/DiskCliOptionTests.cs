using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

/// <summary>The options of every `vzsdk disk` verb, each checked with qemu-img or qemu-io as the oracle.</summary>
public class DiskCliOptionTests
{
    private static readonly LocalHost Host = new();

    private static Task<BufferedCommandResult> QemuImg(params string[] args)
        => Host.ExecuteBufferedAsync(new Command("qemu-img").WithArguments(args).WithValidation(CommandResultValidation.None));

    private static Task<BufferedCommandResult> QemuIo(params string[] args)
        => Host.ExecuteBufferedAsync(new Command("qemu-io").WithArguments(args).WithValidation(CommandResultValidation.None));

    private static async Task Vz(params string[] args)
    {
        var r = await VzsdkTool.RunAsync(args);
        r.ExitCode.Should().Be(0, "vzsdk {0} should succeed: {1}", string.Join(' ', args), r.StandardError);
    }

    private static async Task<JsonElement> QemuInfoAsync(string file)
    {
        var r = await QemuImg("info", "-U", "--output=json", file);
        r.ExitCode.Should().Be(0, r.StandardError);
        return JsonDocument.Parse(r.StandardOutput).RootElement;
    }

    private static JsonElement Specific(JsonElement info) => info.GetProperty("format-specific").GetProperty("data");

    private static async Task ReadsPatternAsync(string file, string pattern, string offset, string length)
    {
        var r = await QemuIo("-r", "-U", "-c", $"read -P {pattern} {offset} {length}", file);
        r.StandardOutput.Should().NotContain("Pattern verification failed", "qemu-io sees pattern {0} at {1}+{2} of {3}", pattern, offset, length, file);
        r.ExitCode.Should().Be(0, r.StandardError);
    }

    [IntegrationFact("qemu-img")]
    public async Task Create_honours_compat_refcount_bits_extended_l2_lazy_refcounts_preallocation_and_raw()
    {
        using var dir = new TempDirectory();
        var v2 = dir.File("v2.qcow2");
        await Vz("disk", "create", "-f", "qcow2", "-o", "compat=0.10", v2, "16M");
        Specific(await QemuInfoAsync(v2)).GetProperty("compat").GetString().Should().Be("0.10");

        var fancy = dir.File("fancy.qcow2");
        await Vz("disk", "create", "-o", "cluster_size=64k,refcount_bits=1,extended_l2=on,lazy_refcounts=on", fancy, "32M");
        var info = await QemuInfoAsync(fancy);
        info.GetProperty("cluster-size").GetInt32().Should().Be(65536);
        Specific(info).GetProperty("refcount-bits").GetInt32().Should().Be(1);
        Specific(info).GetProperty("extended-l2").GetBoolean().Should().BeTrue();
        Specific(info).GetProperty("lazy-refcounts").GetBoolean().Should().BeTrue();
        await Vz("disk", "io", fancy, "-c", "write -P 0x5a 100k 8k");
        await ReadsPatternAsync(fancy, "0x5a", "100k", "8k");
        (await QemuImg("check", fancy)).ExitCode.Should().Be(0);

        var prealloc = dir.File("prealloc.qcow2");
        await Vz("disk", "create", "-o", "preallocation=metadata", prealloc, "32M");
        var map = await QemuImg("map", "--output=json", prealloc);
        using (var doc = JsonDocument.Parse(map.StandardOutput))
            doc.RootElement.EnumerateArray().Should().OnlyContain(e => e.GetProperty("zero").GetBoolean() && e.GetProperty("data").GetBoolean(), "metadata preallocation maps every cluster, reading as zeroes");
        (await QemuImg("check", prealloc)).ExitCode.Should().Be(0);

        var raw = dir.File("disk.raw");
        await Vz("disk", "create", "-f", "raw", raw, "3M");
        new FileInfo(raw).Length.Should().Be(3 << 20);
        (await QemuInfoAsync(raw)).GetProperty("format").GetString().Should().Be("raw");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Info_shows_the_backing_chain_and_force_share_reads_an_image_qemu_holds_for_writing()
    {
        using var dir = new TempDirectory();
        var b = dir.File("base.qcow2");
        var top = dir.File("top.qcow2");
        (await QemuImg("create", "-f", "qcow2", b, "16M")).ExitCode.Should().Be(0);
        (await QemuImg("create", "-f", "qcow2", "-b", b, "-F", "qcow2", top)).ExitCode.Should().Be(0);
        var chain = await VzsdkTool.RunAsync("disk", "info", "--backing-chain", "--output=json", top);
        chain.ExitCode.Should().Be(0, chain.StandardError);
        using (var doc = JsonDocument.Parse(chain.StandardOutput))
        {
            doc.RootElement.ValueKind.Should().Be(JsonValueKind.Array);
            doc.RootElement.EnumerateArray().Select(e => Path.GetFileName(e.GetProperty("filename").GetString())).Should().Equal("top.qcow2", "base.qcow2");
        }

        // qemu-io holds the image open for writing (QEMU's locks); vzsdk refuses it, and -U reads it anyway.
        var psi = new ProcessStartInfo("qemu-io") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(top);
        using var holder = Process.Start(psi)!;
        try
        {
            await Task.Delay(500);
            var locked = await VzsdkTool.RunAsync("disk", "info", top);
            locked.ExitCode.Should().Be(1, "an image QEMU holds for writing is refused without -U");
            locked.StandardError.Should().Contain("lock", "the error says the image is locked");
            (await VzsdkTool.RunAsync("disk", "info", "-U", top)).ExitCode.Should().Be(0);
            (await VzsdkTool.RunAsync("disk", "io", top, "-c", "write 0 4k")).ExitCode.Should().NotBe(0, "writing an image QEMU holds is refused");
        }
        finally
        {
            holder.Kill();
            await holder.WaitForExitAsync();
        }
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Convert_with_cache_modes_a_snapshot_options_and_a_backing_file()
    {
        using var dir = new TempDirectory();
        var src = dir.File("src.qcow2");
        (await QemuImg("create", "-f", "qcow2", src, "16M")).ExitCode.Should().Be(0);
        (await QemuIo("-c", "write -P 0x11 0 1M", src)).ExitCode.Should().Be(0);
        (await QemuImg("snapshot", "-c", "s1", src)).ExitCode.Should().Be(0);
        (await QemuIo("-c", "write -P 0x22 0 1M", src)).ExitCode.Should().Be(0);

        foreach (var mode in new[] { "none", "writeback", "unsafe" })
        {
            var dst = dir.File($"t-{mode}.qcow2");
            await Vz("disk", "convert", "-t", mode, "-O", "qcow2", src, dst);
            (await QemuImg("compare", src, dst)).ExitCode.Should().Be(0, "-t {0} converts faithfully", mode);
        }
        (await VzsdkTool.RunAsync("disk", "convert", "-t", "bogus", src, dir.File("bad.qcow2"))).ExitCode.Should().Be(2);

        var snap = dir.File("snap.qcow2");
        await Vz("disk", "convert", "-l", "snapshot.name=s1", "-O", "qcow2", src, snap);
        await ReadsPatternAsync(snap, "0x11", "0", "1M");
        var expected = dir.File("expected.qcow2");
        (await QemuImg("convert", "-l", "snapshot.name=s1", "-O", "qcow2", src, expected)).ExitCode.Should().Be(0);
        (await QemuImg("compare", expected, snap)).ExitCode.Should().Be(0);

        var small = dir.File("small.qcow2");
        await Vz("disk", "convert", "-O", "qcow2", "-o", "cluster_size=4096,compat=0.10", src, small);
        var info = await QemuInfoAsync(small);
        info.GetProperty("cluster-size").GetInt32().Should().Be(4096);
        Specific(info).GetProperty("compat").GetString().Should().Be("0.10");

        // -B: the output is an overlay holding only what differs from the given backing file.
        var overlay = dir.File("overlay.qcow2");
        await Vz("disk", "convert", "-O", "qcow2", "-B", snap, "-F", "qcow2", src, overlay);
        (await QemuInfoAsync(overlay)).GetProperty("backing-filename").GetString().Should().EndWith("snap.qcow2");
        (await QemuImg("compare", src, overlay)).ExitCode.Should().Be(0);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Check_repairs_leaks_as_qemu_img_does()
    {
        using var dir = new TempDirectory();
        var img = dir.File("leaky.qcow2");
        (await QemuImg("create", "-f", "qcow2", img, "16M")).ExitCode.Should().Be(0);
        (await QemuIo("-c", "write -P 1 0 128k", img)).ExitCode.Should().Be(0);
        // Drop the L2 entry of the second cluster: its refcount stays 1 with no reference — a leak.
        await using (var fs = new FileStream(img, FileMode.Open, FileAccess.ReadWrite))
        {
            var buf = new byte[8];
            fs.Position = 40;
            await fs.ReadExactlyAsync(buf);
            var l1 = (long)BinaryPrimitives.ReadUInt64BigEndian(buf);
            fs.Position = l1;
            await fs.ReadExactlyAsync(buf);
            var l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(buf) & 0x00fffffffffffe00UL);
            fs.Position = l2 + 8;
            await fs.WriteAsync(new byte[8]);
        }
        (await QemuImg("check", img)).ExitCode.Should().Be(3, "the image leaks a cluster");
        (await VzsdkTool.RunAsync("disk", "check", img)).ExitCode.Should().Be(3);
        var repaired = await VzsdkTool.RunAsync("disk", "check", "-r", "leaks", img);
        repaired.ExitCode.Should().Be(0, repaired.StandardOutput + repaired.StandardError);
        (await QemuImg("check", img)).ExitCode.Should().Be(0, "qemu-img finds the leak repaired");
        await ReadsPatternAsync(img, "1", "0", "64k");
        (await VzsdkTool.RunAsync("disk", "check", "-r", "all", img)).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "check", "-r", "some", img)).ExitCode.Should().Be(2, "an unknown repair mode is a usage error");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Snapshot_list_apply_and_delete()
    {
        using var dir = new TempDirectory();
        var img = dir.File("s.qcow2");
        await Vz("disk", "create", img, "8M");
        await Vz("disk", "io", img, "-c", "write -P 0x41 0 64k");
        await Vz("disk", "snapshot", "-c", "before", img);
        await Vz("disk", "io", img, "-c", "write -P 0x42 0 64k");
        var list = await VzsdkTool.RunAsync("disk", "snapshot", "-l", img);
        list.ExitCode.Should().Be(0);
        list.StandardOutput.Should().Contain("before");
        await Vz("disk", "snapshot", "-a", "before", img);
        await ReadsPatternAsync(img, "0x41", "0", "64k");
        await Vz("disk", "snapshot", "-d", "before", img);
        (await QemuImg("snapshot", "-l", img)).StandardOutput.Should().NotContain("before");
        (await VzsdkTool.RunAsync("disk", "snapshot", "-a", "nope", img)).ExitCode.Should().Be(1);
        (await QemuImg("check", img)).ExitCode.Should().Be(0);
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Bitmap_add_disable_enable_clear_merge_and_remove_are_seen_by_qemu_img()
    {
        using var dir = new TempDirectory();
        var img = dir.File("b.qcow2");
        await Vz("disk", "create", img, "8M");
        await Vz("disk", "bitmap", "--add", "-g", "128k", img, "b1");
        await Vz("disk", "io", img, "-c", "write 0 64k");
        await Vz("disk", "bitmap", "--add", img, "b2");
        async Task<JsonElement> BitmapAsync(string name)
            => Specific(await QemuInfoAsync(img)).GetProperty("bitmaps").EnumerateArray().Single(b => b.GetProperty("name").GetString() == name);
        (await BitmapAsync("b1")).GetProperty("granularity").GetInt32().Should().Be(128 * 1024);
        await Vz("disk", "bitmap", "--disable", img, "b1");
        (await BitmapAsync("b1")).GetProperty("flags").EnumerateArray().Select(f => f.GetString()).Should().NotContain("auto");
        await Vz("disk", "bitmap", "--enable", img, "b1");
        (await BitmapAsync("b1")).GetProperty("flags").EnumerateArray().Select(f => f.GetString()).Should().Contain("auto");

        // Merge b1 (dirty at 0) into b2 (clean), then clear b1: a qemu-img convert of b2's view agrees through qemu-img's own merge.
        await Vz("disk", "bitmap", "--merge", "b1", img, "b2");
        await Vz("disk", "bitmap", "--clear", img, "b1");
        var extents = await VzsdkTool.RunAsync("disk", "bitmap", "--list", "--output=json", img, "b2");
        extents.ExitCode.Should().Be(0, extents.StandardError);
        var copy = dir.File("copy.qcow2");
        File.Copy(img, copy);
        (await QemuImg("bitmap", "--add", copy, "probe")).ExitCode.Should().Be(0);
        (await QemuImg("bitmap", "--merge", "b2", copy, "probe")).ExitCode.Should().Be(0, "qemu-img accepts the bitmap the library merged");
        await Vz("disk", "bitmap", "--remove", img, "b1");
        Specific(await QemuInfoAsync(img)).GetProperty("bitmaps").EnumerateArray().Select(b => b.GetProperty("name").GetString()).Should().Equal("b2");
        (await QemuImg("check", img)).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "bitmap", "--remove", img, "b1")).ExitCode.Should().Be(1, "removing a missing bitmap fails");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Rebase_safe_and_unsafe_commit_amend_and_measure()
    {
        using var dir = new TempDirectory();
        var b1 = dir.File("b1.qcow2");
        var b2 = dir.File("b2.qcow2");
        var top = dir.File("top.qcow2");
        (await QemuImg("create", "-f", "qcow2", b1, "8M")).ExitCode.Should().Be(0);
        (await QemuIo("-c", "write -P 0x61 0 1M", b1)).ExitCode.Should().Be(0);
        (await QemuImg("create", "-f", "qcow2", b2, "8M")).ExitCode.Should().Be(0);
        (await QemuImg("create", "-f", "qcow2", "-b", b1, "-F", "qcow2", top)).ExitCode.Should().Be(0);
        (await QemuIo("-c", "write -P 0x62 2M 64k", top)).ExitCode.Should().Be(0);

        // Safe rebase onto an empty base keeps what the guest sees: b1's data moves into top.
        await Vz("disk", "rebase", "-b", b2, "-F", "qcow2", top);
        (await QemuInfoAsync(top)).GetProperty("backing-filename").GetString().Should().EndWith("b2.qcow2");
        await ReadsPatternAsync(top, "0x61", "0", "1M");
        await ReadsPatternAsync(top, "0x62", "2M", "64k");

        // Unsafe rebase only rewrites the pointer: top now shows b1's data where it holds none itself… which it now does.
        var thin = dir.File("thin.qcow2");
        (await QemuImg("create", "-f", "qcow2", "-b", b2, "-F", "qcow2", thin)).ExitCode.Should().Be(0);
        await Vz("disk", "rebase", "-u", "-b", b1, "-F", "qcow2", thin);
        await ReadsPatternAsync(thin, "0x61", "0", "1M");

        // Commit writes top's own data into its backing file.
        await Vz("disk", "commit", top);
        await ReadsPatternAsync(b2, "0x62", "2M", "64k");
        await ReadsPatternAsync(b2, "0x61", "0", "1M");
        (await QemuImg("check", b2)).ExitCode.Should().Be(0);

        // Amend: down to compat 0.10 and back with lazy refcounts.
        await Vz("disk", "amend", "-o", "compat=0.10", b2);
        Specific(await QemuInfoAsync(b2)).GetProperty("compat").GetString().Should().Be("0.10");
        await Vz("disk", "amend", "-o", "compat=1.1,lazy_refcounts=on", b2);
        Specific(await QemuInfoAsync(b2)).GetProperty("lazy-refcounts").GetBoolean().Should().BeTrue();
        await ReadsPatternAsync(b2, "0x62", "2M", "64k");
        (await QemuImg("check", b2)).ExitCode.Should().Be(0);

        // Measure agrees with qemu-img measure, for a new image and for an existing one.
        static long Required(string output) => long.Parse(Regex.Match(output, @"required size: (\d+)").Groups[1].Value);
        var ours = await VzsdkTool.RunAsync("disk", "measure", "--size", "1G", "-O", "qcow2");
        ours.ExitCode.Should().Be(0, ours.StandardError);
        Required(ours.StandardOutput).Should().Be(Required((await QemuImg("measure", "--size", "1G", "-O", "qcow2")).StandardOutput));
        var oursFile = await VzsdkTool.RunAsync("disk", "measure", "-O", "qcow2", top);
        oursFile.ExitCode.Should().Be(0, oursFile.StandardError);
        Required(oursFile.StandardOutput).Should().Be(Required((await QemuImg("measure", "-O", "qcow2", top)).StandardOutput));
    }
}
