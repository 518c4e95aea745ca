using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>
/// QEMU-compatible image locking: open-file-description byte-range locks (F_OFD_SETLK). Byte 100+n is
/// held shared for each permission n we use (0 consistent read, 1 write, 3 resize), byte 200+n for each
/// permission n we deny to others. A permission conflicts when another holder has the opposite byte.
/// </summary>
internal static partial class FileLock
{
    private const int F_OFD_GETLK = 36, F_OFD_SETLK = 37;
    private const short F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;
    private const int PermRead = 0, PermWrite = 1, PermResize = 3;

    [StructLayout(LayoutKind.Sequential)]
    private struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Len;
        public int Pid;
    }

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(SafeFileHandle fd, int cmd, ref Flock lk);

    public static bool Supported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    /// <summary>Takes the locks for a writer or a reader; throws <see cref="Qcow2LockedException"/> on a conflict.</summary>
    public static void Acquire(SafeFileHandle fd, bool write, string path)
    {
        if (!Supported)
            return;
        int[] perms = write ? [PermRead, PermWrite, PermResize] : [PermRead];
        int[] denied = [PermWrite, PermResize];
        // Check first: someone denies what we use, or uses what we deny. A lock can outlive its holder by a
        // moment when a child process was forked while the file was open (the child shares the open file
        // description until it execs), so a conflict is retried briefly before it is reported.
        for (int attempt = 0; ; attempt++)
        {
            int conflict = Conflict(fd, perms, denied);
            if (conflict < 0)
                break;
            if (attempt >= 10)
                throw Locked(path, conflict);
            Thread.Sleep(20);
        }
        foreach (var p in perms)
            Set(fd, 100 + p, F_RDLCK);
        foreach (var p in denied)
            Set(fd, 200 + p, F_RDLCK);
    }

    /// <summary>Releases every lock this open file description holds on the lock bytes (a no-op when it holds none).</summary>
    public static void Release(SafeFileHandle fd)
    {
        if (!Supported)
            return;
        var lk = new Flock { Type = F_UNLCK, Whence = 0, Start = 100, Len = 200 };
        _ = Fcntl(fd, F_OFD_SETLK, ref lk);
    }

    private static int Conflict(SafeFileHandle fd, int[] perms, int[] denied)
    {
        foreach (var p in perms)
            if (IsLockedByOther(fd, 200 + p))
                return p;
        foreach (var p in denied)
            if (IsLockedByOther(fd, 100 + p))
                return p;
        return -1;
    }

    private static Qcow2LockedException Locked(string path, int perm)
        => new($"Failed to get shared \"{(perm == PermWrite ? "write" : perm == PermResize ? "resize" : "consistent read")}\" lock on {path}: is another process (QEMU?) using the image? Open it read-only with force-share (-U) to inspect it anyway.") { ImagePath = path };

    private static bool IsLockedByOther(SafeFileHandle fd, long offset)
    {
        var lk = new Flock { Type = F_WRLCK, Whence = 0, Start = offset, Len = 1 };
        if (Fcntl(fd, F_OFD_GETLK, ref lk) != 0)
            return false;
        return lk.Type != F_UNLCK;
    }

    private static void Set(SafeFileHandle fd, long offset, short type)
    {
        var lk = new Flock { Type = type, Whence = 0, Start = offset, Len = 1 };
        _ = Fcntl(fd, F_OFD_SETLK, ref lk);
    }
}
