using System.CommandLine;
using System.Globalization;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Vzsdk.Disk;

internal static partial class DiskCommand
{
    // ---------------------------------------------------------------- convert
    private static Command Convert()
    {
        var fmt = FormatOption();
        var outFmt = new Option<string>("-O") { Description = "Output format: qcow2 (default) or raw.", DefaultValueFactory = _ => "qcow2" };
        var compress = new Option<bool>("-c") { Description = "Compress the output clusters (qcow2)." };
        var o = OOption();
        var cache = new Option<string?>("-t") { Description = "Output cache mode: writeback (default: fsync at the end) or unsafe (no fsync)." };
        var snap = new Option<string?>("-l") { Description = "Read the source through an internal snapshot: snapshot.name=NAME, snapshot.id=ID or NAME." };
        var backing = new Option<string?>("-B") { Description = "Backing file of the output; only data not in the source's backing chain is copied." };
        var backingFmt = new Option<string?>("-F") { Description = "Format of the -B backing file." };
        var progress = new Option<bool>("-p") { Description = "Show progress on standard error." };
        var force = ForceShareOption();
        var src = new Argument<string>("SOURCE");
        var dst = new Argument<string>("DESTINATION");
        var cmd = new Command("convert", "Convert an image to another format or layout (qemu-img convert).") { fmt, outFmt, compress, o, cache, snap, backing, backingFmt, progress, force, src, dst };
        cmd.SetAction((pr, ct) =>
        {
            var opts = DiskArgs.ParseOptions(pr.GetValue(o));
            var create = DiskArgs.ApplyCreateOptions(new Qcow2CreateOptions(), opts);
            if (pr.GetValue(backing) is { } b)
                create = create with { BackingFile = b, BackingFormat = pr.GetValue(backingFmt) };
            string? snapshot = pr.GetValue(snap) switch
            {
                null => null,
                var s when s.StartsWith("snapshot.name=", StringComparison.Ordinal) => s["snapshot.name=".Length..],
                var s when s.StartsWith("snapshot.id=", StringComparison.Ordinal) => s["snapshot.id=".Length..],
                var s => s,
            };
            var mode = pr.GetValue(cache) ?? "writeback";
            if (mode is not ("writeback" or "unsafe" or "none" or "writethrough" or "directsync"))
                throw new UsageException($"Invalid cache mode '{mode}'.");
            var options = new Qcow2ConvertOptions
            {
                SourceFormat = pr.GetValue(fmt),
                OutputFormat = pr.GetValue(outFmt)!,
                Compress = pr.GetValue(compress),
                Create = create,
                SnapshotName = snapshot,
                ForceShare = pr.GetValue(force),
                FlushAtEnd = mode != "unsafe",
            };
            var path = pr.GetValue(src)!;
            if (!File.Exists(path))
                throw new FileNotFoundException($"Could not open '{path}': No such file or directory");
            IProgress<Qcow2ConvertProgress>? p = pr.GetValue(progress) && !Console.IsErrorRedirected
                ? new SyncProgress(v => Console.Error.Write(string.Create(CultureInfo.InvariantCulture, $"\r    ({(v.TotalBytes == 0 ? 100 : 100.0 * v.BytesDone / v.TotalBytes):0.00}/100%)")))
                : null;
            // on this thread: the converter starts its own workers, and a thread-pool hop would only add
            // the pool's start-up to every call
            Qcow2Converter.Convert(path, pr.GetValue(dst)!, options, p, ct);
            if (p is not null)
                Console.Error.WriteLine();
            return Task.FromResult(Cli.Success);
        });
        return cmd;
    }

    private sealed class SyncProgress(Action<Qcow2ConvertProgress> report) : IProgress<Qcow2ConvertProgress>
    {
        private long _last = -1;

        public void Report(Qcow2ConvertProgress value)
        {
            long pct = value.TotalBytes == 0 ? 100 : value.BytesDone * 100 / value.TotalBytes;
            if (pct == Interlocked.Exchange(ref _last, pct))
                return;
            report(value);
        }
    }

    // ---------------------------------------------------------------- check
    private static Command Check()
    {
        var fmt = FormatOption();
        var output = OutputOption();
        var repair = new Option<string?>("-r") { Description = "Repair: leaks or all." };
        var force = ForceShareOption();
        var file = new Argument<string>("FILE");
        var cmd = new Command("check", "Check an image for consistency (qemu-img check). Exit: 0 clean, 1 not completed, 2 corruptions, 3 leaks only, 63 unsupported.") { fmt, output, repair, force, file };
        cmd.SetAction(pr =>
        {
            bool json = IsJson(pr.GetValue(output)!);
            var path = pr.GetValue(file)!;
            var mode = pr.GetValue(repair) switch
            {
                null => Qcow2RepairMode.None,
                "leaks" => Qcow2RepairMode.Leaks,
                "all" => Qcow2RepairMode.All,
                var other => throw new UsageException($"Invalid repair mode '{other}' (leaks or all)."),
            };
            string format;
            try
            {
                format = DiskArgs.ProbeFormat(path, pr.GetValue(fmt));
            }
            catch (FileNotFoundException ex)
            {
                Console.Error.WriteLine($"vzsdk: {ex.Message}");
                return 1;
            }
            if (format != "qcow2")
            {
                Console.Error.WriteLine($"vzsdk: This image format does not support checks");
                return 63;
            }
            Qcow2CheckResult r;
            try
            {
                using var img = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = mode == Qcow2RepairMode.None, ForceShare = pr.GetValue(force), NoBacking = true });
                r = img.Check(mode);
            }
            catch (Qcow2Exception ex)
            {
                Console.Error.WriteLine($"vzsdk: Could not check '{path}': {ex.Message}");
                return 1;
            }
            if (json)
            {
                WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteNumber("image-end-offset", r.ImageEndOffset);
                    w.WriteNumber("total-clusters", r.TotalClusters);
                    w.WriteNumber("check-errors", r.CheckErrors);
                    if (r.Leaks > 0)
                        w.WriteNumber("leaks", r.Leaks);
                    if (r.Corruptions > 0)
                        w.WriteNumber("corruptions", r.Corruptions);
                    if (r.LeaksFixed > 0)
                        w.WriteNumber("leaks-fixed", r.LeaksFixed);
                    if (r.CorruptionsFixed > 0)
                        w.WriteNumber("corruptions-fixed", r.CorruptionsFixed);
                    w.WriteNumber("allocated-clusters", r.AllocatedClusters);
                    w.WriteString("filename", path);
                    w.WriteString("format", "qcow2");
                    w.WriteNumber("fragmented-clusters", r.FragmentedClusters);
                    w.WriteNumber("compressed-clusters", r.CompressedClusters);
                    w.WriteEndObject();
                });
            }
            else
            {
                var o = Console.Out;
                foreach (var m in r.Messages)
                    o.WriteLine(m);
                if (r.LeaksFixed > 0 || r.CorruptionsFixed > 0)
                    o.WriteLine($"The following inconsistencies were found and repaired:\n\n    {r.LeaksFixed} leaked clusters\n    {r.CorruptionsFixed} corruptions\n\nDouble checking the fixed image now...");
                if (r.IsClean)
                    o.WriteLine("No errors were found on the image.");
                if (r.Corruptions > 0)
                    o.WriteLine($"\n{r.Corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.");
                if (r.Leaks > 0)
                    o.WriteLine($"\n{r.Leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.");
                if (r.CheckErrors > 0)
                    o.WriteLine($"\n{r.CheckErrors} internal errors have occurred during the check.");
                if (r.TotalClusters > 0)
                {
                    double t = r.TotalClusters;
                    o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{r.AllocatedClusters}/{r.TotalClusters} = {100 * r.AllocatedClusters / t:0.00}% allocated, {(r.AllocatedClusters == 0 ? 0 : 100.0 * r.FragmentedClusters / r.AllocatedClusters):0.00}% fragmented, {(r.AllocatedClusters == 0 ? 0 : 100.0 * r.CompressedClusters / r.AllocatedClusters):0.00}% compressed clusters"));
                }
                o.WriteLine($"Image end offset: {r.ImageEndOffset}");
            }
            return r.ExitCode;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- compare
    private static Command Compare()
    {
        var fmtA = FormatOption("-f", "Format of the first image.");
        var fmtB = FormatOption("-F", "Format of the second image.");
        var strict = new Option<bool>("-s") { Description = "Strict: images of different sizes differ." };
        var force = ForceShareOption();
        var a = new Argument<string>("FILE1");
        var b = new Argument<string>("FILE2");
        var cmd = new Command("compare", "Compare the contents of two images (qemu-img compare). Exit: 0 identical, 1 different, 2 error.") { fmtA, fmtB, strict, force, a, b };
        cmd.SetAction(pr =>
        {
            DiskTarget? x = null, y = null;
            try
            {
                x = DiskTarget.Open(pr.GetValue(a)!, pr.GetValue(fmtA), readOnly: true, pr.GetValue(force));
                y = DiskTarget.Open(pr.GetValue(b)!, pr.GetValue(fmtB), readOnly: true, pr.GetValue(force));
            }
            catch (Exception ex) when (ex is IOException or UsageException or UnauthorizedAccessException)
            {
                x?.Dispose();
                Console.Error.WriteLine($"vzsdk: {ex.Message}");
                return 2;
            }
            using (x)
            using (y)
            {
                try
                {
                    if (pr.GetValue(strict) && x.Size != y.Size)
                    {
                        Console.Out.WriteLine("Strict mode: Image size mismatch!");
                        return 1;
                    }
                    const int chunk = 1 << 20;
                    var ba = new byte[chunk];
                    var bb = new byte[chunk];
                    long common = Math.Min(x.Size, y.Size);
                    for (long off = 0; off < common; off += chunk)
                    {
                        int n = (int)Math.Min(chunk, common - off);
                        x.Read(off, ba.AsSpan(0, n));
                        y.Read(off, bb.AsSpan(0, n));
                        int i = ba.AsSpan(0, n).CommonPrefixLength(bb.AsSpan(0, n));
                        if (i < n)
                        {
                            Console.Out.WriteLine($"Content mismatch at offset {off + (i & ~511)}!");
                            return 1;
                        }
                    }
                    var longer = x.Size > y.Size ? x : y;
                    for (long off = common; off < longer.Size; off += chunk)
                    {
                        int n = (int)Math.Min(chunk, longer.Size - off);
                        longer.Read(off, ba.AsSpan(0, n));
                        int i = ba.AsSpan(0, n).IndexOfAnyExcept((byte)0);
                        if (i >= 0)
                        {
                            Console.Out.WriteLine($"Content mismatch at offset {off + (i & ~511)}!");
                            return 1;
                        }
                    }
                    if (x.Size != y.Size)
                        Console.Out.WriteLine("Warning: Image size mismatch!");
                    Console.Out.WriteLine("Images are identical.");
                    return 0;
                }
                catch (IOException ex)
                {
                    Console.Error.WriteLine($"vzsdk: {ex.Message}");
                    return 4;
                }
            }
        });
        return cmd;
    }

    // ---------------------------------------------------------------- map
    private static Command Map()
    {
        var fmt = FormatOption();
        var output = OutputOption();
        var force = ForceShareOption();
        var file = new Argument<string>("FILE");
        var cmd = new Command("map", "Show the allocation map of an image (qemu-img map).") { fmt, output, force, file };
        cmd.SetAction(pr =>
        {
            bool json = IsJson(pr.GetValue(output)!);
            var path = pr.GetValue(file)!;
            var format = DiskArgs.ProbeFormat(path, pr.GetValue(fmt));
            IReadOnlyList<Qcow2Extent> map;
            var files = new List<string>();
            if (format == "raw")
            {
                long len = new FileInfo(path).Length;
                map = [new Qcow2Extent(0, len, Qcow2ExtentKind.Data, 0, 0)];
                files.Add(Path.GetFullPath(path));
            }
            else
            {
                using var img = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = pr.GetValue(force) });
                map = img.GetAllocationMap();
                for (var i = img; i is not null; i = i.Backing)
                    files.Add(i.Path!);
                if (files.Count > 0 && img.GetInfo() is var info)
                {
                    var last = img;
                    while (last.Backing is not null)
                        last = last.Backing;
                    if (last.GetInfo().FullBackingFile is { } rawBacking)
                        files.Add(rawBacking);
                }
            }
            if (json)
            {
                WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (var e in map)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("start", e.Start);
                        w.WriteNumber("length", e.Length);
                        w.WriteNumber("depth", e.Depth);
                        w.WriteBoolean("present", e.Present);
                        w.WriteBoolean("zero", e.Zero);
                        w.WriteBoolean("data", e.Data);
                        if (e.Offset is { } off)
                            w.WriteNumber("offset", off);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                });
            }
            else
            {
                Console.Out.WriteLine("Offset          Length          Mapped to       File");
                foreach (var e in map.Where(e => e.Kind == Qcow2ExtentKind.Data && e.Offset is not null))
                    Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"0x" + e.Start.ToString("x", CultureInfo.InvariantCulture),-16}{"0x" + e.Length.ToString("x", CultureInfo.InvariantCulture),-16}{"0x" + e.Offset!.Value.ToString("x", CultureInfo.InvariantCulture),-16}{(e.Depth < files.Count ? files[e.Depth] : path)}"));
            }
            return Cli.Success;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- resize
    private static Command Resize()
    {
        var fmt = FormatOption();
        var shrink = new Option<bool>("--shrink") { Description = "Allow making the image smaller (data past the new end is lost)." };
        var file = new Argument<string>("FILE");
        var size = new Argument<string>("SIZE") { Description = "New size, or +SIZE / -SIZE relative to the current one (use -- before a negative size)." };
        var cmd = new Command("resize", "Change the virtual size of an image (qemu-img resize).") { fmt, shrink, file, size };
        cmd.SetAction(pr =>
        {
            var path = pr.GetValue(file)!;
            var text = pr.GetValue(size)!;
            var format = DiskArgs.ProbeFormat(path, pr.GetValue(fmt));
            long current = format == "raw" ? new FileInfo(path).Length : 0;
            Qcow2Image? img = format == "qcow2" ? Qcow2Image.Open(path) : null;
            using (img)
            {
                if (img is not null)
                    current = img.Size;
                long target = text[0] switch
                {
                    '+' => current + DiskArgs.ParseSize(text[1..]),
                    '-' => current - DiskArgs.ParseSize(text[1..]),
                    _ => DiskArgs.ParseSize(text),
                };
                if (target < 0)
                    throw new UsageException("New size would be negative.");
                if (target < current && !pr.GetValue(shrink))
                    throw new UsageException("Use the --shrink option to perform a shrink operation.");
                if (img is not null)
                    img.Resize(target, allowShrink: true);
                else
                {
                    using var fs = new FileStream(path, FileMode.Open, FileAccess.Write);
                    fs.SetLength(target);
                }
            }
            Console.Out.WriteLine("Image resized.");
            return Cli.Success;
        });
        return cmd;
    }
}
