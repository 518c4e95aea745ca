using System.CommandLine;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Memory;

namespace Vzsdk;

/// <summary><c>vzsdk mem …</c>: the memory manager (VCMMD's <c>vcmmdctl</c>).</summary>
internal static class MemCommand
{
    public static Command Build()
    {
        var mem = new Command("mem", "Memory management: the balancing daemon, the host's memory account, the policy, KSM.");
        mem.Subcommands.Add(BuildDaemon());
        mem.Subcommands.Add(BuildStatus());
        mem.Subcommands.Add(BuildPolicy());
        mem.Subcommands.Add(BuildKsm());
        return mem;
    }

    private static readonly Option<string?> Budget = new("--budget") { Description = "Cap the memory available to VEs (e.g. 3G; a bare number is MiB); the daemon also records it in the ledger, which then refuses starts beyond it." };

    private static MemoryManager Manager(ParseResult parse, Action<MemoryManagerOptions>? configure = null)
    {
        var options = new MemoryManagerOptions { Budget = Cli.ResourceSize(parse, Budget) };
        configure?.Invoke(options);
        return new MemoryManager(Cli.Runtime(parse), options);
    }

    private static Command BuildDaemon()
    {
        var policy = new Option<string?>("--policy") { Description = $"Start with this policy ({string.Join(", ", MemoryPolicies.Names)}); default: the one recorded by 'vzsdk mem policy', else density." };
        var interval = new Option<double>("--interval") { Description = "Seconds between ticks, 1 to 5.", DefaultValueFactory = _ => 2 };
        var cmd = new Command("daemon", "Run the memory manager until interrupted (SIGINT or SIGTERM): balance every VE by the policy, apply targets, balloons and KSM.") { policy, interval, Budget };
        cmd.SetAction(async (parse, ct) =>
        {
            var seconds = parse.GetValue(interval);
            if (seconds is < 1 or > 5)
                throw new UsageException($"--interval: {seconds} is not between 1 and 5 seconds.");
            var manager = Manager(parse, o => o.Interval = TimeSpan.FromSeconds(seconds));
            var name = parse.GetValue(policy) ?? await manager.GetPolicyNameAsync(ct);
            if (!MemoryPolicies.Names.Contains(name.ToLowerInvariant()))
                throw new UsageException($"--policy: there is no policy '{name}' (the policies are {string.Join(", ", MemoryPolicies.Names)}).");
            manager.SetPolicy(MemoryPolicies.Create(name));
            Console.Error.WriteLine($"vzsdk mem daemon: policy {manager.Policy.Name}, every {seconds} s; interrupt to stop");
            await manager.RunAsync(ct);
            Console.Error.WriteLine("vzsdk mem daemon: stopped");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command BuildStatus()
    {
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var cmd = new Command("status", "Show the host's memory account and every running VE's guarantee, target, limit, usage and pressure.") { json, Budget };
        cmd.SetAction(async (parse, ct) =>
        {
            var s = await Manager(parse, o => o.ManageKsm = false).GetStatusAsync(null, ct);
            if (parse.GetValue(json))
            {
                Cli.WriteJson(new StatusJson(s.Policy, s.TotalBytes, s.ReserveBytes, s.GuaranteedBytes, s.AvailableBytes, s.FreeBytes,
                    s.Ves.Select(v => new VeJson(v.Id.ToString(), v.Name, v.Kind == VeKind.Vm ? "vm" : "container", v.Active ? "running" : "paused",
                        v.GuaranteeBytes, v.TargetBytes, v.LimitBytes, v.UsageBytes, v.StallMicroseconds)).ToList()), VzsdkJson.Default.MemStatus);
                return Cli.Success;
            }
            static string H(long b) => new ByteSize(b).ToHumanString();
            Console.WriteLine($"Policy:     {s.Policy}");
            Console.WriteLine($"Total:      {H(s.TotalBytes)}");
            Console.WriteLine($"Reserve:    {H(s.ReserveBytes)}");
            Console.WriteLine($"Available:  {H(s.AvailableBytes)}");
            Console.WriteLine($"Guaranteed: {H(s.GuaranteedBytes)}");
            Console.WriteLine($"Free:       {H(s.FreeBytes)}");
            Console.WriteLine();
            Console.WriteLine($"{"NAME",-20} {"TYPE",-9} {"GUARANTEE",10} {"TARGET",10} {"LIMIT",10} {"USAGE",10} {"STALL",9}");
            foreach (var v in s.Ves)
                Console.WriteLine($"{v.Name,-20} {(v.Kind == VeKind.Vm ? "vm" : "container"),-9} {H(v.GuaranteeBytes),10} {(v.TargetBytes is { } t ? H(t) : "-"),10} {H(v.LimitBytes),10} {H(v.UsageBytes),10} {v.StallMicroseconds / 1000.0,7:F1}ms");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command BuildPolicy()
    {
        var name = new Argument<string?>("NAME") { Description = $"The policy to switch to: {string.Join(", ", MemoryPolicies.Names)}. Without it, print the policy in force.", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("policy", "Show or switch the memory policy (a running daemon switches at its next tick).") { name };
        cmd.SetAction(async (parse, ct) =>
        {
            var manager = Manager(parse, o => o.ManageKsm = false);
            if (parse.GetValue(name) is not { } wanted)
            {
                Console.WriteLine(await manager.GetPolicyNameAsync(ct));
                return Cli.Success;
            }
            if (!MemoryPolicies.Names.Contains(wanted.ToLowerInvariant()))
                throw new UsageException($"There is no policy '{wanted}' (the policies are {string.Join(", ", MemoryPolicies.Names)}).");
            await manager.SetPolicyAsync(wanted, ct);
            Console.WriteLine(manager.Policy.Name);
            return Cli.Success;
        });
        return cmd;
    }

    private static Command BuildKsm()
    {
        var action = new Argument<string>("ACTION") { Description = "on, off, auto (ksmtuned's rules, the default) or status." };
        var json = new Option<bool>("--json") { Description = "Print JSON (status)." };
        var cmd = new Command("ksm", "Kernel same-page merging: switch it on, off or back to automatic, or show its figures.") { action, json };
        cmd.SetAction(async (parse, ct) =>
        {
            var ksm = new KsmController(Path.Combine(Cli.Options(parse).DataRoot, "memory", "ksm"));
            var verb = parse.GetValue(action)!.ToLowerInvariant();
            switch (verb)
            {
                case "on": await ksm.SetModeAsync(KsmMode.On, ct); break;
                case "off": await ksm.SetModeAsync(KsmMode.Off, ct); break;
                case "auto": await ksm.SetModeAsync(KsmMode.Auto, ct); break;
                case "status": break;
                default: throw new UsageException($"ACTION: '{verb}' is not on, off, auto or status.");
            }
            var s = await ksm.GetStatusAsync(ct);
            if (parse.GetValue(json))
            {
                Cli.WriteJson(new KsmJson(s.Mode.ToString().ToLowerInvariant(), s.Running, s.PagesToScan, s.SleepMilliseconds, s.PagesShared, s.PagesSharing, s.SavedBytes, s.FullScans), VzsdkJson.Default.MemKsm);
                return Cli.Success;
            }
            Console.WriteLine($"KSM:           {(s.Running ? "running" : "stopped")} ({s.Mode.ToString().ToLowerInvariant()})");
            Console.WriteLine($"Pages to scan: {s.PagesToScan} every {s.SleepMilliseconds} ms");
            Console.WriteLine($"Pages shared:  {s.PagesShared}");
            Console.WriteLine($"Pages sharing: {s.PagesSharing} (saved {new ByteSize(s.SavedBytes).ToHumanString()})");
            Console.WriteLine($"Full scans:    {s.FullScans}");
            return Cli.Success;
        });
        return cmd;
    }

    internal sealed record VeJson(string Uuid, string Name, string Type, string Status, long Guarantee, long? Target, long Limit, long Usage, long StallUs);

    internal sealed record StatusJson(string Policy, long Total, long Reserve, long Guaranteed, long Available, long Free, List<VeJson> Ves);

    internal sealed record KsmJson(string Mode, bool Running, int PagesToScan, int SleepMillisecs, long PagesShared, long PagesSharing, long SavedBytes, long FullScans);
}
