using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>The byte store under an image: a file, or (in tests) memory that can "lose power".</summary>
internal abstract class ImageStorage : IDisposable
{
    public abstract long Length { get; }

    /// <summary>Reads up to <paramref name="buffer"/>.Length bytes; bytes past the end read as zeros. Returns the bytes that came from the store.</summary>
    public abstract int Read(long offset, Span<byte> buffer);

    public abstract void Write(long offset, ReadOnlySpan<byte> data);

    public abstract void Flush();

    public abstract void SetLength(long length);

    public virtual string? Path => null;

    public virtual void Dispose() { }
}

/// <summary>A file opened through a <see cref="SafeFileHandle"/> with positional I/O.</summary>
internal sealed partial class FileStorage : ImageStorage
{
    private readonly SafeFileHandle _handle;
    private readonly string _path;

    public FileStorage(string path, bool writable, bool create = false)
    {
        _path = System.IO.Path.GetFullPath(path);
        _handle = File.OpenHandle(_path, create ? FileMode.OpenOrCreate : FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
    }

    public SafeFileHandle Handle => _handle;

    public override string? Path => _path;

    public override long Length => RandomAccess.GetLength(_handle);

    public override int Read(long offset, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = RandomAccess.Read(_handle, buffer[total..], offset + total);
            if (n <= 0)
                break;
            total += n;
        }
        buffer[total..].Clear();
        return total;
    }

    public override void Write(long offset, ReadOnlySpan<byte> data) => RandomAccess.Write(_handle, data, offset);

    public override void Flush()
    {
        if (OperatingSystem.IsWindows())
            return;
        if (Fsync(_handle) != 0)
            throw new Qcow2Exception($"fsync failed on {_path} (errno {Marshal.GetLastPInvokeError()}).") { ImagePath = _path };
    }

    public override void SetLength(long length) => RandomAccess.SetLength(_handle, length);

    public override void Dispose()
    {
        // Release the image locks before closing: a child process another thread forks while the file is
        // open shares its open file description until it execs, and the description's locks would live
        // on in it for that moment, long enough for a QEMU started right after this to be refused.
        if (!_handle.IsClosed)
            FileLock.Release(_handle);
        _handle.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(SafeFileHandle fd);
}

/// <summary>An in-memory store (tests and measuring).</summary>
internal class MemoryStorage : ImageStorage
{
    protected byte[] _data = new byte[0];
    protected long _length;
    private readonly Lock _lock = new();

    public MemoryStorage() { }

    public MemoryStorage(byte[] contents)
    {
        _data = (byte[])contents.Clone();
        _length = contents.Length;
    }

    public override long Length { get { lock (_lock) return _length; } }

    public byte[] ToArray() { lock (_lock) return _data.AsSpan(0, (int)_length).ToArray(); }

    public override int Read(long offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            int n = (int)Math.Clamp(_length - offset, 0, buffer.Length);
            if (n > 0)
                _data.AsSpan((int)offset, n).CopyTo(buffer);
            buffer[n..].Clear();
            return n;
        }
    }

    public override void Write(long offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            long end = offset + data.Length;
            EnsureCapacity(end);
            data.CopyTo(_data.AsSpan((int)offset));
            if (end > _length)
                _length = end;
        }
    }

    private void EnsureCapacity(long end)
    {
        if (end > int.MaxValue)
            throw new IOException("Memory storage is limited to 2 GiB.");
        if (end > _data.Length)
            Array.Resize(ref _data, (int)Math.Max(end, Math.Min(int.MaxValue, _data.Length * 2L)));
    }

    public override void Flush() { }

    public override void SetLength(long length)
    {
        lock (_lock)
        {
            EnsureCapacity(length);
            if (length < _length)
                _data.AsSpan((int)length, (int)(_length - length)).Clear();
            _length = length;
        }
    }
}
