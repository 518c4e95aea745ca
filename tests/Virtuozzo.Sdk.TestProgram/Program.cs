using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;

// Modes (first argument):
//   exit N                      exit with code N
//   echo-stdin                  copy standard input to standard output
//   spew BYTES                  write BYTES bytes of 'x' lines to standard output
//   lines N                     write N numbered lines, flushing each
//   stderr TEXT [N]             write TEXT to standard error and exit N (default 3)
//   sleep SECONDS               sleep
//   env NAME                    print the variable's value or <unset>
//   pwd                         print the working directory
//   args A...                   print each argument on its own line
//   spawn-child PIDFILE         start a child (this program, sleep 300), write "parent child" pids, sleep 300
//   ignore-term SECONDS         ignore SIGTERM and sleep
//   ledger ROOT CAPACITY N GUARANTEE   try N reservations of GUARANTEE bytes; print how many were admitted
//   write-configs ROOT PATH N   write N large configs atomically to PATH, each internally consistent
var mode = args.Length > 0 ? args[0] : "";
switch (mode)
{
    case "exit":
        return int.Parse(args[1]);
    case "echo-stdin":
        using (var stdin = Console.OpenStandardInput())
        using (var stdout = Console.OpenStandardOutput())
            stdin.CopyTo(stdout);
        return 0;
    case "spew":
    {
        var total = long.Parse(args[1]);
        using var stdout = Console.OpenStandardOutput();
        var line = Encoding.ASCII.GetBytes(new string('x', 99) + "\n");
        long written = 0;
        while (written < total)
        {
            var n = (int)Math.Min(line.Length, total - written);
            stdout.Write(line, 0, n);
            written += n;
        }
        return 0;
    }
    case "lines":
        for (var i = 1; i <= int.Parse(args[1]); i++)
        {
            Console.Out.WriteLine($"line {i}");
            Console.Out.Flush();
        }
        return 0;
    case "stderr":
        Console.Error.WriteLine(args[1]);
        return args.Length > 2 ? int.Parse(args[2]) : 3;
    case "sleep":
        Thread.Sleep(TimeSpan.FromSeconds(double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture)));
        return 0;
    case "env":
        Console.WriteLine(Environment.GetEnvironmentVariable(args[1]) ?? "<unset>");
        return 0;
    case "pwd":
        Console.WriteLine(Environment.CurrentDirectory);
        return 0;
    case "args":
        foreach (var a in args.Skip(1))
            Console.WriteLine(a);
        return 0;
    case "spawn-child":
    {
        var self = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(self) { UseShellExecute = false };
        foreach (var a in Environment.GetCommandLineArgs().Take(1).Where(a => a.EndsWith(".dll", StringComparison.Ordinal)))
            psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("sleep");
        psi.ArgumentList.Add("300");
        var child = Process.Start(psi)!;
        File.WriteAllText(args[1], $"{Environment.ProcessId} {child.Id}");
        Thread.Sleep(TimeSpan.FromSeconds(300));
        return 0;
    }
    case "ignore-term":
        using (PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => c.Cancel = true))
        {
            Console.Out.WriteLine("ready");
            Console.Out.Flush();
            Thread.Sleep(TimeSpan.FromSeconds(double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture)));
        }
        return 0;
    case "ledger":
    {
        var ledger = new ResourceLedger(args[1], long.Parse(args[2]), TimeSpan.FromSeconds(60));
        var admitted = 0;
        for (var i = 0; i < int.Parse(args[3]); i++)
        {
            try
            {
                await ledger.ReserveAsync(VeId.New(), VeKind.Container, long.Parse(args[4]));
                admitted++;
            }
            catch (InsufficientResourcesException) { }
        }
        Console.WriteLine(admitted);
        return 0;
    }
    case "write-configs":
    {
        var store = new StateStore(args[1]);
        store.EnsureUsable();
        for (var i = 0; i < int.Parse(args[3]); i++)
        {
            // A large document whose fields must agree: a torn write would break the JSON or the agreement.
            var doc = new StressDocument(1, Environment.ProcessId, i, new string((char)('a' + i % 26), 200_000), Environment.ProcessId * 1_000_000L + i);
            await store.WriteDocumentAsync(args[2], doc, StressJson.Default.StressDocument, CancellationToken.None);
        }
        return 0;
    }
    default:
        Console.Error.WriteLine($"unknown mode '{mode}'");
        return 64;
}

/// <summary>A document for torn-write tests.</summary>
public sealed record StressDocument(int FormatVersion, int Writer, int Sequence, string Payload, long Check) : IVersionedDocument;

[System.Text.Json.Serialization.JsonSerializable(typeof(StressDocument))]
internal sealed partial class StressJson : System.Text.Json.Serialization.JsonSerializerContext;
