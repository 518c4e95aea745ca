using System.Globalization;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

[Collection("containers")]
public class ContainerResourceTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Client => fx.Client;

    private CgroupManager Cgroups => CgroupManager.Detect(fx.Options.DataRoot);

    private async Task<ContainerInfo> RunningAsync(string prefix, ContainerResources? resources = null, IReadOnlyList<string>? ips = null)
    {
        var name = ContainerFixture.UniqueName(prefix);
        await Client.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName(name),
            Resources = resources ?? new ContainerResources { DiskSpace = ByteSize.Parse("128M") },
            IpAddresses = ips ?? [],
        });
        return await Client.StartAsync(name);
    }

    private Task<VeExecResult> Sh(ContainerInfo c, string script, TimeSpan? timeout = null)
        => Client.ExecAsync(c.Id.ToString(), new VeExecOptions { Command = ["sh", "-c", script], Timeout = timeout ?? TimeSpan.FromMinutes(1) });

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_process_allocating_past_memsize_is_killed_inside_while_the_container_and_host_carry_on()
    {
        var c = await RunningAsync("oom", new ContainerResources { MemorySize = ByteSize.Parse("48M"), DiskSpace = ByteSize.Parse("128M") });
        try
        {
            var hog = await Sh(c, "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}");
            hog.ExitCode.Should().NotBe(0);
            hog.StandardOutput.Should().NotContain("survived");
            var oom = File.ReadAllLines(Path.Combine(Cgroups.Directories(c.Id, CgroupRole.Payload)["memory"], "memory.oom_control")).Single(l => l.StartsWith("oom_kill "));
            long.Parse(oom[9..], CultureInfo.InvariantCulture).Should().BePositive("the kernel OOM-killed the hog inside the container's memory cgroup");
            (await Client.GetAsync(c.Id.ToString())).State.Should().Be(VeState.Running);
            (await Sh(c, "echo alive")).StandardOutput.Should().Be("alive\n");
        }
        finally
        {
            await Client.DeleteAsync(c.Id.ToString());
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Cpulimit_throttles_a_busy_loop_as_the_cgroup_counters_show()
    {
        var c = await RunningAsync("cpu", new ContainerResources { CpuLimitPercent = 20, DiskSpace = ByteSize.Parse("128M") });
        try
        {
            var before = Cgroups.Open(c.Id).CpuThrottling();
            await Sh(c, "timeout 2 sh -c 'while :; do :; done'; true");
            var after = Cgroups.Open(c.Id).CpuThrottling();
            (after.ThrottledPeriods - before.ThrottledPeriods).Should().BeGreaterThan(5, "a 20 % limit throttles a busy loop in most 100 ms periods");
            File.ReadAllText(Path.Combine(Cgroups.Directories(c.Id, CgroupRole.Payload)["cpu"], "cpu.cfs_quota_us")).Trim().Should().Be("20000");
        }
        finally
        {
            await Client.DeleteAsync(c.Id.ToString());
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Suspend_stops_progress_and_resume_continues_it()
    {
        var c = await RunningAsync("frz");
        try
        {
            await Sh(c, "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done' </dev/null >/dev/null 2>&1 &");
            var counter = Path.Combine(fx.Root.Path, "root", c.Id.ToString(), "tmp", "counter");
            async Task<int> Read() { for (var i = 0; i < 50; i++) { var t = (await File.ReadAllTextAsync(counter)).Trim(); if (t.Length > 0) return int.Parse(t); await Task.Delay(20); } return -1; }
            await Task.Delay(500);
            (await Client.SuspendAsync(c.Id.ToString())).State.Should().Be(VeState.Suspended);
            var frozen = await Read();
            await Task.Delay(700);
            (await Read()).Should().Be(frozen, "no progress while suspended");
            (await Client.ResumeAsync(c.Id.ToString())).State.Should().Be(VeState.Running);
            await Task.Delay(700);
            (await Read()).Should().BeGreaterThan(frozen);
        }
        finally
        {
            await Client.DeleteAsync(c.Id.ToString());
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Memsize_cpus_pids_and_disk_change_live_and_persist()
    {
        var c = await RunningAsync("set");
        try
        {
            var updated = await Client.SetAsync(c.Id.ToString(), new ContainerSetOptions { MemorySize = ByteSize.Parse("300M"), Swap = ByteSize.Parse("64M"), Cpus = 1, MaxProcesses = 100, DiskSpace = ByteSize.Parse("256M"), CpuMask = "0", CpuUnits = 2000 });
            updated.Resources.MemorySize.Should().Be(ByteSize.Parse("300M"));
            var cg = Cgroups.Directories(c.Id, CgroupRole.Payload);
            File.ReadAllText(Path.Combine(cg["memory"], "memory.limit_in_bytes")).Trim().Should().Be((300L << 20).ToString());
            File.ReadAllText(Path.Combine(cg["memory"], "memory.memsw.limit_in_bytes")).Trim().Should().Be((364L << 20).ToString());
            File.ReadAllText(Path.Combine(cg["cpu"], "cpu.cfs_quota_us")).Trim().Should().Be("100000");
            File.ReadAllText(Path.Combine(cg["pids"], "pids.max")).Trim().Should().Be("100");
            File.ReadAllText(Path.Combine(cg["cpuset"], "cpuset.cpus")).Trim().Should().Be("0");
            File.ReadAllText(Path.Combine(cg["cpu"], "cpu.shares")).Trim().Should().Be("2048");
            (await Sh(c, "grep Cpus_allowed_list /proc/self/status")).StandardOutput.Should().Contain("\t0\n");
            var export = Path.Combine(fx.Root.Path, "run", c.Id.ToString(), "disk.raw");
            new FileInfo(export).Length.Should().Be(256L << 20, "the disk grew online");
            async Task<long> RootSizeKb() => long.Parse((await Sh(c, "df -k / | tail -1")).StandardOutput.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
            if (!Virtuozzo.Sdk.Containers.Runtime.Local.LocalContainerDriver.CanResizeOnline())
            {
                // Without CAP_SYS_RESOURCE (this sandbox) ext4 cannot grow while mounted: it grows at the next start.
                (await RootSizeKb()).Should().BeLessThan(200 * 1024);
                await Client.RestartAsync(c.Id.ToString());
            }
            (await RootSizeKb()).Should().BeGreaterThan(200 * 1024, "the file system follows the disk");

            await Client.StopAsync(c.Id.ToString());
            var reread = await new ContainerClient(VirtuozzoRuntime.CreateLocal(fx.Options)).GetAsync(c.Id.ToString());
            reread.Resources.MemorySize.Should().Be(ByteSize.Parse("300M"));
            reread.Resources.DiskSpace.Should().Be(ByteSize.Parse("256M"));
            await Client.Invoking(x => x.SetAsync(c.Id.ToString(), new ContainerSetOptions { DiskSpace = ByteSize.Parse("128M") })).Should().ThrowAsync<InvalidStateException>().WithMessage("*cannot shrink*");
        }
        finally
        {
            await Client.DeleteAsync(c.Id.ToString());
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_guarantee_the_host_cannot_cover_is_refused_and_the_failed_start_leaves_nothing()
    {
        var total = ContainerClientCapacity();
        // A client whose ledger has exactly 1 GiB for guarantees.
        var options = new VirtuozzoSdkOptions { DataRoot = fx.Options.DataRoot, HostMemoryReserve = new ByteSize(total - (1L << 30)) };
        var client = new ContainerClient(VirtuozzoRuntime.CreateLocal(options));
        var first = ContainerFixture.UniqueName("g1");
        var second = ContainerFixture.UniqueName("g2");
        var res = new ContainerResources { MemorySize = ByteSize.Parse("768M"), MemoryGuaranteePercent = 100, DiskSpace = ByteSize.Parse("128M") };
        await client.CreateAsync(new ContainerCreateOptions { Name = new VeName(first), Resources = res });
        var b = await client.CreateAsync(new ContainerCreateOptions { Name = new VeName(second), Resources = res });
        try
        {
            await client.StartAsync(first);
            var act = () => client.StartAsync(second);
            (await act.Should().ThrowAsync<InsufficientResourcesException>()).Which.AvailableBytes.Should().Be(256L << 20);
            (await client.GetAsync(second)).State.Should().Be(VeState.Stopped);
            AssertNothingLeft(b.Id);
            // Raising a running container's guarantee past the capacity is refused too, and changes nothing.
            await client.Invoking(x => x.SetAsync(first, new ContainerSetOptions { MemorySize = ByteSize.Parse("2G") , MemoryGuaranteePercent = 100 }))
                .Should().ThrowAsync<InsufficientResourcesException>();
            (await client.GetAsync(first)).Resources.MemorySize.Should().Be(ByteSize.Parse("768M"));
            await client.StopAsync(first);
            (await client.StartAsync(second)).State.Should().Be(VeState.Running, "the guarantee was released on stop");
        }
        finally
        {
            await client.DeleteAsync(first);
            await client.DeleteAsync(second);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "tar", Root = true)]
    public async Task A_start_that_fails_in_the_runtime_rolls_back_completely()
    {
        using var tmp = new TempDirectory();
        var rootfs = Directory.CreateDirectory(Path.Combine(tmp.Path, "rootfs")).FullName;
        Directory.CreateDirectory(Path.Combine(rootfs, "etc"));
        File.WriteAllText(Path.Combine(rootfs, "etc", "marker"), "x");
        var tarball = Path.Combine(tmp.Path, "broken.tar");
        System.Formats.Tar.TarFile.CreateFromDirectory(rootfs, tarball, includeBaseDirectory: false);
        await Client.ImportTemplateAsync(new ContainerTemplateImportOptions { Name = "broken", TarballPath = tarball, Init = ["/sbin/does-not-exist"] });
        var name = ContainerFixture.UniqueName("bad");
        var c = await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Template = "broken", IpAddresses = ["10.209.0.250/24"], Resources = new ContainerResources { MemoryGuaranteePercent = 10, DiskSpace = ByteSize.Parse("128M") } });
        await Client.Invoking(x => x.StartAsync(name)).Should().ThrowAsync<CommandFailedException>().WithMessage("*does-not-exist*");
        (await Client.GetAsync(name)).State.Should().Be(VeState.Stopped);
        AssertNothingLeft(c.Id);
        (await Client.DeleteAsync(name)).Should().BeTrue();
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Deleting_a_running_container_leaves_no_mount_process_cgroup_interface_or_file()
    {
        var c = await RunningAsync("del", ips: ["10.209.0.249/24"]);
        var initPid = int.Parse(File.ReadAllText(Path.Combine(fx.Root.Path, "run", c.Id.ToString(), "init.pid")).Trim());
        (await Client.DeleteAsync(c.Id.ToString())).Should().BeTrue();
        IsRunning(initPid).Should().BeFalse("the init is gone (at most a zombie that the host's init reaps)");
        AssertNothingLeft(c.Id);
        Directory.Exists(Path.Combine(fx.Root.Path, "private", c.Id.ToString())).Should().BeFalse();
        await Client.Invoking(x => x.GetAsync(c.Id.ToString())).Should().ThrowAsync<NotFoundException>();
    }

    private void AssertNothingLeft(VeId id)
    {
        StorageDaemon.IsMounted(Path.Combine(fx.Root.Path, "root", id.ToString())).Should().BeFalse("the root is unmounted");
        File.ReadAllText("/proc/self/mountinfo").Should().NotContain(id.ToString(), "no FUSE export or loop mount remains");
        Cgroups.Exists(id).Should().BeFalse("the cgroups are removed");
        Directory.Exists($"/sys/class/net/{HostBridge.HostLinkName(id)}").Should().BeFalse("the veth is removed");
        File.Exists($"/var/run/netns/{HostBridge.NamespaceName(id)}").Should().BeFalse("the network namespace is removed");
        Directory.GetDirectories("/proc").Where(d => int.TryParse(Path.GetFileName(d), out _)).Select(d => Path.Combine(d, "cmdline")).Where(File.Exists)
            .Where(f => IsRunning(int.Parse(Path.GetFileName(Path.GetDirectoryName(f))!)))
            .Select(f => { try { return File.ReadAllText(f); } catch (IOException) { return ""; } })
            .Should().NotContain(cmd => cmd.Contains(id.ToString()), "no process of the container or its disk daemon remains");
        File.ReadAllText(Path.Combine(fx.Root.Path, "ledger.json")).Should().NotContain(id.ToString());
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] != 'Z';
        }
        catch (IOException) { return false; }
    }

    private static long ContainerClientCapacity()
    {
        var line = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:"));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
