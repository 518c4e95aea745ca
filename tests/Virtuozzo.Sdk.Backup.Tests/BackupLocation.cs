using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Backup.Tests;

/// <summary>
/// A data root in a temp directory with backups written as <see cref="BackupClient"/> writes them (QCOW2 files made
/// by the managed engine, an incremental backed by <c>../{parent}/root.qcow2</c>, <c>backup.json</c> with the digest of
/// each file's own data), so that the repository and the client can be tested without a VE.
/// </summary>
internal sealed class BackupLocation : IDisposable
{
    public const int Cluster = 65536;

    private readonly TempDirectory _root = new("vzsdk-backup-test");
    private DateTimeOffset _clock = new(2026, 3, 2, 10, 0, 0, TimeSpan.Zero);

    /// <summary>A fresh data root whose backups are of a disk of <paramref name="clusters"/> clusters.</summary>
    public BackupLocation(int clusters = 16)
    {
        DiskSize = (long)clusters * Cluster;
        Store = new StateStore(_root.Path);
        Repository = new BackupRepository(Store, Store.BackupsDirectory, NullLogger.Instance);
    }

    public long DiskSize { get; }

    public string DataRoot => _root.Path;

    public StateStore Store { get; }

    public BackupRepository Repository { get; }

    public VeId Ve { get; } = VeId.New();

    /// <summary>A client over the same data root (no VE needed for list, delete, prune, verify by UUID).</summary>
    public BackupClient Client() => new(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = DataRoot }));

    /// <summary>The bytes every cluster written with <paramref name="tag"/> holds.</summary>
    public static byte[] Data(byte tag) => Enumerable.Repeat(tag, Cluster).ToArray();

    /// <summary>Writes a backup: clusters (index → tag) on top of <paramref name="parent"/>, created at <paramref name="created"/> (or an hour after the previous one).</summary>
    public async Task<BackupMetadata> AddAsync(string? parent, Dictionary<int, byte> clusters, DateTimeOffset? created = null)
    {
        var id = parent is null ? BackupRepository.NewChainId() : await Repository.NextIncrementalIdAsync(Ve, parent, CancellationToken.None);
        var dir = Repository.BackupDir(Ve, id);
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, BackupRepository.DiskFileName("root"));
        using (var image = Qcow2Image.Create(file, new Qcow2CreateOptions
        {
            Size = DiskSize,
            ClusterSize = Cluster,
            BackingFile = parent is null ? null : Path.Combine("..", parent, BackupRepository.DiskFileName("root")),
            BackingFormat = parent is null ? null : "qcow2",
        }))
        {
            foreach (var (index, tag) in clusters)
                image.Write((long)index * Cluster, Data(tag));
            image.Flush();
        }
        _clock = created ?? _clock.AddHours(1);
        var meta = new BackupMetadata
        {
            Id = id,
            Type = parent is null ? BackupType.Full : BackupType.Incremental,
            Parent = parent,
            VeUuid = Ve.ToString(),
            VeName = "ct1",
            VeKind = "container",
            Created = _clock,
            Disks = [new BackupDiskMetadata("root", BackupRepository.DiskFileName("root"), "/var/lib/vzsdk/private/x/root.qcow2", DiskSize, new FileInfo(file).Length, Digest(file))],
            SdkVersion = "0.1.0",
        };
        await Repository.WriteMetadataAsync(dir, meta, CancellationToken.None);
        return meta;
    }

    /// <summary>Writes a chain: a full backup, then one incremental per further element, each writing its clusters.</summary>
    public async Task<List<BackupMetadata>> AddChainAsync(params Dictionary<int, byte>[] backups)
    {
        var chain = new List<BackupMetadata>();
        foreach (var clusters in backups)
            chain.Add(await AddAsync(chain.Count == 0 ? null : chain[^1].Id, clusters));
        return chain;
    }

    /// <summary>The guest view of a backup's disk (its chain included), cluster by cluster: the tag each holds, 0 for zeros.</summary>
    public byte[] ReadTags(string backupId)
    {
        using var image = Qcow2Image.Open(DiskFile(backupId), new Qcow2OpenOptions { ReadOnly = true });
        var tags = new byte[DiskSize / Cluster];
        var buffer = new byte[Cluster];
        for (var i = 0; i < tags.Length; i++)
        {
            image.Read((long)i * Cluster, buffer);
            if (buffer.AsSpan().IndexOfAnyExcept(buffer[0]) >= 0)
                throw new InvalidDataException($"Cluster {i} of {backupId} holds more than one tag.");
            tags[i] = buffer[0];
        }
        return tags;
    }

    public string DiskFile(string backupId) => Path.Combine(Repository.BackupDir(Ve, backupId), BackupRepository.DiskFileName("root"));

    public static string Digest(string file)
    {
        using var image = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
        return DiskCopier.DigestOfOwnData(image, CancellationToken.None);
    }

    public void Dispose() => _root.Dispose();
}
