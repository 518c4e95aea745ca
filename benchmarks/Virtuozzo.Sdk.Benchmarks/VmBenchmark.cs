using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// VM benchmarks on the test guest (tests/guest/build-guest.sh): time from start to the guest tools answering, through
/// the SDK and with plain <c>qemu-system-x86_64</c> given the same arguments (the SDK's overhead), alternating in one
/// run; memory-hotplug latency (the call, and until the guest's MemTotal shows the DIMM); <c>ListAsync</c> over 100
/// defined VMs.
/// </summary>
internal static class VmBenchmark
{
    private static double Median(List<double> v)
    {
        v.Sort();
        return v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    private static string Ms(double seconds) => (seconds * 1000).ToString("0", CultureInfo.InvariantCulture) + " ms";

    private static async Task<string> GuestDirectoryAsync(LocalHost host)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var script = Path.Combine(dir.FullName, "tests", "guest", "build-guest.sh");
            if (File.Exists(script))
                return (await host.ExecuteBufferedAsync(new Command("/bin/sh").WithArguments(script).WithTimeout(TimeSpan.FromMinutes(5)))).StandardOutput.Trim().Split('\n')[^1];
        }
        throw new FileNotFoundException("tests/guest/build-guest.sh not found");
    }

    public static async Task<int> RunAsync(string[] args)
    {
        var rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 5;
        var host = new LocalHost();
        var guest = await GuestDirectoryAsync(host);
        var root = Path.Combine(Path.GetTempPath(), $"vzsdk-vmbench-{Guid.NewGuid():N}");
        var client = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = root, LockTimeout = TimeSpan.FromMinutes(5) }));
        var guestVm = new VmCreateOptions
        {
            Name = new VeName("bench"),
            MemorySize = ByteSize.FromGiB(1),
            MemoryHotplug = true,
            MaxMemory = ByteSize.FromGiB(2),
            KernelPath = Path.Combine(guest, "VMLINUZ"),
            InitrdPath = Path.Combine(guest, "INITRD"),
            KernelCommandLine = "console=ttyS0 memhp_default_state=online panic=-1",
            Network = VmNetworkMode.User,
            Acceleration = VmAcceleration.Software,
        };
        try
        {
            var vm = await client.CreateAsync(guestVm);

            // 1. Start to guest tools: SDK vs plain emulator, alternating.
            var sdk = new List<double>();
            var plain = new List<double>();
            var plainDir = Path.Combine(root, "plain");
            var config = new VmConfig
            {
                Id = Guid.NewGuid(), Name = "plain", CreatedAt = DateTimeOffset.UtcNow, Cpus = 1, MaxCpus = 1, MemoryBytes = ByteSize.GiB,
                MemoryGuaranteePercent = 80, MemoryHotplug = true, MaxMemoryBytes = 2 * ByteSize.GiB, MemorySlots = 8,
                KernelPath = guestVm.KernelPath, InitrdPath = guestVm.InitrdPath, KernelCommandLine = guestVm.KernelCommandLine,
                Network = VmNetworkMode.User, MacAddress = "52:54:00:00:00:01",
            };
            var paths = new VmPaths(plainDir, Path.Combine(plainDir, "run"));
            for (var i = 0; i < rounds; i++)
            {
                var sw = Stopwatch.StartNew();
                await client.StartAsync("bench");
                await client.WaitForGuestToolsAsync("bench", TimeSpan.FromMinutes(1));
                sdk.Add(sw.Elapsed.TotalSeconds);
                await client.KillAsync("bench");

                if (Directory.Exists(plainDir))
                    Directory.Delete(plainDir, true);
                Directory.CreateDirectory(paths.RunDirectory);
                var argv = QemuCommandLine.Build(config, paths, new QemuLaunch { Software = true });
                sw.Restart();
                await host.ExecuteAsync(new Command("qemu-system-x86_64").WithArguments(argv));
                await using (await GuestAgentClient.ConnectAsync(paths.AgentSocket, TimeSpan.FromMinutes(1), default))
                    plain.Add(sw.Elapsed.TotalSeconds);
                var pid = int.Parse(File.ReadAllText(paths.PidFile).Trim(), CultureInfo.InvariantCulture);
                Native.TrySignal(pid, Native.SIGKILL);
                while (ProcessTree.ReadStat(pid) is not null && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z", StringComparison.Ordinal))
                    await Task.Delay(10);
            }

            // 2. Memory hotplug: +128 MiB steps up to 2 GiB.
            await client.StartAsync("bench");
            await client.WaitForGuestToolsAsync("bench", TimeSpan.FromMinutes(1));
            var call = new List<double>();
            var seen = new List<double>();
            async Task<long> MemTotalKiB()
            {
                var r = await client.ExecAsync("bench", new VeExecOptions { Command = ["/bin/cat", "/proc/meminfo"] });
                return long.Parse(Regex.Match(r.StandardOutput, @"MemTotal:\s+(\d+) kB").Groups[1].Value, CultureInfo.InvariantCulture);
            }
            var size = ByteSize.GiB;
            for (var i = 0; i < 8 && size + 128 * ByteSize.MiB <= 2 * ByteSize.GiB; i++)
            {
                var before = await MemTotalKiB();
                size += 128 * ByteSize.MiB;
                var sw = Stopwatch.StartNew();
                await client.SetAsync("bench", new VmSetOptions { MemorySize = ByteSize.FromBytes(size) });
                call.Add(sw.Elapsed.TotalSeconds);
                while (await MemTotalKiB() < before + 100 * 1024)
                    await Task.Delay(5);
                seen.Add(sw.Elapsed.TotalSeconds);
            }
            await client.KillAsync("bench");

            // 3. ListAsync with 100 defined VMs.
            for (var i = 1; i < 100; i++)
                await client.CreateAsync(guestVm with { Name = new VeName($"bench-{i}"), MemoryHotplug = false, MaxMemory = null });
            var list = new List<double>();
            for (var i = 0; i < 5; i++)
            {
                var sw = Stopwatch.StartNew();
                var all = await client.ListAsync();
                list.Add(sw.Elapsed.TotalSeconds);
                if (all.Count != 100)
                    throw new InvalidOperationException($"expected 100 VMs, listed {all.Count}");
            }

            Console.WriteLine();
            Console.WriteLine("| VM benchmark (software emulation, test guest) | median |");
            Console.WriteLine("|---|---|");
            Console.WriteLine($"| start → guest tools answer, SDK `StartAsync` + `WaitForGuestToolsAsync` ({rounds} runs) | {Ms(Median(sdk))} |");
            Console.WriteLine($"| start → guest tools answer, plain `qemu-system-x86_64` with the same arguments ({rounds} runs) | {Ms(Median(plain))} |");
            Console.WriteLine($"| SDK overhead on start | {Ms(Median(sdk) - Median(plain))} |");
            Console.WriteLine($"| memory hotplug +128 MiB: `SetAsync` returns ({call.Count} runs) | {Ms(Median(call))} |");
            Console.WriteLine($"| memory hotplug +128 MiB: guest MemTotal shows it ({seen.Count} runs) | {Ms(Median(seen))} |");
            Console.WriteLine($"| `ListAsync` with 100 defined (stopped) VMs (5 runs) | {Ms(Median(list))} |");
            return 0;
        }
        finally
        {
            foreach (var v in await client.ListAsync())
            {
                if (v.IsRunning)
                    await client.KillAsync(v.Id.ToString());
            }
            Directory.Delete(root, true);
        }
    }
}
