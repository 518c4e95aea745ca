using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// Container lifecycle latency (median create, start, stop, delete over N containers) and host memory per running
/// container (PSS of every process the SDK started for it, with RUNNING containers up), compared in the same run with
/// bare <c>runc run</c> of the same root file system. Needs root.
/// </summary>
internal static class ContainerBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var count = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 20;
        var running = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 50;
        var root = Path.Combine(Path.GetTempPath(), $"vzsdk-bench-{Guid.NewGuid():N}");
        var options = new VirtuozzoSdkOptions { DataRoot = root, LockTimeout = TimeSpan.FromMinutes(5) };
        var client = new ContainerClient(VirtuozzoRuntime.CreateLocal(options));
        var host = new LocalHost();
        var small = new ContainerResources { MemorySize = ByteSize.Parse("128M"), DiskSpace = ByteSize.Parse("128M") };
        try
        {
            await client.ListTemplatesAsync(); // builds the busybox template outside the timings
            var create = new List<double>();
            var start = new List<double>();
            var stop = new List<double>();
            var delete = new List<double>();
            for (var i = 0; i < count; i++)
            {
                var name = $"bench-{i}";
                var sw = Stopwatch.StartNew();
                await client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = small });
                create.Add(sw.Elapsed.TotalSeconds);
                sw.Restart();
                await client.StartAsync(name);
                start.Add(sw.Elapsed.TotalSeconds);
                sw.Restart();
                await client.StopAsync(name);
                stop.Add(sw.Elapsed.TotalSeconds);
                sw.Restart();
                await client.DeleteAsync(name);
                delete.Add(sw.Elapsed.TotalSeconds);
            }

            // Bare runc with the same root file system, as a reference.
            var bareDir = Path.Combine(root, "bare");
            var rootfs = Path.Combine(bareDir, "rootfs");
            Directory.CreateDirectory(rootfs);
            await host.ExecuteAsync(new Command("tar").WithArguments("--numeric-owner", "-xpf", Path.Combine(root, "templates", "busybox.tar.gz"), "-C", rootfs));
            await host.ExecuteAsync(new Command("runc").WithArguments("spec").WithWorkingDirectory(bareDir));
            var spec = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(bareDir, "config.json")))!;
            spec["process"]!["terminal"] = false;
            spec["process"]!["args"] = new JsonArray("/sbin/vzinit");
            await File.WriteAllTextAsync(Path.Combine(bareDir, "config.json"), spec.ToJsonString());
            var runcRoot = Path.Combine(bareDir, "state");
            var bareStart = new List<double>();
            var bareStop = new List<double>();
            for (var i = 0; i < count; i++)
            {
                var id = $"bare-{i}";
                var sw = Stopwatch.StartNew();
                await host.ExecuteAsync(new Command("sh").WithArguments("-c", "exec \"$@\" </dev/null >/dev/null 2>&1", "sh", "runc", "--root", runcRoot, "run", "-d", "--bundle", bareDir, id));
                bareStart.Add(sw.Elapsed.TotalSeconds);
                sw.Restart();
                await host.ExecuteAsync(new Command("runc").WithArguments("--root", runcRoot, "kill", id, "TERM"));
                while ((await host.ExecuteBufferedAsync(new Command("runc").WithArguments("--root", runcRoot, "state", id).WithValidation(CommandResultValidation.None))).StandardOutput.Contains("\"running\""))
                    await Task.Delay(10);
                await host.ExecuteAsync(new Command("runc").WithArguments("--root", runcRoot, "delete", "--force", id));
                bareStop.Add(sw.Elapsed.TotalSeconds);
            }

            // Memory per running container.
            var cgroups = CgroupManager.Detect(options.DataRoot);
            var ids = new List<VeId>();
            for (var i = 0; i < running; i++)
            {
                var c = await client.CreateAsync(new ContainerCreateOptions { Name = new VeName($"mem-{i}"), Resources = small });
                await client.StartAsync(c.Id.ToString());
                ids.Add(c.Id);
            }
            await Task.Delay(1000);
            var pss = ids.Select(id => cgroups.Open(id).AllProcesses().Sum(Pss)).ToList();
            var barePss = new List<long>();
            for (var i = 0; i < 5; i++)
            {
                await host.ExecuteAsync(new Command("sh").WithArguments("-c", "exec \"$@\" </dev/null >/dev/null 2>&1", "sh", "runc", "--root", runcRoot, "run", "-d", "--bundle", bareDir, $"barem-{i}"));
                var state = await host.ExecuteBufferedAsync(new Command("runc").WithArguments("--root", runcRoot, "state", $"barem-{i}"));
                barePss.Add(Pss(JsonNode.Parse(state.StandardOutput)!["pid"]!.GetValue<int>()));
            }
            for (var i = 0; i < 5; i++)
                await host.ExecuteAsync(new Command("runc").WithArguments("--root", runcRoot, "delete", "--force", $"barem-{i}"));

            Console.WriteLine();
            Console.WriteLine($"Containers: {count} lifecycles, {running} running at once (busybox template, 128M memsize, 128M disk)");
            Console.WriteLine($"{"operation",-12}{"SDK median",12}{"bare runc",12}{"ratio",8}   target");
            Console.WriteLine($"{"create",-12}{Median(create),11:0.000}s{"-",12}{"-",8}");
            Console.WriteLine($"{"start",-12}{Median(start),11:0.000}s{Median(bareStart),11:0.000}s{Median(start) / Median(bareStart),8:0.0}   <= 0.5 s {(Median(start) <= 0.5 ? "met" : "MISSED")}");
            Console.WriteLine($"{"stop",-12}{Median(stop),11:0.000}s{Median(bareStop),11:0.000}s{Median(stop) / Median(bareStop),8:0.0}   <= 0.5 s {(Median(stop) <= 0.5 ? "met" : "MISSED")}");
            Console.WriteLine($"{"delete",-12}{Median(delete),11:0.000}s{"-",12}{"-",8}");
            var medianPss = pss.OrderBy(x => x).ElementAt(pss.Count / 2) / 1024.0 / 1024.0;
            Console.WriteLine($"PSS per running container (all SDK processes: disk daemon + container): median {medianPss:0.0} MiB, max {pss.Max() / 1048576.0:0.0} MiB; bare runc init: {barePss.OrderBy(x => x).ElementAt(barePss.Count / 2) / 1048576.0:0.0} MiB   target <= 16 MiB {(medianPss <= 16 ? "met" : "MISSED")}");
            return 0;
        }
        finally
        {
            foreach (var c in await client.ListAsync(true))
                await client.DeleteAsync(c.Id.ToString());
            try { Directory.Delete(root, recursive: true); }
            catch (IOException) { }
        }
    }

    private static double Median(List<double> values) => values.OrderBy(v => v).ElementAt(values.Count / 2);

    private static long Pss(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/smaps_rollup"))
            {
                if (line.StartsWith("Pss:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }
        catch (IOException) { }
        return 0;
    }
}
