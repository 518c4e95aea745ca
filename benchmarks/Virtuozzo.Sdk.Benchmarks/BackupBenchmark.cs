using System.Diagnostics;
using Microsoft.Extensions.Logging;
using System.Text;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// Backup against qemu-img in the same run: a full backup of a 2 GiB container disk holding 1 GiB of data (768 MiB
/// random + 256 MiB text) against <c>qemu-img convert -c -O qcow2 -o compression_type=zstd</c> of the same disk; an
/// incremental with 1 % of the disk changed against that full; restore against <c>qemu-img convert -O qcow2</c> of the
/// chain; and the delete-merge time against the size of the merged data. Needs root (it creates a container).
/// </summary>
internal static class BackupBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var rounds = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 3;
        // What to measure: "stopped" (full, incremental, restore, delete-merge), "running" (the live backup), or both (default).
        var parts = (args.Length > 1 ? args[1] : "stopped,running").Split(',');
        bool stopped = parts.Contains("stopped"), live = parts.Contains("running");
        var root = Path.Combine(Path.GetTempPath(), $"vzsdk-bench-bk-{Guid.NewGuid():N}");
        var options = new VirtuozzoSdkOptions { DataRoot = root, LockTimeout = TimeSpan.FromMinutes(10) };
        // VZSDK_BENCH_VERBOSE=1 prints the backup client's debug log (the phases of each backup) to standard error.
        var loggers = Environment.GetEnvironmentVariable("VZSDK_BENCH_VERBOSE") == "1"
            ? Microsoft.Extensions.Logging.LoggerFactory.Create(b => Microsoft.Extensions.Logging.ConsoleLoggerExtensions.AddConsole(b, o => o.LogToStandardErrorThreshold = Microsoft.Extensions.Logging.LogLevel.Trace).SetMinimumLevel(Microsoft.Extensions.Logging.LogLevel.Debug))
            : null;
        var runtime = VirtuozzoRuntime.CreateLocal(options, loggers);
        var containers = new ContainerClient(runtime);
        var backups = new BackupClient(runtime);
        var host = new LocalHost();
        try
        {
            var ct = await containers.CreateAsync(new ContainerCreateOptions { Name = new VeName("bench-bk"), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("2G") } });
            var disk = Path.Combine(root, "private", ct.Id.ToString(), "root.qcow2");
            Fill(disk);
            var fullTimes = new List<double>();
            var qemuTimes = new List<double>();
            var incrTimes = new List<double>();
            var restoreTimes = new List<double>();
            var qemuRestoreTimes = new List<double>();
            var qemuRestoreUnsafeTimes = new List<double>();
            var mergeTimes = new List<double>();
            long fullSize = 0, qemuSize = 0, incrSize = 0;
            for (var round = 0; round < (stopped ? rounds : 0); round++)
            {
                // Alternate the order each round (page-cache warmth favours whoever runs second), and start every timed
                // operation from the same memory state (PrepareMemoryAsync: freshly freed memory, see the running half).
                var qemuOut = Path.Combine(root, $"qemu-{round}.qcow2");
                async Task Qemu()
                {
                    await PrepareMemoryAsync(host, "hot");
                    qemuSize = await QemuCompressedCopyAsync(host, disk, qemuOut, qemuTimes);
                }
                BackupResult? full = null;
                async Task Sdk()
                {
                    await PrepareMemoryAsync(host, "hot");
                    var sw = Stopwatch.StartNew();
                    full = await backups.CreateAsync("bench-bk", new BackupCreateOptions { Full = true });
                    fullTimes.Add(sw.Elapsed.TotalSeconds);
                    fullSize = full.Backup.SizeBytes;
                }
                if (round % 2 == 0) { await Qemu(); await Sdk(); } else { await Sdk(); await Qemu(); }
                File.Delete(qemuOut);

                ChangeOnePercent(disk, round);
                var swi = Stopwatch.StartNew();
                var incr = await backups.CreateAsync("bench-bk");
                incrTimes.Add(swi.Elapsed.TotalSeconds);
                incrSize = incr.Backup.SizeBytes;
                if (incr.Backup.Type != BackupType.Incremental)
                    throw new InvalidOperationException("expected an incremental: " + string.Join("; ", incr.FullReasons));

                // Restore against qemu-img's convert of the same chain, the order alternating between rounds. The restore is
                // durable before it is published (flushed), so the like-for-like peer is qemu-img with -t writeback (a
                // final flush); qemu-img's default (-t unsafe, never flushed) is timed too. The outputs must be identical.
                var qemuRestore = Path.Combine(root, $"qemu-restore-{round}.qcow2");
                var qemuRestoreUnsafe = Path.Combine(root, $"qemu-restore-unsafe-{round}.qcow2");
                VeId restored = default;
                async Task SdkRestore()
                {
                    await PrepareMemoryAsync(host, "hot");
                    var swr = Stopwatch.StartNew();
                    restored = await backups.RestoreAsync(incr.Backup.Id, new BackupRestoreOptions { NewName = new VeName($"bench-r{round}") });
                    restoreTimes.Add(swr.Elapsed.TotalSeconds);
                }
                async Task QemuRestore()
                {
                    await PrepareMemoryAsync(host, "hot");
                    var swq = Stopwatch.StartNew();
                    await host.ExecuteAsync(new Command("qemu-img").WithArguments("convert", "-U", "-t", "writeback", "-O", "qcow2", incr.Backup.Disks[0].File, qemuRestore));
                    qemuRestoreTimes.Add(swq.Elapsed.TotalSeconds);
                    File.Delete(qemuRestoreUnsafe);
                    await PrepareMemoryAsync(host, "hot");
                    var swu = Stopwatch.StartNew();
                    await host.ExecuteAsync(new Command("qemu-img").WithArguments("convert", "-U", "-O", "qcow2", incr.Backup.Disks[0].File, qemuRestoreUnsafe));
                    qemuRestoreUnsafeTimes.Add(swu.Elapsed.TotalSeconds);
                }
                await host.ExecuteAsync(new Command("sync"));
                if (round % 2 == 0) { await QemuRestore(); await host.ExecuteAsync(new Command("sync")); await SdkRestore(); }
                else { await SdkRestore(); await host.ExecuteAsync(new Command("sync")); await QemuRestore(); }
                var restoredDisk = Path.Combine(root, "private", restored.ToString(), "root.qcow2");
                var compare = await host.ExecuteBufferedAsync(new Command("qemu-img").WithArguments("compare", "-U", "-f", "qcow2", "-F", "qcow2", restoredDisk, qemuRestore).WithValidation(CommandResultValidation.None));
                if (compare.ExitCode != 0)
                    throw new InvalidOperationException($"the restored disk differs from qemu-img's convert of the chain: {compare.StandardOutput} {compare.StandardError}");
                await containers.DeleteAsync(restored.ToString());
                File.Delete(qemuRestore);
                File.Delete(qemuRestoreUnsafe);

                var swm = Stopwatch.StartNew();
                await backups.DeleteAsync(full!.Backup.Id); // merges the full into the incremental
                mergeTimes.Add(swm.Elapsed.TotalSeconds);
                foreach (var b in await backups.ListAsync("bench-bk"))
                    await backups.DeleteAsync(b.Id);
            }
            // The running half is timed in two memory conditions, every timed operation starting from the same one. This
            // VM's balloon reports freed memory back to the host (virtio-balloon free page reporting: 2 MiB blocks, about 2 s
            // after they are freed), and writing into reported memory costs about 1 ns/byte more (512 MiB into the page cache:
            // 0.12-0.20 s right after a delete, 0.63-0.72 s six seconds later). Both contestants write 770 MiB, so whoever
            // followed a deletion won by up to 0.8 s: the earlier layout always gave qemu-img's flushed copy freshly freed
            // memory (its unflushed output had just been deleted) and the SDK only every other round. Now "hot": 1 GiB written
            // to tmpfs and freed just before each operation; "cold": each operation starts 6 s after the last free and sync.
            var conditions = new[] { "hot", "cold" };
            var runTimes = conditions.ToDictionary(c => c, _ => new List<double>());
            var runQemuTimes = conditions.ToDictionary(c => c, _ => new List<double>());
            var runQemuFlushedTimes = conditions.ToDictionary(c => c, _ => new List<double>());
            long runSize = 0, runQemuSize = 0;
            if (live)
            {
            // A running container: the same amount of data written inside its file system; its disk daemon's backup job
            // writes to the SDK's NBD target while the container runs.
            var running = await containers.CreateAsync(new ContainerCreateOptions { Name = new VeName("bench-bk-run"), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("2G") } });
            await containers.StartAsync("bench-bk-run");
            var gen = await containers.ExecAsync("bench-bk-run", new VeExecOptions
            {
                Command = ["sh", "-c", "head -c 805306368 /dev/urandom > /root/random && yes 'line: the quick brown fox jumps over the lazy dog 12345' | head -c 268435456 > /root/text && sync"],
                Timeout = TimeSpan.FromMinutes(10),
            });
            if (gen.ExitCode != 0)
                throw new InvalidOperationException("could not write the data inside the container: " + gen.StandardError);
            var runDisk = Path.Combine(root, "private", running.Id.ToString(), "root.qcow2");
            foreach (var condition in conditions)
            for (var round = 0; round < rounds; round++)
            {
                var qemuOut = Path.Combine(root, $"qemu-run-{round}.qcow2");
                async Task Qemu()
                {
                    await PrepareMemoryAsync(host, condition);
                    var cpu = CpuSeconds.Take();
                    runQemuSize = await QemuCompressedCopyAsync(host, runDisk, qemuOut, runQemuTimes[condition]);
                    CpuSeconds.Report($"qemu-img -U -c (unflushed), {condition}", cpu, runQemuTimes[condition][^1]);
                    File.Delete(qemuOut);
                    await PrepareMemoryAsync(host, condition);
                    cpu = CpuSeconds.Take();
                    await QemuCompressedCopyAsync(host, runDisk, qemuOut, runQemuFlushedTimes[condition], flush: true);
                    CpuSeconds.Report($"qemu-img -U -c -t writeback, {condition}", cpu, runQemuFlushedTimes[condition][^1]);
                    File.Delete(qemuOut);
                }
                async Task Sdk()
                {
                    foreach (var old in await backups.ListAsync("bench-bk-run"))
                        await backups.DeleteAsync(old.Id); // as qemu-img's previous output is deleted before its run
                    await PrepareMemoryAsync(host, condition);
                    var cpu = CpuSeconds.Take();
                    var sw = Stopwatch.StartNew();
                    var b = await backups.CreateAsync("bench-bk-run", new BackupCreateOptions { Full = true });
                    runTimes[condition].Add(sw.Elapsed.TotalSeconds);
                    CpuSeconds.Report($"SDK live backup, {condition}", cpu, runTimes[condition][^1]);
                    runSize = b.Backup.SizeBytes;
                }
                if (round % 2 == 0) { await Qemu(); await Sdk(); }
                else { await Sdk(); await Qemu(); }
            }
            await containers.StopAsync("bench-bk-run");
            }

            double M(List<double> v) => v.OrderBy(x => x).ElementAt(v.Count / 2);
            Console.WriteLine();
            Console.WriteLine($"Backup: 2 GiB disk with 1 GiB of data (768 MiB random + 256 MiB text), zstd, median of {rounds} rounds");
            if (stopped)
            {
            Console.WriteLine($"full backup        {M(fullTimes),7:0.00} s  vs qemu-img convert -c zstd {M(qemuTimes),7:0.00} s   ratio {M(fullTimes) / M(qemuTimes):0.00} (target <= 1.0)   sizes {fullSize / 1048576.0:0} MiB vs {qemuSize / 1048576.0:0} MiB");
            Console.WriteLine($"incremental (1 %)  {M(incrTimes),7:0.00} s  = {M(incrTimes) / M(fullTimes) * 100:0.0} % of the full (target <= 5 %)   size {incrSize / 1048576.0:0.0} MiB");
            Console.WriteLine($"restore (chain)    {M(restoreTimes),7:0.00} s  vs qemu-img convert -t writeback -O qcow2 {M(qemuRestoreTimes),7:0.00} s   ratio {M(restoreTimes) / M(qemuRestoreTimes):0.00} (target <= 1.0; both flushed, outputs compared identical)");
            Console.WriteLine($"                              vs qemu-img convert -O qcow2 (default -t unsafe: never flushed) {M(qemuRestoreUnsafeTimes),7:0.00} s   ratio {M(restoreTimes) / M(qemuRestoreUnsafeTimes):0.00}");
            Console.WriteLine($"delete-merge       {M(mergeTimes),7:0.00} s  for a full of {fullSize / 1048576.0:0} MiB merged into its child");
            }
            if (live)
            {
            foreach (var c in conditions)
            {
            Console.WriteLine($"full, running ({c}) {M(runTimes[c]),6:0.00} s  vs qemu-img convert -U -c -t writeback (flushed, like the SDK) {M(runQemuFlushedTimes[c]),6:0.00} s   ratio {M(runTimes[c]) / M(runQemuFlushedTimes[c]):0.00} (target <= 1.0)   sizes {runSize / 1048576.0:0} MiB vs {runQemuSize / 1048576.0:0} MiB");
            Console.WriteLine($"                              vs the same unflushed (qemu-img's default -t unsafe) {M(runQemuTimes[c]),6:0.00} s   ratio {M(runTimes[c]) / M(runQemuTimes[c]):0.00}");
            }
            }
            return 0;
        }
        finally
        {
            foreach (var c in await containers.ListAsync(true))
                await containers.DeleteAsync(c.Id.ToString());
            try { Directory.Delete(root, recursive: true); }
            catch (IOException) { }
        }
    }

    /// <summary>
    /// Puts the machine in the same memory state before a timed operation: "hot" writes 1 GiB into tmpfs and frees it
    /// (the operation then writes into memory the guest has not yet reported back to the host), "cold" waits 6 s after a
    /// sync (whatever was freed has been reported, as on a machine at rest).
    /// </summary>
    private static async Task PrepareMemoryAsync(LocalHost host, string condition)
    {
        await host.ExecuteAsync(new Command("sync"));
        if (condition == "cold")
        {
            await Task.Delay(TimeSpan.FromSeconds(6));
            return;
        }
        var warm = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"vzsdk-bench-warm-{Environment.ProcessId}");
        var buffer = new byte[4 << 20];
        Array.Fill(buffer, (byte)1);
        await using (var f = new FileStream(warm, FileMode.Create, FileAccess.Write, FileShare.None, 0))
            for (var i = 0; i < 256; i++)
                f.Write(buffer);
        File.Delete(warm);
    }

    /// <summary>The peer: <c>qemu-img convert -U -c</c> with zstd, timed into <paramref name="times"/>; returns the output's size.</summary>
    private static async Task<long> QemuCompressedCopyAsync(LocalHost host, string disk, string output, List<double> times, bool flush = false)
    {
        var sw = Stopwatch.StartNew();
        await host.ExecuteAsync(new Command("qemu-img").WithArguments("convert", "-U", "-t", flush ? "writeback" : "unsafe", "-c", "-O", "qcow2", "-o", "compression_type=zstd", disk, output));
        times.Add(sw.Elapsed.TotalSeconds);
        return new FileInfo(output).Length;
    }

    private static void Fill(string disk)
    {
        using var image = Qcow2Image.Open(disk);
        var rng = new Random(42);
        var buffer = new byte[4 << 20];
        // 768 MiB of random data from 512 MiB on (above the file system's own metadata), then 256 MiB of text.
        for (long off = 512L << 20; off < (512L + 768) << 20; off += buffer.Length)
        {
            rng.NextBytes(buffer);
            image.Write(off, buffer);
        }
        var text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 200000).Select(i => $"line {i}: the quick brown fox jumps over the lazy dog {i * 7919 % 104729}\n")));
        for (long off = 1280L << 20, i = 0; off < 1536L << 20; off += buffer.Length, i++)
        {
            for (var j = 0; j < buffer.Length; j++)
                buffer[j] = text[(int)((j + i * 31) % text.Length)];
            image.Write(off, buffer);
        }
        image.Flush();
    }

    private static void ChangeOnePercent(string disk, int seed)
    {
        using var image = Qcow2Image.Open(disk);
        var rng = new Random(seed);
        var block = new byte[64 << 10];
        var count = (int)((2L << 30) / 100 / block.Length); // 1 % of 2 GiB in 64 KiB writes, scattered
        for (var i = 0; i < count; i++)
        {
            rng.NextBytes(block);
            image.Write(rng.NextInt64(0, (2L << 30) / block.Length) * block.Length, block);
        }
        image.Flush();
    }
}

/// <summary>
/// CPU seconds spent by this process (the SDK), its finished children (qemu-img) and the storage daemons (QEMU's side
/// of a live backup), from /proc; printed beside the wall time with <c>VZSDK_BENCH_VERBOSE=1</c> to tell a CPU-bound
/// operation (CPU ≈ 2 × wall on two cores) from one that waits.
/// </summary>
internal static class CpuSeconds
{
    private static readonly bool Verbose = Environment.GetEnvironmentVariable("VZSDK_BENCH_VERBOSE") == "1";

    public readonly record struct Sample(double Self, double Children, double Daemons);

    public static Sample Take()
    {
        if (!Verbose)
            return default;
        var (self, children) = Read("/proc/self/stat");
        double daemons = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "comm")).Trim().StartsWith("qemu-storage", StringComparison.Ordinal))
                    daemons += Read(Path.Combine(dir, "stat")).Self;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return new Sample(self, children, daemons);
    }

    public static void Report(string what, Sample before, double wall)
    {
        if (!Verbose)
            return;
        var after = Take();
        double self = after.Self - before.Self, children = after.Children - before.Children, daemons = Math.Max(0, after.Daemons - before.Daemons);
        Console.Error.WriteLine($"cpu: {what}: wall {wall:0.00} s, this process {self:0.00} s, children {children:0.00} s, storage daemons {daemons:0.00} s, total {(self + children + daemons) / wall:0.00} cores");
    }

    private static (double Self, double Children) Read(string stat)
    {
        var text = File.ReadAllText(stat);
        var fields = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        // after the command: state is field 3, so utime (14) is index 11, stime 12, cutime 13, cstime 14
        double tick = 100.0;
        double F(int i) => double.Parse(fields[i], System.Globalization.CultureInfo.InvariantCulture) / tick;
        return (F(11) + F(12), F(13) + F(14));
    }
}

