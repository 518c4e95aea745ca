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
                // Alternate the order each round: page-cache warmth favours whoever runs second.
                var qemuOut = Path.Combine(root, $"qemu-{round}.qcow2");
                async Task Qemu() => qemuSize = await QemuCompressedCopyAsync(host, disk, qemuOut, qemuTimes);
                BackupResult? full = null;
                async Task Sdk()
                {
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
                    var swr = Stopwatch.StartNew();
                    restored = await backups.RestoreAsync(incr.Backup.Id, new BackupRestoreOptions { NewName = new VeName($"bench-r{round}") });
                    restoreTimes.Add(swr.Elapsed.TotalSeconds);
                }
                async Task QemuRestore()
                {
                    var swq = Stopwatch.StartNew();
                    await host.ExecuteAsync(new Command("qemu-img").WithArguments("convert", "-U", "-t", "writeback", "-O", "qcow2", incr.Backup.Disks[0].File, qemuRestore));
                    qemuRestoreTimes.Add(swq.Elapsed.TotalSeconds);
                    File.Delete(qemuRestoreUnsafe);
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
            var runTimes = new List<double>();
            var runQemuTimes = new List<double>();
            var runQemuFlushedTimes = new List<double>();
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
            for (var round = 0; round < rounds; round++)
            {
                var qemuOut = Path.Combine(root, $"qemu-run-{round}.qcow2");
                async Task Qemu()
                {
                    runQemuSize = await QemuCompressedCopyAsync(host, runDisk, qemuOut, runQemuTimes);
                    File.Delete(qemuOut);
                    await host.ExecuteAsync(new Command("sync"));
                    await QemuCompressedCopyAsync(host, runDisk, qemuOut, runQemuFlushedTimes, flush: true);
                }
                async Task Sdk()
                {
                    var sw = Stopwatch.StartNew();
                    var b = await backups.CreateAsync("bench-bk-run", new BackupCreateOptions { Full = true });
                    runTimes.Add(sw.Elapsed.TotalSeconds);
                    runSize = b.Backup.SizeBytes;
                }
                await host.ExecuteAsync(new Command("sync"));
                if (round % 2 == 0) { await Qemu(); await host.ExecuteAsync(new Command("sync")); await Sdk(); }
                else { await Sdk(); await host.ExecuteAsync(new Command("sync")); await Qemu(); }
                File.Delete(qemuOut);
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
            Console.WriteLine($"full, running      {M(runTimes),7:0.00} s  vs qemu-img convert -U -c zstd of the live disk {M(runQemuTimes),7:0.00} s   ratio {M(runTimes) / M(runQemuTimes):0.00} (target <= 1.0; qemu-img never flushes, the SDK does)   sizes {runSize / 1048576.0:0} MiB vs {runQemuSize / 1048576.0:0} MiB");
            Console.WriteLine($"                              vs the same with -t writeback (flushed, like the SDK) {M(runQemuFlushedTimes),7:0.00} s   ratio {M(runTimes) / M(runQemuFlushedTimes):0.00}");
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
