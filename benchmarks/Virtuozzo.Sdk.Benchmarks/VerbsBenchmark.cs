using System.Diagnostics;
using System.Globalization;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// The vzsdk tool's lifecycle verbs as processes against the library calls they wrap, in one run, the order alternating
/// every round: <c>vzsdk ct start</c> / <c>ct stop</c> of a busybox container against <c>ContainerClient.StartAsync</c> /
/// <c>StopAsync</c>, <c>vzsdk vm start</c> of a diskless VM (software emulation; the call returns once the emulator
/// answers, no guest boots) against <c>VirtualMachineClient.StartAsync</c>, and <c>vzsdk list -a</c> against
/// <c>VirtualEnvironmentClient.ListAsync(all: true)</c>. The library runs warm in this process (the calls a long-lived
/// service makes); the tool's figure is its wall time from fork to exit. Prints each verb's medians and the difference.
/// Needs root. <c>benchmarks/startup.sh</c> runs it after the disk verbs.
/// </summary>
internal static class VerbsBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 15;
        var vzsdk = Path.GetFullPath(args.Length > 1 ? args[1] : "artifacts/vzsdk/vzsdk");
        if (!File.Exists(vzsdk))
        {
            Console.Error.WriteLine($"verbs: {vzsdk} does not exist: run ./build.sh build");
            return 1;
        }
        var root = Path.Combine(Path.GetTempPath(), $"vzsdk-bench-verbs-{Guid.NewGuid():N}");
        var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = root, LockTimeout = TimeSpan.FromMinutes(2) });
        var containers = new ContainerClient(runtime);
        var vms = new VirtualMachineClient(runtime);
        var all = new VirtualEnvironmentClient(runtime);
        var times = new Dictionary<string, List<double>>();
        void Add(string key, double ms) => (times.TryGetValue(key, out var l) ? l : times[key] = []).Add(ms);
        async Task<double> Lib(Func<Task> call)
        {
            var sw = Stopwatch.StartNew();
            await call();
            return sw.Elapsed.TotalMilliseconds;
        }
        double Tool(params string[] verb)
        {
            var psi = new ProcessStartInfo(vzsdk) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("--data-root");
            psi.ArgumentList.Add(root);
            foreach (var a in verb)
                psi.ArgumentList.Add(a);
            var sw = Stopwatch.StartNew();
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEnd();
            p.WaitForExit();
            var ms = sw.Elapsed.TotalMilliseconds;
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"vzsdk {string.Join(' ', verb)} exited with {p.ExitCode}: {stderr}{stdout.Result}");
            return ms;
        }
        try
        {
            await containers.ListTemplatesAsync(); // builds the busybox template outside the timings
            await containers.CreateAsync(new ContainerCreateOptions
            {
                Name = new VeName("verbs-ct"),
                Resources = new ContainerResources { MemorySize = ByteSize.Parse("128M"), DiskSpace = ByteSize.Parse("128M") },
            });
            await vms.CreateAsync(new VmCreateOptions
            {
                Name = new VeName("verbs-vm"),
                MemorySize = ByteSize.Parse("128M"),
                Network = VmNetworkMode.User,
                Acceleration = VmAcceleration.Software,
            });
            // one untimed round of each, so that neither side's first call counts
            await containers.StartAsync("verbs-ct");
            await containers.StopAsync("verbs-ct");
            Tool("ct", "start", "verbs-ct");
            Tool("ct", "stop", "verbs-ct");
            await vms.StartAsync("verbs-vm");
            await vms.StopAsync("verbs-vm", new VeStopOptions { Kill = true });
            Tool("list", "-a");
            await all.ListAsync(true);
            for (var round = 0; round < rounds; round++)
            {
                var toolFirst = round % 2 == 0;
                for (var side = 0; side < 2; side++)
                {
                    if ((side == 0) == toolFirst)
                    {
                        Add("ct start tool", Tool("ct", "start", "verbs-ct"));
                        Add("ct stop tool", Tool("ct", "stop", "verbs-ct"));
                        Add("vm start tool", Tool("vm", "start", "verbs-vm"));
                        await vms.StopAsync("verbs-vm", new VeStopOptions { Kill = true });
                        Add("list -a tool", Tool("list", "-a"));
                    }
                    else
                    {
                        Add("ct start lib", await Lib(() => containers.StartAsync("verbs-ct")));
                        Add("ct stop lib", await Lib(() => containers.StopAsync("verbs-ct")));
                        Add("vm start lib", await Lib(() => vms.StartAsync("verbs-vm")));
                        await vms.StopAsync("verbs-vm", new VeStopOptions { Kill = true });
                        Add("list -a lib", await Lib(() => all.ListAsync(true)));
                    }
                }
            }
            static double Median(List<double> v) => v.OrderBy(x => x).ElementAt(v.Count / 2);
            Console.WriteLine();
            Console.WriteLine($"vzsdk verbs as processes vs the library calls they wrap (warm, in-process), median of {rounds} alternating rounds; {Environment.ProcessorCount} CPUs");
            Console.WriteLine($"{"verb",-12} {"vzsdk",10} {"library",10} {"difference",11}   target: difference <= 60 ms");
            foreach (var verb in new[] { "ct start", "ct stop", "vm start", "list -a" })
            {
                double tool = Median(times[verb + " tool"]), lib = Median(times[verb + " lib"]);
                Console.WriteLine($"{verb,-12} {tool,7:0.0} ms {lib,7:0.0} ms {tool - lib,8:0.0} ms   {(tool - lib <= 60 ? "met" : "not met")}");
            }
            return 0;
        }
        finally
        {
            foreach (var v in await all.ListAsync(true))
            {
                try
                {
                    await all.StopAsync(v.Id.ToString(), new VeStopOptions { Kill = true });
                    await all.DeleteAsync(v.Id.ToString());
                }
                catch (VirtuozzoException ex)
                {
                    Console.Error.WriteLine($"verbs: cleaning up {v.Name}: {ex.Message}");
                }
            }
            try { Directory.Delete(root, recursive: true); }
            catch (IOException) { }
        }
    }
}
