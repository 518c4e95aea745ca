using System.Globalization;
using Virtuozzo.Sdk.Memory;
using Virtuozzo.Sdk.Memory.Simulation;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// ./build.sh bench memory [VES] [TRACE.csv]: every policy through the deterministic simulator on the mixed fleet
/// (default 12 VEs of 1 GiB on an 8 GiB host, ten minutes), and the density each reaches at a 1 % stall budget.
/// </summary>
internal static class MemoryBenchmark
{
    public static int Run(string[] args)
    {
        var count = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 12;
        var options = new SimulationOptions { RecordTrace = args.Length > 1 };
        var fleet = MemorySimulator.MixedFleet(count);
        if (args.Length > 1 && Path.GetDirectoryName(Path.GetFullPath(args[1])) is { } dir)
            Directory.CreateDirectory(dir);
        Console.WriteLine($"Memory policies, simulated: {count} VEs of 1 GiB (mixed: idle VMs, steady/bursty/leaking containers, growing VM), host budget {options.HostAvailableBytes / (1 << 30)} GiB, {options.Ticks} s, seed {options.Seed}");
        Console.WriteLine();
        Console.WriteLine("| policy | guarantee violations | busy stall (s) | busy stall share | reclaimed from idle (MiB) | target changes /VE/min | peak resident (MiB) | VEs admitted at 1 % stall |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var name in MemoryPolicies.Names)
        {
            var r = MemorySimulator.Run(MemoryPolicies.Create(name), fleet, options);
            var density = MemorySimulator.Density(() => MemoryPolicies.Create(name), 0.01, options with { RecordTrace = false });
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {r.GuaranteeViolations} | {r.BusyStallSeconds:F1} | {r.BusyStallShare:P2} | {r.ReclaimedFromIdleBytes >> 20} | {r.TargetChangesPerVeMinute:F2} | {r.PeakResidentBytes >> 20} | {density} |"));
            if (args.Length > 1)
                File.WriteAllText(Path.ChangeExtension(args[1], null) + "-" + name + ".csv", r.TraceCsv());
        }
        return 0;
    }
}
