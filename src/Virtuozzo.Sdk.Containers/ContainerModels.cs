using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Containers;

/// <summary>The state of a container (as <c>prlctl list</c> reports it).</summary>
public enum ContainerState
{
    /// <summary>Not running; its disk is not mounted.</summary>
    Stopped,

    /// <summary>Running.</summary>
    Running,

    /// <summary>Frozen by <see cref="ContainerClient.SuspendAsync"/>; resumes where it stopped.</summary>
    Suspended,

    /// <summary>Not running, with its disk mounted on the host by <see cref="ContainerClient.MountAsync"/>.</summary>
    Mounted,
}

/// <summary>A container's resources; names as <c>prlctl set</c> uses them.</summary>
public sealed record ContainerResources
{
    /// <summary>Memory hard limit (<c>--memsize</c>). Default 512 MiB.</summary>
    public ByteSize MemSize { get; init; } = ByteSize.FromMiB(512);

    /// <summary>Swap the container may use beyond <see cref="MemSize"/> (<c>--swap</c>). Default 0.</summary>
    public ByteSize Swap { get; init; } = ByteSize.Zero;

    /// <summary>Memory guaranteed while running, in percent of <see cref="MemSize"/> (<c>--memguarantee</c>). Containers default to 0.</summary>
    public int MemGuaranteePercent { get; init; }

    /// <summary>CPUs' worth of time the container may use (<c>--cpus</c>); null for all.</summary>
    public int? Cpus { get; init; }

    /// <summary>CPU limit in percent, 100 = one CPU (<c>--cpulimit</c>); null for none.</summary>
    public int? CpuLimit { get; init; }

    /// <summary>CPU weight relative to other VEs (<c>--cpuunits</c>). Default 1000.</summary>
    public int CpuUnits { get; init; } = 1000;

    /// <summary>CPUs the container may run on, such as <c>0-1,3</c> (<c>--cpumask</c>); null for all.</summary>
    public string? CpuMask { get; init; }

    /// <summary>Disk quota = the size of the container's disk (<c>--diskspace</c>; thin). Default 2 GiB.</summary>
    public ByteSize DiskSpace { get; init; } = ByteSize.FromGiB(2);

    /// <summary>The most processes the container may have. Default 4096.</summary>
    public long Pids { get; init; } = 4096;

    /// <summary>The guaranteed memory in bytes.</summary>
    public long GuaranteeBytes => MemSize.Bytes / 100 * MemGuaranteePercent + MemSize.Bytes % 100 * MemGuaranteePercent / 100;
}

/// <summary>Options of <see cref="ContainerClient.CreateAsync"/>.</summary>
public sealed record ContainerCreateOptions
{
    /// <summary>The container's unique name.</summary>
    public required VeName Name { get; init; }

    /// <summary>The OS template (see <see cref="ContainerClient.ListTemplatesAsync"/>). Default <c>busybox</c>.</summary>
    public string Template { get; init; } = ContainerClient.BusyboxTemplate;

    /// <summary>Resources.</summary>
    public ContainerResources Resources { get; init; } = new();

    /// <summary>Host name inside the container; default its name.</summary>
    public string? Hostname { get; init; }

    /// <summary>Addresses with prefix (<c>10.209.0.2/24</c>) on <c>eth0</c>, attached to the host bridge; empty for loopback only.</summary>
    public IReadOnlyList<string> IpAddresses { get; init; } = [];

    /// <summary>DNS servers written to the container's <c>/etc/resolv.conf</c>.</summary>
    public IReadOnlyList<string> Nameservers { get; init; } = [];

    /// <summary>Start the container when <c>vzsdk host autostart</c> runs at boot.</summary>
    public bool Autostart { get; init; }
}

/// <summary>Changes applied by <see cref="ContainerClient.SetAsync"/>; null leaves a setting as it is.</summary>
public sealed record ContainerSetOptions
{
    /// <summary>New memory limit (live).</summary>
    public ByteSize? MemSize { get; init; }

    /// <summary>New swap (live).</summary>
    public ByteSize? Swap { get; init; }

    /// <summary>New guarantee in percent (admitted by the resource ledger while running).</summary>
    public int? MemGuaranteePercent { get; init; }

    /// <summary>New CPU count (live); 0 for all.</summary>
    public int? Cpus { get; init; }

    /// <summary>New CPU limit in percent (live); 0 for none.</summary>
    public int? CpuLimit { get; init; }

    /// <summary>New CPU weight (live).</summary>
    public int? CpuUnits { get; init; }

    /// <summary>New CPU mask (live); empty for all.</summary>
    public string? CpuMask { get; init; }

    /// <summary>New disk size: growing works online; shrinking is refused.</summary>
    public ByteSize? DiskSpace { get; init; }

    /// <summary>New process limit (live).</summary>
    public long? Pids { get; init; }

    /// <summary>New host name (applies at next start).</summary>
    public string? Hostname { get; init; }

    /// <summary>Autostart on or off.</summary>
    public bool? Autostart { get; init; }
}

/// <summary>A container as the SDK knows it.</summary>
/// <param name="Id">Its UUID.</param>
/// <param name="Name">Its name.</param>
/// <param name="State">Its state now.</param>
/// <param name="Template">The OS template it was created from.</param>
/// <param name="Hostname">Its host name.</param>
/// <param name="IpAddresses">Its addresses.</param>
/// <param name="Resources">Its configured resources.</param>
/// <param name="Autostart">Whether it starts at boot.</param>
/// <param name="CreatedAt">When it was created.</param>
public sealed record ContainerInfo(
    VeId Id, VeName Name, ContainerState State, string Template, string Hostname,
    IReadOnlyList<string> IpAddresses, ContainerResources Resources, bool Autostart, DateTimeOffset CreatedAt);

/// <summary>Options of <see cref="ContainerClient.StopAsync"/>.</summary>
public sealed record ContainerStopOptions
{
    /// <summary>Kill at once instead of asking the init process to stop.</summary>
    public bool Kill { get; init; }

    /// <summary>How long to wait after the stop signal before killing. Default 10 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>A command to run inside a container (<see cref="ContainerClient.ExecAsync"/>).</summary>
public sealed record ContainerExecOptions
{
    /// <summary>The argument vector; the first element is the program. Run as is, no shell.</summary>
    public required IReadOnlyList<string> Arguments { get; init; }

    /// <summary>Extra environment variables.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>The working directory inside the container. Default <c>/</c>.</summary>
    public string WorkingDirectory { get; init; } = "/";

    /// <summary>Standard input; null for none.</summary>
    public Stream? StandardInput { get; init; }

    /// <summary>Where standard output goes as it is produced; null to buffer it into the result.</summary>
    public Stream? StandardOutput { get; init; }

    /// <summary>Where standard error goes as it is produced; null to buffer it into the result.</summary>
    public Stream? StandardError { get; init; }

    /// <summary>Kill the command after this long; null for no limit.</summary>
    public TimeSpan? Timeout { get; init; }
}

/// <summary>The outcome of a command run in a container.</summary>
/// <param name="ExitCode">Its exit code (126 not executable, 127 not found, as shells report).</param>
/// <param name="StandardOutput">Buffered standard output (empty when it was streamed).</param>
/// <param name="StandardError">Buffered standard error (empty when it was streamed).</param>
public sealed record ContainerExecResult(int ExitCode, string StandardOutput, string StandardError);

/// <summary>An OS template: a root file system tarball and its manifest.</summary>
/// <param name="Name">The template's name (<c>busybox</c>, <c>debian-12</c>…).</param>
/// <param name="Init">The init command the container runs.</param>
/// <param name="StopSignal">The signal that stops the init cleanly.</param>
/// <param name="SizeBytes">The tarball's size.</param>
public sealed record ContainerTemplate(string Name, IReadOnlyList<string> Init, string StopSignal, long SizeBytes);

/// <summary>Options of <see cref="ContainerClient.ImportTemplateAsync"/>.</summary>
public sealed record ContainerTemplateImportOptions
{
    /// <summary>The template's name.</summary>
    public required string Name { get; init; }

    /// <summary>A root file system tarball (gzip, xz or plain tar).</summary>
    public required string TarballPath { get; init; }

    /// <summary>The init command. Default <c>/sbin/init</c>.</summary>
    public IReadOnlyList<string> Init { get; init; } = ["/sbin/init"];

    /// <summary>The signal that stops the init cleanly. Default <c>SIGTERM</c> (systemd wants <c>SIGRTMIN+3</c>).</summary>
    public string StopSignal { get; init; } = "SIGTERM";
}
