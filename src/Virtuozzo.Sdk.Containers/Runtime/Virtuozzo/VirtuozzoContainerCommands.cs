using System.Net;
using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Containers.Runtime.Virtuozzo;

/// <summary>The argument vectors of the container operations on a Virtuozzo node (prlctl's <c>create</c> and <c>set</c> options for CTs).</summary>
internal static class VirtuozzoContainerCommands
{
    /// <summary>The local default of <see cref="ContainerResources.MaxProcesses"/>; any other value is refused (prlctl has no option for it).</summary>
    private static readonly long DefaultMaxProcesses = new ContainerResources().MaxProcesses;

    /// <summary><c>prlctl create NAME --vmtype ct --ostemplate TEMPLATE --uuid UUID</c> (prlctl prints no UUID, so the SDK chooses it).</summary>
    public static PrlctlCommand Create(ContainerCreateOptions options, VeId id)
        => Prlctl.Of("create", options.Name.Value, "--vmtype", "ct", "--ostemplate", options.Template, "--uuid", id.ToString());

    /// <summary>
    /// The <c>prlctl set</c> options that give a new container its resources, host name, addresses (<c>--ipadd</c> on
    /// <c>venet0</c>), name servers and autostart. Validates the options first.
    /// </summary>
    /// <exception cref="ArgumentException">A resource, host name or address is invalid.</exception>
    /// <exception cref="UnsupportedOnHostException">A process limit other than the default (prlctl has no option for it).</exception>
    public static IReadOnlyList<string> CreateSettings(ContainerCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var r = options.Resources ?? throw new ArgumentException("Resources cannot be null.", nameof(options));
        OciSpec.Validate(r);
        if (r.MaxProcesses != DefaultMaxProcesses)
            throw MaxProcessesUnsupported();
        var args = new List<string>
        {
            "--memsize", Prlctl.Mib(r.MemorySize),
            "--swap", Prlctl.Num(r.Swap.Bytes),
            "--memguarantee", Prlctl.Num(r.MemoryGuaranteePercent),
        };
        if (r.Cpus is { } cpus)
            args.AddRange(["--cpus", Prlctl.Num(cpus)]);
        if (r.CpuLimitPercent is { } limit)
            args.AddRange(["--cpulimit", Prlctl.Num(limit)]);
        args.AddRange(["--cpuunits", Prlctl.Num(r.CpuUnits)]);
        if (r.CpuMask is { } mask)
            args.AddRange(["--cpumask", mask]);
        args.AddRange(["--device-set", "hdd0", "--size", Prlctl.Mib(r.DiskSpace)]);
        args.AddRange(["--hostname", OciSpec.ValidateHostname(options.Hostname ?? options.Name.Value)]);
        foreach (var ip in options.IpAddresses ?? [])
            args.AddRange(["--ipadd", ValidateAddress(ip, nameof(options.IpAddresses))]);
        foreach (var ns in options.Nameservers ?? [])
            args.AddRange(["--nameserver", ValidateAddress(ns, nameof(options.Nameservers))]);
        args.AddRange(["--autostart", Prlctl.OnOff(options.Autostart)]);
        return args;
    }

    /// <summary>
    /// The <c>prlctl set</c> options of a change: <c>--memsize</c> (MiB), <c>--swap</c> (bytes), <c>--memguarantee</c>
    /// (percent; the node's VCMMD admits it, the SDK does not second-guess it), <c>--cpus</c>, <c>--cpulimit</c> (percent,
    /// 0 = unlimited), <c>--cpuunits</c>, <c>--cpumask</c> (<c>all</c> for an empty mask), <c>--device-set hdd0 --size</c>,
    /// <c>--hostname</c>, <c>--autostart</c>. Empty when nothing changes.
    /// </summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    /// <exception cref="UnsupportedOnHostException">A process limit, or <c>Cpus = 0</c> (no limit), which prlctl cannot express.</exception>
    public static IReadOnlyList<string> Set(ContainerSetOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var args = new List<string>();
        if (options.MemorySize is { } mem)
        {
            if (mem.Bytes < 16 * ByteSize.MiB)
                throw new ArgumentOutOfRangeException(nameof(options), mem, "MemorySize must be at least 16 MiB.");
            args.AddRange(["--memsize", Prlctl.Mib(mem)]);
        }
        if (options.Swap is { } swap)
        {
            if (swap.Bytes < 0)
                throw new ArgumentOutOfRangeException(nameof(options), swap, "Swap cannot be negative.");
            args.AddRange(["--swap", Prlctl.Num(swap.Bytes)]);
        }
        if (options.MemoryGuaranteePercent is { } g)
        {
            if (g is < 0 or > 100)
                throw new ArgumentOutOfRangeException(nameof(options), g, "MemoryGuaranteePercent is a percentage between 0 and 100.");
            args.AddRange(["--memguarantee", Prlctl.Num(g)]);
        }
        if (options.Cpus is { } cpus)
        {
            if (cpus == 0)
                throw new UnsupportedOnHostException("Removing a container's CPU count limit (Cpus = 0) is not supported by the Virtuozzo runtime; set a number of CPUs.");
            if (cpus is < 1 or > 4096)
                throw new ArgumentOutOfRangeException(nameof(options), cpus, "Cpus must be between 1 and 4096 (0 removes the limit).");
            args.AddRange(["--cpus", Prlctl.Num(cpus)]);
        }
        if (options.CpuLimitPercent is { } limit)
        {
            if (limit is < 0 or > 409600)
                throw new ArgumentOutOfRangeException(nameof(options), limit, "CpuLimitPercent is a percentage of one CPU (0 removes the limit).");
            args.AddRange(["--cpulimit", Prlctl.Num(limit)]);
        }
        if (options.CpuUnits is { } units)
        {
            if (units is < 8 or > 500000)
                throw new ArgumentOutOfRangeException(nameof(options), units, "CpuUnits must be between 8 and 500000.");
            args.AddRange(["--cpuunits", Prlctl.Num(units)]);
        }
        if (options.CpuMask is { } mask)
            args.AddRange(["--cpumask", mask.Length == 0 ? "all" : OciSpec.ValidateCpuMask(mask)]);
        if (options.DiskSpace is { } disk)
        {
            if (disk.Bytes < 64 * ByteSize.MiB)
                throw new ArgumentOutOfRangeException(nameof(options), disk, "DiskSpace must be at least 64 MiB.");
            args.AddRange(["--device-set", "hdd0", "--size", Prlctl.Mib(disk)]);
        }
        if (options.MaxProcesses is not null)
            throw MaxProcessesUnsupported();
        if (options.Hostname is { } h)
            args.AddRange(["--hostname", OciSpec.ValidateHostname(h)]);
        if (options.Autostart is { } a)
            args.AddRange(["--autostart", Prlctl.OnOff(a)]);
        return args;
    }

    private static UnsupportedOnHostException MaxProcessesUnsupported()
        => new("A container process limit (MaxProcesses) is not supported by the Virtuozzo runtime: prlctl has no option for it; leave it at its default.");

    private static string ValidateAddress(string address, string param)
        => IPAddress.TryParse(address?.Split('/')[0], out _) ? address! : throw new ArgumentException($"'{address}' is not an IP address.", param);
}
