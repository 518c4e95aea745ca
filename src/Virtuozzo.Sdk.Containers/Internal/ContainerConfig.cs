using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Containers.Internal;

/// <summary>A container's persisted configuration (<c>private/&lt;uuid&gt;/container.json</c>).</summary>
internal sealed record ContainerConfig : IVersionedDocument
{
    public const int CurrentVersion = 1;

    public int FormatVersion { get; init; } = CurrentVersion;

    public required string Template { get; init; }

    public required string Hostname { get; init; }

    public long MemSizeBytes { get; init; }

    public long SwapBytes { get; init; }

    public int MemGuaranteePercent { get; init; }

    public int? Cpus { get; init; }

    public int? CpuLimit { get; init; }

    public int CpuUnits { get; init; } = 1000;

    public string? CpuMask { get; init; }

    public long DiskSpaceBytes { get; init; }

    public long Pids { get; init; }

    public List<string> IpAddresses { get; init; } = [];

    public List<string> Nameservers { get; init; } = [];

    public bool Autostart { get; init; }

    public required List<string> Init { get; init; }

    public required string StopSignal { get; init; }

    /// <summary>
    /// The first host id of the container's user namespace (its root), or null for a privileged container whose root is
    /// the host's root. Configurations written before user namespaces have none: those containers stay privileged.
    /// </summary>
    public long? UserIdStart { get; init; }

    /// <summary>The system-call filter: <see cref="DefaultFilter"/> or <see cref="UnconfinedFilter"/>.</summary>
    public string SyscallFilter { get; init; } = DefaultFilter;

    /// <summary>Calls allowed beyond the default filter's list.</summary>
    public List<string> AllowedSyscalls { get; init; } = [];

    /// <summary>
    /// True when the container's init is systemd: it runs with the capabilities systemd needs (inside its user namespace
    /// only), a delegated cgroup subtree, tmpfs on /run, /run/lock and /tmp, and its start waits for the boot to finish.
    /// </summary>
    public bool Systemd { get; init; }

    public const string DefaultFilter = "default";

    public const string UnconfinedFilter = "unconfined";

    /// <summary>The container's snapshots (internal snapshots of its disk, with CRIU images when taken running).</summary>
    public List<ContainerSnapshotConfig> Snapshots { get; init; } = [];

    /// <summary>The snapshot the container's state descends from, or null.</summary>
    public Guid? CurrentSnapshotId { get; init; }

    public ContainerResources ToResources() => new()
    {
        MemorySize = new ByteSize(MemSizeBytes),
        Swap = new ByteSize(SwapBytes),
        MemoryGuaranteePercent = MemGuaranteePercent,
        Cpus = Cpus,
        CpuLimitPercent = CpuLimit,
        CpuUnits = CpuUnits,
        CpuMask = CpuMask,
        DiskSpace = new ByteSize(DiskSpaceBytes),
        MaxProcesses = Pids,
    };

    /// <summary>The effective CPU limit in percent: the lower of cpulimit and cpus × 100.</summary>
    [JsonIgnore]
    public int? EffectiveCpuPercent => (CpuLimit, Cpus) switch
    {
        (null, null) => null,
        ({ } l, null) => l,
        (null, { } c) => c * 100,
        ({ } l, { } c) => Math.Min(l, c * 100),
    };
}

/// <summary>One snapshot of a container: the disk's internal snapshot <c>vzsdk-&lt;id&gt;</c>, and when <paramref name="IncludesMemory"/> CRIU images in <c>snapshots/&lt;id&gt;/</c>.</summary>
internal sealed record ContainerSnapshotConfig(Guid Id, string Name, string? Description, DateTimeOffset CreatedAt, Guid? ParentId, bool IncludesMemory);

/// <summary>A template's manifest (<c>templates/&lt;name&gt;.json</c>).</summary>
internal sealed record TemplateManifest(int FormatVersion, string Name, List<string> Init, string StopSignal) : IVersionedDocument
{
    /// <summary>How the template was made: null for an imported tarball, else the suite and packages it was built from.</summary>
    public TemplateRecipe? Recipe { get; init; }
}

/// <summary>What a template built from a distribution's packages was made of (for <c>template update</c>).</summary>
internal sealed record TemplateRecipe(string Distribution, string Suite, string Mirror, List<string> Packages, DateTimeOffset BuiltAt);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(ContainerConfig))]
[JsonSerializable(typeof(TemplateManifest))]
[JsonSerializable(typeof(TemplateRecipe))]
internal sealed partial class ContainersJson : JsonSerializerContext;
