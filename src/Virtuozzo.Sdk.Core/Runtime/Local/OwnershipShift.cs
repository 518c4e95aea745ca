using System.Runtime.InteropServices;
using Virtuozzo.Sdk.Core.Internal;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>
/// Moves the ownership of a container's file system from one id range to another (<c>chown</c> of every file, once), so
/// that its files belong to the host ids its user namespace maps: a template's files (ids 0…65535) at create, a clone's or
/// a restored copy's files from the original's range to its own.
/// </summary>
/// <remarks>
/// The walk is restartable: a file already in the target range is left alone, and the root directory — whose owner says
/// which range the whole tree is in (see <see cref="RangeOf"/>) — is changed last, so a walk killed halfway is finished
/// by the next one. Symlinks are changed themselves, never followed; set-user-id and set-group-id bits, which
/// <c>chown</c> clears, are put back. POSIX ACL entries and file capabilities that name ids are not rewritten.
/// </remarks>
internal static class OwnershipShift
{
    private const uint S_IFMT = 0xF000;
    private const uint S_IFDIR = 0x4000;
    private const uint S_IFREG = 0x8000;
    private const uint SetIdBits = 0xC00; // S_ISUID | S_ISGID

    /// <summary>
    /// The start of the range a file system's files belong to, read from its root directory's owner: 0 for a file system
    /// owned as on the host (a privileged container's, or a template's); the range's start when the root directory is owned
    /// by the first id of a range the SDK could have given (a multiple of 65,536).
    /// </summary>
    public static long RangeOf(string root)
    {
        var (uid, gid, _) = Native.LstatOwner(root);
        return uid == gid && uid % UserIdRanges.PerContainer == 0 ? uid : 0;
    }

    /// <summary>Where one id goes when a tree moves from the range at <paramref name="from"/> to the range at <paramref name="to"/>.</summary>
    /// <remarks>
    /// An id of the source range moves with it; an id already in the target range stays; an id below 65,536 that is in
    /// neither (written by the host's root into a shifted tree) is taken as a container id; any other id cannot be mapped
    /// and becomes the container's nobody (65534), as the kernel shows unmapped ids.
    /// </remarks>
    public static long Map(long id, long from, long to)
    {
        const long count = UserIdRanges.PerContainer;
        if (id >= from && id < from + count)
            return id - from + to;
        if (id >= to && id < to + count)
            return id;
        if (id < count)
            return id + to;
        return to + 65534;
    }

    /// <summary>Moves every file under <paramref name="root"/> (on one file system, not following symlinks) to the range at <paramref name="to"/>.</summary>
    /// <returns>The number of files whose owner changed.</returns>
    public static long Shift(string root, long to, CancellationToken ct)
    {
        var from = RangeOf(root);
        if (from == to)
            return 0;
        long changed = 0;
        var pending = new Stack<string>();
        foreach (var entry in Entries(root))
            pending.Push(entry);
        while (pending.Count > 0)
        {
            ct.ThrowIfCancellationRequested();
            var path = pending.Pop();
            var (uid, gid, mode) = Native.LstatOwner(path);
            if ((mode & S_IFMT) == S_IFDIR)
            {
                foreach (var entry in Entries(path))
                    pending.Push(entry);
            }
            if (Change(path, uid, gid, mode, from, to))
                changed++;
        }
        var top = Native.LstatOwner(root);
        if (Change(root, top.Uid, top.Gid, top.Mode, from, to))
            changed++;
        return changed;
    }

    private static bool Change(string path, uint uid, uint gid, uint mode, long from, long to)
    {
        var newUid = (uint)Map(uid, from, to);
        var newGid = (uint)Map(gid, from, to);
        if (newUid == uid && newGid == gid)
            return false;
        if (Native.Lchown(path, newUid, newGid) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"Cannot change the owner of '{path}' to {newUid}:{newGid}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
        }
        if ((mode & S_IFMT) == S_IFREG && (mode & SetIdBits) != 0)
            _ = Native.Chmod(path, mode & 0xFFF); // chown cleared them
        return true;
    }

    private static IEnumerable<string> Entries(string directory)
        => Directory.EnumerateFileSystemEntries(directory, "*", new EnumerationOptions
        {
            RecurseSubdirectories = false,
            AttributesToSkip = 0,
            IgnoreInaccessible = false,
            ReturnSpecialDirectories = false,
        });
}
