using System.CommandLine;
using System.Globalization;

namespace Vzsdk.Disk;

internal static partial class DiskCommand
{
    // ---------------------------------------------------------------- io (qemu-io syntax)
    private static Command Io()
    {
        var commands = new Option<string[]>("-c") { Description = "A qemu-io command: write [-P PATTERN] [-z] [-u] [-c] OFF LEN, read [-P PATTERN] OFF LEN, discard OFF LEN, flush. Repeatable.", AllowMultipleArgumentsPerToken = false, Arity = ArgumentArity.OneOrMore };
        var fmt = FormatOption();
        var readOnly = new Option<bool>("-r") { Description = "Open read-only." };
        var force = ForceShareOption();
        var file = new Argument<string>("FILE");
        var cmd = new Command("io", "Run qemu-io style commands against an image; a failed read -P exits 1.") { commands, fmt, readOnly, force, file };
        cmd.SetAction(pr =>
        {
            var path = pr.GetValue(file)!;
            var list = pr.GetValue(commands) ?? [];
            if (list.Length == 0)
                throw new UsageException("Give at least one -c COMMAND.");
            using var t = DiskTarget.Open(path, pr.GetValue(fmt), pr.GetValue(readOnly), pr.GetValue(force));
            int rc = Cli.Success;
            foreach (var c in list)
                rc = Math.Max(rc, RunIo(t, c));
            return rc;
        });
        return cmd;
    }

    private static int RunIo(DiskTarget t, string command)
    {
        var words = command.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Length == 0)
            throw new UsageException("Empty command.");
        var verb = words[0];
        byte? pattern = null;
        bool zero = false, unmap = false, compressed = false;
        var positional = new List<string>();
        for (int i = 1; i < words.Length; i++)
        {
            switch (words[i])
            {
                case "-P" when i + 1 < words.Length:
                    pattern = DiskArgs.ParsePattern(words[++i]);
                    break;
                case "-z":
                    zero = true;
                    break;
                case "-u":
                    unmap = true;
                    break;
                case "-c":
                    compressed = true;
                    break;
                case "-q":
                    break;
                default:
                    if (words[i].StartsWith('-'))
                        throw new UsageException($"Unknown flag '{words[i]}' in '{command}'.");
                    positional.Add(words[i]);
                    break;
            }
        }
        if (verb == "flush")
        {
            t.Flush();
            return Cli.Success;
        }
        if (positional.Count != 2)
            throw new UsageException($"'{verb}' needs OFFSET and LENGTH: '{command}'.");
        long off = DiskArgs.ParseSize(positional[0]);
        long len = DiskArgs.ParseSize(positional[1]);
        if (off + len > t.Size)
        {
            Console.Out.WriteLine($"{verb} failed: Input/output error");
            return Cli.Failure;
        }
        switch (verb)
        {
            case "write":
                if (zero)
                    t.WriteZeroes(off, len, unmap);
                else
                {
                    var buf = new byte[Math.Min(len, 4 << 20)];
                    buf.AsSpan().Fill(pattern ?? 0xcd);
                    for (long o = 0; o < len; o += buf.Length)
                    {
                        var span = buf.AsSpan(0, (int)Math.Min(buf.Length, len - o));
                        if (compressed)
                            t.WriteCompressed(off + o, span);
                        else
                            t.Write(off + o, span);
                    }
                }
                Report("wrote", off, len);
                return Cli.Success;
            case "read":
            {
                var buf = new byte[Math.Min(len, 4 << 20)];
                for (long o = 0; o < len; o += buf.Length)
                {
                    var span = buf.AsSpan(0, (int)Math.Min(buf.Length, len - o));
                    t.Read(off + o, span);
                    if (pattern is { } p)
                    {
                        int bad = span.IndexOfAnyExcept(p);
                        if (bad >= 0)
                        {
                            Console.Out.WriteLine($"Pattern verification failed at offset {off + o + bad}, {len - o - bad} bytes");
                            Report("read", off, len);
                            return Cli.Failure;
                        }
                    }
                }
                Report("read", off, len);
                return Cli.Success;
            }
            case "discard":
                t.Discard(off, len);
                Report("discard", off, len);
                return Cli.Success;
            default:
                throw new UsageException($"Unknown command '{verb}' (write, read, discard, flush).");
        }
    }

    private static void Report(string what, long off, long len)
    {
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what} {len}/{len} bytes at offset {off}"));
        Console.Out.WriteLine($"{DiskArgs.Human(len)}, 1 ops");
    }
}
