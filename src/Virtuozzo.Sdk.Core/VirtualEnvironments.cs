namespace Virtuozzo.Sdk.Core;

/// <summary>What kind of virtual environment.</summary>
public enum VeKind
{
    /// <summary>A system container.</summary>
    Container,

    /// <summary>A virtual machine.</summary>
    Vm,
}

/// <summary>The state of a virtual environment, for containers and VMs alike (as <c>prlctl list</c> reports it).</summary>
public enum VeState
{
    /// <summary>Not running.</summary>
    Stopped,

    /// <summary>Running.</summary>
    Running,

    /// <summary>A VM whose vCPUs are paused; its memory stays allocated.</summary>
    Paused,

    /// <summary>
    /// Suspended: a container's processes are frozen (memory stays in RAM); a VM's memory and device state are saved
    /// to a file and the next start resumes from it.
    /// </summary>
    Suspended,

    /// <summary>A container that is not running, with its disk mounted on the host.</summary>
    Mounted,

    /// <summary>Being started, stopped, suspended or migrated by another operation right now.</summary>
    Busy,
}

/// <summary>How a stop ended a VE.</summary>
public enum VeStopMethod
{
    /// <summary>The VE was not running.</summary>
    AlreadyStopped,

    /// <summary>A container's init exited after its stop signal.</summary>
    Signal,

    /// <summary>A VM's guest powered off after a request through the guest tools.</summary>
    GuestTools,

    /// <summary>A VM's guest powered off after an ACPI power-button press.</summary>
    Acpi,

    /// <summary>The VE did not stop in time (or <see cref="VeStopOptions.Kill"/> was set) and was killed.</summary>
    Killed,
}

/// <summary>
/// Names one VE: by name or by UUID. Converts implicitly from a <see cref="string"/> (a name, or a UUID with or without
/// braces), a <see cref="VeId"/> and a <see cref="VeName"/>, so every method that acts on a VE accepts all three.
/// </summary>
public readonly struct VeRef : IEquatable<VeRef>
{
    private readonly string? _text;

    /// <summary>Names a VE by a name or a UUID given as text.</summary>
    public VeRef(string? nameOrId) => _text = nameOrId;

    /// <summary>Names a VE by its UUID.</summary>
    public VeRef(VeId id) => _text = id.ToString();

    /// <summary>Names a VE by its name.</summary>
    public VeRef(VeName name) => _text = name.Value;

    /// <summary>The name or UUID as given.</summary>
    public string Value => string.IsNullOrWhiteSpace(_text)
        ? throw new ArgumentException("A VE must be named by its name or UUID; the value is empty.")
        : _text.Trim();

    /// <summary>True when no name or UUID was given.</summary>
    public bool IsEmpty => string.IsNullOrWhiteSpace(_text);

    /// <summary>Names a VE by a name or a UUID.</summary>
    public static implicit operator VeRef(string? nameOrId) => new(nameOrId);

    /// <summary>Names a VE by its UUID.</summary>
    public static implicit operator VeRef(VeId id) => new(id);

    /// <summary>Names a VE by its name.</summary>
    public static implicit operator VeRef(VeName name) => new(name);

    /// <summary>Names a VE by a name or a UUID.</summary>
    public static VeRef FromString(string? nameOrId) => new(nameOrId);

    /// <inheritdoc/>
    public bool Equals(VeRef other) => string.Equals(_text?.Trim(), other._text?.Trim(), StringComparison.Ordinal);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is VeRef other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => _text?.Trim().GetHashCode(StringComparison.Ordinal) ?? 0;

    /// <summary>Compares two references by their text.</summary>
    public static bool operator ==(VeRef left, VeRef right) => left.Equals(right);

    /// <summary>Compares two references by their text.</summary>
    public static bool operator !=(VeRef left, VeRef right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => _text ?? string.Empty;
}

/// <summary>
/// A virtual environment (container or VM) as every client sees it: identity, state and the resources both kinds
/// have. <see cref="VirtualEnvironmentClient"/> returns the kind's own record (<c>ContainerInfo</c>, <c>VmInfo</c>),
/// which derives from this one and adds the kind's details.
/// </summary>
public record VeInfo
{
    /// <summary>The VE's UUID.</summary>
    public required VeId Id { get; init; }

    /// <summary>The VE's name, unique across containers and VMs on the host.</summary>
    public required VeName Name { get; init; }

    /// <summary>Container or VM.</summary>
    public required VeKind Kind { get; init; }

    /// <summary>The current state.</summary>
    public required VeState State { get; init; }

    /// <summary>CPUs (a VM's vCPUs; a container's CPUs' worth of time, null for all).</summary>
    public int? Cpus { get; init; }

    /// <summary>CPU bandwidth limit in percent of one host CPU (200 = two CPUs); null for none.</summary>
    public int? CpuLimitPercent { get; init; }

    /// <summary>Host CPUs the VE may run on, in the kernel's list format (<c>0-1,3</c>); null for all.</summary>
    public string? CpuMask { get; init; }

    /// <summary>Memory size (a container's hard limit; a VM's RAM).</summary>
    public required ByteSize MemorySize { get; init; }

    /// <summary>The memory guarantee in percent of <see cref="MemorySize"/>.</summary>
    public int MemoryGuaranteePercent { get; init; }

    /// <summary>The total virtual size of the VE's disks.</summary>
    public ByteSize DiskSize { get; init; }

    /// <summary>The host name the VE is configured with, or null when the SDK does not set it (VMs).</summary>
    public string? Hostname { get; init; }

    /// <summary>Addresses configured on the VE's network (with prefix length), as <c>prlctl list</c>'s <c>ip_configured</c>.</summary>
    public IReadOnlyList<string> IpAddresses { get; init; } = [];

    /// <summary>True when the VE starts with the host.</summary>
    public bool Autostart { get; init; }

    /// <summary>When the VE was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>True when the VE runs (or is paused or frozen in memory).</summary>
    public bool IsRunning => State is VeState.Running or VeState.Paused || (Kind == VeKind.Container && State == VeState.Suspended);
}

/// <summary>Options of a stop, for containers and VMs alike.</summary>
/// <remarks>The equivalent of <c>prlctl stop NAME [--kill]</c>.</remarks>
public sealed record VeStopOptions
{
    /// <summary>Kill the VE at once instead of asking it to stop.</summary>
    public bool Kill { get; init; }

    /// <summary>
    /// How long to wait for the VE to stop by itself before it is killed; null for the kind's default
    /// (<see cref="DefaultContainerTimeout"/> for a container, <see cref="DefaultVmTimeout"/> for a VM).
    /// </summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>A container's default wait for its init to exit after the stop signal: 10 s.</summary>
    public static readonly TimeSpan DefaultContainerTimeout = TimeSpan.FromSeconds(10);

    /// <summary>A VM's default wait for its guest to power off: 60 s.</summary>
    public static readonly TimeSpan DefaultVmTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for a negative timeout.</summary>
    public void Validate()
    {
        if (Timeout is { } t && t < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(Timeout), t, "The stop timeout cannot be negative.");
    }
}

/// <summary>Options of a program run inside a VE (a container's namespaces, or a VM's guest through its guest tools).</summary>
/// <remarks>The equivalent of <c>prlctl exec NAME CMD…</c>.</remarks>
public sealed record VeExecOptions
{
    /// <summary>The program and its arguments, run directly (no shell) unless <see cref="Shell"/> is set. Required.</summary>
    public required IReadOnlyList<string> Command { get; init; }

    /// <summary>Run <c>/bin/sh -c "&lt;arguments joined by spaces&gt;"</c> instead.</summary>
    public bool Shell { get; init; }

    /// <summary>Environment variables for the program.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>The working directory inside the VE (absolute); null for the VE's default (<c>/</c>).</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>The program's standard input; null for none.</summary>
    public Stream? StandardInput { get; init; }

    /// <summary>Where standard output goes as it is produced; null to collect it into <see cref="VeExecResult.StandardOutput"/>.</summary>
    public Stream? StandardOutput { get; init; }

    /// <summary>Where standard error goes as it is produced; null to collect it into <see cref="VeExecResult.StandardError"/>.</summary>
    public Stream? StandardError { get; init; }

    /// <summary>Kill the program after this long; null for the kind's default (no limit in a container, 5 minutes in a VM).</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>The argument vector to run: <see cref="Command"/>, or <c>/bin/sh -c</c> with it joined when <see cref="Shell"/> is set.</summary>
    public IReadOnlyList<string> EffectiveCommand => Shell ? ["/bin/sh", "-c", string.Join(' ', Command)] : Command;

    /// <summary>Throws <see cref="ArgumentException"/> when the options cannot describe a program run.</summary>
    public void Validate()
    {
        if (Command is null || Command.Count == 0 || string.IsNullOrEmpty(Command[0]))
            throw new ArgumentException("Exec needs a program to run.", nameof(Command));
        if (WorkingDirectory is not null && !WorkingDirectory.StartsWith('/'))
            throw new ArgumentException("The working directory must be an absolute path inside the VE.", nameof(WorkingDirectory));
        foreach (var k in Environment.Keys)
        {
            if (string.IsNullOrEmpty(k) || k.Contains('=', StringComparison.Ordinal) || k.Contains('\0', StringComparison.Ordinal))
                throw new ArgumentException($"'{k}' is not a valid environment variable name.", nameof(Environment));
        }
        if (Timeout is { } t && t <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(Timeout), t, "The exec timeout must be positive.");
    }
}

/// <summary>The outcome of a program run inside a VE.</summary>
/// <param name="ExitCode">The exit code (128 + signal when a signal ended it; 127 when the program was not found, 126 when it could not be executed).</param>
/// <param name="StandardOutput">What it wrote to standard output (UTF-8), or empty when <see cref="VeExecOptions.StandardOutput"/> received it.</param>
/// <param name="StandardError">What it wrote to standard error (UTF-8), or empty when <see cref="VeExecOptions.StandardError"/> received it.</param>
public sealed record VeExecResult(int ExitCode, string StandardOutput, string StandardError)
{
    /// <summary>True when the VE cut the output short (a VM's guest tools keep at most 16 MiB).</summary>
    public bool OutputTruncated { get; init; }
}

/// <summary>What a VE uses right now.</summary>
/// <param name="Id">The VE.</param>
/// <param name="Kind">Container or VM.</param>
/// <param name="State">Its state when measured.</param>
/// <param name="CpuTime">CPU time used since it started (zero when it is not running).</param>
/// <param name="MemoryUsedBytes">Memory in use (a container's cgroup usage; a VM's guest memory in use when its balloon reports it, otherwise the emulator's resident memory); null when not running.</param>
/// <param name="DiskAllocatedBytes">Bytes its disks occupy on the host.</param>
/// <param name="DiskSizeBytes">The virtual size of its disks.</param>
/// <param name="NetworkReceivedBytes">Bytes received on its network interface since it started (0 without one).</param>
/// <param name="NetworkSentBytes">Bytes sent on its network interface since it started (0 without one).</param>
/// <param name="Timestamp">When the figures were read.</param>
public sealed record VeUsage(VeId Id, VeKind Kind, VeState State, TimeSpan CpuTime, long? MemoryUsedBytes, long DiskAllocatedBytes, long DiskSizeBytes,
    long NetworkReceivedBytes, long NetworkSentBytes, DateTimeOffset Timestamp);

/// <summary>What happened to a VE.</summary>
public enum VeEventType
{
    /// <summary>A VE appeared (created, restored or cloned).</summary>
    Created,

    /// <summary>A VE was deleted.</summary>
    Deleted,

    /// <summary>A VE's state changed.</summary>
    StateChanged,

    /// <summary>A VE was renamed.</summary>
    Renamed,
}

/// <summary>A change to a VE, as <see cref="VirtualEnvironmentClient.WatchAsync"/> reports it.</summary>
/// <param name="Type">What happened.</param>
/// <param name="Id">The VE.</param>
/// <param name="Name">Its name (the new name after a rename).</param>
/// <param name="Kind">Container or VM.</param>
/// <param name="State">Its state after the change (its last state for <see cref="VeEventType.Deleted"/>).</param>
/// <param name="PreviousState">Its state before the change, or null for <see cref="VeEventType.Created"/>.</param>
/// <param name="Timestamp">When the change was seen.</param>
public sealed record VeEvent(VeEventType Type, VeId Id, VeName Name, VeKind Kind, VeState State, VeState? PreviousState, DateTimeOffset Timestamp);
