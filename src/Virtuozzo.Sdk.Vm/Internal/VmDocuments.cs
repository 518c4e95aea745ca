using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Vm.Internal;

/// <summary>A disk in the persisted config; <see cref="File"/> is relative to the VM's private directory.</summary>
internal sealed record VmDiskConfig(string Name, string File, long SizeBytes);

/// <summary>A snapshot in the persisted config (its data lives in the disks' internal snapshots).</summary>
internal sealed record VmSnapshotConfig(Guid Id, string Name, string? Description, DateTimeOffset CreatedAt, Guid? ParentId, bool IncludesMemory);

/// <summary><c>private/&lt;uuid&gt;/vm.json</c>: the VM's persisted configuration.</summary>
internal sealed record VmConfig : IVersionedDocument
{
    public const int CurrentFormatVersion = 1;
    public const string FileName = "vm.json";

    public int FormatVersion { get; init; } = CurrentFormatVersion;

    public required Guid Id { get; init; }

    public required string Name { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required int Cpus { get; init; }

    public required int MaxCpus { get; init; }

    public required long MemoryBytes { get; init; }

    public required int MemoryGuaranteePercent { get; init; }

    public bool MemoryHotplug { get; init; }

    public long MaxMemoryBytes { get; init; }

    public int MemorySlots { get; init; }

    public List<VmDiskConfig> Disks { get; init; } = [];

    public string? CdromImagePath { get; init; }

    public string? KernelPath { get; init; }

    public string? InitrdPath { get; init; }

    public string? KernelCommandLine { get; init; }

    public VmNetworkMode Network { get; init; }

    public string? MacAddress { get; init; }

    public List<VmBootDevice> BootOrder { get; init; } = [];

    public string? CpuMask { get; init; }

    public int? CpuLimitPercent { get; init; }

    public VmAcceleration Acceleration { get; init; }

    /// <summary>The saved-state file a suspended VM resumes from (relative to the private directory), or null.</summary>
    public string? SuspendedStateFile { get; init; }

    /// <summary>What the suspended VM's emulator had (hotplugged memory and vCPUs): a resume must recreate it.</summary>
    public VmSuspendedHardware? SuspendedHardware { get; init; }

    public List<VmSnapshotConfig> Snapshots { get; init; } = [];

    public Guid? CurrentSnapshotId { get; init; }

    /// <summary>
    /// Disks whose change tracking was reset outside a backup (disk name → why: a snapshot switch, a resize, a restore…),
    /// so that the next backup can say why it is full. Cleared by that backup.
    /// </summary>
    public Dictionary<string, string>? TrackingResets { get; init; }
}

/// <summary>The live hardware of a VM when it was suspended.</summary>
internal sealed record VmSuspendedHardware(long BaseMemoryBytes, List<VmDimm> Dimms, int Cpus, long TargetMemoryBytes, List<VmHotplugCpu>? HotplugCpus = null, int BootCpus = 0);

/// <summary>A vCPU hotplugged into a running VM: its device id, driver and topology properties.</summary>
internal sealed record VmHotplugCpu(string Id, string Driver, Dictionary<string, long> Properties);

/// <summary>A hotplugged DIMM of a running VM.</summary>
internal sealed record VmDimm(string Id, long SizeBytes);

/// <summary><c>run/&lt;uuid&gt;/runtime.json</c>: what a running VM's process is and what was changed live.</summary>
internal sealed record VmRuntime : IVersionedDocument
{
    public const int CurrentFormatVersion = 1;
    public const string FileName = "runtime.json";

    public int FormatVersion { get; init; } = CurrentFormatVersion;

    public required int Pid { get; init; }

    /// <summary>The process start time (/proc/PID/stat field 22), so that a reused pid is never taken for the VM.</summary>
    public required long ProcessStartTime { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    /// <summary>The boot-time memory (<c>-m</c>).</summary>
    public required long BaseMemoryBytes { get; init; }

    public List<VmDimm> Dimms { get; init; } = [];

    /// <summary>The balloon target last set (the memory the guest is given).</summary>
    public long TargetMemoryBytes { get; init; }

    public int Cpus { get; init; }

    /// <summary>The vCPUs the emulator booted with (the rest were hotplugged).</summary>
    public int BootCpus { get; init; }

    public List<VmHotplugCpu> HotplugCpus { get; init; } = [];

    public bool Software { get; init; }

    /// <summary>The tap device of bridged networking, or null.</summary>
    public string? TapDevice { get; init; }

    /// <summary>True when the process was put in the VE's cgroup.</summary>
    public bool InCgroup { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(VmConfig))]
[JsonSerializable(typeof(VmRuntime))]
internal sealed partial class VmJsonContext : JsonSerializerContext;
