using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Qemu;

namespace Virtuozzo.Sdk.Vm.Internal;

/// <summary>
/// What the VM package needs from a QCOW2 implementation. Today's implementation (<see cref="InterimDiskImages"/>)
/// writes empty images itself and resizes offline through the storage daemon's QMP; it is to be replaced by the
/// Virtuozzo.Sdk.Storage.Qcow2 library when that lands on main. Never shells out to qemu-img.
/// </summary>
internal interface IDiskImages
{
    /// <summary>Creates an empty QCOW2 image (optionally an overlay on <paramref name="backingFile"/>).</summary>
    Task CreateAsync(string path, long sizeBytes, string? backingFile, CancellationToken cancellationToken);

    /// <summary>Grows an image that no process has open.</summary>
    Task ResizeAsync(string path, long sizeBytes, CancellationToken cancellationToken);

    /// <summary>The image's virtual size.</summary>
    Task<long> GetVirtualSizeAsync(string path, CancellationToken cancellationToken);
}

/// <summary>See <see cref="IDiskImages"/>.</summary>
internal sealed class InterimDiskImages(IVirtuozzoHost host) : IDiskImages
{
    private const int ClusterBits = 16;
    private const int ClusterSize = 1 << ClusterBits;
    private const long L2Coverage = (long)ClusterSize / 8 * ClusterSize; // 512 MiB per L1 entry
    private const uint BackingFormatExtension = 0xE2792ACA;

    /// <summary>
    /// Writes an empty QCOW2 v3 image: header (cluster 0), refcount table (1), refcount block (2), L1 table (3). The
    /// L1 table has a whole cluster (up to 4 TiB) so that QEMU never has to move it to grow the image.
    /// </summary>
    public Task CreateAsync(string path, long sizeBytes, string? backingFile, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sizeBytes);
        if (sizeBytes % 512 != 0)
            throw new ArgumentException("A disk's size must be a multiple of 512 bytes.", nameof(sizeBytes));
        if (sizeBytes > L2Coverage * (ClusterSize / 8))
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), "Disks larger than 4 TiB are not supported yet.");
        var image = new byte[4 * ClusterSize];
        var h = image.AsSpan();
        BinaryPrimitives.WriteUInt32BigEndian(h[0..], 0x514649FB);
        BinaryPrimitives.WriteUInt32BigEndian(h[4..], 3);
        BinaryPrimitives.WriteUInt32BigEndian(h[20..], ClusterBits);
        BinaryPrimitives.WriteUInt64BigEndian(h[24..], (ulong)sizeBytes);
        BinaryPrimitives.WriteUInt32BigEndian(h[36..], (uint)((sizeBytes + L2Coverage - 1) / L2Coverage));
        BinaryPrimitives.WriteUInt64BigEndian(h[40..], 3 * ClusterSize);
        BinaryPrimitives.WriteUInt64BigEndian(h[48..], 1 * ClusterSize);
        BinaryPrimitives.WriteUInt32BigEndian(h[56..], 1);
        BinaryPrimitives.WriteUInt32BigEndian(h[96..], 4); // refcount_order: 16-bit refcounts
        BinaryPrimitives.WriteUInt32BigEndian(h[100..], 104); // header_length
        var offset = 104;
        if (backingFile is not null)
        {
            var fmt = "qcow2"u8;
            BinaryPrimitives.WriteUInt32BigEndian(h[offset..], BackingFormatExtension);
            BinaryPrimitives.WriteUInt32BigEndian(h[(offset + 4)..], (uint)fmt.Length);
            fmt.CopyTo(h[(offset + 8)..]);
            offset += 8 + ((fmt.Length + 7) & ~7);
        }
        offset += 8; // end of extensions (type 0, length 0)
        if (backingFile is not null)
        {
            var name = Encoding.UTF8.GetBytes(backingFile);
            if (offset + name.Length > ClusterSize)
                throw new ArgumentException("The backing file's path is too long.", nameof(backingFile));
            name.CopyTo(h[offset..]);
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], (ulong)offset);
            BinaryPrimitives.WriteUInt32BigEndian(h[16..], (uint)name.Length);
        }
        BinaryPrimitives.WriteUInt64BigEndian(h[ClusterSize..], 2 * ClusterSize); // refcount table -> block
        for (var i = 0; i < 4; i++)
            BinaryPrimitives.WriteUInt16BigEndian(h[(2 * ClusterSize + i * 2)..], 1);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return Write(path, image, cancellationToken);
    }

    private static async Task Write(string path, byte[] image, CancellationToken ct)
    {
        var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.Asynchronous);
        await using (fs.ConfigureAwait(false))
        {
            await fs.WriteAsync(image, ct).ConfigureAwait(false);
            await fs.FlushAsync(ct).ConfigureAwait(false);
            fs.Flush(flushToDisk: true);
        }
    }

    public async Task<long> GetVirtualSizeAsync(string path, CancellationToken cancellationToken)
    {
        var header = new byte[32];
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 4096, FileOptions.Asynchronous);
        await using (fs.ConfigureAwait(false))
            await fs.ReadExactlyAsync(header, cancellationToken).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32BigEndian(header) != 0x514649FB)
            throw new InvalidStateException($"'{path}' is not a QCOW2 image.");
        return (long)BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(24));
    }

    /// <summary>Grows an image offline with the storage daemon (it honours the image's lock, so a disk in use is refused).</summary>
    public async Task ResizeAsync(string path, long sizeBytes, CancellationToken cancellationToken)
    {
        var dir = Path.Combine(Path.GetTempPath(), "vzsdk-resize-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(dir);
        var sock = Path.Combine(dir, "qmp");
        var pidFile = Path.Combine(dir, "pid");
        try
        {
            await host.ExecuteBufferedAsync(new Command("qemu-storage-daemon").WithArguments(
                    "--daemonize", "--pidfile", pidFile,
                    "--blockdev", $"driver=file,node-name=f0,filename={QemuCommandLine.Escape(path)}",
                    "--blockdev", "driver=qcow2,node-name=d0,file=f0",
                    "--chardev", $"socket,id=m0,path={sock},server=on,wait=off",
                    "--monitor", "chardev=m0")
                .WithTimeout(TimeSpan.FromSeconds(30)), cancellationToken).ConfigureAwait(false);
            var qmp = await QmpClient.ConnectAsync(sock, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                try
                {
                    await qmp.ExecuteAsync("block_resize", new JsonObject { ["node-name"] = "d0", ["size"] = sizeBytes }, TimeSpan.FromSeconds(60), cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    try { await qmp.ExecuteAsync("quit", null, TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false); }
                    catch (VirtuozzoException) { }
                }
            }
            // Wait until the daemon has released the image.
            for (var i = 0; i < 100 && File.Exists(pidFile); i++)
                await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            try { Directory.Delete(dir, true); }
            catch (IOException) { }
        }
    }
}
