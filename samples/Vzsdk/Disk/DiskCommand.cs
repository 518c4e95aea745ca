using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Vzsdk.Disk;

/// <summary><c>vzsdk disk</c>: QCOW2/raw image verbs that mirror qemu-img (CLI.md). No DI on this path, for fast start-up.</summary>
internal static partial class DiskCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static readonly (string Name, Func<Command> Make)[] Verbs =
    [
        ("create", Create), ("info", Info), ("convert", Convert), ("check", Check), ("compare", Compare),
        ("map", Map), ("measure", Measure), ("resize", Resize), ("snapshot", Snapshot), ("rebase", Rebase),
        ("commit", Commit), ("amend", Amend), ("bitmap", Bitmap), ("io", Io),
    ];

    /// <summary>
    /// The <c>disk</c> command. With <paramref name="only"/> naming one of its verbs, only that verb is built:
    /// scripts call <c>vzsdk disk VERB</c> once per image, and building every verb's options costs each call
    /// a few milliseconds. Anything else (help, a typo) gets every verb.
    /// </summary>
    public static Command Build(string? only = null)
    {
        var disk = new Command("disk", "Create, inspect, convert and check disk images (QCOW2 and raw), like qemu-img.");
        bool one = Array.Exists(Verbs, v => v.Name == only);
        foreach (var (name, make) in Verbs)
            if (!one || name == only)
                disk.Subcommands.Add(make());
        return disk;
    }

    private static Option<string?> FormatOption(string name = "-f", string description = "Image format (qcow2 or raw); probed when omitted.")
        => new(name) { Description = description };

    private static Option<bool> ForceShareOption() => new("--force-share", "-U") { Description = "Open without locks, even if another process (QEMU) uses the image." };

    private static Option<string> OutputOption() => new("--output") { Description = "Output format: human or json.", DefaultValueFactory = _ => "human" };

    private static Option<string[]> OOption() => new("-o") { Description = "Image options: cluster_size, compat, refcount_bits, compression_type, extended_l2, lazy_refcounts, preallocation.", AllowMultipleArgumentsPerToken = false };

    private static bool IsJson(string output) => output switch
    {
        "json" => true,
        "human" => false,
        _ => throw new UsageException($"Invalid output format '{output}' (human or json)."),
    };

    internal static Utf8JsonWriter JsonOut(Stream s) => new(s, new JsonWriterOptions { Indented = true, IndentSize = 4 });

    private static void WriteJson(Action<Utf8JsonWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = JsonOut(ms))
            write(w);
        Console.Out.WriteLine(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
    }

    // ---------------------------------------------------------------- create
    private static Command Create()
    {
        var fmt = FormatOption("-f", "Format of the new image: qcow2 (default) or raw.");
        var o = OOption();
        var backing = new Option<string?>("-b") { Description = "Backing file (relative names resolve against the new image's directory)." };
        var backingFmt = new Option<string?>("-F") { Description = "Backing file format (qcow2 or raw)." };
        var file = new Argument<string>("FILE");
        var size = new Argument<string?>("SIZE") { Arity = ArgumentArity.ZeroOrOne, Description = "Virtual size; a bare number is bytes; K, M, G, T suffixes." };
        var cmd = new Command("create", "Create a new image (qemu-img create).") { fmt, o, backing, backingFmt, file, size };
        cmd.SetAction(pr =>
        {
            var path = pr.GetValue(file)!;
            var format = pr.GetValue(fmt) ?? "qcow2";
            var opts = DiskArgs.ParseOptions(pr.GetValue(o));
            long bytes = pr.GetValue(size) is { } s ? DiskArgs.ParseSize(s) : -1;
            if (format == "raw")
            {
                if (bytes < 0)
                    throw new UsageException("Image creation needs a size parameter.");
                if (opts.Count > 0 || pr.GetValue(backing) is not null)
                    throw new UsageException("Raw images take no -o options and no backing file.");
                using (var fs = new FileStream(path, FileMode.Create, FileAccess.Write))
                    fs.SetLength(bytes);
                Console.Out.WriteLine($"Formatting '{path}', fmt=raw size={bytes}");
                return Cli.Success;
            }
            if (format != "qcow2")
                throw new UsageException($"Unsupported format '{format}' (qcow2 or raw).");
            var co = DiskArgs.ApplyCreateOptions(new Qcow2CreateOptions(), opts);
            if (pr.GetValue(backing) is { } b)
                co = co with { BackingFile = b };
            if (pr.GetValue(backingFmt) is { } bf)
                co = co with { BackingFormat = bf };
            if (bytes >= 0)
                co = co with { Size = bytes };
            else if (co.BackingFile is null && !opts.ContainsKey("size"))
                throw new UsageException("Image creation needs a size parameter.");
            using var img = Qcow2Image.Create(path, co);
            var info = img.GetInfo();
            Console.Out.WriteLine(string.Create(Inv,
                $"Formatting '{path}', fmt=qcow2 cluster_size={info.ClusterSize} extended_l2={(info.ExtendedL2 ? "on" : "off")} compression_type={DiskArgs.CompressionName(info.CompressionType)} size={info.VirtualSize}{(info.BackingFile is null ? "" : $" backing_file={info.BackingFile} backing_fmt={info.BackingFormat}")} lazy_refcounts={(info.LazyRefcounts ? "on" : "off")} refcount_bits={info.RefcountBits}"));
            return Cli.Success;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- info
    private static Command Info()
    {
        var fmt = FormatOption();
        var output = OutputOption();
        var chain = new Option<bool>("--backing-chain") { Description = "Describe every image in the backing chain." };
        var force = ForceShareOption();
        var file = new Argument<string>("FILE");
        var cmd = new Command("info", "Describe an image (qemu-img info).") { fmt, output, chain, force, file };
        cmd.SetAction(pr =>
        {
            bool json = IsJson(pr.GetValue(output)!);
            var path = pr.GetValue(file)!;
            var format = DiskArgs.ProbeFormat(path, pr.GetValue(fmt));
            var infos = new List<(string Format, string Path, Qcow2ImageInfo? Info, long RawSize)>();
            if (format == "raw")
                infos.Add(("raw", path, null, new FileInfo(path).Length));
            else
            {
                using var img = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = pr.GetValue(force), NoBacking = !pr.GetValue(chain) });
                var info = img.GetInfo();
                infos.Add(("qcow2", path, info, 0));
                if (pr.GetValue(chain))
                {
                    var cur = img.Backing;
                    while (cur is not null)
                    {
                        infos.Add(("qcow2", cur.Path!, cur.GetInfo(), 0));
                        cur = cur.Backing;
                    }
                    var last = infos[^1].Info;
                    if (last?.FullBackingFile is { } raw && File.Exists(raw) && !Qcow2Image.IsQcow2(raw))
                        infos.Add(("raw", raw, null, new FileInfo(raw).Length));
                }
            }
            if (json)
            {
                WriteJson(w =>
                {
                    if (pr.GetValue(chain))
                        w.WriteStartArray();
                    foreach (var (f, p, i, rawSize) in infos)
                        WriteInfoJson(w, f, p, i, rawSize);
                    if (pr.GetValue(chain))
                        w.WriteEndArray();
                });
            }
            else
            {
                bool first = true;
                foreach (var (f, p, i, rawSize) in infos)
                {
                    if (!first)
                        Console.Out.WriteLine();
                    first = false;
                    WriteInfoHuman(f, p, i, rawSize);
                }
            }
            return Cli.Success;
        });
        return cmd;
    }

    private static long ActualSize(string path, Qcow2ImageInfo? info) => info?.ActualSize ?? new FileInfo(path).Length;

    private static void WriteInfoJson(Utf8JsonWriter w, string format, string path, Qcow2ImageInfo? i, long rawSize)
    {
        w.WriteStartObject();
        w.WriteNumber("virtual-size", i?.VirtualSize ?? rawSize);
        w.WriteString("filename", path);
        if (i is not null)
            w.WriteNumber("cluster-size", i.ClusterSize);
        w.WriteString("format", format);
        w.WriteNumber("actual-size", ActualSize(path, i));
        if (i is not null)
        {
            if (i.BackingFile is not null)
            {
                w.WriteString("backing-filename", i.BackingFile);
                if (i.FullBackingFile is not null)
                    w.WriteString("full-backing-filename", i.FullBackingFile);
                if (i.BackingFormat is not null)
                    w.WriteString("backing-filename-format", i.BackingFormat);
            }
            if (i.Snapshots.Count > 0)
            {
                w.WriteStartArray("snapshots");
                foreach (var s in i.Snapshots)
                {
                    w.WriteStartObject();
                    w.WriteNumber("vm-clock-nsec", (long)(s.VmClockNanoseconds % 1_000_000_000));
                    w.WriteString("name", s.Name);
                    w.WriteNumber("date-sec", s.Date.ToUnixTimeSeconds());
                    w.WriteNumber("date-nsec", (s.Date.Ticks % TimeSpan.TicksPerSecond) * 100);
                    w.WriteNumber("vm-clock-sec", (long)(s.VmClockNanoseconds / 1_000_000_000));
                    w.WriteString("id", s.Id);
                    w.WriteNumber("vm-state-size", s.VmStateSize);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            w.WriteStartObject("format-specific");
            w.WriteString("type", "qcow2");
            w.WriteStartObject("data");
            w.WriteString("compat", i.Compat);
            if (i.Version >= 3)
            {
                w.WriteString("compression-type", DiskArgs.CompressionName(i.CompressionType));
                w.WriteBoolean("lazy-refcounts", i.LazyRefcounts);
                if (i.Bitmaps.Count > 0)
                {
                    w.WriteStartArray("bitmaps");
                    foreach (var b in i.Bitmaps)
                    {
                        w.WriteStartObject();
                        w.WriteStartArray("flags");
                        if (b.InUse)
                            w.WriteStringValue("in-use");
                        if (b.Enabled)
                            w.WriteStringValue("auto");
                        w.WriteEndArray();
                        w.WriteString("name", b.Name);
                        w.WriteNumber("granularity", b.Granularity);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
            }
            w.WriteNumber("refcount-bits", i.RefcountBits);
            if (i.DataFile is not null)
            {
                w.WriteString("data-file", i.DataFile);
                w.WriteBoolean("data-file-raw", i.DataFileRaw);
            }
            w.WriteBoolean("corrupt", i.Corrupt);
            w.WriteBoolean("extended-l2", i.ExtendedL2);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteBoolean("dirty-flag", i?.Dirty ?? false);
        w.WriteEndObject();
    }

    private static void WriteInfoHuman(string format, string path, Qcow2ImageInfo? i, long rawSize)
    {
        var o = Console.Out;
        long vs = i?.VirtualSize ?? rawSize;
        o.WriteLine($"image: {path}");
        o.WriteLine($"file format: {format}");
        o.WriteLine($"virtual size: {DiskArgs.Human(vs)} ({vs} bytes)");
        o.WriteLine($"disk size: {DiskArgs.Human(ActualSize(path, i))}");
        if (i is null)
            return;
        o.WriteLine($"cluster_size: {i.ClusterSize}");
        if (i.BackingFile is not null)
        {
            o.WriteLine($"backing file: {i.BackingFile}{(i.FullBackingFile is { } fb && fb != i.BackingFile ? $" (actual path: {fb})" : "")}");
            if (i.BackingFormat is not null)
                o.WriteLine($"backing file format: {i.BackingFormat}");
        }
        if (i.Snapshots.Count > 0)
        {
            o.WriteLine("Snapshot list:");
            WriteSnapshotTable(i.Snapshots);
        }
        o.WriteLine("Format specific information:");
        o.WriteLine($"    compat: {i.Compat}");
        if (i.Version >= 3)
        {
            o.WriteLine($"    compression type: {DiskArgs.CompressionName(i.CompressionType)}");
            o.WriteLine($"    lazy refcounts: {(i.LazyRefcounts ? "true" : "false")}");
            if (i.Bitmaps.Count > 0)
            {
                o.WriteLine("    bitmaps:");
                // numbered as qemu-img numbers list items, the flags a nested list
                for (int n = 0; n < i.Bitmaps.Count; n++)
                {
                    var b = i.Bitmaps[n];
                    o.WriteLine($"        [{n}]:");
                    o.WriteLine("            flags:");
                    var flags = new List<string>();
                    if (b.InUse)
                        flags.Add("in-use");
                    if (b.Enabled)
                        flags.Add("auto");
                    for (int f = 0; f < flags.Count; f++)
                        o.WriteLine($"                [{f}]: {flags[f]}");
                    o.WriteLine($"            name: {b.Name}");
                    o.WriteLine($"            granularity: {b.Granularity}");
                }
            }
        }
        o.WriteLine($"    refcount bits: {i.RefcountBits}");
        if (i.DataFile is not null)
        {
            o.WriteLine($"    data file: {i.DataFile}");
            o.WriteLine($"    data file raw: {(i.DataFileRaw ? "true" : "false")}");
        }
        o.WriteLine($"    corrupt: {(i.Corrupt ? "true" : "false")}");
        o.WriteLine($"    extended l2: {(i.ExtendedL2 ? "true" : "false")}");
    }

    internal static void WriteSnapshotTable(IReadOnlyList<Qcow2SnapshotInfo> snapshots)
    {
        Console.Out.WriteLine("ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT");
        foreach (var s in snapshots)
        {
            var clock = TimeSpan.FromTicks((long)(s.VmClockNanoseconds / 100));
            Console.Out.WriteLine(string.Create(Inv,
                $"{s.Id,-9} {s.Name,-17} {DiskArgs.Human((long)s.VmStateSize),7} {s.Date.LocalDateTime:yyyy-MM-dd HH:mm:ss} {(int)clock.TotalHours:D4}:{clock.Minutes:D2}:{clock.Seconds:D2}.{clock.Milliseconds:D3} {0,10}"));
        }
    }
}
