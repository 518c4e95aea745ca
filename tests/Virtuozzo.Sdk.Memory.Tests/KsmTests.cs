using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory.Tests;

public class KsmTests
{
    private static readonly long Total = 16 * ByteSize.GiB;
    private static readonly KsmSettings Idle = new(false, 100, 10);

    [Fact]
    public void Ksm_stays_off_while_the_host_has_free_memory()
        => KsmController.Decide(new KsmInputs(Total, Total / 2, Total * 2), Idle).Run.Should().BeFalse();

    [Fact]
    public void Ksm_stays_off_while_the_ves_could_not_fill_the_host()
        => KsmController.Decide(new KsmInputs(Total, Total / 10, Total / 4), Idle).Run.Should().BeFalse();

    [Fact]
    public void Ksm_runs_when_the_host_is_busy_and_short_of_memory_and_scans_faster_each_time()
    {
        var s = KsmController.Decide(new KsmInputs(Total, Total / 10, Total), Idle);
        s.Run.Should().BeTrue();
        s.PagesToScan.Should().Be(400);
        s.SleepMilliseconds.Should().Be(10);
        for (var i = 0; i < 10; i++)
            s = KsmController.Decide(new KsmInputs(Total, Total / 10, Total), s);
        s.PagesToScan.Should().Be(KsmController.MaxPagesToScan);
    }

    [Fact]
    public void The_sleep_scales_with_the_host_s_ram()
        => KsmController.Decide(new KsmInputs(4 * ByteSize.GiB, 0, 8 * ByteSize.GiB), Idle).SleepMilliseconds.Should().Be(40);

    [Fact]
    public async Task Switching_ksm_on_and_off_writes_the_kernel_files_and_auto_leaves_them_to_the_rules()
    {
        var dir = Directory.CreateTempSubdirectory("vzsdk-ksm-").FullName;
        foreach (var (f, v) in new[] { ("run", "0"), ("pages_to_scan", "100"), ("sleep_millisecs", "20"), ("pages_shared", "7"), ("pages_sharing", "70"), ("full_scans", "3") })
            File.WriteAllText(Path.Combine(dir, f), v + "\n");
        var ksm = new KsmController(Path.Combine(dir, "mode"), dir);
        await ksm.SetModeAsync(KsmMode.On);
        var on = await ksm.GetStatusAsync();
        on.Should().Be(new KsmStatus(KsmMode.On, true, KsmController.ManualPagesToScan, 10, 7, 70, 3));
        on.SavedBytes.Should().Be(70 * 4096);
        (await ksm.TickAsync(new KsmInputs(Total, Total, 0))).Run.Should().BeTrue("a mode set by hand wins over the rules");
        await ksm.SetModeAsync(KsmMode.Auto);
        (await ksm.TickAsync(new KsmInputs(Total, Total, 0))).Run.Should().BeFalse();
        File.ReadAllText(Path.Combine(dir, "run")).Should().Be("0");
        Directory.Delete(dir, true);
    }
}
