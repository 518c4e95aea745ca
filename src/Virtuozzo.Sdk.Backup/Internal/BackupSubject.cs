using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>A disk being backed up.</summary>
/// <param name="Name">Its name in the VE.</param>
/// <param name="Path">Its image file.</param>
/// <param name="VirtualSize">Its virtual size.</param>
/// <param name="Node">The block node of its format layer in the running emulator or daemon.</param>
/// <param name="BackingChain">The backing files below the disk (path, size, modification time), or null when it has none.</param>
internal sealed record SubjectDisk(string Name, string Path, long VirtualSize, string Node, string? BackingChain)
{
    /// <summary>Reads the disk's size (unless <paramref name="knownSize"/> gives it) and its backing chain, with one open.</summary>
    public static SubjectDisk Read(string name, string path, string node, long? knownSize = null)
    {
        using var top = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
        return new SubjectDisk(name, path, knownSize ?? top.Size, node, BackupChains.Fingerprint(top));
    }
}

/// <summary>A VE as a backup sees it, read under its lock.</summary>
internal sealed record Subject(VeId Id, string Name, VeKind Kind, bool Running, IReadOnlyList<SubjectDisk> Disks, Dictionary<string, string> Config, IReadOnlyDictionary<string, string> TrackingResets)
{
    public string KindName => Kind == VeKind.Vm ? "VM" : "container";
}

/// <summary>What identifies a disk's backing chain, so that a changed chain forces a full backup.</summary>
internal static class BackupChains
{
    /// <summary>The backing files below a disk (path, size, modification time), or null when it has none.</summary>
    internal static string? Fingerprint(Qcow2Image top)
    {
        var parts = new List<string>();
        for (var image = top; image is not null; image = image.Backing)
        {
            if (image.GetInfo().FullBackingFile is not { } backing)
                break;
            var file = new FileInfo(backing);
            parts.Add(FormattableString.Invariant($"{file.FullName}|{file.Length}|{file.LastWriteTimeUtc.Ticks}"));
        }
        return parts.Count == 0 ? null : string.Join("\n", parts);
    }
}
