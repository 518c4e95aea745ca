using System.IO.Compression;
using System.Runtime.InteropServices;

namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>Cluster (de)compression: zlib as raw deflate (System.IO.Compression), zstd through the system libzstd.</summary>
internal static partial class Compression
{
    /// <summary>Decompresses exactly <paramref name="output"/>.Length bytes; trailing input (sector padding) is ignored.</summary>
    public static void Decompress(Qcow2CompressionType type, ReadOnlySpan<byte> input, Span<byte> output)
    {
        if (type == Qcow2CompressionType.Zstd)
        {
            Zstd.Decompress(input, output);
            return;
        }
        try
        {
            unsafe
            {
                fixed (byte* p = input)
                {
                    using var ms = new UnmanagedMemoryStream(p, input.Length);
                    using var ds = new DeflateStream(ms, CompressionMode.Decompress);
                    int total = 0;
                    while (total < output.Length)
                    {
                        int n = ds.Read(output[total..]);
                        if (n == 0)
                            break;
                        total += n;
                    }
                    if (total < output.Length)
                        throw new Qcow2FormatException("A compressed cluster decompresses to fewer bytes than a cluster.");
                }
            }
        }
        catch (InvalidDataException ex)
        {
            throw new Qcow2FormatException("A compressed cluster holds invalid deflate data.", ex);
        }
    }

    /// <summary>Compresses a cluster; returns the compressed length, or -1 when the result would not be smaller than <paramref name="maxLength"/>.</summary>
    /// <remarks>zlib: raw deflate at zlib level 6 (QEMU's Z_DEFAULT_COMPRESSION), written straight into <paramref name="output"/>. zstd: level 3 (ZSTD_CLEVEL_DEFAULT, as QEMU) with a per-thread context.</remarks>
    public static unsafe int Compress(Qcow2CompressionType type, ReadOnlySpan<byte> input, Span<byte> output, int maxLength)
    {
        int cap = Math.Min(output.Length, maxLength - 1);
        if (cap <= 0)
            return -1;
        if (type == Qcow2CompressionType.Zstd)
            return Zstd.Compress(input, output[..cap]);
        fixed (byte* po = output)
        {
            var sink = new PointerSink(po, cap);
            using (var ds = new DeflateStream(sink, new ZLibCompressionOptions { CompressionLevel = 6 }, leaveOpen: true))
                ds.Write(input);
            return sink.Overflowed ? -1 : sink.Written;
        }
    }

    /// <summary>A write-only stream into fixed memory that remembers, instead of throwing, when it ran out of room.</summary>
    private sealed unsafe class PointerSink(byte* start, int capacity) : Stream
    {
        public int Written { get; private set; }

        public bool Overflowed { get; private set; }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => Written;
        public override long Position { get => Written; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (Overflowed || buffer.Length > capacity - Written)
            {
                Overflowed = true;
                return;
            }
            buffer.CopyTo(new Span<byte>(start + Written, capacity - Written));
            Written += buffer.Length;
        }
    }

    /// <summary>zstd via P/Invoke to libzstd.so.1; a missing library raises <see cref="Qcow2NotSupportedException"/>.</summary>
    internal static partial class Zstd
    {
        private const string Lib = "libzstd.so.1";
        private static bool? s_available;

        /// <summary>Tests only: pretend libzstd is missing (false) or present (null restores probing).</summary>
        internal static bool? OverrideForTests { get; set; }

        public static bool IsAvailable
        {
            get
            {
                if (OverrideForTests is { } o)
                    return o && Probe();
                return Probe();
            }
        }

        private static bool Probe()
        {
            {
                if (s_available is { } a)
                    return a;
                try
                {
                    _ = ZSTD_versionNumber();
                    s_available = true;
                }
                catch (DllNotFoundException) { s_available = false; }
                catch (EntryPointNotFoundException) { s_available = false; }
                return s_available.Value;
            }
        }

        public static void EnsureAvailable()
        {
            if (!IsAvailable)
                throw new Qcow2NotSupportedException("zstd compression is not supported on this system: libzstd.so.1 could not be loaded. Install libzstd (zlib images keep working).");
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct Buffer
        {
            public nint Ptr;
            public nuint Size;
            public nuint Pos;
        }

        [LibraryImport(Lib)] private static partial uint ZSTD_versionNumber();
        [LibraryImport(Lib)] private static partial nint ZSTD_createDCtx();
        [LibraryImport(Lib)] private static partial nuint ZSTD_freeDCtx(nint ctx);
        [LibraryImport(Lib)] private static partial nuint ZSTD_decompressStream(nint ctx, ref Buffer output, ref Buffer input);
        [LibraryImport(Lib)] private static partial uint ZSTD_isError(nuint code);
        [LibraryImport(Lib)] private static partial nint ZSTD_createCCtx();
        [LibraryImport(Lib)] private static partial nuint ZSTD_compressCCtx(nint ctx, nint dst, nuint dstCapacity, nint src, nuint srcSize, int level);

        [ThreadStatic] private static nint t_dctx;
        [ThreadStatic] private static CompressContext? t_cctx;

        /// <summary>A compression context per thread, freed when the thread ends (the finalizer runs once the thread-static is gone).</summary>
        private sealed class CompressContext
        {
            public readonly nint Handle = ZSTD_createCCtx();

            ~CompressContext()
            {
                if (Handle != 0)
                    _ = ZSTD_freeCCtx(Handle);
            }
        }

        [LibraryImport(Lib)] private static partial nuint ZSTD_freeCCtx(nint ctx);

        public static unsafe void Decompress(ReadOnlySpan<byte> input, Span<byte> output)
        {
            EnsureAvailable();
            if (t_dctx == 0)
                t_dctx = ZSTD_createDCtx();
            else
                ResetDctx();
            fixed (byte* pi = input)
            fixed (byte* po = output)
            {
                var inb = new Buffer { Ptr = (nint)pi, Size = (nuint)input.Length };
                var outb = new Buffer { Ptr = (nint)po, Size = (nuint)output.Length };
                // Several frames may be concatenated; stop once the cluster is full.
                int guard = 0;
                while (outb.Pos < outb.Size)
                {
                    nuint before = inb.Pos, beforeOut = outb.Pos;
                    nuint r = ZSTD_decompressStream(t_dctx, ref outb, ref inb);
                    if (ZSTD_isError(r) != 0)
                    {
                        ResetDctx();
                        throw new Qcow2FormatException("A compressed cluster holds invalid zstd data.");
                    }
                    if (inb.Pos == before && outb.Pos == beforeOut && ++guard > 2)
                        break;
                    if (inb.Pos >= inb.Size && outb.Pos == beforeOut)
                        break;
                }
                if (outb.Pos < outb.Size)
                {
                    ResetDctx();
                    throw new Qcow2FormatException("A compressed cluster decompresses to fewer bytes than a cluster.");
                }
            }
        }

        private static void ResetDctx()
        {
            _ = ZSTD_freeDCtx(t_dctx);
            t_dctx = ZSTD_createDCtx();
        }

        /// <summary>Compresses at level 3 into <paramref name="output"/>; -1 when it does not fit (the data does not shrink enough).</summary>
        public static unsafe int Compress(ReadOnlySpan<byte> input, Span<byte> output)
        {
            EnsureAvailable();
            var ctx = t_cctx ??= new CompressContext();
            if (ctx.Handle == 0)
                throw new OutOfMemoryException("ZSTD_createCCtx failed.");
            fixed (byte* pi = input)
            fixed (byte* po = output)
            {
                nuint r = ZSTD_compressCCtx(ctx.Handle, (nint)po, (nuint)output.Length, (nint)pi, (nuint)input.Length, 3);
                if (ZSTD_isError(r) != 0)
                    return -1;
                return (int)r;
            }
        }
    }
}
