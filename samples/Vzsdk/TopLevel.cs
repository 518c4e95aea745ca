using System.CommandLine;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;

namespace Vzsdk;

/// <summary>
/// The prlctl-shaped top level: <c>vzsdk list|start|stop|restart|suspend|resume|delete|exec|enter|set NAME</c> act on
/// containers and VMs alike through <see cref="VirtualEnvironmentClient"/>; <c>ct</c> and <c>vm</c> keep their verbs.
/// </summary>
internal static class TopLevel
{
    /// <summary>The columns <c>list -o</c> knows, with their headers, widths and values.</summary>
    private static readonly (string Field, string Header, int Width, Func<VeInfo, string> Value)[] Columns =
    [
        ("uuid", "UUID", 40, v => v.Id.ToBracedString()),
        ("status", "STATUS", 11, v => StateName(v.State)),
        ("ip_configured", "IP_ADDR", 17, v => v.IpAddresses.Count > 0 ? v.IpAddresses[0].Split('/')[0] : "-"),
        ("type", "T", 4, v => v.Kind == VeKind.Container ? "CT" : "VM"),
        ("cpus", "CPUS", 6, v => v.Cpus?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "all"),
        ("memsize", "MEMSIZE", 10, v => v.MemorySize.ToString()),
        ("hostname", "HOSTNAME", 20, v => v.Hostname ?? "-"),
        ("name", "NAME", 0, v => v.Name.Value),
    ];

    private const string DefaultColumns = "uuid,status,ip_configured,type,name";

    public static IEnumerable<Command> Build() => [List(), Lifecycle("start"), Stop(), Restart(), Lifecycle("suspend"), Lifecycle("resume"), Delete(), Exec(), Enter(), Set()];

    private static VirtualEnvironmentClient Client(ParseResult p)
    {
        var runtime = Cli.Runtime(p);
        // The unified client sees the kinds enabled on its runtime: enable both (a runtime without containers, libvirt's, refuses them).
        if (runtime.Kind != RuntimeKind.Libvirt)
            _ = new ContainerClient(runtime);
        _ = new VirtualMachineClient(runtime);
        return new VirtualEnvironmentClient(runtime);
    }

    private static Argument<string> NameArg() => new("NAME") { Description = "The container's or VM's name or UUID." };

    internal static string StateName(VeState s) => s.ToString().ToLowerInvariant();

    private static Command List()
    {
        var all = new Option<bool>("--all", "-a") { Description = "List stopped VEs too." };
        var fields = new Option<string?>("--output", "-o") { Description = $"Columns, comma-separated: {string.Join(',', Columns.Select(c => c.Field))} (default {DefaultColumns})." };
        var json = new Option<bool>("--json") { Description = "Print JSON (an array of objects)." };
        var cmd = new Command("list", "List containers and VMs together (running ones unless -a), as prlctl list.") { all, fields, json };
        cmd.SetAction(async (p, ct) =>
        {
            var columns = (p.GetValue(fields) ?? DefaultColumns).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(f => Columns.FirstOrDefault(c => c.Field == f) is { Field: not null } c ? c : throw new UsageException($"-o: unknown column '{f}' (known: {string.Join(", ", Columns.Select(k => k.Field))})."))
                .ToList();
            var list = await Client(p).ListAsync(p.GetValue(all), ct);
            if (p.GetValue(json))
            {
                Cli.WriteJson(list.Select(v => new VeListJson(v.Id.ToString(), v.Name.Value, v.Kind == VeKind.Container ? "container" : "vm", StateName(v.State),
                    v.IpAddresses.Count > 0 ? string.Join(' ', v.IpAddresses.Select(a => a.Split('/')[0])) : null, v.Hostname, v.Cpus, v.MemorySize.Bytes)).ToList(), VzsdkJson.Default.VeList);
                return Cli.Success;
            }
            Console.Out.WriteLine(Row(columns.Select(c => (c.Header, c.Width))));
            foreach (var v in list)
                Console.Out.WriteLine(Row(columns.Select(c => (c.Value(v), c.Width))));
            return Cli.Success;
        });
        return cmd;
    }

    /// <summary>One line of the table: every column padded to its width and at least one space from the next.</summary>
    internal static string Row(IEnumerable<(string Text, int Width)> cells)
    {
        var parts = cells.ToList();
        return string.Concat(parts.Select((c, i) => i == parts.Count - 1 ? c.Text : c.Text.PadRight(Math.Max(c.Width, c.Text.Length + 1)))).TrimEnd();
    }

    private static Command Lifecycle(string verb)
    {
        var name = NameArg();
        var cmd = new Command(verb, $"{char.ToUpperInvariant(verb[0])}{verb[1..]} a container or VM.") { name };
        cmd.SetAction(async (p, ct) =>
        {
            var c = Client(p);
            var target = p.GetValue(name)!;
            var v = verb switch
            {
                "start" => await c.StartAsync(target, ct),
                "suspend" => await c.SuspendAsync(target, ct),
                _ => await c.ResumeAsync(target, ct),
            };
            Console.Out.WriteLine($"{KindName(v)} {v.Name} is {StateName(v.State)}");
            return Cli.Success;
        });
        return cmd;
    }

    private static string KindName(VeInfo v) => v.Kind == VeKind.Container ? "Container" : "VM";

    internal static (Option<bool> Kill, Option<int?> Timeout) StopFlags()
        => (new Option<bool>("--kill") { Description = "Kill at once." },
            new Option<int?>("--timeout") { Description = "Seconds to wait for a clean stop before killing (default: 10 for a container, 60 for a VM)." });

    internal static VeStopOptions StopOptions(ParseResult p, (Option<bool> Kill, Option<int?> Timeout) f)
    {
        var timeout = p.GetValue(f.Timeout);
        if (timeout is < 0)
            throw new UsageException("--timeout cannot be negative.");
        return new VeStopOptions { Kill = p.GetValue(f.Kill), Timeout = timeout is { } t ? TimeSpan.FromSeconds(t) : null };
    }

    private static Command Stop()
    {
        var name = NameArg();
        var f = StopFlags();
        var cmd = new Command("stop", "Stop a container or VM: cleanly first, killed after the timeout.") { name, f.Kill, f.Timeout };
        cmd.SetAction(async (p, ct) =>
        {
            var c = Client(p);
            var how = await c.StopAsync(p.GetValue(name)!, StopOptions(p, f), ct);
            var v = await c.GetAsync(p.GetValue(name)!, ct);
            Console.Out.WriteLine(how switch
            {
                VeStopMethod.AlreadyStopped => $"{KindName(v)} {v.Name} was not running",
                VeStopMethod.Killed => $"{KindName(v)} {v.Name} was killed",
                _ => $"{KindName(v)} {v.Name} is {StateName(v.State)}",
            });
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Restart()
    {
        var name = NameArg();
        var f = StopFlags();
        var cmd = new Command("restart", "Stop (if running) and start a container or VM.") { name, f.Kill, f.Timeout };
        cmd.SetAction(async (p, ct) =>
        {
            var v = await Client(p).RestartAsync(p.GetValue(name)!, StopOptions(p, f), ct);
            Console.Out.WriteLine($"{KindName(v)} {v.Name} is {StateName(v.State)}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Delete()
    {
        var name = NameArg();
        var cmd = new Command("delete", "Delete a container or VM with its disks (a running one is killed first).") { name };
        cmd.SetAction(async (p, ct) =>
        {
            if (!await Client(p).DeleteAsync(p.GetValue(name)!, ct))
            {
                Console.Error.WriteLine($"vzsdk: there is no container or VM named '{p.GetValue(name)}' (list them with 'vzsdk list -a')");
                return Cli.Failure;
            }
            Console.Out.WriteLine($"Deleted {p.GetValue(name)}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Exec()
    {
        var name = NameArg();
        var shell = new Option<bool>("--shell") { Description = "Run the arguments through /bin/sh -c." };
        var interactive = new Option<bool>("--interactive", "-i") { Description = "Forward standard input." };
        var command = new Argument<string[]>("COMMAND") { Description = "The program and its arguments (after --).", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("exec", "Run a program in a running container or VM (the argument vector as is, no shell).") { name, shell, interactive, command };
        cmd.SetAction(async (p, ct) =>
        {
            try
            {
                await using var stdout = Console.OpenStandardOutput();
                await using var stderr = Console.OpenStandardError();
                var result = await Client(p).ExecAsync(p.GetValue(name)!, new VeExecOptions
                {
                    Command = p.GetValue(command)!,
                    Shell = p.GetValue(shell),
                    StandardInput = p.GetValue(interactive) ? Console.OpenStandardInput() : null,
                    StandardOutput = stdout,
                    StandardError = stderr,
                }, ct);
                return result.ExitCode;
            }
            catch (Exception ex) when (ex is VirtuozzoException or ArgumentException or TimeoutException)
            {
                Cli.ReportError(ex, p.GetValue(Cli.Verbose));
                return 125; // the tool itself failed, as docker exec
            }
        });
        return cmd;
    }

    private static Command Enter()
    {
        var name = NameArg();
        var cmd = new Command("enter", "Open a shell in a running container (standard input forwarded), as vzctl enter.") { name };
        cmd.SetAction(async (p, ct) =>
        {
            var c = Client(p);
            var v = await c.GetAsync(p.GetValue(name)!, ct);
            if (v.Kind == VeKind.Vm)
            {
                Console.Error.WriteLine($"vzsdk: VM {v.Name} has no interactive console through the SDK yet; run programs in it with 'vzsdk exec {v.Name} -- CMD' (through its guest tools).");
                return Cli.Failure;
            }
            await using var stdin = Console.OpenStandardInput();
            await using var stdout = Console.OpenStandardOutput();
            await using var stderr = Console.OpenStandardError();
            var result = await c.ExecAsync(v.Id, new VeExecOptions
            {
                Command = ["/bin/sh", "-i"],
                Environment = new Dictionary<string, string> { ["PS1"] = $"{v.Name}# " },
                StandardInput = stdin,
                StandardOutput = stdout,
                StandardError = stderr,
            }, ct);
            return result.ExitCode;
        });
        return cmd;
    }

    private static Command Set()
    {
        var name = NameArg();
        var memsize = new Option<string?>("--memsize") { Description = "Memory size (MiB, or with a K/M/G/T suffix)." };
        var cpus = new Option<int?>("--cpus") { Description = "CPUs." };
        var cpulimit = new Option<int?>("--cpulimit") { Description = "CPU limit in percent of one CPU (0 for none)." };
        var cpumask = new Option<string?>("--cpumask") { Description = "Host CPUs the VE may use (0-1,3; empty for all)." };
        var memguarantee = new Option<int?>("--memguarantee") { Description = "Memory guarantee in percent." };
        var newName = new Option<string?>("--name") { Description = "A new name." };
        var cmd = new Command("set", "Change a container's or VM's common settings (kind-specific ones: 'vzsdk ct set', 'vzsdk vm set').")
            { name, memsize, cpus, cpulimit, cpumask, memguarantee, newName };
        cmd.SetAction(async (p, ct) =>
        {
            var runtime = Cli.Runtime(p);
            var unified = Client(p);
            var target = p.GetValue(name)!;
            var v = await unified.GetAsync(target, ct);
            var size = Cli.ResourceSize(p, memsize);
            if (size is not null || p.GetValue(cpus) is not null || p.GetValue(cpulimit) is not null || p.GetValue(cpumask) is not null || p.GetValue(memguarantee) is not null)
            {
                if (v.Kind == VeKind.Container)
                {
                    await new ContainerClient(runtime).SetAsync(v.Id, new ContainerSetOptions
                    {
                        MemorySize = size, Cpus = p.GetValue(cpus), CpuLimitPercent = p.GetValue(cpulimit), CpuMask = p.GetValue(cpumask), MemoryGuaranteePercent = p.GetValue(memguarantee),
                    }, ct);
                }
                else
                {
                    await new VirtualMachineClient(runtime).SetAsync(v.Id, new VmSetOptions
                    {
                        MemorySize = size, Cpus = p.GetValue(cpus), CpuLimitPercent = p.GetValue(cpulimit), CpuMask = p.GetValue(cpumask), MemoryGuaranteePercent = p.GetValue(memguarantee),
                    }, ct);
                }
            }
            if (p.GetValue(newName) is { } renamed)
                v = await unified.RenameAsync(v.Id, new VeName(renamed), ct);
            Console.Out.WriteLine($"{KindName(v)} {v.Name} updated");
            return Cli.Success;
        });
        return cmd;
    }

    internal sealed record VeListJson(string Uuid, string Name, string Type, string Status, string? IpConfigured, string? Hostname, int? Cpus, long Memsize);
}
