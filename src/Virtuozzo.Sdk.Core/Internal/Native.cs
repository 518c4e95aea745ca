using System.Runtime.InteropServices;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>The few libc calls the SDK needs (Linux).</summary>
internal static partial class Native
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int EWOULDBLOCK = 11;

    public const int O_RDONLY = 0;
    public const int O_WRONLY = 1;
    public const int O_RDWR = 2;
    public const int O_CREAT = 0x40;
    public const int O_CLOEXEC = 0x80000;
    public const int O_DIRECTORY = 0x10000;

    public const int LOCK_SH = 1;
    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;
    public const int LOCK_UN = 8;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    public const int AT_FDCWD = -100;
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const uint STATX_TYPE = 0x1;
    public const uint STATX_MODE = 0x2;
    public const uint STATX_UID = 0x8;
    public const uint STATX_GID = 0x10;

    /// <summary><c>statx</c>: its result's layout is the same on every architecture (uid at 20, gid at 24, mode at 28).</summary>
    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Lchown(string path, uint owner, uint group);

    [LibraryImport("libc", EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Chmod(string path, uint mode);

    /// <summary>The owner, group and mode of <paramref name="path"/> itself (a symlink is not followed).</summary>
    /// <exception cref="IOException">The file cannot be examined.</exception>
    public static unsafe (uint Uid, uint Gid, uint Mode) LstatOwner(string path)
    {
        var buffer = stackalloc byte[256];
        if (Statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"Cannot examine '{path}': {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
        }
        return (*(uint*)(buffer + 20), *(uint*)(buffer + 24), *(ushort*)(buffer + 28));
    }
    /// <summary>SYNC_FILE_RANGE_WRITE: start writeback of the range's dirty pages without waiting for it.</summary>
    public const uint SYNC_FILE_RANGE_WRITE = 2;

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    public static partial int SyncFileRange(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, long nbytes, uint flags);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEuid();

    [LibraryImport("libc", EntryPoint = "getpid")]
    public static partial int GetPid();

    /// <summary>Sends a signal; false when the process no longer exists.</summary>
    public static bool TrySignal(int pid, int signal) => Kill(pid, signal) == 0;

    /// <summary>Flushes a directory's entries to disk (after a rename into it). Best effort.</summary>
    public static void FsyncDirectory(string directory)
    {
        var fd = Open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (fd < 0)
            return;
        try { _ = Fsync(fd); }
        finally { _ = Close(fd); }
    }
}
