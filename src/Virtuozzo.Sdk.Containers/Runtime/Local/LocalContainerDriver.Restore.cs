using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;

namespace Virtuozzo.Sdk.Containers.Runtime.Local;

// A container as a restore target: its one disk is "root".
internal sealed partial class LocalContainerDriver : IRestoreTarget
{
    /// <summary>The name of a container's only disk in a backup.</summary>
    internal const string RootDisk = "root";

    public string ConfigDocument => "container.json";

    public async Task<VeId> CreateFromBackupAsync(string configJson, VeName name, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken)
    {
        var config = JsonNode.Parse(configJson)?.AsObject() ?? throw new InvalidStateException("The backup's container configuration is empty.");
        config["ip_addresses"] = new JsonArray(); // addresses belong to the original
        config["autostart"] = false;
        var newId = VeId.New();
        await _registry.RegisterAsync(newId, name, VeKind.Container, cancellationToken).ConfigureAwait(false);
        try
        {
            using var veLock = await _store.LockVeAsync(newId, cancellationToken).ConfigureAwait(false);
            // A restored copy of an unprivileged container has ids of its own: its files move to them at its first start.
            if (config["user_id_start"] is JsonValue)
                config["user_id_start"] = (await AllocateIdRangeAsync(newId, null, cancellationToken).ConfigureAwait(false)).Start;
            await writeDisks(new Dictionary<string, string> { [RootDisk] = DiskPath(newId) }).ConfigureAwait(false);
            await Core.Internal.AtomicFileAccess.WriteTextAsync(ConfigPath(newId), config.ToJsonString(), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await Core.Runtime.Local.UserIdRanges.ReleaseAsync(newId, _store.DataRoot, CancellationToken.None).ConfigureAwait(false);
            await _registry.UnregisterAsync(newId, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        return newId;
    }

    public async Task RestoreInPlaceAsync(VeId id, string configJson, string backupId, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken)
    {
        var identity = await _registry.FindAsync(id.ToString(), cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"Container {id} no longer exists: restore backup {backupId} into a new container with a new name.");
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            if (state != VeState.Stopped)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; stop it before restoring into it.");
            var disk = DiskPath(id);
            var temp = disk + ".restore-" + Guid.NewGuid().ToString("N")[..8];
            try
            {
                await writeDisks(new Dictionary<string, string> { [RootDisk] = temp }).ConfigureAwait(false);
                File.Move(temp, disk, overwrite: true); // atomic: the old disk or the restored one
            }
            finally
            {
                File.Delete(temp);
            }
        }
    }
}
