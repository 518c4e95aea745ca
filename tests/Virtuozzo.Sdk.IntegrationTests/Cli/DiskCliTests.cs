using System.Text.Json;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

/// <summary>The `vzsdk disk` verbs against the contract of CLI.md and issue 3, with qemu-img as the oracle.</summary>
public class DiskCliTests
{
    private static readonly LocalHost Host = new();

    private static Task<BufferedCommandResult> QemuImg(params string[] args)
        => Host.ExecuteBufferedAsync(new Command("qemu-img").WithArguments(args).WithValidation(CommandResultValidation.None));

    [IntegrationFact("qemu-img")]
    public async Task Create_info_io_and_convert_agree_with_qemu_img()
    {
        using var dir = new TempDirectory();
        var img = dir.File("a.qcow2");
        (await VzsdkTool.RunAsync("disk", "create", "-f", "qcow2", "-o", "cluster_size=4096,compression_type=zstd", img, "64M")).ExitCode.Should().Be(0);
        var qinfo = await QemuImg("info", "--output=json", img);
        using (var q = JsonDocument.Parse(qinfo.StandardOutput))
        {
            q.RootElement.GetProperty("virtual-size").GetInt64().Should().Be(64L << 20);
            q.RootElement.GetProperty("cluster-size").GetInt32().Should().Be(4096);
        }
        var info = await VzsdkTool.RunAsync("disk", "info", "--output=json", img);
        info.ExitCode.Should().Be(0);
        using (var v = JsonDocument.Parse(info.StandardOutput))
        {
            v.RootElement.GetProperty("virtual-size").GetInt64().Should().Be(64L << 20, "disk verbs use qemu-img's key names");
            v.RootElement.GetProperty("format").GetString().Should().Be("qcow2");
        }

        var io = await VzsdkTool.RunAsync("disk", "io", img, "-c", "write -P 0xab 1M 64k", "-c", "write -z 2M 64k", "-c", "read -P 0xab 1M 64k");
        io.ExitCode.Should().Be(0, io.StandardError);
        (await Host.ExecuteAsync(new Command("qemu-io").WithArguments("-f", "qcow2", "-c", "read -P 0xab 1M 64k", img).WithValidation(CommandResultValidation.None))).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "io", img, "-c", "read -P 0xcd 1M 64k")).ExitCode.Should().Be(1, "a failed read -P exits 1");

        var raw = dir.File("a.raw");
        (await VzsdkTool.RunAsync("disk", "convert", "-O", "raw", img, raw)).ExitCode.Should().Be(0);
        (await QemuImg("compare", "-f", "qcow2", "-F", "raw", img, raw)).ExitCode.Should().Be(0);
        var compressed = dir.File("c.qcow2");
        (await VzsdkTool.RunAsync("disk", "convert", "-c", "-O", "qcow2", raw, compressed)).ExitCode.Should().Be(0);
        (await QemuImg("compare", compressed, raw)).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "compare", compressed, raw)).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "io", raw, "-c", "write -P 0x11 0 512")).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "compare", compressed, raw)).ExitCode.Should().Be(1, "compare exits 1 when the images differ");
    }

    [IntegrationFact("qemu-img")]
    public async Task Check_exit_codes_follow_qemu_img_for_clean_leaking_and_corrupt_images()
    {
        using var dir = new TempDirectory();
        var img = dir.File("c.qcow2");
        (await QemuImg("create", "-f", "qcow2", img, "16M")).ExitCode.Should().Be(0);
        await Host.ExecuteAsync(new Command("qemu-io").WithArguments("-c", "write -P 1 0 1M", img));
        (await VzsdkTool.RunAsync("disk", "check", img)).ExitCode.Should().Be(0);

        // A leak: raise the refcount of an unused cluster past the end of the image (as qemu-iotests do).
        var json = await VzsdkTool.RunAsync("disk", "check", "--output=json", img);
        using (var doc = JsonDocument.Parse(json.StandardOutput))
            doc.RootElement.GetProperty("check-errors").GetInt32().Should().Be(0);
        await using (var fs = new FileStream(img, FileMode.Open, FileAccess.ReadWrite))
        {
            fs.SetLength(fs.Length + 65536); // an extra cluster nobody references
        }
        var qcheck = (await QemuImg("check", img)).ExitCode;
        (await VzsdkTool.RunAsync("disk", "check", img)).ExitCode.Should().Be(qcheck, "vzsdk reports what qemu-img reports");

        // Corruption: point L1 entry 0 into the header cluster.
        var corrupt = dir.File("bad.qcow2");
        File.Copy(img, corrupt);
        await using (var fs = new FileStream(corrupt, FileMode.Open, FileAccess.ReadWrite))
        {
            var header = new byte[48];
            await fs.ReadExactlyAsync(header);
            var l1 = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(40));
            fs.Position = l1;
            var entry = new byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(entry, 0x8000000000000000UL | 0x200);
            await fs.WriteAsync(entry);
        }
        var qbad = (await QemuImg("check", corrupt)).ExitCode;
        qbad.Should().Be(2);
        (await VzsdkTool.RunAsync("disk", "check", corrupt)).ExitCode.Should().Be(2, "corruptions exit 2, as qemu-img");
    }

    [IntegrationFact("qemu-img")]
    public async Task Resize_snapshot_bitmap_map_and_backing_verbs_are_seen_by_qemu_img()
    {
        using var dir = new TempDirectory();
        var basePath = dir.File("base.qcow2");
        var top = dir.File("top.qcow2");
        (await VzsdkTool.RunAsync("disk", "create", "-f", "qcow2", basePath, "32M")).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "io", basePath, "-c", "write -P 7 0 1M")).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("disk", "create", "-f", "qcow2", "-b", basePath, "-F", "qcow2", top)).ExitCode.Should().Be(0);
        (await QemuImg("info", "--output=json", top)).StandardOutput.Should().Contain("base.qcow2");
        var map = await VzsdkTool.RunAsync("disk", "map", "--output=json", top);
        using (var doc = JsonDocument.Parse(map.StandardOutput))
            doc.RootElement.EnumerateArray().First().GetProperty("depth").GetInt32().Should().Be(1, "the data is in the backing file");
        (await VzsdkTool.RunAsync("disk", "snapshot", "-c", "s1", basePath)).ExitCode.Should().Be(0);
        (await QemuImg("snapshot", "-l", basePath)).StandardOutput.Should().Contain("s1");
        (await VzsdkTool.RunAsync("disk", "bitmap", "--add", basePath, "b0")).ExitCode.Should().Be(0);
        (await QemuImg("info", basePath)).StandardOutput.Should().Contain("b0");
        (await VzsdkTool.RunAsync("disk", "resize", top, "64M")).ExitCode.Should().Be(0);
        (await QemuImg("info", "--output=json", top)).StandardOutput.Should().Contain("67108864");
        (await QemuImg("check", basePath)).ExitCode.Should().Be(0);
        (await QemuImg("check", top)).ExitCode.Should().Be(0);
    }
}
