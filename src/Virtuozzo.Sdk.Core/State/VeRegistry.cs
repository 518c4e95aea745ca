using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Resources;

namespace Virtuozzo.Sdk.Core.State;

/// <summary>The identity file of a VE (<c>private/&lt;uuid&gt;/identity.json</c>): who it is, whatever its kind.</summary>
internal sealed record VeIdentity(int FormatVersion, string Id, string Name, VeKind Kind, DateTimeOffset CreatedAt) : IVersionedDocument
{
    [JsonIgnore]
    public VeId VeId => VeId.Parse(Id);
}

/// <summary>
/// The registry of VEs in a data root: names are unique across containers and VMs, and a VE is found by name or
/// UUID. Registration and renames run under the short host-wide lock.
/// </summary>
internal sealed class VeRegistry(StateStore store)
{
    internal const int FormatVersion = 1;

    public StateStore Store => store;

    private string IdentityPath(VeId id) => Path.Combine(store.PrivatePath(id), "identity.json");

    /// <summary>Every registered VE.</summary>
    public async Task<IReadOnlyList<VeIdentity>> ListAsync(CancellationToken cancellationToken, VeKind? kind = null)
    {
        store.EnsureUsable();
        var result = new List<VeIdentity>();
        foreach (var dir in Directory.EnumerateDirectories(store.PrivateDirectory))
        {
            if (!VeId.TryParse(Path.GetFileName(dir), out var id))
                continue;
            var identity = await store.ReadDocumentAsync(IdentityPath(id), CoreJsonContext.Default.VeIdentity, FormatVersion, cancellationToken).ConfigureAwait(false);
            if (identity is not null && (kind is null || identity.Kind == kind))
                result.Add(identity);
        }
        return result.OrderBy(i => i.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>Finds a VE by name or UUID (braces allowed); null when none.</summary>
    public async Task<VeIdentity?> FindAsync(string nameOrId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        store.EnsureUsable();
        if (VeId.TryParse(nameOrId, out var id))
            return await store.ReadDocumentAsync(IdentityPath(id), CoreJsonContext.Default.VeIdentity, FormatVersion, cancellationToken).ConfigureAwait(false);
        if (VeName.Validate(nameOrId) is { } error)
            throw new ArgumentException(error, nameof(nameOrId));
        return (await ListAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(i => i.Name == nameOrId);
    }

    /// <summary>Finds a VE of the given kind or throws <see cref="NotFoundException"/>.</summary>
    public async Task<VeIdentity> GetAsync(string nameOrId, VeKind kind, CancellationToken cancellationToken)
    {
        var found = await FindAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (found is null || found.Kind != kind)
        {
            var what = kind == VeKind.Container ? "container" : "VM";
            throw new NotFoundException(found is null
                ? $"There is no {what} named '{nameOrId}'."
                : $"'{nameOrId}' is a {(found.Kind == VeKind.Container ? "container" : "VM")}, not a {what}.");
        }
        return found;
    }

    /// <summary>Registers a new VE; the name must be free across containers and VMs.</summary>
    /// <exception cref="AlreadyExistsException">The name is taken.</exception>
    public async Task<VeIdentity> RegisterAsync(VeId id, VeName name, VeKind kind, CancellationToken cancellationToken)
    {
        using var hostLock = await store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        await EnsureNameFreeAsync(name, cancellationToken).ConfigureAwait(false);
        var identity = new VeIdentity(FormatVersion, id.ToString(), name.Value, kind, DateTimeOffset.UtcNow);
        Directory.CreateDirectory(store.PrivatePath(id));
        await store.WriteDocumentAsync(IdentityPath(id), identity, CoreJsonContext.Default.VeIdentity, cancellationToken).ConfigureAwait(false);
        return identity;
    }

    /// <summary>Renames a VE.</summary>
    public async Task<VeIdentity> RenameAsync(VeId id, VeName newName, CancellationToken cancellationToken)
    {
        using var hostLock = await store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        var current = await store.ReadDocumentAsync(IdentityPath(id), CoreJsonContext.Default.VeIdentity, FormatVersion, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"VE {id} does not exist.");
        if (current.Name == newName.Value)
            return current;
        await EnsureNameFreeAsync(newName, cancellationToken).ConfigureAwait(false);
        var renamed = current with { Name = newName.Value };
        await store.WriteDocumentAsync(IdentityPath(id), renamed, CoreJsonContext.Default.VeIdentity, cancellationToken).ConfigureAwait(false);
        return renamed;
    }

    /// <summary>Removes a VE's private directory (config and disks) from the registry. Idempotent.</summary>
    public async Task UnregisterAsync(VeId id, CancellationToken cancellationToken)
    {
        using var hostLock = await store.LockHostAsync(cancellationToken).ConfigureAwait(false);
        var dir = store.PrivatePath(id);
        if (!Directory.Exists(dir))
            return;
        // The identity goes first, so that a crash half-way leaves an unregistered directory (leaked space), never a broken VE.
        File.Delete(IdentityPath(id));
        Native.FsyncDirectory(dir);
        Directory.Delete(dir, recursive: true);
    }

    private async Task EnsureNameFreeAsync(VeName name, CancellationToken cancellationToken)
    {
        var taken = (await ListAsync(cancellationToken).ConfigureAwait(false)).FirstOrDefault(i => i.Name == name.Value);
        if (taken is not null)
            throw new AlreadyExistsException($"The name '{name}' is already used by {(taken.Kind == VeKind.Container ? "container" : "VM")} {taken.Id}. Names are unique across containers and VMs.");
    }
}
