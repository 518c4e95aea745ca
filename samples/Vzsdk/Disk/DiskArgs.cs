using System.Globalization;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Vzsdk.Disk;

/// <summary>Parsing of qemu-img style values: sizes with suffixes, <c>-o key=value,…</c> lists, patterns.</summary>
internal static class DiskArgs
{
    /// <summary>Parses a size: a bare number is bytes; K/M/G/T/P/E suffixes are binary (optional B/iB), case-insensitive; decimals allowed.</summary>
    public static long ParseSize(string text)
    {
        var s = text.Trim();
        if (s.Length == 0)
            throw new UsageException($"Invalid size '{text}'.");
        if (s.EndsWith("iB", StringComparison.OrdinalIgnoreCase))
            s = s[..^2];
        else if (s.Length > 1 && (s[^1] is 'B' or 'b') && char.IsLetter(s[^2]))
            s = s[..^1];
        int shift = 0;
        char last = char.ToUpperInvariant(s[^1]);
        int idx = "BKMGTPE".IndexOf(last);
        if (idx >= 0 && !char.IsDigit(last))
        {
            shift = idx * 10;
            s = s[..^1];
        }
        if (!decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value < 0)
            throw new UsageException($"Invalid size '{text}'.");
        var bytes = value * (decimal)Math.Pow(2, shift);
        if (bytes > long.MaxValue)
            throw new UsageException($"Size '{text}' is too large.");
        return (long)bytes;
    }

    /// <summary>Parses qemu-img's <c>-o a=b,c=d</c> (repeatable) into a dictionary.</summary>
    public static Dictionary<string, string> ParseOptions(IEnumerable<string>? lists)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var list in lists ?? [])
            foreach (var item in list.Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = item.IndexOf('=');
                if (eq < 0)
                    throw new UsageException($"Invalid option '{item}': expected key=value.");
                d[item[..eq].Trim()] = item[(eq + 1)..].Trim();
            }
        return d;
    }

    public static bool ParseBool(string key, string v) => v.ToLowerInvariant() switch
    {
        "on" or "true" or "yes" or "1" => true,
        "off" or "false" or "no" or "0" => false,
        _ => throw new UsageException($"Invalid value '{v}' for {key}: use on or off."),
    };

    /// <summary>Applies <c>-o</c> options to create options; unknown keys are usage errors.</summary>
    public static Qcow2CreateOptions ApplyCreateOptions(Qcow2CreateOptions o, Dictionary<string, string> opts)
    {
        foreach (var (k, v) in opts)
        {
            o = k switch
            {
                "cluster_size" => o with { ClusterSize = checked((int)ParseSize(v)) },
                "compat" => o with { Version = v switch { "0.10" or "v2" => 2, "1.1" or "v3" => 3, _ => throw new UsageException($"Invalid compat '{v}' (0.10 or 1.1).") } },
                "refcount_bits" => o with { RefcountBits = int.Parse(v, CultureInfo.InvariantCulture) },
                "compression_type" => o with { CompressionType = ParseCompression(v) },
                "extended_l2" => o with { ExtendedL2 = ParseBool(k, v) },
                "lazy_refcounts" => o with { LazyRefcounts = ParseBool(k, v) },
                "preallocation" => o with
                {
                    Preallocation = v switch
                    {
                        "off" => Qcow2Preallocation.Off,
                        "metadata" => Qcow2Preallocation.Metadata,
                        "full" or "falloc" => Qcow2Preallocation.Full,
                        _ => throw new UsageException($"Invalid preallocation '{v}' (off, metadata, falloc, full)."),
                    },
                },
                "backing_file" => o with { BackingFile = v },
                "backing_fmt" => o with { BackingFormat = v },
                "size" => o with { Size = ParseSize(v) },
                _ => throw new UsageException($"Unknown option '{k}' (cluster_size, compat, refcount_bits, compression_type, extended_l2, lazy_refcounts, preallocation, backing_file, backing_fmt)."),
            };
        }
        return o;
    }

    public static Qcow2CompressionType ParseCompression(string v) => v.ToLowerInvariant() switch
    {
        "zlib" or "deflate" => Qcow2CompressionType.Zlib,
        "zstd" => Qcow2CompressionType.Zstd,
        _ => throw new UsageException($"Invalid compression_type '{v}' (zlib or zstd)."),
    };

    public static string CompressionName(Qcow2CompressionType t) => t == Qcow2CompressionType.Zstd ? "zstd" : "zlib";

    /// <summary>Parses a byte pattern as qemu-io does (decimal or 0x hex).</summary>
    public static byte ParsePattern(string v)
    {
        v = v.Trim();
        bool ok = v.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? int.TryParse(v[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int n)
            : int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out n);
        if (!ok || n < 0 || n > 255)
            throw new UsageException($"Invalid pattern '{v}'.");
        return (byte)n;
    }

    /// <summary>Human size as qemu-img prints it ("1 GiB", "196 KiB").</summary>
    public static string Human(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        if (u == 0)
            return $"{bytes} B";
        var s = v.ToString(v >= 100 ? "0" : v >= 10 ? "0.#" : "0.##", CultureInfo.InvariantCulture);
        return $"{s} {units[u]}";
    }

    public static string ProbeFormat(string path, string? given)
    {
        if (given is not null)
        {
            if (given is not ("qcow2" or "raw"))
                throw new UsageException($"Unsupported format '{given}' (qcow2 or raw).");
            return given;
        }
        if (!File.Exists(path))
            throw new FileNotFoundException($"Could not open '{path}': No such file or directory");
        return Qcow2Image.IsQcow2(path) ? "qcow2" : "raw";
    }
}
