using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Vm.Internal;

/// <summary>What the VM package needs from a QCOW2 implementation (a seam for tests).</summary>
internal interface IDiskImages
{
    /// <summary>Creates an empty QCOW2 image (optionally an overlay on <paramref name="backingFile"/>); never overwrites.</summary>
    Task CreateAsync(string path, long sizeBytes, string? backingFile, CancellationToken cancellationToken);

    /// <summary>Grows an image that no process has open (the image lock refuses one that is in use).</summary>
    Task ResizeAsync(string path, long sizeBytes, CancellationToken cancellationToken);

    /// <summary>The image's virtual size.</summary>
    Task<long> GetVirtualSizeAsync(string path, CancellationToken cancellationToken);

    /// <summary>The image's backing file as recorded in it, or null.</summary>
    Task<string?> GetBackingFileAsync(string path, CancellationToken cancellationToken);
}

/// <summary>VM disks through Virtuozzo.Sdk.Storage.Qcow2 (the managed QCOW2 engine; no qemu-img).</summary>
internal sealed class Qcow2DiskImages : IDiskImages
{
    public async Task CreateAsync(string path, long sizeBytes, string? backingFile, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sizeBytes);
        if (File.Exists(path))
            throw new AlreadyExistsException($"The disk image '{path}' already exists.");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var options = new Qcow2CreateOptions
        {
            Size = sizeBytes,
            BackingFile = backingFile,
            BackingFormat = backingFile is null ? null : "qcow2",
            Overwrite = false,
        };
        try
        {
            var image = await Qcow2Image.CreateAsync(path, options, cancellationToken).ConfigureAwait(false);
            await image.DisposeAsync().ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            throw new InvalidStateException($"Cannot create the disk image '{path}': {ex.Message}", ex);
        }
    }

    public async Task ResizeAsync(string path, long sizeBytes, CancellationToken cancellationToken)
    {
        try
        {
            var image = await Qcow2Image.OpenAsync(path, null, cancellationToken).ConfigureAwait(false);
            await using (image.ConfigureAwait(false))
            {
                image.Resize(sizeBytes);
                await image.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Qcow2LockedException ex)
        {
            throw new InvalidStateException($"The disk image '{path}' is in use by another process: {ex.Message}", ex);
        }
        catch (IOException ex)
        {
            throw new InvalidStateException($"Cannot resize the disk image '{path}': {ex.Message}", ex);
        }
    }

    public async Task<long> GetVirtualSizeAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            var image = await Qcow2Image.OpenAsync(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true, NoBacking = true }, cancellationToken).ConfigureAwait(false);
            await using (image.ConfigureAwait(false))
                return image.Size;
        }
        catch (IOException ex)
        {
            throw new InvalidStateException($"'{path}' is not a usable QCOW2 image: {ex.Message}", ex);
        }
    }

    public async Task<string?> GetBackingFileAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            var image = await Qcow2Image.OpenAsync(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true, NoBacking = true }, cancellationToken).ConfigureAwait(false);
            await using (image.ConfigureAwait(false))
                return image.BackingFile;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
