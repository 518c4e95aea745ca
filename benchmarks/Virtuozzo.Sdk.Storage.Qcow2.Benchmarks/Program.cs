using System.Diagnostics;
using System.Globalization;
using Virtuozzo.Sdk.Storage.Qcow2;

// Usage: dotnet run -c Release -- [--size-mib N] [--data-mib N] [--vzsdk PATH] [--requests N]
//                                  [--rounds N] [--only raw,qcow2,zlib,zstd,iops,rawraw] [--flush both|end|none]
//                                  [--memory hold|as-is|cold] [--settle-ms N] [--verbose] [--vmstat]
// Defaults follow issue 3: a 2 GiB image holding 1 GiB of data (768 MiB random + 256 MiB text).
// --rounds N repeats every convert N times (after one uncounted warm-up round; default 9 for plain converts,
// which take a fraction of a second, and 1 for compressed ones, which take up to half a minute), alternating
// which tool goes first, and prints the median, the fastest round, and the medians of the fast and of the slow rounds
// (a round of a tool is slow when it took over 1.5 × that tool's fastest round: on the reference VM the times
// are bimodal).
// --flush: every convert is timed like for like, with the output flushed to disk at the end by both tools
// (qemu-img -t writeback; the library's default FlushAtEnd; vzsdk's default) and/or without that flush
// (qemu-img convert's default, which is -t unsafe; FlushAtEnd = false; vzsdk -t unsafe).
// --memory: the state of the memory each convert writes its output into. Before a round, each tool's previous
// output is deleted, which frees about 1 GiB of page cache; the tool then writes its new output into free memory.
// On a VM with free page reporting (the reference VM: /sys/module/page_reporting), freed memory goes back to the
// host within milliseconds and is slow to touch again, so whether a round is fast or slow is a race between the
// tool's start and the reporting: a tool that starts 30 ms later loses it more often (docs/performance.md,
// "Memory regimes").
//   hold (default): while the benchmark runs, freed memory stays in the guest for a minute (page_reporting's
//     min_free_ms, restored at the end), so every round of every tool writes into warm memory. Without that
//     knob, hold is as-is.
//   as-is: the machine as it is: the race above.
//   cold: wait 3 s between deleting the previous output and starting the tool, meant to make every round of
//     every tool write into memory the host has to fault in again (it does not reliably: the kernel still
//     hands some processes warm pages, see docs/performance.md).
// --settle-ms N: wait N ms between deleting a tool's previous output and starting the tool (cold: 3000).
// --vmstat: after every timed round, print what it cost the kernel: CPU time of this process and its children
// (user/system), the machine's steal time, and the /proc/vmstat and free-page-reporting counters that moved.
var argsList = args.ToList();
int Arg(string name, int def) => argsList.IndexOf(name) is var i and >= 0 ? int.Parse(argsList[i + 1], CultureInfo.InvariantCulture) : def;
string? SArg(string name) => argsList.IndexOf(name) is var i and >= 0 ? argsList[i + 1] : null;
long sizeMiB = Arg("--size-mib", 2048), dataMiB = Arg("--data-mib", 1024);
int requests = Arg("--requests", 200_000);
int roundsArg = Arg("--rounds", 0);
int Rounds(bool compress) => roundsArg > 0 ? roundsArg : compress ? 1 : 9;
string memory = SArg("--memory") ?? "hold";
if (memory is not ("hold" or "as-is" or "cold"))
    throw new ArgumentException($"--memory must be hold, as-is or cold, not '{memory}'");
int settleMs = Math.Max(0, Arg("--settle-ms", memory == "cold" ? 3000 : 0));
// without --vzsdk, the tool `./build.sh build` publishes, when run from the repository root (as build.sh does)
string? vzsdk = SArg("--vzsdk") ?? (File.Exists("artifacts/vzsdk/vzsdk") ? Path.GetFullPath("artifacts/vzsdk/vzsdk") : null);
var only = SArg("--only")?.Split(',').ToHashSet() ?? ["raw", "qcow2", "zlib", "zstd", "iops"];
bool[] flushModes = (SArg("--flush") ?? "both") switch
{
    "end" => [true],
    "none" => [false],
    _ => [false, true],
};

var dir = Directory.CreateTempSubdirectory("qcow2-bench").FullName;
using var hold = memory == "hold" ? FreedMemoryHold.Start() : null;
string holdNote = memory != "hold" ? ""
    : hold is null ? " (no free page reporting knob here: as-is)"
    : $" (free page reporting's min_free_ms {hold.Previous} -> {FreedMemoryHold.HoldMs} for this run)";
Console.WriteLine($"memory: {memory}{holdNote}");
try
{
    string raw = Path.Combine(dir, "src.raw");
    MakeSource(raw, sizeMiB << 20, dataMiB << 20);
    Console.WriteLine($"source: {sizeMiB} MiB raw with {dataMiB} MiB of data (3/4 random, 1/4 text), cache hot; {(roundsArg > 0 ? $"{roundsArg} round(s)" : "9 rounds of plain converts, 1 of compressed ones")}, medians; settle {settleMs} ms");
    Console.WriteLine($"{"operation",-28} {"qemu-img",10} {"library",10} {"ratio",7} {"vzsdk",10} {"ratio",7}");

    string srcQcow2 = Path.Combine(dir, "src.qcow2");
    if (only.Contains("qcow2") || only.Contains("iops"))
        Run("qemu-img", "convert", "-O", "qcow2", raw, srcQcow2);
    foreach (bool flush in flushModes)
    {
        Console.WriteLine(flush
            ? "-- output flushed at the end (qemu-img -t writeback, library default, vzsdk default)"
            : "-- no flush at the end (qemu-img default = -t unsafe, library FlushAtEnd=false, vzsdk -t unsafe)");
        if (only.Contains("raw"))
            Compare("raw -> qcow2", raw, "qcow2", compress: false, type: "zlib", flush);
        if (only.Contains("qcow2"))
            Compare("qcow2 -> raw", srcQcow2, "raw", compress: false, type: "zlib", flush);
        if (only.Contains("rawraw")) // not in the default set: separates the raw output's cost from the qcow2 source's
            Compare("raw -> raw", raw, "raw", compress: false, type: "zlib", flush);
        if (only.Contains("zlib"))
            Compare("compressed convert (zlib)", raw, "qcow2", compress: true, type: "zlib", flush);
        if (only.Contains("zstd"))
            Compare("compressed convert (zstd)", raw, "qcow2", compress: true, type: "zstd", flush);
    }
    if (only.Contains("iops"))
        RandomIo(srcQcow2, requests);
}
finally
{
    Directory.Delete(dir, recursive: true);
}

void Compare(string name, string src, string outFmt, bool compress, string type, bool flush)
{
    string q = Path.Combine(dir, $"qemu-{name}.{outFmt}"), l = Path.Combine(dir, $"lib-{name}.{outFmt}"), v = Path.Combine(dir, $"vz-{name}.{outFmt}");
    var qa = new List<string> { "convert", "-O", outFmt, "-t", flush ? "writeback" : "unsafe" };
    if (compress)
        qa.AddRange(["-c", "-o", $"compression_type={type}"]);
    qa.AddRange([src, q]);
    var va = new List<string> { "disk" };
    va.AddRange(qa.Take(qa.Count - 2));
    va.AddRange([src, v]);
    var steps = new List<(int Column, Action Action)>
    {
        (0, () => Run("qemu-img", [.. qa])),
        (1, () => Qcow2Converter.Convert(src, l, new Qcow2ConvertOptions
        {
            OutputFormat = outFmt,
            Compress = compress,
            FlushAtEnd = flush,
            Create = new Qcow2CreateOptions { CompressionType = type == "zstd" ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib },
        })),
    };
    if (vzsdk is not null)
        steps.Add((2, () => Run(vzsdk, [.. va])));
    var times = new List<double>[] { [], [], [] };
    int rounds = Rounds(compress);
    // with several rounds, a first round warms up and is not counted
    int warmup = rounds > 1 ? 1 : 0;
    for (int r = 0; r < rounds + warmup; r++)
    {
        // alternate the order between rounds so that neither tool always runs right after the other
        var order = r % 2 == 0 ? steps : Enumerable.Reverse(steps).ToList();
        foreach (var (column, action) in order)
        {
            // the previous steps' outputs are written back first, so that background writeback does not
            // take the other core from whichever tool runs next; then each tool deletes its own previous
            // output and starts at once, so each writes into the memory its last output freed (on a VM,
            // memory left free for a few seconds may go back to the host and be slow to touch again)
            Run("sync");
            File.Delete(new[] { q, l, v }[column]);
            // "cache hot" must hold for every round: this VM drops clean page cache now and then (with free
            // memory to spare), and a round whose source was partly dropped reads it from disk
            Warm(src, src.EndsWith(".raw", StringComparison.Ordinal) ? dataMiB << 20 : long.MaxValue);
            if (settleMs > 0)
                Thread.Sleep(settleMs);
            var before = argsList.Contains("--vmstat") ? Probe.Take() : null;
            double t = Time(action);
            if (before is not null)
                Console.WriteLine($"    {new[] { "qemu-img", "library", "vzsdk" }[column],-8} round {r,2}: {t:0.000}s  {Probe.Take().Since(before)}");
            if (r >= warmup)
                times[column].Add(t);
        }
    }
    static double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
    double tq = Median(times[0]), tl = Median(times[1]);
    string tv = "-", rv = "-";
    if (vzsdk is not null)
    {
        double t = Median(times[2]);
        tv = $"{t:0.000}s";
        rv = $"{t / tq:0.00}";
    }
    string sizes = compress ? $"  sizes qemu {new FileInfo(q).Length >> 20} MiB, library {new FileInfo(l).Length >> 20} MiB" : "";
    Console.WriteLine($"{name,-28} {tq,9:0.000}s {tl,9:0.000}s {tl / tq,7:0.00} {tv,10} {rv,7}{sizes}");
    if (rounds > 1)
    {
        // on a VM, a run that gets memory the host has to fault in again is slowed down at random: the
        // fastest round of each tool shows its own cost, the median what a user typically sees
        double mq = times[0].Min(), ml = times[1].Min();
        string mv = vzsdk is null ? "-" : $"{times[2].Min():0.000}s", mrv = vzsdk is null ? "-" : $"{times[2].Min() / mq:0.00}";
        Console.WriteLine($"{"  (fastest round)",-28} {mq,9:0.000}s {ml,9:0.000}s {ml / mq,7:0.00} {mv,10} {mrv,7}");
        // The times are bimodal here (see docs/performance.md, "Rounds"): a round of a tool is "slow" when it took
        // more than 1.5 times that tool's fastest round. The median of each mode, compared tool by tool, shows
        // each tool's cost in that mode; the overall median mostly shows how many rounds of each landed slow.
        foreach (bool slow in new[] { false, true })
        {
            var mode = times.Select(ts => ts.Where(t => t > 1.5 * ts.Min() == slow).ToList()).ToArray();
            double? ModeMedian(int c) => mode[c].Count > 0 ? Median(mode[c]) : null;
            string Cell(int c) => times[c].Count == 0 ? "-" : $"{(ModeMedian(c) is { } m ? $"{m:0.000}s" : "-")}/{mode[c].Count}";
            string Ratio(int c) => ModeMedian(c) is { } x && ModeMedian(0) is { } y ? $"{x / y:0.00}" : "-";
            Console.WriteLine($"{(slow ? "  (slow rounds: median/count)" : "  (fast rounds: median/count)"),-28} {Cell(0),10} {Cell(1),10} {Ratio(1),7} {(vzsdk is null ? "-" : Cell(2)),10} {(vzsdk is null ? "-" : Ratio(2)),7}");
        }
        if (argsList.Contains("--verbose"))
            for (int c = 0; c < 3; c++)
                if (times[c].Count > 0)
                    Console.WriteLine($"    {new[] { "qemu-img", "library", "vzsdk" }[c]}: {string.Join(" ", times[c].Select(t => t.ToString("0.000", CultureInfo.InvariantCulture)))}");
    }
}

void RandomIo(string image, int n)
{
    // qemu-img bench issues 4 KiB requests at consecutive offsets (-S defaults to the request size),
    // wrapping at the end of the image; the library does the same, single-threaded like qemu-img.
    var qr = Run("qemu-img", "bench", "-c", n.ToString(CultureInfo.InvariantCulture), "-d", "16", "-s", "4096", "-f", "qcow2", image);
    double tq = ParseBench(qr);
    double tl;
    using (var img = Qcow2Image.Open(image, new Qcow2OpenOptions { ReadOnly = true }))
    {
        var buf = new byte[4096];
        long blocks = img.Size / 4096;
        tl = Time(() =>
        {
            for (int i = 0; i < n; i++)
                img.Read(i % blocks * 4096, buf);
        });
    }
    Console.WriteLine($"{"4k read IOPS (bench pattern)",-28} {n / tq,10:0} {n / tl,10:0} {tq / tl,7:0.00}  (ratio = library/qemu-img IOPS)");

    var copyQ = image + ".wq";
    var copyL = image + ".wl";
    File.Copy(image, copyQ, true);
    File.Copy(image, copyL, true);
    var qw = Run("qemu-img", "bench", "-w", "-c", n.ToString(CultureInfo.InvariantCulture), "-d", "16", "-s", "4096", "-f", "qcow2", copyQ);
    double tqw = ParseBench(qw);
    double tlw;
    using (var img = Qcow2Image.Open(copyL))
    {
        var buf = new byte[4096];
        long blocks = img.Size / 4096;
        tlw = Time(() =>
        {
            for (int i = 0; i < n; i++)
                img.Write(i % blocks * 4096, buf);
            img.Flush();
        });
    }
    Console.WriteLine($"{"4k write IOPS (bench pattern)",-28} {n / tqw,10:0} {n / tlw,10:0} {tqw / tlw,7:0.00}  (ratio = library/qemu-img IOPS)");
}

static double ParseBench(string output)
{
    // "Run completed in 1.234 seconds."
    var marker = "Run completed in ";
    int i = output.IndexOf(marker, StringComparison.Ordinal);
    return i < 0 ? double.NaN : double.Parse(output[(i + marker.Length)..].Split(' ')[0], CultureInfo.InvariantCulture);
}

static double Time(Action a)
{
    var sw = Stopwatch.StartNew();
    a();
    return sw.Elapsed.TotalSeconds;
}

static string Run(string tool, params string[] args)
{
    var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var a in args)
        psi.ArgumentList.Add(a);
    using var p = Process.Start(psi)!;
    var o = p.StandardOutput.ReadToEnd();
    var e = p.StandardError.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0)
        throw new InvalidOperationException($"{tool} {string.Join(' ', args)} failed: {e}");
    return o;
}

// Reads the first `length` bytes of a file (the data of the raw source; all of a qcow2 one) into the page cache.
static void Warm(string path, long length)
{
    using var h = File.OpenHandle(path);
    var buf = new byte[4 << 20];
    length = Math.Min(length, RandomAccess.GetLength(h));
    for (long off = 0; off < length; off += buf.Length)
        RandomAccess.Read(h, buf.AsSpan(0, (int)Math.Min(buf.Length, length - off)), off);
}

static void MakeSource(string path, long size, long data)
{
    using var fs = new FileStream(path, FileMode.Create);
    fs.SetLength(size);
    var rnd = new Random(42);
    var buf = new byte[1 << 20];
    long random = data / 4 * 3;
    for (long off = 0; off < random; off += buf.Length)
    {
        rnd.NextBytes(buf);
        fs.Write(buf);
    }
    var words = "the quick brown fox jumps over the lazy dog while qcow2 clusters compress nicely ".Split(' ');
    var text = new System.Text.StringBuilder();
    while (text.Length < buf.Length)
        text.Append(words[rnd.Next(words.Length)]).Append(rnd.Next(10) == 0 ? '\n' : ' ');
    var tb = System.Text.Encoding.ASCII.GetBytes(text.ToString(0, buf.Length));
    for (long off = random; off < data; off += tb.Length)
        fs.Write(tb);
}

/// <summary>
/// Keeps freed memory in the guest while the benchmark runs (--memory hold), through the reference VM's free page
/// reporting knob, and puts the previous value back when disposed or when the process is interrupted.
/// </summary>
sealed class FreedMemoryHold : IDisposable
{
    public const int HoldMs = 60_000; // the knob's maximum is about 100 s; a round takes seconds
    private const string Knob = "/sys/module/page_reporting/parameters/min_free_ms";
    private readonly List<System.Runtime.InteropServices.PosixSignalRegistration> _signals = [];
    private int _restored;

    public string Previous { get; }

    private FreedMemoryHold(string previous) => Previous = previous;

    /// <summary>Null when this machine has no such knob or it cannot be written (not root).</summary>
    public static FreedMemoryHold? Start()
    {
        string previous;
        try
        {
            previous = File.ReadAllText(Knob).Trim();
            Write(HoldMs.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"memory hold unavailable: {e.Message}");
            return null;
        }
        var hold = new FreedMemoryHold(previous);
        foreach (var signal in new[] { System.Runtime.InteropServices.PosixSignal.SIGINT, System.Runtime.InteropServices.PosixSignal.SIGTERM })
            hold._signals.Add(System.Runtime.InteropServices.PosixSignalRegistration.Create(signal, _ => hold.Restore()));
        AppDomain.CurrentDomain.ProcessExit += (_, _) => hold.Restore();
        return hold;
    }

    private void Restore()
    {
        if (Interlocked.Exchange(ref _restored, 1) == 0)
            Write(Previous);
    }

    // a sysfs attribute: written in place, without File.WriteAllText's truncation
    private static void Write(string value)
    {
        using var f = new FileStream(Knob, FileMode.Open, FileAccess.Write);
        f.Write(System.Text.Encoding.ASCII.GetBytes(value));
    }

    public void Dispose()
    {
        Restore();
        foreach (var s in _signals)
            s.Dispose();
    }
}

/// <summary>Kernel counters around one timed round (--vmstat): where a slow round's time went.</summary>
sealed class Probe
{
    private static readonly string[] Counters = ["pgfault", "pgmajfault", "pgalloc_normal", "pgfree", "thp_fault_alloc", "workingset_refault_file", "pgsteal_kswapd", "pgsteal_direct", "nr_free_pages", "nr_free_pages_blocks", "nr_file_pages", "nr_dirty"];
    private readonly Dictionary<string, long> _vm = [];
    private long _userTicks, _sysTicks, _steal, _reportedKib;

    public static Probe Take()
    {
        var p = new Probe();
        foreach (var line in File.ReadLines("/proc/vmstat"))
        {
            var parts = line.Split(' ');
            if (Array.IndexOf(Counters, parts[0]) >= 0)
                p._vm[parts[0]] = long.Parse(parts[1], CultureInfo.InvariantCulture);
        }
        // /proc/self/stat fields 14-17: utime stime cutime cstime (children once reaped), in clock ticks
        var stat = File.ReadAllText("/proc/self/stat");
        var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        p._userTicks = long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[13], CultureInfo.InvariantCulture);
        p._sysTicks = long.Parse(f[12], CultureInfo.InvariantCulture) + long.Parse(f[14], CultureInfo.InvariantCulture);
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        p._steal = long.Parse(cpu[8], CultureInfo.InvariantCulture);
        const string reported = "/sys/module/page_reporting/parameters/reported_kib";
        p._reportedKib = File.Exists(reported) ? long.Parse(File.ReadAllText(reported).Trim(), CultureInfo.InvariantCulture) : 0;
        return p;
    }

    public string Since(Probe before)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"user {(_userTicks - before._userTicks) * 10}ms sys {(_sysTicks - before._sysTicks) * 10}ms steal {(_steal - before._steal) * 10}ms reported {(_reportedKib - before._reportedKib) >> 10}MiB");
        foreach (var (k, v) in _vm)
        {
            long d = v - before._vm.GetValueOrDefault(k);
            if (d != 0)
                sb.Append(CultureInfo.InvariantCulture, $" {k} {(k.StartsWith("nr_", StringComparison.Ordinal) ? d * 4 >> 10 : d)}{(k.StartsWith("nr_", StringComparison.Ordinal) ? "MiB" : "")}");
        }
        return sb.ToString();
    }
}
