using System.Globalization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Vm;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Memory;

/// <summary>
/// The cgroup v2 memory paths against a real kernel. The reference machine's memory controller is bound to its v1
/// hierarchy (hybrid layout, and its sandbox keeps processes in v1 memory cgroups), so it cannot be enabled in a v2
/// hierarchy there; the test guest's kernel has no such binding. The guest boots with a data disk that carries
/// <c>cgroup-v2-probe</c> (a Native AOT program built from Core's cgroup code: <c>tests/Virtuozzo.Sdk.CgroupV2Probe</c>)
/// and a data file; the probe mounts nothing itself, drives <c>CgroupManager</c>/<c>VeCgroup</c> against the guest's
/// cgroup2 file system and prints what the kernel then shows, which this test asserts.
/// </summary>
public sealed class MemoryCgroupV2Tests : IAsyncLifetime
{
    private const long MiB = 1 << 20;
    private readonly VmTestEnvironment _env = new();
    private readonly Xunit.Abstractions.ITestOutputHelper _output;

    public MemoryCgroupV2Tests(Xunit.Abstractions.ITestOutputHelper output) => _output = output;

    public Task InitializeAsync() => _env.InitializeAsync();

    public Task DisposeAsync() => _env.DisposeAsync();

    [IntegrationFact("qemu-system-x86_64", "mkfs.ext4", "qemu-img")]
    public async Task On_cgroup_v2_limits_targets_and_protection_land_in_the_kernel_and_a_lower_limit_reclaims_instead_of_killing()
    {
        var content = Path.Combine(_env.Root.Path, "probe-disk");
        Directory.CreateDirectory(content);
        File.Copy(await ProbeAsync(), Path.Combine(content, "cgroup-v2-probe"));
        File.SetUnixFileMode(Path.Combine(content, "cgroup-v2-probe"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var data = new byte[128 * MiB];
        new Random(7).NextBytes(data);
        await File.WriteAllBytesAsync(Path.Combine(content, "data.bin"), data);
        var disk = await TestGuest.MakeExt4DiskFromDirectoryAsync(_env.Root.Path, "probe", 192, content);

        await _env.Client.CreateAsync(_env.GuestVm("cgv2") with
        {
            MemorySize = ByteSize.FromMiB(768),
            KernelCommandLine = TestGuest.CommandLine + " psi=1",
            Disks = [new VmDiskOptions { SourceImagePath = disk }],
        });
        await _env.Client.StartAsync("cgv2");
        await _env.Client.WaitForGuestToolsAsync("cgv2", TimeSpan.FromSeconds(90));
        var r = await _env.Client.ExecAsync("cgv2", new VeExecOptions
        {
            Command = ["/bin/sh", "-c", "grep -q ' /mnt/data ext4 ' /proc/mounts && mount -t cgroup2 none /sys/fs/cgroup && /mnt/data/cgroup-v2-probe run /sys/fs/cgroup /mnt/data/data.bin"],
            Timeout = TimeSpan.FromMinutes(4),
        });
        _output.WriteLine(r.StandardOutput);
        r.ExitCode.Should().Be(0, "the probe ran to its end; stdout: {0} stderr: {1}", r.StandardOutput, r.StandardError);
        var facts = r.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1].Trim());
        long N(string key) => long.Parse(facts[key], CultureInfo.InvariantCulture);
        string because = r.StandardOutput;

        facts["layout"].Should().Be("V2", because);
        facts["controllers"].Split(',').Should().Contain("memory");
        facts["files"].Split(',').Should().Contain(["memory.min", "memory.low", "memory.high", "memory.max", "memory.swap.max", "memory.pressure"]);

        // The container driver's limits and the memory manager's targets, read back from the kernel's files.
        N("set.max").Should().Be(256 * MiB);
        N("set.swap_max").Should().Be(0);
        N("set.limit_read").Should().Be(256 * MiB);
        N("target.writes_first").Should().Be(2, "memory.min and memory.high changed");
        N("target.writes_again").Should().Be(0, "a tick that decides the same writes nothing");
        N("target.min").Should().Be(32 * MiB);
        N("target.high").Should().Be(192 * MiB);
        N("target.high_read").Should().Be(192 * MiB);
        N("protection.low").Should().Be(16 * MiB);

        // memory.high as the target: 128 MiB read through the page cache leaves at most the target charged, and the reader runs on.
        N("high.events").Should().BePositive("the kernel reclaimed at memory.high; {0}", because);
        N("high.current").Should().BeLessThanOrEqualTo(52 * MiB, because);
        facts["high.hog_alive"].Should().Be("True");

        // A live lower limit goes through reclaim: memory.high first, then memory.max once usage fits; nothing killed.
        N("lower.before").Should().BeGreaterThan(64 * MiB, "the reader's page cache is charged before the change; {0}", because);
        N("lower.max").Should().Be(40 * MiB);
        facts["lower.high"].Should().Be("max", "the temporary target is lifted once the limit holds");
        N("lower.current").Should().BeLessThanOrEqualTo(40 * MiB);
        facts["lower.hog_alive"].Should().Be("True");
        N("lower.oom_kills").Should().Be(0);
        N("raise.max").Should().Be(256 * MiB);

        // Memory that cannot be reclaimed: the change is refused with the typed error, the old limit stays, nothing is killed.
        N("refuse.before").Should().BeGreaterThan(96 * MiB);
        facts["refuse.error"].Should().Be(nameof(InsufficientResourcesException), because);
        N("refuse.max").Should().Be(256 * MiB);
        facts["refuse.high"].Should().Be("max");
        facts["refuse.hog_alive"].Should().Be("True");
        N("refuse.oom_kills").Should().Be(0);
        // The contrast: the same limit written straight to memory.max OOM-kills the process.
        facts["direct.hog_alive"].Should().Be("False");
        N("direct.oom_kills").Should().BeGreaterThanOrEqualTo(1);

        N("pressure_total").Should().BeGreaterThanOrEqualTo(0, "per-cgroup PSI is read from memory.pressure");
        facts["deleted"].Should().Be("True");
    }

    /// <summary>The published probe (./build.sh build puts it in artifacts/), or one published now.</summary>
    private async Task<string> ProbeAsync()
    {
        if (Environment.GetEnvironmentVariable("VZSDK_CGROUP_PROBE") is { Length: > 0 } fromEnv && File.Exists(fromEnv))
            return fromEnv;
        if (TestGuest.FindInRepository("artifacts/cgroup-v2-probe/cgroup-v2-probe") is { } published)
            return published;
        if (TestGuest.FindInRepository("tests/Virtuozzo.Sdk.CgroupV2Probe/Virtuozzo.Sdk.CgroupV2Probe.csproj") is { } project)
        {
            var output = Path.Combine(_env.Root.Path, "probe-publish");
            await TestGuest.RunAsync("dotnet", "publish", project, "-c", "Release", "-r", "linux-x64", "-nologo", "-v", "quiet", "-o", output);
            return Path.Combine(output, "cgroup-v2-probe");
        }
        throw new FileNotFoundException("cgroup-v2-probe was not found (run ./build.sh build) above " + AppContext.BaseDirectory);
    }
}
