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
}
