using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Virtuozzo.Sdk.Core.Internal;

namespace Virtuozzo.Sdk.Core.State;

/// <summary>A state file that carries its format version.</summary>
internal interface IVersionedDocument
{
    /// <summary>The format version the file was written with.</summary>
    int FormatVersion { get; }
}

/// <summary>What reconciliation found and removed.</summary>
internal sealed record ReconcileReport(IReadOnlyList<string> Removed);

/// <summary>
/// The local runtime's data root, laid out like a Virtuozzo node: <c>private/&lt;uuid&gt;/</c> (config and disks),
/// <c>root/&lt;uuid&gt;/</c> (container mount points), <c>run/&lt;uuid&gt;/</c> (sockets, pid files), <c>backups/</c>,
/// <c>templates/</c>, <c>locks/</c>. Writes are atomic; one lock per VE plus a short host-wide lock.
/// </summary>
internal sealed class StateStore
{
    public StateStore(string dataRoot, TimeSpan? lockTimeout = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dataRoot);
        DataRoot = Path.GetFullPath(dataRoot);
        LockTimeout = lockTimeout ?? TimeSpan.FromSeconds(30);
    }

    public string DataRoot { get; }

    public TimeSpan LockTimeout { get; }

    public string PrivateDirectory => Path.Combine(DataRoot, "private");

    public string RootDirectory => Path.Combine(DataRoot, "root");

    public string RunDirectory => Path.Combine(DataRoot, "run");

    public string BackupsDirectory => Path.Combine(DataRoot, "backups");

    public string TemplatesDirectory => Path.Combine(DataRoot, "templates");

    public string LocksDirectory => Path.Combine(DataRoot, "locks");

    public string PrivatePath(VeId id) => Path.Combine(PrivateDirectory, id.ToString());

    public string RootPath(VeId id) => Path.Combine(RootDirectory, id.ToString());

    public string RunPath(VeId id) => Path.Combine(RunDirectory, id.ToString());

    private bool _ready;

    /// <summary>Creates the layout and proves the data root is writable.</summary>
    /// <exception cref="StateStoreException">The data root cannot be used; the message says why and what to do.</exception>
    public void EnsureUsable()
    {
        if (_ready)
            return;
        try
        {
            if (File.Exists(DataRoot))
                throw new StateStoreException($"The data root '{DataRoot}' is a file, not a directory. Point VirtuozzoSdkOptions.DataRoot at a directory.");
            foreach (var d in new[] { DataRoot, PrivateDirectory, RootDirectory, RunDirectory, BackupsDirectory, TemplatesDirectory, LocksDirectory })
                Directory.CreateDirectory(d);
            var probe = Path.Combine(DataRoot, $".probe{AtomicFile.TempMarker}{Environment.ProcessId}");
            File.WriteAllBytes(probe, [1]);
            File.Delete(probe);
            _ready = true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new StateStoreException(
                $"The data root '{DataRoot}' is unusable: {ex.Message} The local runtime needs a writable directory (root privileges for the default /var/lib/vzsdk); set VirtuozzoSdkOptions.DataRoot to change it.", ex);
        }
    }

    /// <summary>Takes the lock of one VE, held for that VE's whole operation.</summary>
    public Task<FileLock> LockVeAsync(VeId id, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        EnsureUsable();
        return FileLock.AcquireAsync(Path.Combine(LocksDirectory, $"ve-{id}.lock"), $"the lock of VE {id}", timeout ?? LockTimeout, cancellationToken);
    }

    /// <summary>
    /// The marker a backup leaves in a VE's run directory while it holds the VE frozen (a container's file system, a
    /// VM's guest through its tools), so that a stop or the next backup thaws a VE whose backup died mid-freeze.
    /// </summary>
    public string FrozenByBackupMarker(VeId id) => Path.Combine(RunPath(id), "frozen-by-backup");

    /// <summary>True when an operation holds the VE's lock right now (in this process or another).</summary>
    public bool IsVeLocked(VeId id) => FileLock.IsHeld(Path.Combine(LocksDirectory, $"ve-{id}.lock"));

    /// <summary>Takes the short host-wide lock (registry, names, resource ledger). Never hold it across a long operation.</summary>
    public Task<FileLock> LockHostAsync(CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        EnsureUsable();
        return FileLock.AcquireAsync(Path.Combine(LocksDirectory, "host.lock"), "the host-wide lock", timeout ?? LockTimeout, cancellationToken);
    }

    /// <summary>Reads a versioned JSON document; null when the file does not exist.</summary>
    /// <exception cref="StateStoreException">The file is damaged or written by a newer SDK.</exception>
    public async Task<T?> ReadDocumentAsync<T>(string path, JsonTypeInfo<T> typeInfo, int supportedVersion, CancellationToken cancellationToken)
        where T : class, IVersionedDocument
    {
        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        return Deserialize(path, bytes, typeInfo, supportedVersion);
    }

    internal static T Deserialize<T>(string path, byte[] bytes, JsonTypeInfo<T> typeInfo, int supportedVersion)
        where T : class, IVersionedDocument
    {
        T? doc;
        try
        {
            doc = JsonSerializer.Deserialize(bytes, typeInfo);
        }
        catch (JsonException ex)
        {
            throw new StateStoreException($"The state file '{path}' is damaged ({ex.Message}). Restore it from a backup or remove the object it describes.", ex);
        }
        if (doc is null)
            throw new StateStoreException($"The state file '{path}' is empty.");
        if (doc.FormatVersion < 1 || doc.FormatVersion > supportedVersion)
            throw new StateStoreException($"The state file '{path}' has format version {doc.FormatVersion}; this SDK reads versions 1 to {supportedVersion}. Upgrade the SDK.");
        return doc;
    }

    /// <summary>Writes a versioned JSON document atomically (temp, fsync, rename, fsync directory).</summary>
    public Task WriteDocumentAsync<T>(string path, T document, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken)
        where T : class, IVersionedDocument
    {
        var dir = Path.GetDirectoryName(path);
        if (dir is not null)
            Directory.CreateDirectory(dir);
        return AtomicFile.WriteAsync(path, JsonSerializer.SerializeToUtf8Bytes(document, typeInfo), cancellationToken);
    }

    /// <summary>
    /// Removes what killed writers left behind: temp files of atomic writes whose writer process is gone.
    /// Runs under the host lock.
    /// </summary>
    public async Task<ReconcileReport> ReconcileAsync(CancellationToken cancellationToken)
    {
        EnsureUsable();
        using var hostLock = await LockHostAsync(cancellationToken).ConfigureAwait(false);
        var removed = AtomicFile.RemoveAbandoned(DataRoot, maxDepth: 3);
        return new ReconcileReport(removed);
    }
}
