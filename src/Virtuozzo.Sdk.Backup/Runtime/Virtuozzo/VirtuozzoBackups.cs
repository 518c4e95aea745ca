using System.Globalization;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Backup.Runtime.Virtuozzo;

/// <summary>
/// Backups on a Virtuozzo node, delegated to the node: <c>prlctl backup</c> writes them to the node's backup location (in
/// Virtuozzo 7's own format, QCOW2 images), <c>prlctl backup-list</c> lists them, <c>prlctl restore</c> and
/// <c>prlctl backup-delete</c> restore and delete them. Backup ids are the node's: <c>{uuid}</c> for a full backup,
/// <c>{uuid}.N</c> for the incrementals after it. File-level access, verification and pruning are the local runtime's
/// and are refused by name.
/// </summary>
internal sealed class VirtuozzoBackups(VirtuozzoRuntime runtime)
{
    private readonly VirtuozzoNode _node = runtime.RequireNode();

    /// <summary>Where the backups are, for <see cref="BackupClient.Location"/>.</summary>
    public string Location => $"{_node.Host.Name}: the node's backup location (prlctl backup-list)";

    public async Task<BackupResult> CreateAsync(string nameOrId, BackupCreateOptions? options, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        options ??= new BackupCreateOptions();
        if (options.Compression == BackupCompression.Zlib)
            throw Unsupported("Zlib compression of backups", "the node compresses backups its own way; use Zstd (the node's default compression) or None.");
        var config = await _node.FindConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"There is no container or VM named '{nameOrId}' on {_node.Host.Name}.");
        var command = Prlctl.Backup(config.Id.ToString(), options.Full, null);
        if (options.Compression == BackupCompression.None)
            command = command with { Arguments = command.Arguments.Add("--no-compression") };
        var r = await _node.RunAsync(command, cancellationToken).ConfigureAwait(false);
        var backupId = PrlctlText.ParseCreatedBackupId(r.StandardOutput);
        var info = (await ListAsync(config.Id.ToString(), cancellationToken).ConfigureAwait(false)).FirstOrDefault(b => b.Id == backupId)
            ?? throw new VirtuozzoException($"prlctl reported backup {backupId} of {config.Name}, but prlctl backup-list does not show it.");
        var reasons = info.Type == BackupType.Full ? (IReadOnlyList<string>)[options.Full ? "a full backup was asked for" : "the node started a new chain"] : [];
        return new BackupResult(info, "as the node's backup makes it (prlctl backup)", reasons);
    }

    /// <summary><c>prlctl backup-list [UUID]</c>, oldest first; a VE named by name must exist, one named by UUID may be deleted.</summary>
    public async Task<IReadOnlyList<BackupInfo>> ListAsync(string? nameOrId, CancellationToken cancellationToken)
    {
        string? filter = null;
        if (nameOrId is not null)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
            filter = VeId.TryParse(nameOrId, out var id) ? id.ToString()
                : ((await _node.FindAsync(nameOrId, cancellationToken).ConfigureAwait(false))?.Id
                    ?? throw new NotFoundException($"There is no container or VM named '{nameOrId}' on {_node.Host.Name}."));
        }
        var version = await _node.GetVersionAsync(cancellationToken).ConfigureAwait(false);
        var r = await _node.RunAsync(Prlctl.ListBackups(filter), cancellationToken).ConfigureAwait(false);
        var names = (await _node.ListAsync(cancellationToken).ConfigureAwait(false)).ToDictionary(v => v.Id, v => v.Name, StringComparer.Ordinal);
        var rows = PrlctlText.ParseBackupList(r.StandardOutput);
        var zone = rows.Count > 0 ? await _node.GetTimeZoneAsync(cancellationToken).ConfigureAwait(false) : NodeTimeZone.Utc;
        return rows
            .Where(row => filter is null || row.VeId == Guid.Parse(filter))
            .Select(row => ToInfo(row, names, version, zone))
            .OrderBy(b => b.CreatedAt).ThenBy(b => b.Id, StringComparer.Ordinal)
            .ToList();
    }

    public async Task<IReadOnlyList<BackupChain>> ListChainsAsync(string? nameOrId, CancellationToken cancellationToken)
        => BackupRepository.Chains(await ListAsync(nameOrId, cancellationToken).ConfigureAwait(false));

    /// <summary>
    /// <c>prlctl backup-delete -t ID</c>: with dependents, prlctl's default (the backup and every later one of its chain);
    /// without, <c>--keep-chain</c> when later backups depend on it (the node rebases the next one). Returns what went.
    /// </summary>
    public async Task<IReadOnlyList<string>> DeleteAsync(string backupId, bool withDependents, CancellationToken cancellationToken)
    {
        var target = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        var before = await ListAsync(target.VeId.ToString(), cancellationToken).ConfigureAwait(false);
        var hasDependents = before.Any(b => b.ParentId == target.Id);
        await _node.RunAsync(Prlctl.DeleteBackup(target.Id, keepChain: hasDependents && !withDependents), cancellationToken).ConfigureAwait(false);
        var after = (await ListAsync(target.VeId.ToString(), cancellationToken).ConfigureAwait(false)).Select(b => b.Id).ToHashSet(StringComparer.Ordinal);
        return before.Select(b => b.Id).Where(id => !after.Contains(id)).ToList();
    }

    /// <summary><c>prlctl restore -t ID</c> into the stopped original, or <c>-n NEW</c> into a new VE; returns the restored VE's UUID.</summary>
    public async Task<VeId> RestoreAsync(string backupId, BackupRestoreOptions? options, CancellationToken cancellationToken)
    {
        options ??= new BackupRestoreOptions();
        var backup = await FindAsync(backupId, cancellationToken).ConfigureAwait(false);
        if (options.NewName is { } newName)
        {
            if (await _node.FindAsync(newName.Value, cancellationToken).ConfigureAwait(false) is not null)
                throw new AlreadyExistsException($"A VE named {newName} already exists on {_node.Host.Name}.");
            await _node.RunAsync(Prlctl.Restore(backup.Id, newName.Value), cancellationToken).ConfigureAwait(false);
            var restored = await _node.FindAsync(newName.Value, cancellationToken).ConfigureAwait(false)
                ?? throw new VirtuozzoException($"prlctl restored backup {backup.Id} as {newName}, but no VE of that name is listed.");
            return VeId.Parse(restored.Id);
        }
        var current = await _node.FindConfigAsync(backup.VeId.ToString(), cancellationToken).ConfigureAwait(false);
        if (current is not null && current.State != VeState.Stopped)
            throw new InvalidStateException($"{current.Name} is {current.StateText}; stop it before restoring backup {backup.Id} into it, or restore to a new name.");
        await _node.RunAsync(Prlctl.Restore(backup.Id, null), cancellationToken).ConfigureAwait(false);
        return backup.VeId;
    }

    public static UnsupportedOnHostException Unsupported(string feature, string instead)
        => new($"{feature} is not supported by the Virtuozzo runtime; {instead}");

    private async Task<BackupInfo> FindAsync(string backupId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(backupId);
        var id = backupId.Trim();
        if (!id.StartsWith('{'))
            id = "{" + id[..Math.Min(36, id.Length)] + "}" + id[Math.Min(36, id.Length)..];
        return (await ListAsync(null, cancellationToken).ConfigureAwait(false)).FirstOrDefault(b => string.Equals(b.Id, id, StringComparison.OrdinalIgnoreCase))
            ?? throw new NotFoundException($"There is no backup '{backupId}' on {_node.Host.Name} (prlctl backup-list).");
    }

    private static BackupInfo ToInfo(PrlctlBackupRow row, IReadOnlyDictionary<string, string> names, PrlctlVersion? version, NodeTimeZone zone)
    {
        var dot = row.BackupId.IndexOf("}.", StringComparison.Ordinal);
        string? parent = null;
        if (dot > 0 && int.TryParse(row.BackupId[(dot + 2)..], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            parent = n <= 1 ? row.BackupId[..(dot + 1)] : row.BackupId[..(dot + 2)] + (n - 1).ToString(CultureInfo.InvariantCulture);
        var ve = new VeId(row.VeId);
        // backup-list prints the node's local time without its offset (convert_time, reference §3.8): read in the node's zone.
        var created = zone.ToInstant(row.Date);
        return new BackupInfo(row.BackupId, row.Type == 'f' ? BackupType.Full : BackupType.Incremental, row.Type == 'f' ? null : parent,
            ve, names.GetValueOrDefault(ve.ToString()) ?? ve.ToString(), created,
            [new BackupDisk("backup", row.BackupId, string.Empty, 0, row.SizeBytes, string.Empty)],
            "prlctl " + (version?.ToString() ?? "unknown"));
    }
}
