using Virtuozzo.Sdk.Storage.Qcow2;

namespace Vzsdk.Disk;

/// <summary>A disk image of either format, for the verbs that work on both (io, compare).</summary>
internal abstract class DiskTarget : IDisposable
{
    public abstract long Size { get; }

    public abstract void Read(long offset, Span<byte> buffer);

    public abstract void Write(long offset, ReadOnlySpan<byte> data);

    public abstract void WriteCompressed(long offset, ReadOnlySpan<byte> data);

    public abstract void WriteZeroes(long offset, long length, bool unmap);

    public abstract void Discard(long offset, long length);

    public abstract void Flush();

    public abstract void Dispose();

    public static DiskTarget Open(string path, string? format, bool readOnly, bool forceShare)
    {
        var fmt = DiskArgs.ProbeFormat(path, format);
        if (fmt == "qcow2")
            return new Qcow2Target(Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = readOnly, ForceShare = forceShare }));
        return new RawTarget(path, readOnly);
    }

    private sealed class Qcow2Target(Qcow2Image img) : DiskTarget
    {
        public override long Size => img.Size;
        public override void Read(long offset, Span<byte> buffer) => img.Read(offset, buffer);
        public override void Write(long offset, ReadOnlySpan<byte> data) => img.Write(offset, data);
        public override void WriteCompressed(long offset, ReadOnlySpan<byte> data) => img.WriteCompressed(offset, data);
        public override void WriteZeroes(long offset, long length, bool unmap) => img.WriteZeroes(offset, length, unmap);
        public override void Discard(long offset, long length) => img.Discard(offset, length);
        public override void Flush() => img.Flush();
        public override void Dispose() => img.Dispose();
    }

    private sealed class RawTarget : DiskTarget
    {
        private readonly FileStream _fs;

        public RawTarget(string path, bool readOnly)
            => _fs = new FileStream(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite, 1, FileOptions.RandomAccess);

        public override long Size => _fs.Length;

        public override void Read(long offset, Span<byte> buffer)
        {
            if (offset < 0 || offset + buffer.Length > Size)
                throw new ArgumentOutOfRangeException(nameof(offset), "Request out of range.");
            int n = RandomAccess.Read(_fs.SafeFileHandle, buffer, offset);
            buffer[n..].Clear();
        }

        public override void Write(long offset, ReadOnlySpan<byte> data)
        {
            if (offset < 0 || offset + data.Length > Size)
                throw new ArgumentOutOfRangeException(nameof(offset), "Request out of range.");
            RandomAccess.Write(_fs.SafeFileHandle, data, offset);
        }

        public override void WriteCompressed(long offset, ReadOnlySpan<byte> data) => throw new InvalidOperationException("Compressed writes need a qcow2 image.");

        public override void WriteZeroes(long offset, long length, bool unmap)
        {
            var z = new byte[Math.Min(length, 1 << 20)];
            for (long o = 0; o < length; o += z.Length)
                Write(offset + o, z.AsSpan(0, (int)Math.Min(z.Length, length - o)));
        }

        public override void Discard(long offset, long length) { }

        public override void Flush() => _fs.Flush(flushToDisk: true);

        public override void Dispose() => _fs.Dispose();
    }
}
