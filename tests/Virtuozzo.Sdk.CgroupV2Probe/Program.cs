using System.Diagnostics;
using System.Globalization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Runtime.Local;

// Drives Core's cgroup v2 memory code against a real kernel (inside the test guest) and prints what the kernel shows,
// one "key=value" line per fact; the integration test asserts on them. Modes:
//   run ROOT DATAFILE       the scenario, with the cgroup2 file system mounted at ROOT and a file of at least 96 MiB
//   hog-anon PROCS MIB      join the cgroup whose cgroup.procs is PROCS, allocate and touch MIB MiB, print "ready", sleep
//   hog-file PROCS PATH     join the cgroup, read PATH through the page cache, print "ready", sleep
const long MiB = 1 << 20;
var mode = args.Length > 0 ? args[0] : "";
switch (mode)
{
    case "hog-anon":
    {
        Join(args[1]);
        var block = GC.AllocateUninitializedArray<byte>(checked((int)(long.Parse(args[2], CultureInfo.InvariantCulture) * MiB)), pinned: true);
        for (var i = 0; i < block.Length; i += 4096)
            block[i] = 1;
        Console.WriteLine("ready");
        Thread.Sleep(Timeout.Infinite);
        GC.KeepAlive(block);
        return 0;
    }
    case "hog-file":
    {
        Join(args[1]);
        var buffer = new byte[MiB];
        using (var f = File.OpenRead(args[2]))
            while (f.Read(buffer) > 0) { }
        Console.WriteLine("ready");
        Thread.Sleep(Timeout.Infinite);
        return 0;
    }
    case "run":
        return await RunAsync(args[1], args[2]);
    default:
        Console.Error.WriteLine("usage: cgroup-v2-probe run ROOT DATAFILE | hog-anon PROCS MIB | hog-file PROCS PATH");
        return 2;
}

static void Join(string procs) => File.WriteAllText(procs, Environment.ProcessId.ToString(CultureInfo.InvariantCulture));

static void Fact(string key, object? value) => Console.WriteLine(FormattableString.Invariant($"{key}={value ?? "null"}"));

static async Task<int> RunAsync(string root, string dataFile)
{
    var layout = HostProber.ParseCgroupLayout(File.ReadAllText("/proc/mounts"));
    Fact("layout", layout);
    Fact("controllers", File.ReadAllText(Path.Combine(root, "cgroup.controllers")).Trim().Replace(' ', ','));
    var manager = new CgroupManager(layout, root, parent: "vzsdk-probe");
    var id = new VeId(Guid.NewGuid());
    var cg = manager.Create(id);
    var dir = manager.Directories(id, CgroupRole.Payload)[""];
    var procs = Path.Combine(dir, "cgroup.procs");
    string File_(string name) => File.ReadAllText(Path.Combine(dir, name)).Trim();
    long Event(string name) => File.ReadAllLines(Path.Combine(dir, "memory.events")).Select(l => l.Split(' ')).Where(p => p[0] == name).Select(p => long.Parse(p[1], CultureInfo.InvariantCulture)).FirstOrDefault();
    Fact("files", string.Join(',', new[] { "memory.min", "memory.low", "memory.high", "memory.max", "memory.swap.max", "memory.pressure" }.Where(f => File.Exists(Path.Combine(dir, f)))));

    // Limits and targets as the container driver and the memory manager write them.
    cg.SetMemory(256 * MiB, 0);
    Fact("set.max", File_("memory.max"));
    Fact("set.swap_max", File_("memory.swap.max"));
    Fact("set.limit_read", cg.MemoryLimit());
    Fact("target.writes_first", cg.SetMemoryTarget(32 * MiB, 192 * MiB, capAtTarget: false, 0));
    Fact("target.writes_again", cg.SetMemoryTarget(32 * MiB, 192 * MiB, capAtTarget: false, 0));
    Fact("target.min", File_("memory.min"));
    Fact("target.high", File_("memory.high"));
    Fact("target.high_read", cg.ReadMemorySetting("memory.high"));
    cg.SetMemoryProtection(16 * MiB);
    Fact("protection.low", File_("memory.low"));

    // Page cache above the target: the kernel reclaims it down to memory.high, and the reader lives.
    cg.SetMemoryTarget(32 * MiB, 48 * MiB, capAtTarget: false, 0);
    var events = Event("high");
    using (var hog = await StartHogAsync("hog-file", procs, dataFile))
    {
        Fact("high.current", cg.MemoryUsage());
        Fact("high.events", Event("high") - events);
        Fact("high.hog_alive", !hog.HasExited);
        Kill(hog);
    }
    cg.SetMemoryTarget(0, -1, capAtTarget: false, 0);

    // A lower limit applied to a running VE through reclaim (the container driver's live memory change).
    using (var hog = await StartHogAsync("hog-file", procs, dataFile))
    {
        Fact("lower.before", cg.MemoryUsage());
        var sw = Stopwatch.StartNew();
        await cg.ApplyMemoryLimitAsync(40 * MiB, 0, TimeSpan.FromSeconds(20), CancellationToken.None);
        Fact("lower.ms", sw.ElapsedMilliseconds);
        Fact("lower.max", File_("memory.max"));
        Fact("lower.high", File_("memory.high"));
        Fact("lower.current", cg.MemoryUsage());
        Fact("lower.hog_alive", !hog.HasExited);
        Fact("lower.oom_kills", Event("oom_kill"));
        Kill(hog);
    }
    await cg.ApplyMemoryLimitAsync(256 * MiB, 0, TimeSpan.FromSeconds(5), CancellationToken.None);
    Fact("raise.max", File_("memory.max"));

    // Memory that cannot be reclaimed (anonymous, no swap): the lower limit is refused, the old one stays, nothing is killed.
    using (var hog = await StartHogAsync("hog-anon", procs, "96"))
    {
        Fact("refuse.before", cg.MemoryUsage());
        try
        {
            await cg.ApplyMemoryLimitAsync(32 * MiB, 0, TimeSpan.FromSeconds(2), CancellationToken.None);
            Fact("refuse.error", "none");
        }
        catch (InsufficientResourcesException ex)
        {
            Fact("refuse.error", ex.GetType().Name);
        }
        Fact("refuse.max", File_("memory.max"));
        Fact("refuse.high", File_("memory.high"));
        Fact("refuse.hog_alive", !hog.HasExited);
        Fact("refuse.oom_kills", Event("oom_kill"));

        // What the SDK avoids: writing the lower hard limit directly kills the process.
        cg.SetMemory(32 * MiB, 0);
        hog.WaitForExit(10_000);
        Fact("direct.hog_alive", !hog.HasExited);
        Fact("direct.oom_kills", Event("oom_kill"));
    }

    Fact("pressure_total", cg.MemoryPressureTotal());
    await manager.DeleteAsync(id, CancellationToken.None);
    Fact("deleted", !Directory.Exists(Path.Combine(root, manager.Parent, id.ToString())));
    return 0;
}

static async Task<Process> StartHogAsync(string mode, string procs, string arg)
{
    var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
    psi.ArgumentList.Add(mode);
    psi.ArgumentList.Add(procs);
    psi.ArgumentList.Add(arg);
    var p = Process.Start(psi)!;
    var line = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
    if (line != "ready")
        throw new InvalidOperationException($"the {mode} child did not get ready (exit {(p.HasExited ? p.ExitCode : -1)})");
    return p;
}

static void Kill(Process p)
{
    if (!p.HasExited)
        p.Kill();
    p.WaitForExit();
}
