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
/// <param name="CapacityBytes">
/// Memory available to VE guarantees: host RAM minus the host's reserve, capped by the SDK options' budget and by the
/// budget recorded by a memory manager (<see cref="BudgetBytes"/>).
/// </param>
/// <param name="Reservations">Every admitted reservation.</param>
public sealed record LedgerSnapshot(long CapacityBytes, IReadOnlyList<MemoryReservation> Reservations)
{
    /// <summary>The host memory budget recorded in the ledger by a memory manager (<see cref="ResourceLedger.SetBudgetAsync"/>), or null.</summary>
    public long? BudgetBytes { get; init; }

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
/// <remarks>
/// This is the admission rule of Virtuozzo's VCMMD: Σ(guarantee + overhead) ≤ host memory. The host memory is the
/// ledger's <see cref="CapacityBytes"/> (RAM minus the reserve, capped by <see cref="VirtuozzoSdkOptions.HostMemoryBudget"/>),
/// capped again by a budget a memory manager records in the ledger file (<see cref="SetBudgetAsync"/>), so that every
/// process that starts VEs on the host admits against the budget the manager balances within.
/// </remarks>
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

    /// <summary>The local machine's capacity for guarantees: its RAM minus the host's reserve, capped by the options' budget.</summary>
    internal static long LocalCapacity(VirtuozzoSdkOptions options)
        => options.GetGuaranteeCapacity(HostProber.ParseMemTotal(File.ReadAllText("/proc/meminfo")));

    /// <summary>
    /// Records the host memory budget of a memory manager (null clears it). From then on every process that opens this
    /// data root's ledger admits guarantees against <c>min(</c><see cref="CapacityBytes"/><c>, budget)</c>. Guarantees
    /// already admitted stay (a budget below them refuses only new starts and raises). Returns the snapshot after the change.
    /// </summary>
    /// <remarks>Called by <c>MemoryManager</c> (and so by <c>vzsdk mem daemon --budget SIZE</c>) when it starts ticking.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">A budget that is not positive.</exception>
    public async Task<LedgerSnapshot> SetBudgetAsync(long? budgetBytes, CancellationToken cancellationToken = default)
    {
        if (budgetBytes is { } b)
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(b, nameof(budgetBytes));
        using var hostLock = await _store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        var file = await ReadAsync(cancellationToken).ConfigureAwait(false);
        if (file.BudgetBytes != budgetBytes)
        {
            file = file with { BudgetBytes = budgetBytes };
            await WriteAsync(file, cancellationToken).ConfigureAwait(false);
        }
        return Snapshot(file);
    }

    /// <summary>What guarantees are admitted against under <paramref name="file"/>: the capacity, capped by its recorded budget.</summary>
    private long EffectiveCapacity(LedgerFile file) => file.BudgetBytes is { } b ? Math.Min(CapacityBytes, Math.Max(0, b)) : CapacityBytes;

    private LedgerSnapshot Snapshot(LedgerFile file)
        => new(EffectiveCapacity(file), file.Reservations.Select(ToPublic).ToList()) { BudgetBytes = file.BudgetBytes };

    private string FilePath => Path.Combine(_store.DataRoot, "ledger.json");

    /// <summary>Reads the current reservations.</summary>
    public async Task<LedgerSnapshot> GetSnapshotAsync(CancellationToken cancellationToken = default)
    {
        using var hostLock = await _store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        return Snapshot(await ReadAsync(cancellationToken).ConfigureAwait(false));
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
        var capacity = EffectiveCapacity(file);
        if (wanted > previous && others + wanted > capacity)
        {
            var available = Math.Max(0, capacity - others);
            var name = (await new VeRegistry(_store).FindAsync(id, cancellationToken).ConfigureAwait(false))?.Name ?? id;
            var what = kind == VeKind.Container ? "container" : "VM";
            var of = capacity < CapacityBytes
                ? $"the host memory budget of {new ByteSize(capacity).ToHumanString()} (recorded by the memory manager)"
                : $"the host's {new ByteSize(capacity).ToHumanString()}";
            var remedy = capacity < CapacityBytes
                ? "Lower its memory guarantee or size, stop another VE, or run the memory manager with a larger budget ('vzsdk mem daemon --budget SIZE')."
                : "Lower its memory guarantee or size, or stop another VE.";
            Internal.SdkTelemetry.RecordGuarantee(kind, admitted: false);
            throw new InsufficientResourcesException(
                $"Cannot guarantee {new ByteSize(wanted).ToHumanString()} of memory to {what} {name}: only {new ByteSize(available).ToHumanString()} of {of} are not guaranteed to other running VEs. {remedy}",
                wanted, available);
        }
        var entry = new LedgerEntry(id, kind, guaranteeBytes, overheadBytes, DateTimeOffset.UtcNow);
        var list = file.Reservations.Where(r => r.VeId != id).Append(entry).OrderBy(r => r.VeId, StringComparer.Ordinal).ToList();
        await WriteAsync(file with { Reservations = list }, cancellationToken).ConfigureAwait(false);
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
        await WriteAsync(file with { Reservations = file.Reservations.Where(r => r.VeId != id).ToList() }, cancellationToken).ConfigureAwait(false);
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

/// <summary>The ledger file (<c>ledger.json</c>); <c>budget_bytes</c> is the budget a memory manager recorded (absent for none).</summary>
internal sealed record LedgerFile(int FormatVersion, List<LedgerEntry> Reservations, long? BudgetBytes = null) : IVersionedDocument;
