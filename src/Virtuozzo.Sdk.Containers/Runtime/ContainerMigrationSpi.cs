using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Containers.Runtime;

// The container side of migration, between the source runtime's container driver and the destination's, after
// P.Haul: the disk is mirrored to the destination while the container runs; then the container is frozen and dumped by
// CRIU (or, in a restart migration, stopped), the disk's last changes drain, the images travel, and the destination
// restores (or starts) it inside the same network identity.

/// <summary>What the source tells the destination about a container it is about to send.</summary>
/// <param name="Id">The container's UUID (kept).</param>
/// <param name="Name">The container's name (kept).</param>
/// <param name="ConfigJson">The container's configuration document (same addresses, resources, template).</param>
/// <param name="DiskVirtualSize">The virtual size of its disk.</param>
/// <param name="GuaranteeBytes">The memory the destination must guarantee, admitted before anything moves.</param>
/// <param name="Live">True when its processes travel (CRIU); false for a restart migration.</param>
internal sealed record ContainerMigrationOffer(Guid Id, string Name, string ConfigJson, long DiskVirtualSize, long GuaranteeBytes, bool Live);

/// <summary>
/// Where the destination receives: an NBD export of the new disk, a directory for the CRIU images, and one for the
/// pre-dumps (memory copied while the container still runs), where each round goes into a subdirectory named by its
/// number; the final images name the last round as their parent, relative to <see cref="ImageDirectory"/>, so the two
/// directories are siblings on both hosts. A destination that leaves <see cref="PreDumpDirectory"/> null (an agent of
/// an earlier version) receives one dump.
/// </summary>
internal sealed record ContainerIncomingEndpoint(string NbdHost, int NbdPort, string Export, string ImageDirectory, string? PreDumpDirectory = null);

/// <summary>One progress sample of a container migration.</summary>
internal readonly record struct ContainerMigrationSample(string Phase, long Transferred, long Remaining);

/// <summary>What a finished container migration measured (<paramref name="PreCopyRounds"/>: CRIU pre-dumps sent while it ran).</summary>
internal sealed record ContainerMigrationOutcome(VeId Id, VeName Name, bool Live, string Reason, TimeSpan Frozen, TimeSpan TotalTime, long DiskBytes, long ImageBytes, int PreCopyRounds = 0);

/// <summary>The destination of a container migration, as the source's driver sees it.</summary>
internal interface IContainerMigrationPeer
{
    /// <summary>Checks the offer (name, UUID and addresses free, guarantee admitted), creates the empty disk and exports it over NBD.</summary>
    Task<ContainerIncomingEndpoint> PrepareContainerAsync(ContainerMigrationOffer offer, CancellationToken cancellationToken);

    /// <summary>
    /// Copies the CRIU images in <paramref name="localDirectory"/> into the destination's <paramref name="remoteDirectory"/>
    /// (only its entry <paramref name="member"/>, with that name, when given); returns the bytes sent.
    /// </summary>
    Task<long> SendImagesAsync(string localDirectory, string remoteDirectory, CancellationToken cancellationToken, string? member = null);

    /// <summary>The disk (and images) have arrived: stop receiving, then restore the processes (live), start the container, or (a stopped one) leave it stopped.</summary>
    Task CompleteContainerAsync(VeId id, bool live, bool start, CancellationToken cancellationToken);

    /// <summary>
    /// The source has recorded the success: the destination keeps the container. Until then a destination that loses the
    /// source (a killed migration) removes it, even after <see cref="CompleteContainerAsync"/>, because the source then
    /// brings it back from its own dump images.
    /// </summary>
    Task CommitContainerAsync(VeId id, CancellationToken cancellationToken);

    /// <summary>Gives up: removes everything <see cref="PrepareContainerAsync"/> made (and a container it restored or started).</summary>
    Task AbortContainerAsync(VeId id, CancellationToken cancellationToken);
}
