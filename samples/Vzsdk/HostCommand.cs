using System.CommandLine;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;

namespace Vzsdk;

/// <summary><c>vzsdk host …</c>: what this host is and can do.</summary>
internal static class HostCommand
{
    public static Command Build()
    {
        var host = new Command("host", "Inspect the host.");
        host.Subcommands.Add(BuildInfo());
        host.Subcommands.Add(BuildAutostart());
        host.Subcommands.Add(BuildReconcile());
        return host;
    }

    private static Command BuildInfo()
    {
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var refresh = new Option<bool>("--refresh") { Description = "Probe KVM again instead of using this boot's cached result." };
        var info = new Command("info", "Show the kernel, cgroup layout, CPUs, memory, tools, whether KVM and CRIU are usable, and what the runtime supports (with --host: the node's product, prlctl/vzctl versions and features).") { json, refresh };
        info.SetAction(async (parse, ct) =>
        {
            var caps = await Cli.Runtime(parse).GetHostCapabilitiesAsync(new CapabilityProbeOptions { RefreshKvmProbe = parse.GetValue(refresh) }, ct);
            if (parse.GetValue(json))
            {
                Cli.WriteJson(ToJson(caps), VzsdkJson.Default.HostInfo);
                return Cli.Success;
            }
            Console.WriteLine($"Host:     {caps.HostName}");
            Console.WriteLine($"Runtime:  {RuntimeName(caps.Runtime)}");
            if (caps.Product is not null)
                Console.WriteLine($"Product:  {caps.Product}");
            Console.WriteLine($"Kernel:   {caps.Kernel}");
            Console.WriteLine($"Cgroup:   {LayoutName(caps.Cgroup)}");
            Console.WriteLine($"CPUs:     {caps.Cpus}");
            Console.WriteLine($"Memory:   {new ByteSize(caps.MemoryBytes).ToHumanString()}");
            Console.WriteLine($"KVM:      {(caps.Kvm.Usable ? "usable" : "not usable")} ({caps.Kvm.Reason})");
            Console.WriteLine($"CRIU:     {(caps.Criu.Usable ? "usable" : "not usable")} ({caps.Criu.Reason})");
            Console.WriteLine("Tools:");
            foreach (var (name, version) in caps.Tools)
                Console.WriteLine($"  {name,-22}{version ?? "missing"}");
            Console.WriteLine("Features:");
            foreach (var (name, status) in caps.Features)
                Console.WriteLine($"  {name,-22}{(status.Usable ? "yes" : "no")} ({status.Reason})");
            return Cli.Success;
        });
        return info;
    }

    private static Command BuildAutostart()
    {
        var cmd = new Command("autostart", "Start every container marked --autostart on (run at boot; see docs/articles/containers/autostart.md).");
        cmd.SetAction(async (parse, ct) =>
        {
            var started = await new Virtuozzo.Sdk.Containers.ContainerClient(Cli.Runtime(parse)).StartAutostartAsync(ct);
            foreach (var c in started)
                Console.WriteLine($"Started container {c.Name}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command BuildReconcile()
    {
        var cmd = new Command("reconcile", "Clean up what a crash or reboot left behind (mounts, disk daemons, links, cgroups, temp files).");
        cmd.SetAction(async (parse, ct) =>
        {
            var removed = await new Virtuozzo.Sdk.Containers.ContainerClient(Cli.Runtime(parse)).ReconcileAsync(ct);
            removed += await new Virtuozzo.Sdk.Vm.VirtualMachineClient(Cli.Runtime(parse)).ReconcileAsync(ct);
            Console.WriteLine($"Removed {removed} leftover(s)");
            return Cli.Success;
        });
        return cmd;
    }

    internal static string LayoutName(CgroupLayout layout) => layout switch
    {
        CgroupLayout.V1 => "v1",
        CgroupLayout.V2 => "v2",
        CgroupLayout.Hybrid => "hybrid",
        _ => "none",
    };

    internal static string RuntimeName(RuntimeKind kind) => kind switch
    {
        RuntimeKind.Virtuozzo => "virtuozzo",
        RuntimeKind.Libvirt => "libvirt",
        _ => "local",
    };

    internal static HostInfoJson ToJson(HostCapabilities c) => new(
        c.HostName, RuntimeName(c.Runtime), c.Product, c.Kernel, LayoutName(c.Cgroup), c.Cpus, c.MemoryBytes,
        new FeatureJson(c.Kvm.Usable, c.Kvm.Reason), new Dictionary<string, string?>(c.Tools), new FeatureJson(c.Criu.Usable, c.Criu.Reason),
        c.Features.ToDictionary(kv => kv.Key, kv => new FeatureJson(kv.Value.Usable, kv.Value.Reason)));

    internal sealed record FeatureJson(bool Usable, string Reason);

    internal sealed record HostInfoJson(string Hostname, string Runtime, string? Product, string Kernel, string Cgroup, int Cpus, long Memory, FeatureJson Kvm,
        Dictionary<string, string?> Tools, FeatureJson Criu, Dictionary<string, FeatureJson> Features);
}
