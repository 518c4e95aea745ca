using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>The metadata file of one backup (<c>backup.json</c>).</summary>
internal sealed record BackupMetadata : IVersionedDocument
{
    public const int CurrentVersion = 1;

    public int FormatVersion { get; init; } = CurrentVersion;

    public required string Id { get; init; }

    public required BackupType Type { get; init; }

    public string? Parent { get; init; }

    public required string VeUuid { get; init; }

    public required string VeName { get; init; }

    public required string VeKind { get; init; }

    public required DateTimeOffset Created { get; init; }

    public required List<BackupDiskMetadata> Disks { get; init; }

    public required string SdkVersion { get; init; }

    /// <summary>The VE's configuration files at the time (file name → content), for restore into a new VE.</summary>
    public Dictionary<string, string> Config { get; init; } = [];

    public BackupInfo ToPublic(string directory) => new(
        Id, Type, Parent, VeId.Parse(VeUuid), VeName, Created,
        Disks.Select(d => new BackupDisk(d.Name, Path.Combine(directory, d.File), d.OriginalPath, d.VirtualSize, d.StoredSize, d.Digest)).ToList(),
        SdkVersion);
}

/// <summary>One disk of a backup (see <see cref="BackupDisk"/> for the fields it shares).</summary>
/// <param name="Name">The disk's name in the VE.</param>
/// <param name="File">The backup's file for it, relative to the backup's directory.</param>
/// <param name="OriginalPath">Where the disk lived.</param>
/// <param name="VirtualSize">Its virtual size.</param>
/// <param name="StoredSize">Bytes the backup file takes.</param>
/// <param name="Digest">The digest of the data the file stores.</param>
/// <param name="BackingChain">The disk's backing files when it was backed up (path, size, modification time), so that a
/// rebase, a commit into a shared base or any other change below the disk forces the next backup full; null for none.</param>
internal sealed record BackupDiskMetadata(string Name, string File, string OriginalPath, long VirtualSize, long StoredSize, string Digest, string? BackingChain = null);

/// <summary>A delete in progress (<c>pending-delete.json</c>), replayed until done so that a kill at any point is safe.</summary>
internal sealed record PendingDelete(int FormatVersion, string Target, string? Child, string? NewParent) : IVersionedDocument;

/// <summary>The numbers handed out per chain, so that none is ever reused (<c>sequence.json</c>).</summary>
internal sealed record ChainSequence(int FormatVersion, Dictionary<string, int> LastNumber) : IVersionedDocument;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(BackupMetadata))]
[JsonSerializable(typeof(PendingDelete))]
[JsonSerializable(typeof(ChainSequence))]
internal sealed partial class BackupJson : JsonSerializerContext;
