using System.Runtime.InteropServices;

namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

internal static partial class Native
{
    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static unsafe partial int Stat(string path, byte* buf);

    /// <summary>Bytes allocated on disk for a file (st_blocks × 512), or null where unknown.</summary>
    public static unsafe long? AllocatedBytes(string path)
    {
        // struct stat puts st_blocks at offset 64 on both x86_64 and the generic (arm64) layout.
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture is not (Architecture.X64 or Architecture.Arm64))
            return null;
        byte* buf = stackalloc byte[256];
        try
        {
            if (Stat(path, buf) != 0)
                return null;
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
        return *(long*)(buf + 64) * 512;
    }

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long LSeek(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, int whence);

    /// <summary>The data extents of a (sparse) file via SEEK_DATA/SEEK_HOLE; the whole file when the platform cannot tell.</summary>
    public static List<(long Start, long Length)> DataExtents(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long size)
    {
        const int SeekData = 3, SeekHole = 4;
        if (!OperatingSystem.IsLinux())
            return [(0, size)];
        var list = new List<(long Start, long Length)>();
        try
        {
            long pos = 0;
            while (pos < size)
            {
                long data = LSeek(fd, pos, SeekData);
                if (data < 0 || data >= size)
                    break;
                long hole = LSeek(fd, data, SeekHole);
                if (hole < 0 || hole > size)
                    hole = size;
                if (hole <= data)
                    return [(0, size)];
                list.Add((data, hole - data));
                pos = hole;
            }
            return list;
        }
        catch (EntryPointNotFoundException)
        {
            return [(0, size)];
        }
    }

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, long nbytes, uint flags);

    /// <summary>
    /// Starts writing back a range of a file's dirty pages without waiting (sync_file_range with
    /// SYNC_FILE_RANGE_WRITE), so that a later fsync has less left to wait for. Best effort: does nothing
    /// where the call is not available.
    /// </summary>
    public static void StartWriteback(Microsoft.Win32.SafeHandles.SafeFileHandle fd, long offset, long length)
    {
        const uint SyncFileRangeWrite = 2;
        if (!OperatingSystem.IsLinux() || length <= 0)
            return;
        try
        {
            _ = SyncFileRange(fd, offset, length, SyncFileRangeWrite);
        }
        catch (EntryPointNotFoundException)
        {
        }
    }
}
