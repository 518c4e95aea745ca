using System.Diagnostics;
using System.Globalization;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Memory;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// ./build.sh bench memory real [POLICIES]: the memory manager on this machine, for real, under each policy in turn
/// (default: all five), every policy from the same fresh start: three idle VMs of the test guest (768 MiB, 40 %
/// guarantee, virtio-balloon), a busy container (1 GiB) and two idle ones (256 MiB) under a 2 GiB budget (3.75 GiB of
/// limits). Measured from QMP and cgroup files, not from the manager: the time to take 1 GiB back from the idle VMs
/// (the sum of their balloons' deflation from full), then the busy container's allocation of 700 MiB (10 MiB every
/// 0.4 s) — its completion time, or when the kernel OOM-killed it. Needs root.
/// </summary>
internal static class MemoryRealBenchmark
{
    private const long MiB = 1 << 20;
    private static readonly long VmSize = 768 * MiB;
    private const int VmGuaranteePercent = 40;
    private const int AllocateMiB = 700;

    public static async Task<int> RunAsync(string[] args)
    {
        var policies = args.Length > 0 ? args[0].Split(',') : [.. MemoryPolicies.Names];
        var guest = await TestGuest.GetAsync();
        var rows = new List<string>();
        foreach (var policy in policies)
        {
            var root = Path.Combine(Path.GetTempPath(), $"vzsdk-bench-mem-{Guid.NewGuid():N}");
            var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = root, LockTimeout = TimeSpan.FromMinutes(2) });
            var vms = new VirtualMachineClient(runtime);
            var cts = new ContainerClient(runtime);
            try
            {
                rows.Add(await RunPolicyAsync(policy, root, runtime, vms, cts, guest));
                Console.Error.WriteLine(rows[^1]);
            }
            finally
            {
                foreach (var vm in await vms.ListAsync())
                    if (vm.State is VeState.Running or VeState.Paused or VeState.Busy)
                        await vms.KillAsync(vm.Id.ToString());
                foreach (var c in await cts.ListAsync(all: true))
                    await cts.DeleteAsync(c.Id.ToString());
                try { Directory.Delete(root, recursive: true); }
                catch (IOException) { }
            }
        }
        Console.WriteLine();
        Console.WriteLine($"Memory manager, real run: 3 idle VMs ({VmSize / MiB} MiB, {VmGuaranteePercent} % guarantee), a busy container (1 GiB) and two idle ones (256 MiB), 2 GiB budget, 1 s ticks; {Environment.ProcessorCount} CPUs, TCG");
        Console.WriteLine();
        Console.WriteLine("| policy | 1 GiB back from the idle VMs | smallest balloon | busy container: 700 MiB | its limit, highest | OOM kills |");
        Console.WriteLine("|---|---|---:|---|---:|---:|");
        foreach (var row in rows)
            Console.WriteLine(row);
        return 0;
    }

    private static async Task<string> RunPolicyAsync(string policy, string root, VirtuozzoRuntime runtime, VirtualMachineClient vms, ContainerClient cts, TestGuest guest)
    {
        var names = new[] { "bm-vm1", "bm-vm2", "bm-vm3" };
        foreach (var name in names)
        {
            await vms.CreateAsync(new VmCreateOptions
            {
                Name = new VeName(name), MemorySize = ByteSize.FromBytes(VmSize), MemoryGuaranteePercent = VmGuaranteePercent,
                KernelPath = guest.KernelPath, InitrdPath = guest.InitrdPath, KernelCommandLine = TestGuest.CommandLine,
                Acceleration = VmAcceleration.Auto, Network = VmNetworkMode.User,
            });
        }
        var started = await Task.WhenAll(names.Select(async n =>
        {
            var vm = await vms.StartAsync(n);
            await vms.WaitForGuestToolsAsync(n, TimeSpan.FromSeconds(180));
            return vm;
        }));
        async Task<ContainerInfo> Container(string name, long limit)
        {
            await cts.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { MemorySize = ByteSize.FromBytes(limit), DiskSpace = ByteSize.Parse("128M") } });
            return await cts.StartAsync(name);
        }
        var busy = await Container("bm-busy", 1024 * MiB);
        await Container("bm-idle1", 256 * MiB);
        await Container("bm-idle2", 256 * MiB);
        var memoryDir = CgroupManager.Detect(root).Directories(busy.Id, CgroupRole.Payload)["memory"];
        long Cgroup(string file) => long.Parse(File.ReadAllText(Path.Combine(memoryDir, file)).Trim(), CultureInfo.InvariantCulture);
        long OomKills() => long.Parse(File.ReadAllLines(Path.Combine(memoryDir, "memory.oom_control")).Single(l => l.StartsWith("oom_kill ", StringComparison.Ordinal))[9..], CultureInfo.InvariantCulture);
        async Task<long> Balloon(VeId id)
        {
            var qmp = await QmpClient.ConnectAsync(Path.Combine(root, "run", id.ToString(), "qmp"), TimeSpan.FromSeconds(30), CancellationToken.None);
            await using (qmp)
                return (await qmp.ExecuteAsync("query-balloon", null, TimeSpan.FromSeconds(30), CancellationToken.None))!["actual"]!.GetValue<long>();
        }

        var manager = new MemoryManager(runtime, new MemoryManagerOptions { Policy = policy, Budget = ByteSize.Parse("2G"), ManageKsm = false, Interval = TimeSpan.FromSeconds(1) });
        long smallest = long.MaxValue;

        // The idle VMs: how long until 1 GiB of their memory is back with the host (QMP's balloon sizes).
        var clock = Stopwatch.StartNew();
        string reclaim = "";
        long best = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(90))
        {
            await manager.TickAsync();
            var balloons = await Task.WhenAll(started.Select(v => Balloon(v.Id)));
            smallest = Math.Min(smallest, balloons.Min());
            var back = balloons.Sum(b => VmSize - b);
            best = Math.Max(best, back);
            if (back >= 1024 * MiB)
            {
                reclaim = $"{clock.Elapsed.TotalSeconds:F1} s";
                break;
            }
            await Task.Delay(TimeSpan.FromSeconds(1) - TimeSpan.FromMilliseconds(clock.ElapsedMilliseconds % 1000));
        }
        if (reclaim.Length == 0)
            reclaim = $"not in 90 s (at most {best / MiB} MiB)";

        // The busy container allocates while the manager ticks.
        var work = cts.ExecAsync(busy.Id.ToString(), new VeExecOptions
        {
            Command = ["sh", "-c", $"i=0; while [ $i -lt {AllocateMiB / 10} ]; do eval \"v$i=\\$(head -c 10485760 /dev/zero | tr '\\\\0' a)\"; i=$((i+1)); sleep 0.4; done; echo allocated"],
            Timeout = TimeSpan.FromMinutes(4),
        });
        var busyClock = Stopwatch.StartNew();
        long highestLimit = 0;
        while (!work.IsCompleted && busyClock.Elapsed < TimeSpan.FromMinutes(4))
        {
            await manager.TickAsync();
            highestLimit = Math.Max(highestLimit, Cgroup("memory.limit_in_bytes"));
            foreach (var v in started)
                smallest = Math.Min(smallest, await Balloon(v.Id));
            await Task.WhenAny(work, Task.Delay(1000));
        }
        var result = await work;
        var elapsed = busyClock.Elapsed;
        var outcome = result.StandardOutput.Contains("allocated", StringComparison.Ordinal)
            ? $"**completed in {elapsed.TotalSeconds:F1} s**"
            : $"killed after {elapsed.TotalSeconds:F1} s (exit {result.ExitCode})";
        return string.Create(CultureInfo.InvariantCulture,
            $"| {policy} | {reclaim} | {smallest / MiB} MiB | {outcome} | {highestLimit / MiB} MiB | {OomKills()} |");
    }
}
