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
    public static int Compress(Qcow2CompressionType type, ReadOnlySpan<byte> input, Span<byte> output, int maxLength)
    {
        if (type == Qcow2CompressionType.Zstd)
            return Zstd.Compress(input, output, maxLength);
        using var ms = new MemoryStream(input.Length);
        using (var ds = new DeflateStream(ms, new ZLibCompressionOptions { CompressionLevel = 6 }, leaveOpen: true))
            ds.Write(input);
        if (ms.Length >= maxLength || ms.Length > output.Length)
            return -1;
        ms.GetBuffer().AsSpan(0, (int)ms.Length).CopyTo(output);
        return (int)ms.Length;
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
        [LibraryImport(Lib)] private static partial nuint ZSTD_compress(nint dst, nuint dstCapacity, nint src, nuint srcSize, int level);

        [ThreadStatic] private static nint t_dctx;

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

        public static unsafe int Compress(ReadOnlySpan<byte> input, Span<byte> output, int maxLength)
        {
            EnsureAvailable();
            fixed (byte* pi = input)
            fixed (byte* po = output)
            {
                nuint r = ZSTD_compress((nint)po, (nuint)output.Length, (nint)pi, (nuint)input.Length, 3);
                if (ZSTD_isError(r) != 0 || (int)r >= maxLength)
                    return -1;
                return (int)r;
            }
        }
    }
}
