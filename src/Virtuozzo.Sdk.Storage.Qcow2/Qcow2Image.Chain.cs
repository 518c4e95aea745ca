using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

/// <summary>The result of <see cref="Qcow2Image.Measure"/>, as <c>qemu-img measure</c> prints it.</summary>
/// <param name="Required">Bytes a new image needs to hold the source's data.</param>
/// <param name="FullyAllocated">Bytes a fully allocated image of that size needs.</param>
public sealed record Qcow2Measurement(long Required, long FullyAllocated);

/// <summary>Changes for <see cref="Qcow2Image.Amend"/>; null leaves a setting as it is.</summary>
public sealed record Qcow2AmendOptions
{
    /// <summary>The new version: 2 (<c>compat=0.10</c>) or 3 (<c>compat=1.1</c>).</summary>
    public int? Version { get; init; }

    /// <summary>Set or clear the lazy-refcounts feature.</summary>
    public bool? LazyRefcounts { get; init; }

    /// <summary>A new refcount width, a power of two from 1 to 64 (version 3 only); the refcount structure is rebuilt.</summary>
    public int? RefcountBits { get; init; }
}

public sealed partial class Qcow2Image
{
    /// <summary>Points the image at another backing file. Unsafe mode only rewrites the name; safe mode first copies into this image every cluster where the old and new backing files differ, so the guest sees the same data.</summary>
    /// <param name="backingFile">The new backing file (relative to this image's directory), or null to remove the backing file.</param>
    /// <param name="backingFormat">Its format (qcow2 or raw); probed when null.</param>
    /// <param name="unsafeMode">Only rewrite the header (qemu-img's <c>-u</c>).</param>
    /// <remarks>Like <c>qemu-img rebase [-u] -b BACKING -F FMT FILE</c>.</remarks>
    public void Rebase(string? backingFile, string? backingFormat = null, bool unsafeMode = false)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            if (string.IsNullOrEmpty(backingFile))
            {
                backingFile = null;
                backingFormat = null;
            }
            IBacking? next = null;
            try
            {
                if (backingFile is not null)
                {
                    var chain = new HashSet<string>();
                    if (Path is { } me)
                        chain.Add(me);
                    next = OpenBacking(chain, backingFile, backingFormat, writable: false);
                    backingFormat ??= next!.Format;
                }
                if (!unsafeMode)
                    CopyDifferences(next);
                FlushMetadata();
                _h.BackingFile = backingFile;
                _h.BackingFormat = backingFormat;
                RewriteHeader();
                _backing?.Dispose();
                _backing = next;
                next = null;
            }
            finally
            {
                next?.Dispose();
            }
        }
    }

    private void CopyDifferences(IBacking? next)
    {
        var a = new byte[_cs];
        var b = new byte[_cs];
        long clusters = (_h.Size + _cs - 1) >> _cb;
        for (long vcl = 0; vcl < clusters; vcl++)
        {
            long off = vcl << _cb;
            int n = (int)Math.Min(_cs, _h.Size - off);
            // only what this image does not hold itself
            var m = Lookup(_l1, off, n);
            if (m.Kind != MapKind.Unallocated && m.Length >= n)
                continue;
            var sa = a.AsSpan(0, n);
            var sb = b.AsSpan(0, n);
            if (_backing is null)
                sa.Clear();
            else
                _backing.Read(off, sa);
            if (next is null)
                sb.Clear();
            else
                next.Read(off, sb);
            if (sa.SequenceEqual(sb))
                continue;
            // write the old view (including our own subclusters) so that nothing changes for the guest
            ReadCore(_l1, off, sa);
            WriteCore(off, sa);
        }
    }

    private void RewriteHeader()
    {
        var raw = _h.Serialize();
        int used = _h.BackingFileOffset != 0 ? (int)(_h.BackingFileOffset + _h.BackingFileSize) : raw.Length;
        Barrier();
        _file.Write(0, raw.AsSpan(0, Math.Max(used, Math.Min(raw.Length, 4096))));
        Barrier();
    }

    /// <summary>Writes this image's data into its backing file, then (by default) empties this image.</summary>
    /// <param name="emptyTop">Discard this image's clusters afterwards (qemu-img commit does unless <c>-d</c>).</param>
    /// <remarks>Like <c>qemu-img commit [-d] FILE</c>.</remarks>
    public void Commit(bool emptyTop = true)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            if (_backing is null)
                throw new InvalidOperationException("The image has no backing file to commit into.");
            string name = _h.BackingFile!;
            string? format = _backing.Format;
            _backing.Dispose();
            _backing = null;
            try
            {
                using (var target = OpenBacking([Path ?? ""], name, format, writable: true)!)
                {
                    var buf = new byte[Math.Max(_cs, 1 << 20)];
                    long off = 0;
                    while (off < _h.Size)
                    {
                        var m = Lookup(_l1, off, Math.Min(buf.Length, _h.Size - off));
                        if (m.Kind != MapKind.Unallocated)
                        {
                            var span = buf.AsSpan(0, (int)m.Length);
                            ReadCore(_l1, off, span);
                            target.Write(off, span, m.Kind == MapKind.Zero);
                        }
                        off += m.Length;
                    }
                    target.Flush();
                }
                if (emptyTop)
                {
                    ZeroOrDiscard(0, _h.Size, zero: false, unmap: true);
                    // version 3 discards with a backing file leave zero flags; drop them so reads fall through
                    for (long i = 0; i < _l1.Length; i++)
                    {
                        long l2 = (long)(_l1[i] & OffsetMask);
                        if (l2 == 0)
                            continue;
                        var pending = new List<PendingEntry>();
                        var table = GetL2(l2);
                        for (int j = 0; j < _l2Entries; j++)
                            if (L2Entry(table, j) != 0 || L2Bitmap(table, j) != 0)
                                pending.Add(new PendingEntry(GetWritableL2(i), j, 0, 0));
                        Commit(pending, [], false);
                    }
                }
                FlushMetadata();
                _file.Flush();
            }
            finally
            {
                _backing = OpenBacking([Path ?? ""], name, format, writable: false);
            }
        }
    }

    /// <summary>Changes the version or the lazy-refcounts feature in place.</summary>
    /// <param name="options">What to change.</param>
    /// <remarks>Like <c>qemu-img amend -o compat=…,lazy_refcounts=…,refcount_bits=… FILE</c>. Downgrading to version 2 needs an image without zero clusters, extended L2, zstd or non-16-bit refcounts.</remarks>
    public void Amend(Qcow2AmendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        lock (_lock)
        {
            ThrowIfDisposed();
            ThrowIfReadOnly();
            int version = options.Version ?? (int)_h.Version;
            if (version is not (2 or 3))
                throw new ArgumentOutOfRangeException(nameof(options), "Version must be 2 or 3.");
            if (options.RefcountBits is { } bits && bits != _h.RefcountBits)
            {
                if (bits < 1 || bits > 64 || !System.Numerics.BitOperations.IsPow2(bits))
                    throw new ArgumentOutOfRangeException(nameof(options), "RefcountBits must be a power of two from 1 to 64.");
                if (version == 2 && bits != 16)
                    throw new ArgumentException("compat=0.10 images need refcount_bits=16.", nameof(options));
                if (_h.Version < 3)
                    throw new ArgumentException("Change compat to 1.1 before changing refcount_bits.", nameof(options));
                FlushMetadata();
                _file.Flush();
                RebuildRefcounts(System.Numerics.BitOperations.Log2((uint)bits));
                FixCopiedFlags();
                _file.Flush();
            }
            bool lazy = options.LazyRefcounts ?? (_h.Compatible & Header.CompatLazyRefcounts) != 0;
            if (version == 2)
            {
                if (lazy)
                    throw new ArgumentException("Lazy refcounts need compat=1.1.", nameof(options));
                if (_bitmaps.Count > 0)
                    throw new ArgumentException("Cannot downgrade an image with persistent bitmaps to compat=0.10; remove them first.", nameof(options));
                if (_h.RefcountBits != 16 || _h.ExtendedL2 || _h.CompressionType != 0 || _h.Incompatible != 0)
                    throw new ArgumentException("This image uses features that compat=0.10 cannot express (refcount width, extended L2, zstd or incompatible features).", nameof(options));
                if (_h.Version == 3)
                    ExpandZeroClusters();
                _h.Autoclear = 0;
                _h.Compatible = 0;
                _h.Extensions.RemoveAll(e => e.Type is Header.ExtFeatureTable or Header.ExtBitmaps);
            }
            else
            {
                if (_h.Version == 2)
                {
                    _h.HeaderLength = 112;
                    _h.Extensions.Insert(0, (Header.ExtFeatureTable, Header.FeatureTable()));
                }
                _h.Compatible = lazy ? _h.Compatible | Header.CompatLazyRefcounts : _h.Compatible & ~Header.CompatLazyRefcounts;
            }
            FlushMetadata();
            _h.Version = (uint)version;
            RewriteHeader();
        }
    }

    /// <summary>Turns zero-flag clusters into something version 2 understands (unallocated without a backing file, written zeros with one).</summary>
    private void ExpandZeroClusters()
    {
        var zeros = new byte[_cs];
        for (long i = 0; i < _l1.Length; i++)
        {
            long l2 = (long)(_l1[i] & OffsetMask);
            if (l2 == 0)
                continue;
            for (int j = 0; j < _l2Entries; j++)
            {
                ulong e = L2Entry(GetL2(l2), j);
                if ((e & CompressedFlag) != 0 || (e & ZeroFlag) == 0)
                    continue;
                long off = ((i * _l2Entries) + j) << _cb;
                if (off >= _h.Size)
                    continue;
                int n = (int)Math.Min(_cs, _h.Size - off);
                long l2w = GetWritableL2(i);
                if (_backing is null)
                {
                    Commit([new PendingEntry(l2w, j, 0, 0)], (e & OffsetMask) != 0 ? [e & ~ZeroFlag] : [], false);
                }
                else
                {
                    long host = (long)(e & OffsetMask);
                    if (host == 0 || (e & Copied) == 0)
                        host = AllocateClusters(1);
                    _file.Write(host, zeros.AsSpan(0, _cs));
                    Commit([new PendingEntry(l2w, j, (ulong)host | Copied, 0)], [], true);
                }
                l2 = l2w;
            }
        }
        FlushMetadata();
        _file.Flush();
    }

    /// <summary>Computes the file size a new QCOW2 image needs, like <c>qemu-img measure</c>.</summary>
    /// <param name="options">Output image options (size, cluster size, refcount bits, extended L2).</param>
    /// <param name="sourcePath">A source image (qcow2 or raw) whose data is counted; null to measure an empty image of <c>options.Size</c>.</param>
    /// <returns>Required and fully-allocated sizes in bytes.</returns>
    public static Qcow2Measurement Measure(Qcow2CreateOptions options, string? sourcePath = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        long size = options.Size;
        long dataBytes = 0;
        int cs = options.ClusterSize;
        if (sourcePath is not null)
        {
            if (IsQcow2(sourcePath))
            {
                using var src = Open(sourcePath, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
                size = src.Size;
                long lastCluster = -1;
                foreach (var e in src.GetAllocationMap())
                {
                    if (!e.Data)
                        continue;
                    long first = Math.Max(e.Start / cs, lastCluster + 1);
                    long last = (e.Start + e.Length - 1) / cs;
                    if (last >= first)
                        dataBytes += (last - first + 1) * cs;
                    lastCluster = Math.Max(lastCluster, last);
                }
            }
            else
            {
                // a raw source's holes need no clusters
                using var fs = new FileStream(sourcePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                size = fs.Length;
                long lastCluster = -1;
                foreach (var (start, length) in Native.DataExtents(fs.SafeFileHandle, size))
                {
                    long first = Math.Max(start / cs, lastCluster + 1);
                    long last = (start + length - 1) / cs;
                    if (last >= first)
                        dataBytes += (last - first + 1) * cs;
                    lastCluster = Math.Max(lastCluster, last);
                }
            }
        }
        long full = PreallocSize(size, cs, options.RefcountBits, options.ExtendedL2);
        long alignedSize = (size + cs - 1) / cs * cs;
        return new Qcow2Measurement(full - alignedSize + dataBytes, full);
    }

    private static long PreallocSize(long size, long cs, int refcountBits, bool extL2)
    {
        long aligned = (size + cs - 1) / cs * cs;
        int l2e = extL2 ? 16 : 8;
        long meta = cs;
        long nl2e = aligned / cs;
        nl2e = (nl2e + cs / l2e - 1) / (cs / l2e) * (cs / l2e);
        meta += nl2e * l2e;
        long nl1e = nl2e * l2e / cs;
        meta += (nl1e * 8 + cs - 1) / cs * cs;
        long clusters = (meta + aligned) / cs;
        long rbEntries = cs * 8 / refcountBits;
        long blocks = 0, table = 0, last;
        do
        {
            last = blocks + table;
            blocks = (clusters + table + blocks + rbEntries - 1) / rbEntries;
            table = (blocks + cs / 8 - 1) / (cs / 8);
        }
        while (blocks + table != last);
        meta += (blocks + table) * cs;
        return meta + aligned;
    }
}
