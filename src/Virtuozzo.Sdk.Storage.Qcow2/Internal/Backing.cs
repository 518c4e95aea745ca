namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>A layer below an image: a QCOW2 image or a raw file. Reads past its end return zeros.</summary>
internal interface IBacking : IDisposable
{
    long Size { get; }

    string Path { get; }

    string Format { get; }

    void Read(long offset, Span<byte> buffer);

    /// <summary>Writes (commit); grows the layer when the data ends past it.</summary>
    void Write(long offset, ReadOnlySpan<byte> data, bool zero);

    void Flush();

    /// <summary>Appends the allocation map of [offset, offset+length) to <paramref name="into"/>, at depth <paramref name="depth"/>.</summary>
    void Map(long offset, long length, int depth, List<Qcow2Extent> into);
}

internal sealed class RawBacking(FileStorage file) : IBacking
{
    public long Size { get; private set; } = file.Length;

    public void Write(long offset, ReadOnlySpan<byte> data, bool zero)
    {
        file.Write(offset, data);
        Size = Math.Max(Size, offset + data.Length);
    }

    public void Flush() => file.Flush();

    public string Path => file.Path!;

    public string Format => "raw";

    public void Read(long offset, Span<byte> buffer)
    {
        if (offset >= Size)
        {
            buffer.Clear();
            return;
        }
        int n = (int)Math.Min(buffer.Length, Size - offset);
        file.Read(offset, buffer[..n]);
        buffer[n..].Clear();
    }

    public void Map(long offset, long length, int depth, List<Qcow2Extent> into)
    {
        long inFile = Math.Clamp(Size - offset, 0, length);
        if (inFile > 0)
            into.Add(new Qcow2Extent(offset, inFile, Qcow2ExtentKind.Data, depth, offset));
        // QEMU sees a raw file in whole sectors: the rest of its last, partial sector reads as zeroes from this layer
        long sectorEnd = (Size + 511) / 512 * 512;
        long tail = Math.Clamp(Math.Min(sectorEnd, offset + length) - Math.Max(Size, offset), 0, length - inFile);
        if (tail > 0)
            into.Add(new Qcow2Extent(offset + inFile, tail, Qcow2ExtentKind.Zero, depth, offset + inFile));
        // past the end of a shorter backing file, qemu-img map reports the layer above it
        if (length > inFile + tail)
            into.Add(new Qcow2Extent(offset + inFile + tail, length - inFile - tail, Qcow2ExtentKind.Unallocated, depth - 1, null));
    }

    public void Dispose() => file.Dispose();
}

internal sealed class Qcow2Backing(Qcow2Image image) : IBacking
{
    public Qcow2Image Image => image;

    public long Size => image.Size;

    public string Path => image.Path ?? "";

    public string Format => "qcow2";

    public void Write(long offset, ReadOnlySpan<byte> data, bool zero)
    {
        if (offset + data.Length > image.Size)
            image.Resize(offset + data.Length);
        if (zero)
            image.WriteZeroes(offset, data.Length);
        else
            image.Write(offset, data);
    }

    public void Flush() => image.Flush();

    public void Read(long offset, Span<byte> buffer)
    {
        if (offset >= Size)
        {
            buffer.Clear();
            return;
        }
        int n = (int)Math.Min(buffer.Length, Size - offset);
        image.ReadShared(offset, buffer[..n]);
        buffer[n..].Clear();
    }

    public void Map(long offset, long length, int depth, List<Qcow2Extent> into)
    {
        long inImage = Math.Clamp(Size - offset, 0, length);
        if (inImage > 0)
            image.MapInto(offset, inImage, depth, into);
        if (length > inImage)
            into.Add(new Qcow2Extent(offset + inImage, length - inImage, Qcow2ExtentKind.Unallocated, depth - 1, null));
    }

    public void Dispose() => image.Dispose();
}
