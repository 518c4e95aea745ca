using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

// A VM as a restore target: the backup's configuration names its disks.
internal sealed partial class LocalVmDriver : IRestoreTarget
{
    public string ConfigDocument => "vm.json";

    Task<VeId> IRestoreTarget.CreateFromBackupAsync(string configJson, VeName name, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken)
        => CreateFromBackupAsync(configJson, name, writeDisks, cancellationToken);

    public async Task RestoreInPlaceAsync(VeId id, string configJson, string backupId, Func<IReadOnlyDictionary<string, string>, Task> writeDisks, CancellationToken cancellationToken)
    {
        if (await _registry.FindAsync(id.ToString(), cancellationToken).ConfigureAwait(false) is null)
            throw new NotFoundException($"VM {id} no longer exists: restore backup {backupId} into a new VM with a new name.");
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
            await RestoreDisksAsync(id, configJson, backupId, writeDisks, cancellationToken).ConfigureAwait(false);
    }
}
