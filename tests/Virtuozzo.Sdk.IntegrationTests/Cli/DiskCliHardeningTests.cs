using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

/// <summary>`vzsdk disk` on the crafted images of issue 15 (Hardening, Storage.Qcow2), with qemu-img as the oracle.</summary>
public class DiskCliHardeningTests
{
    private static readonly LocalHost Host = new();

    private static Task<BufferedCommandResult> Run(string tool, params string[] args)
        => Host.ExecuteBufferedAsync(new Command(tool).WithArguments(args).WithValidation(CommandResultValidation.None));

    private static async Task OkAsync(string tool, params string[] args)
    {
        var r = await Run(tool, args);
        r.ExitCode.Should().Be(0, "{0} {1}: {2}", tool, string.Join(' ', args), r.StandardError);
    }

    private static void Poke(string file, long at, ulong value)
    {
        using var fs = new FileStream(file, FileMode.Open);
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        fs.Position = at;
        fs.Write(b);
    }

    private static ulong Peek(string file, long at)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read);
        var b = new byte[8];
        fs.Position = at;
        fs.ReadExactly(b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    /// <summary>The lines after "Format specific information:" (the parts both tools print the same way).</summary>
    private static string[] FormatSpecific(string infoOutput)
        => infoOutput.Split('\n').SkipWhile(l => !l.StartsWith("Format specific information:", StringComparison.Ordinal)).Where(l => l.Length > 0).ToArray();

    [IntegrationFact("qemu-img")]
    public async Task Info_numbers_each_bitmap_and_its_flags_as_qemu_img_does()
    {
        using var dir = new TempDirectory();
        var img = dir.File("b.qcow2");
        await OkAsync("qemu-img", "create", "-q", "-f", "qcow2", img, "4M");
        await OkAsync("qemu-img", "bitmap", "--add", img, "b1");
        await OkAsync("qemu-img", "bitmap", "--add", "-g", "128k", "--disable", img, "b2");
        var qemu = await Run("qemu-img", "info", img);
        var ours = await VzsdkTool.RunAsync("disk", "info", img);
        ours.ExitCode.Should().Be(0, ours.StandardError);
        FormatSpecific(ours.StandardOutput).Should().Equal(FormatSpecific(qemu.StandardOutput));
        ours.StandardOutput.Should().Contain("[1]:", "the second bitmap is [1], not a second [0]");
    }

    [IntegrationFact("qemu-img")]
    public async Task Info_shows_the_external_data_file_in_human_and_json_output_as_qemu_img_does()
    {
        using var dir = new TempDirectory();
        var img = dir.File("d.qcow2");
        var data = dir.File("data.raw");
        await OkAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", $"data_file={data}", img, "4M");

        var qemu = await Run("qemu-img", "info", img);
        var ours = await VzsdkTool.RunAsync("disk", "info", img);
        ours.ExitCode.Should().Be(0, ours.StandardError);
        ours.StandardOutput.Should().Contain($"data file: {data}");
        FormatSpecific(ours.StandardOutput).Should().Equal(FormatSpecific(qemu.StandardOutput));

        using var qj = JsonDocument.Parse((await Run("qemu-img", "info", "--output=json", img)).StandardOutput);
        var oursJson = await VzsdkTool.RunAsync("disk", "info", "--output=json", img);
        using var oj = JsonDocument.Parse(oursJson.StandardOutput);
        JsonElement Data(JsonDocument d) => d.RootElement.GetProperty("format-specific").GetProperty("data");
        Data(oj).GetProperty("data-file").GetString().Should().Be(Data(qj).GetProperty("data-file").GetString());
        Data(oj).GetProperty("data-file-raw").GetBoolean().Should().Be(Data(qj).GetProperty("data-file-raw").GetBoolean());
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Check_of_an_L2_table_of_random_entries_exits_as_qemu_img_does_quickly()
    {
        using var dir = new TempDirectory();
        var img = dir.File("r.qcow2");
        await OkAsync("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", img, "3G");
        await OkAsync("qemu-io", "-c", "write -P 7 0 4M", img);
        long l2 = (long)(Peek(img, (long)Peek(img, 40)) & 0x00ff_ffff_ffff_fe00UL);
        var table = new byte[32_768 * 8];
        new Random(1).NextBytes(table);
        using (var fs = new FileStream(img, FileMode.Open))
        {
            fs.Position = l2;
            fs.Write(table);
        }
        int qemu = (await Run("qemu-img", "check", img)).ExitCode;
        var sw = Stopwatch.StartNew();
        var ours = await VzsdkTool.RunAsync("disk", "check", img);
        sw.Stop();
        ours.ExitCode.Should().Be(qemu);
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(20), "the check is bounded (it was killed after 25 s at 4.6 GiB)");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Check_and_convert_of_a_truncated_image_report_it_as_qemu_img_does()
    {
        using var dir = new TempDirectory();
        var img = dir.File("t.qcow2");
        await OkAsync("qemu-img", "create", "-q", "-f", "qcow2", img, "64M");
        await OkAsync("qemu-io", "-c", "write -P 1 0 1M", img);
        using (var fs = new FileStream(img, FileMode.Open))
            fs.SetLength(fs.Length - (256 << 10));
        (await Run("qemu-img", "check", img)).ExitCode.Should().Be(2);
        (await VzsdkTool.RunAsync("disk", "check", img)).ExitCode.Should().Be(2);
        var convert = await VzsdkTool.RunAsync("disk", "convert", "-O", "raw", img, dir.File("t.raw"));
        convert.ExitCode.Should().Be(1);
        convert.StandardError.Should().Contain("past the end of the image file");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Check_with_a_refcount_table_entry_with_bit_63_set_exits_as_qemu_img_does_with_a_clear_message()
    {
        using var dir = new TempDirectory();
        var img = dir.File("rt.qcow2");
        await OkAsync("qemu-img", "create", "-q", "-f", "qcow2", img, "4M");
        await OkAsync("qemu-io", "-c", "write -P 9 0 64k", img);
        Poke(img, (long)Peek(img, 48), 0x8000_0000_0002_0000UL);
        int qemu = (await Run("qemu-img", "check", img)).ExitCode;
        var ours = await VzsdkTool.RunAsync("disk", "check", img);
        ours.ExitCode.Should().Be(qemu);
        (ours.StandardOutput + ours.StandardError).Should().NotContain("Parameter '");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public async Task Check_repair_of_an_L1_entry_pointing_at_the_header_never_claims_a_clean_image_that_qemu_img_finds_unclean()
    {
        using var dir = new TempDirectory();
        var img = dir.File("h.qcow2");
        await OkAsync("qemu-img", "create", "-q", "-f", "qcow2", img, "1G");
        await OkAsync("qemu-io", "-c", "write -P 5 0 64k", "-c", "write -P 6 512M 64k", img);
        Poke(img, (long)Peek(img, 40), 1UL << 63);
        int qemu = (await Run("qemu-img", "check", img)).ExitCode;
        qemu.Should().Be(2);
        (await VzsdkTool.RunAsync("disk", "check", img)).ExitCode.Should().Be(qemu);

        var repaired = await VzsdkTool.RunAsync("disk", "check", "-r", "all", img);
        int after = (await Run("qemu-img", "check", img)).ExitCode;
        if (after != 0)
        {
            repaired.ExitCode.Should().NotBe(0, "qemu-img still finds the repaired image unclean");
            repaired.StandardOutput.Should().NotContain("No errors were found");
        }
    }

    [IntegrationFact("qemu-img")]
    public async Task The_next_convert_removes_the_temporary_file_a_killed_convert_left_behind()
    {
        using var dir = new TempDirectory();
        var big = dir.File("big.raw");
        using (var fs = File.Create(big))
        {
            // 256 MiB of random data: compressing it takes seconds
            var rnd = new Random(3);
            var buf = new byte[1 << 20];
            for (int i = 0; i < 256; i++)
            {
                rnd.NextBytes(buf);
                fs.Write(buf);
            }
        }
        var dst = dir.File("out.qcow2");
        var line = VzsdkTool.StartLine("disk", "convert", "-c", "-O", "qcow2", big, dst);
        var psi = new ProcessStartInfo(line[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in line.Skip(1))
            psi.ArgumentList.Add(a);
        using (var p = Process.Start(psi)!)
        {
            var until = DateTime.UtcNow.AddSeconds(60);
            while (Directory.GetFiles(dir.Path, ".out.qcow2.*.tmp").Length == 0)
            {
                p.HasExited.Should().BeFalse("the convert should still be running");
                DateTime.UtcNow.Should().BeBefore(until);
                await Task.Delay(20);
            }
            await Task.Delay(300);
            p.Kill();
            await p.WaitForExitAsync();
        }
        Directory.GetFiles(dir.Path, ".out.qcow2.*.tmp").Should().ContainSingle("SIGKILL leaves the temporary output behind");

        var small = dir.File("small.raw");
        File.WriteAllBytes(small, new byte[1 << 20]);
        (await VzsdkTool.RunAsync("disk", "convert", "-O", "qcow2", small, dst)).ExitCode.Should().Be(0);
        Directory.GetFiles(dir.Path, "*.tmp").Should().BeEmpty("the stale temporary file of the killed writer is removed");
        (await Run("qemu-img", "check", dst)).ExitCode.Should().Be(0);
    }
}
