using System.Security.Cryptography;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.IntegrationTests.Backup;

/// <summary>What a guest sees on a disk, as one SHA-256 over its whole virtual content (read through its chain).</summary>
internal static class DiskContent
{
    public static string Digest(string disk)
    {
        using var image = Qcow2Image.Open(disk, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
        using var sha = SHA256.Create();
        var buffer = new byte[1 << 20];
        for (long off = 0; off < image.Size; off += buffer.Length)
        {
            var n = (int)Math.Min(buffer.Length, image.Size - off);
            image.Read(off, buffer.AsSpan(0, n));
            sha.TransformBlock(buffer, 0, n, null, 0);
        }
        sha.TransformFinalBlock([], 0, 0);
        return Convert.ToHexString(sha.Hash!);
    }
}
