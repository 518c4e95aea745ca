using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Vm.Runtime;

// The VM side of live migration, between the source runtime's VM driver and the destination's. The Migration package
// orchestrates; the destination is reached through an IVmMigrationPeer (another runtime in this process, or the SDK on a
// remote host). Everything the destination needs travels in these records, as JSON where the peer is remote.

/// <summary>What the source tells the destination about a running VM it is about to send.</summary>
/// <param name="ConfigJson">The VM's configuration document (the source's, unchanged: same UUID, name and hardware).</param>
/// <param name="Hardware">What the running emulator has beyond the config (hotplugged memory and vCPUs): the destination must match it.</param>
/// <param name="Software">Whether the source emulates the CPU (the destination must do the same: the CPU models must agree).</param>
/// <param name="MemoryBytes">The VM's memory size.</param>
/// <param name="GuaranteeBytes">The memory the destination must guarantee, admitted before anything moves.</param>
/// <param name="PostCopy">Whether post-copy may be used (both ends must enable it before the migration starts).</param>
internal sealed record VmMigrationOffer(string ConfigJson, VmMigrationHardware Hardware, bool Software, long MemoryBytes, long GuaranteeBytes, bool PostCopy);

/// <summary>The running emulator's hardware, as the destination must recreate it.</summary>
internal sealed record VmMigrationHardware(long BaseMemoryBytes, List<Internal.VmDimm> Dimms, int Cpus, long TargetMemoryBytes, List<Internal.VmHotplugCpu> HotplugCpus, int BootCpus);

/// <summary>Where the destination waits: the emulator's migration address and the NBD server that receives the disks.</summary>
/// <param name="MigrationUri">The address the source's emulator sends its state to (<c>tcp:HOST:PORT</c>).</param>
/// <param name="NbdHost">The NBD server's address.</param>
/// <param name="NbdPort">The NBD server's port.</param>
/// <param name="Exports">The export name of each disk (disk name → export).</param>
internal sealed record VmIncomingEndpoint(string MigrationUri, string NbdHost, int NbdPort, Dictionary<string, string> Exports);

/// <summary>How the source drives the emulator's migration.</summary>
internal sealed record VmMigrationSettings
{
    public TimeSpan DowntimeLimit { get; init; } = TimeSpan.FromMilliseconds(300);

    public bool AutoConverge { get; init; } = true;

    public bool PostCopy { get; init; }

    public long? MaxBandwidthBytesPerSecond { get; init; }

    /// <summary>Leave the VM (stopped) on the source after a successful migration instead of deleting it.</summary>
    public bool KeepSource { get; init; }
}

/// <summary>One progress sample of a VM migration.</summary>
internal readonly record struct VmMigrationSample(string Phase, long Transferred, long Remaining, long? DirtyBytesPerSecond, TimeSpan? ExpectedDowntime);

/// <summary>What a finished VM migration measured.</summary>
internal sealed record VmMigrationOutcome(VeId Id, VeName Name, TimeSpan Downtime, TimeSpan TotalTime, long DiskBytes, long MemoryBytes, bool PostCopyUsed, int PreCopyRounds = 0);

/// <summary>The destination of a VM migration, as the source's driver sees it.</summary>
internal interface IVmMigrationPeer
{
    /// <summary>
    /// Checks the offer (name and UUID free, CPU model, memory guarantee admitted), creates the VM's empty disks and
    /// starts its emulator waiting for the migration. Nothing moves before this returns; a refusal leaves nothing behind.
    /// </summary>
    Task<VmIncomingEndpoint> PrepareAsync(VmMigrationOffer offer, CancellationToken cancellationToken);

    /// <summary>The state and disks have arrived: stop receiving disks and run the VM.</summary>
    Task CompleteAsync(VeId id, CancellationToken cancellationToken);

    /// <summary>Gives up: kills the waiting emulator and removes everything <see cref="PrepareAsync"/> made.</summary>
    Task AbortAsync(VeId id, CancellationToken cancellationToken);
}

/// <summary>What the source tells the destination about a stopped VM it is about to send (an offline migration).</summary>
/// <param name="ConfigJson">The VM's configuration document (same UUID, name, hardware and snapshots).</param>
/// <param name="DiskFiles">The size in bytes of each disk's image file (disk name → bytes), sent in the config's disk order.</param>
/// <param name="GuaranteeBytes">The memory the destination must be able to guarantee, checked before anything moves.</param>
internal sealed record VmOfflineOffer(string ConfigJson, Dictionary<string, long> DiskFiles, long GuaranteeBytes);

/// <summary>Where the destination receives a stopped VM's disk images: one TCP connection that opens with the token.</summary>
/// <param name="Host">The address the destination listens on.</param>
/// <param name="Port">Its port.</param>
/// <param name="Token">A one-off secret (hex) the source sends first, so that no other client can write the VM's disks.</param>
internal sealed record VmOfflineEndpoint(string Host, int Port, string Token);

/// <summary>The destination of an offline VM migration, as the source's driver sees it (<see cref="IVmMigrationPeer.AbortAsync"/> gives up).</summary>
internal interface IVmOfflineMigrationPeer : IVmMigrationPeer
{
    /// <summary>
    /// Checks the offer (name and UUID free, files the VM boots from present, memory guarantee and disk space available),
    /// registers the VM as being received and starts listening for its disk images. A refusal leaves nothing behind.
    /// </summary>
    Task<VmOfflineEndpoint> PrepareOfflineAsync(VmOfflineOffer offer, CancellationToken cancellationToken);

    /// <summary>The images have been sent: the destination checks them and registers the VM, stopped.</summary>
    Task CompleteOfflineAsync(VeId id, CancellationToken cancellationToken);
}
