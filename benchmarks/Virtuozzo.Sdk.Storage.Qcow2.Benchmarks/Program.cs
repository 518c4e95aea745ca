using System.Diagnostics;
using System.Globalization;
using Virtuozzo.Sdk.Storage.Qcow2;

// Usage: dotnet run -c Release -- [--size-mib N] [--data-mib N] [--vzsdk PATH] [--requests N]
// Defaults follow issue 3: a 2 GiB image holding 1 GiB of data (768 MiB random + 256 MiB text).
var argsList = args.ToList();
int Arg(string name, int def) => argsList.IndexOf(name) is var i and >= 0 ? int.Parse(argsList[i + 1], CultureInfo.InvariantCulture) : def;
string? SArg(string name) => argsList.IndexOf(name) is var i and >= 0 ? argsList[i + 1] : null;
long sizeMiB = Arg("--size-mib", 2048), dataMiB = Arg("--data-mib", 1024);
int requests = Arg("--requests", 200_000);
string? vzsdk = SArg("--vzsdk");

var dir = Directory.CreateTempSubdirectory("qcow2-bench").FullName;
try
{
    string raw = Path.Combine(dir, "src.raw");
    MakeSource(raw, sizeMiB << 20, dataMiB << 20);
    Console.WriteLine($"source: {sizeMiB} MiB raw with {dataMiB} MiB of data (3/4 random, 1/4 text), cache hot");
    Console.WriteLine($"{"operation",-28} {"qemu-img",10} {"library",10} {"ratio",7} {"vzsdk",10} {"ratio",7}");

    Compare("raw -> qcow2", raw, "qcow2", compress: false, type: "zlib");
    Compare("qcow2 -> raw", Path.Combine(dir, "lib-raw -> qcow2.qcow2"), "raw", compress: false, type: "zlib");
    Compare("compressed convert (zlib)", raw, "qcow2", compress: true, type: "zlib");
    Compare("compressed convert (zstd)", raw, "qcow2", compress: true, type: "zstd");
    RandomIo(Path.Combine(dir, "lib-raw -> qcow2.qcow2"), requests);
}
finally
{
    Directory.Delete(dir, recursive: true);
}

void Compare(string name, string src, string outFmt, bool compress, string type)
{
    string q = Path.Combine(dir, $"qemu-{name}.{outFmt}"), l = Path.Combine(dir, $"lib-{name}.{outFmt}"), v = Path.Combine(dir, $"vz-{name}.{outFmt}");
    var qa = new List<string> { "convert", "-O", outFmt };
    if (compress)
        qa.AddRange(["-c", "-o", $"compression_type={type}"]);
    qa.AddRange([src, q]);
    double tq = Time(() => Run("qemu-img", [.. qa]));
    double tl = Time(() => Qcow2Converter.Convert(src, l, new Qcow2ConvertOptions
    {
        OutputFormat = outFmt,
        Compress = compress,
        Create = new Qcow2CreateOptions { CompressionType = type == "zstd" ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib },
    }));
    string tv = "-", rv = "-";
    if (vzsdk is not null)
    {
        var va = new List<string> { "disk" };
        va.AddRange(qa.Take(qa.Count - 2));
        va.AddRange([src, v]);
        double t = Time(() => Run(vzsdk, [.. va]));
        tv = $"{t:0.000}s";
        rv = $"{t / tq:0.00}";
    }
    string sizes = compress ? $"  sizes qemu {new FileInfo(q).Length >> 20} MiB, library {new FileInfo(l).Length >> 20} MiB" : "";
    Console.WriteLine($"{name,-28} {tq,9:0.000}s {tl,9:0.000}s {tl / tq,7:0.00} {tv,10} {rv,7}{sizes}");
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
