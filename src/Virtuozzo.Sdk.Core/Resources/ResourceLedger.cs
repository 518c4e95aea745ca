using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core.Resources;

/// <summary>The memory a VE is guaranteed while it runs.</summary>
/// <param name="VeId">The VE.</param>
/// <param name="Kind">Container or VM.</param>
/// <param name="GuaranteeBytes">The guaranteed memory.</param>
/// <param name="OverheadBytes">Memory the host spends on the VE besides its guarantee (QEMU's own memory for a VM).</param>
/// <param name="Since">When the reservation was made or last changed.</param>
public sealed record MemoryReservation(VeId VeId, VeKind Kind, long GuaranteeBytes, long OverheadBytes, DateTimeOffset Since)
{
    /// <summary>What the reservation takes from the host: guarantee plus overhead.</summary>
    public long TotalBytes => GuaranteeBytes + OverheadBytes;
}

/// <summary>The ledger at one instant.</summary>
/// <param name="CapacityBytes">Memory available to VE guarantees (host RAM minus the host's reserve).</param>
/// <param name="Reservations">Every admitted reservation.</param>
public sealed record LedgerSnapshot(long CapacityBytes, IReadOnlyList<MemoryReservation> Reservations)
{
    /// <summary>The sum of all reservations.</summary>
    public long ReservedBytes => Reservations.Sum(r => r.TotalBytes);

    /// <summary>What is left for new guarantees.</summary>
    public long AvailableBytes => Math.Max(0, CapacityBytes - ReservedBytes);
}

/// <summary>
/// The one host-wide account of memory guarantees, for containers and VMs alike. A start, or a raised guarantee,
/// is admitted only when the sum of all guarantees (plus overheads) still fits the host's capacity; otherwise
/// it is refused with <see cref="InsufficientResourcesException"/> and nothing changes. Admission is atomic
/// across threads and processes (a host-wide file lock around read–check–write, and an atomic file replace).
/// </summary>
/// <remarks>This is the admission rule of Virtuozzo's VCMMD: Σ(guarantee + overhead) ≤ host memory.</remarks>
public sealed class ResourceLedger
{
    internal const int FormatVersion = 1;
    private readonly StateStore _store;

    /// <summary>Opens the ledger kept in <paramref name="dataRoot"/>.</summary>
    /// <param name="dataRoot">The SDK's data root (the ledger file is <c>ledger.json</c> in it).</param>
    /// <param name="capacityBytes">Memory available to guarantees.</param>
    /// <param name="lockTimeout">How long to wait for the host-wide lock. Default 30 s.</param>
    public ResourceLedger(string dataRoot, long capacityBytes, TimeSpan? lockTimeout = null)
        : this(new StateStore(dataRoot, lockTimeout), capacityBytes)
    {
    }

    internal ResourceLedger(StateStore store, long capacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacityBytes);
        _store = store;
        CapacityBytes = capacityBytes;
    }

    /// <summary>Memory available to guarantees.</summary>
    public long CapacityBytes { get; }

    /// <summary>The local machine's capacity for guarantees: its RAM minus the host's reserve.</summary>
    internal static long LocalCapacity(VirtuozzoSdkOptions options)
    {
        var total = HostProber.ParseMemTotal(File.ReadAllText("/proc/meminfo"));
        return Math.Max(0, total - options.GetHostMemoryReserve(total));
    }

    private string FilePath => Path.Combine(_store.DataRoot, "ledger.json");

    /// <summary>Reads the current reservations.</summary>
    public async Task<LedgerSnapshot> GetSnapshotAsync(CancellationToken cancellationToken = default)
    {
        using var hostLock = await _store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        var file = await ReadAsync(cancellationToken).ConfigureAwait(false);
        return new LedgerSnapshot(CapacityBytes, file.Reservations.Select(ToPublic).ToList());
    }

    /// <summary>
    /// Sets the reservation of <paramref name="veId"/> (replacing any it had). Lowering always succeeds; raising is
    /// admitted only if everything still fits.
    /// </summary>
    /// <exception cref="InsufficientResourcesException">The host cannot cover the guarantee; nothing changed.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative amount.</exception>
    public async Task<MemoryReservation> ReserveAsync(VeId veId, VeKind kind, long guaranteeBytes, long overheadBytes = 0, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(guaranteeBytes);
        ArgumentOutOfRangeException.ThrowIfNegative(overheadBytes);
        using var hostLock = await _store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        var file = await ReadAsync(cancellationToken).ConfigureAwait(false);
        var id = veId.ToString();
        var existing = file.Reservations.FirstOrDefault(r => r.VeId == id);
        var others = file.Reservations.Where(r => r.VeId != id).Sum(r => r.GuaranteeBytes + r.OverheadBytes);
        var wanted = guaranteeBytes + overheadBytes;
        var previous = existing is null ? 0 : existing.GuaranteeBytes + existing.OverheadBytes;
        if (wanted > previous && others + wanted > CapacityBytes)
        {
            var available = Math.Max(0, CapacityBytes - others);
            var name = (await new VeRegistry(_store).FindAsync(id, cancellationToken).ConfigureAwait(false))?.Name ?? id;
            var what = kind == VeKind.Container ? "container" : "VM";
            Internal.SdkTelemetry.RecordGuarantee(kind, admitted: false);
            throw new InsufficientResourcesException(
                $"Cannot guarantee {new ByteSize(wanted).ToHumanString()} of memory to {what} {name}: only {new ByteSize(available).ToHumanString()} of the host's {new ByteSize(CapacityBytes).ToHumanString()} are not guaranteed to other running VEs. Lower its memory guarantee or size, or stop another VE.",
                wanted, available);
        }
        var entry = new LedgerEntry(id, kind, guaranteeBytes, overheadBytes, DateTimeOffset.UtcNow);
        var list = file.Reservations.Where(r => r.VeId != id).Append(entry).OrderBy(r => r.VeId, StringComparer.Ordinal).ToList();
        await WriteAsync(new LedgerFile(FormatVersion, list), cancellationToken).ConfigureAwait(false);
        Internal.SdkTelemetry.RecordGuarantee(kind, admitted: true);
        return ToPublic(entry);
    }

    /// <summary>Removes the reservation of <paramref name="veId"/> (when it stops). Returns false when it had none.</summary>
    public async Task<bool> ReleaseAsync(VeId veId, CancellationToken cancellationToken = default)
    {
        using var hostLock = await _store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        var file = await ReadAsync(cancellationToken).ConfigureAwait(false);
        var id = veId.ToString();
        if (file.Reservations.All(r => r.VeId != id))
            return false;
        await WriteAsync(new LedgerFile(FormatVersion, file.Reservations.Where(r => r.VeId != id).ToList()), cancellationToken).ConfigureAwait(false);
        return true;
    }

    private async Task<LedgerFile> ReadAsync(CancellationToken ct)
        => await _store.ReadDocumentAsync(FilePath, CoreJsonContext.Default.LedgerFile, FormatVersion, ct).ConfigureAwait(false)
           ?? new LedgerFile(FormatVersion, []);

    private Task WriteAsync(LedgerFile file, CancellationToken ct)
        => _store.WriteDocumentAsync(FilePath, file, CoreJsonContext.Default.LedgerFile, ct);

    private static MemoryReservation ToPublic(LedgerEntry e) => new(VeId.Parse(e.VeId), e.Kind, e.GuaranteeBytes, e.OverheadBytes, e.Since);
}

/// <summary>One line of the ledger file.</summary>
internal sealed record LedgerEntry(string VeId, VeKind Kind, long GuaranteeBytes, long OverheadBytes, DateTimeOffset Since);

/// <summary>The ledger file (<c>ledger.json</c>).</summary>
internal sealed record LedgerFile(int FormatVersion, List<LedgerEntry> Reservations) : IVersionedDocument;
