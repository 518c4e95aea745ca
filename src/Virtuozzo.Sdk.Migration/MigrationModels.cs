using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Migration;

/// <summary>How a VE moves.</summary>
public enum MigrationMode
{
    /// <summary>
    /// Live when possible. A container whose processes cannot travel (CRIU not usable on either host) moves by a restart
    /// instead, reported in <see cref="MigrationResult.Mode"/> and <see cref="MigrationResult.Reason"/>, unless
    /// <see cref="MigrationOptions.RequireLive"/> is set. A stopped VM moves offline (it is not stopped by the migration,
    /// so <see cref="MigrationOptions.RequireLive"/> does not forbid that).
    /// </summary>
    Auto,

    /// <summary>Live: the VE keeps running and is paused only for the switch-over (the downtime).</summary>
    Online,

    /// <summary>
    /// Not live. A container is stopped on the source and started on the destination (a restart migration); its disk is
    /// still copied while it runs, so it is stopped only for the last changes. A VM must be stopped already: its disk
    /// images (with their internal snapshots) and configuration move, and it is registered on the destination, stopped.
    /// <see cref="Auto"/> chooses this for a stopped VM.
    /// </summary>
    Offline,
}

/// <summary>Where a migration is.</summary>
public enum MigrationPhase
{
    /// <summary>The destination checks the VE (name, UUID, CPU model, memory guarantee) and prepares to receive it.</summary>
    Preparing,

    /// <summary>The disks are copied while the VE runs; what it writes meanwhile is copied too.</summary>
    CopyingDisks,

    /// <summary>The memory is copied while the VE runs (pre-copy), again and again for what it dirties.</summary>
    CopyingMemory,

    /// <summary>The VE runs on the destination and fetches the rest of its memory from the source (post-copy).</summary>
    PostCopy,

    /// <summary>The VE is paused on the source while the last of its state moves (the downtime).</summary>
    Switching,

    /// <summary>The VE runs on the destination; the source's copy is removed.</summary>
    CleaningUp,
}

/// <summary>A migration's progress.</summary>
/// <param name="Phase">Where the migration is.</param>
/// <param name="BytesTransferred">Bytes sent in this phase so far.</param>
/// <param name="BytesRemaining">Bytes this phase still has to send, as far as is known (memory that is dirtied again is sent again).</param>
/// <param name="DirtyBytesPerSecond">How fast the VE dirties its memory (pre-copy), when known.</param>
/// <param name="ExpectedDowntime">The downtime the switch-over would cost if it happened now, when known.</param>
public readonly record struct MigrationProgress(MigrationPhase Phase, long BytesTransferred, long BytesRemaining, long? DirtyBytesPerSecond = null, TimeSpan? ExpectedDowntime = null);

/// <summary>Options of <see cref="MigrationClient.MigrateAsync"/>.</summary>
public sealed record MigrationOptions
{
    /// <summary>The default downtime limit: 300 ms, QEMU's own default.</summary>
    public static readonly TimeSpan DefaultDowntimeLimit = TimeSpan.FromMilliseconds(300);

    /// <summary>How the VE moves; <see cref="MigrationMode.Auto"/> by default.</summary>
    public MigrationMode Mode { get; init; } = MigrationMode.Auto;

    /// <summary>
    /// Fail rather than fall back to a migration that stops the VE (as <c>vzmigrate --require-realtime</c> does).
    /// </summary>
    public bool RequireLive { get; init; }

    /// <summary>Leave the VE, stopped, on the source after it runs on the destination (by default it is deleted there).</summary>
    public bool KeepSource { get; init; }

    /// <summary>The longest pause the switch-over may cost; pre-copy continues until the rest fits in it. 300 ms by default.</summary>
    public TimeSpan DowntimeLimit { get; init; } = DefaultDowntimeLimit;

    /// <summary>Slow the VE's vCPUs down when its memory is dirtied faster than it can be sent (on by default).</summary>
    public bool AutoConverge { get; init; } = true;

    /// <summary>
    /// Switch to post-copy when pre-copy has sent the memory once and still not converged: the VE then runs on the
    /// destination and fetches the pages it lacks. Off by default: from that moment a failure of either host or of the
    /// network loses the VE.
    /// </summary>
    public bool PostCopy { get; init; }

    /// <summary>
    /// A limit on the bandwidth the memory copy uses, or null for the emulator's default (128 MiB/s). An offline VM
    /// migration sends its disk images at most this fast (null: as fast as the network allows).
    /// </summary>
    public ByteSize? MaxBandwidthPerSecond { get; init; }

    internal void Validate()
    {
        if (DowntimeLimit <= TimeSpan.Zero || DowntimeLimit > TimeSpan.FromSeconds(2000))
            throw new ArgumentOutOfRangeException(nameof(DowntimeLimit), DowntimeLimit, "The downtime limit must be more than zero and at most 2000 s.");
        if (MaxBandwidthPerSecond is { Bytes: <= 0 } bw)
            throw new ArgumentOutOfRangeException(nameof(MaxBandwidthPerSecond), bw, "The bandwidth limit must be positive.");
        if (!Enum.IsDefined(Mode))
            throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "Unknown migration mode.");
        if (Mode == MigrationMode.Offline && RequireLive)
            throw new ArgumentException("Mode = Offline and RequireLive exclude each other.", nameof(RequireLive));
    }
}

/// <summary>What a migration did and measured.</summary>
/// <param name="Id">The VE's UUID (unchanged by the migration).</param>
/// <param name="Name">The VE's name (unchanged).</param>
/// <param name="Kind">Container or VM.</param>
/// <param name="Mode">How it moved.</param>
/// <param name="Reason">Why that mode was used.</param>
/// <param name="Downtime">
/// How long the VE did not run: for a VM the pause at the switch-over, as the emulator measured it (zero for a stopped VM
/// migrated offline: it was not running); for a container the time from the freeze (or stop) to running on the destination.
/// </param>
/// <param name="TotalTime">From the first check to the VE running on the destination.</param>
/// <param name="DiskBytes">Disk bytes copied (for a VM migrated offline, the size of its image files, snapshots included).</param>
/// <param name="MemoryBytes">Memory bytes sent (a VM's pages dirtied again are counted again; a container's CRIU images).</param>
/// <param name="PostCopyUsed">Whether the migration switched to post-copy.</param>
/// <remarks>
/// When the runtime cannot know the downtime and the byte counts (<see cref="TransferMeasured"/> false: the Virtuozzo
/// runtime, whose <c>prlctl migrate</c> reports neither), <see cref="Downtime"/>, <see cref="DiskBytes"/> and
/// <see cref="MemoryBytes"/> are zero and mean "unknown", not "none".
/// </remarks>
public sealed record MigrationResult(VeId Id, VeName Name, VeKind Kind, MigrationMode Mode, string Reason, TimeSpan Downtime, TimeSpan TotalTime, long DiskBytes, long MemoryBytes, bool PostCopyUsed)
{
    /// <summary>
    /// Whether <see cref="Downtime"/>, <see cref="DiskBytes"/> and <see cref="MemoryBytes"/> were measured. True on the
    /// local runtime; false on the Virtuozzo runtime (prlctl migrate prints no downtime or byte counts), where they are
    /// zero and unknown. <see cref="TotalTime"/> is always measured.
    /// </summary>
    public bool TransferMeasured { get; init; } = true;

    /// <summary>
    /// How many times the memory was copied while the VE still ran, before the switch-over: for a VM, QEMU's passes over
    /// its dirty pages (<c>dirty-sync-count</c>); for a container, CRIU's pre-dump rounds, which need the kernel's memory
    /// dirty tracking (<see cref="Containers.CheckpointSupport.MemoryDirtyTracking"/>; without it, 0: the memory goes in
    /// one dump while the container is frozen). 0 for an offline or restart migration, and on runtimes that do not report
    /// it.
    /// </summary>
    public int PreCopyRounds { get; init; }
}
