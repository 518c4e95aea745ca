using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2;

/// <summary>
/// A QCOW2 disk image, opened for reading or writing. Thread-safe: one lock serialises metadata and I/O.
/// </summary>
/// <remarks>
/// Sync and async share one synchronous core. The <c>…Async</c> methods run it on the calling thread
/// and return a completed task: QCOW2 I/O on a local, page-cached file completes in microseconds, and
/// offloading each call to the thread pool would cost more than it saves. Wrap calls in
/// <see cref="Task.Run(Action)"/> when the file sits on slow storage and the caller must not block.
/// Equivalent tools: <c>qemu-img</c> and <c>qemu-io</c>.
/// </remarks>
public sealed partial class Qcow2Image : IDisposable, IAsyncDisposable
{
    internal const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;
    internal const ulong Copied = 1UL << 63;
    internal const ulong CompressedFlag = 1UL << 62;
    internal const ulong ZeroFlag = 1UL;
    private const int MaxChainDepth = 128;

    private readonly ImageStorage _file;
    private readonly Header _h;
    private readonly Qcow2OpenOptions _options;
    private readonly Lock _lock = new();
    private readonly int _cb;
    private readonly int _cs;
    private readonly int _l2Entries;
    private readonly int _eb;
    private long _rbEntries;
    private readonly BlockCache _l2Cache;
    private readonly BlockCache _rbCache;
    private ulong[] _l1;
    private ulong[]? _reftable;
    private IBacking? _backing;
    private ImageStorage? _dataFile;
    private readonly List<SnapshotEntry> _snapshots;
    private readonly List<BitmapEntry> _bitmaps;
    private bool _disposed;
    private long _freeHint;
    private long _allocHigh;
    private long _resStart = -1, _resEnd = -1;
    private long _compCursor = -1;
    private long _compCacheKey = -1;
    private byte[]? _compCache;

    private Qcow2Image(ImageStorage file, Qcow2OpenOptions options, HashSet<string> chain)
    {
        _file = file;
        _options = options;
        try
        {
            long fileLen = file.Length;
            // the header lives in cluster 0; read its first 64 KiB, or the whole cluster once its size is known
            var head = new byte[(int)Math.Clamp(fileLen, 104, 65536)];
            file.Read(0, head);
            if (head.Length >= 24)
            {
                uint bits = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(20));
                if (bits is > 16 and <= Header.MaxClusterBits && fileLen > head.Length)
                {
                    head = new byte[(int)Math.Min(fileLen, 1L << (int)bits)];
                    file.Read(0, head);
                }
            }
            _h = Header.Parse(head);
            _cb = _h.ClusterBits;
            _cs = _h.ClusterSize;
            _eb = _h.ExtendedL2 ? 16 : 8;
            _l2Entries = _cs / _eb;
            _rbEntries = (long)_cs * 8 / _h.RefcountBits;
            _l2Cache = new BlockCache((int)Math.Clamp(options.L2CacheSize / _cs, 2, 1 << 20));
            _rbCache = new BlockCache(Math.Max(4, (int)((4L << 20) / _cs)));
            if (!options.ReadOnly && (_h.Incompatible & Header.IncompatCorrupt) != 0)
                throw new Qcow2FormatException("The image is marked corrupt: it can be opened read-only, or repaired with check -r all.");
            if (!options.ReadOnly && _h.L1Size > 0 && _h.L1TableOffset == 0)
                throw new Qcow2FormatException("The L1 table offset is zero (the table would overlap the header): the image can be opened read-only only.");
            if (!options.ReadOnly && _h.RefcountTableClusters == 0)
                throw new Qcow2FormatException("The image has no refcount table: it can be opened read-only only.");
            // read-only, the part of the L1 table past the end of the file reads as zeros (as qemu reads
            // it, and check reports it); a writer needs the whole table in the file
            _l1 = options.ReadOnly ? ReadTableForCheck(_h.L1TableOffset, _h.L1Size, fileLen) : ReadTable(_h.L1TableOffset, _h.L1Size, "L1 table");
            if (_h.HasDataFile)
            {
                if (!options.ReadOnly)
                    throw new Qcow2NotSupportedException("Images with an external data file can only be opened read-only here.");
                var name = _h.DataFileName!;
                var dataPath = ResolveBackingPath(name) ?? throw new Qcow2Exception($"Cannot resolve the external data file '{name}'.");
                if (!options.AllowExternalDataFile)
                    throw new Qcow2UnsafeReferenceException($"{_file.Path}: the image keeps its data in the external data file {dataPath}, and the open options do not allow external data files (AllowExternalDataFile). Open it with external data files allowed only if the image comes from a trusted source.") { ImagePath = _file.Path, ReferencedPath = dataPath };
                EnsureAllowed("external data file", dataPath);
                if (!File.Exists(dataPath))
                    throw new Qcow2Exception($"Could not open the external data file {dataPath}: file not found.");
                _dataFile = new FileStorage(dataPath, writable: false);
            }
            _snapshots = ReadSnapshots();
            _bitmaps = ReadBitmaps();
            _backing = options.NoBacking ? null : OpenBacking(chain);
            if (!options.ReadOnly)
                PrepareForWriting();
        }
        catch
        {
            _backing?.Dispose();
            _dataFile?.Dispose();
            throw;
        }
    }

    /// <summary>Opens an image file.</summary>
    /// <param name="path">The image file.</param>
    /// <param name="options">How to open it; read-write by default.</param>
    /// <returns>The open image; dispose it to release the file and its locks.</returns>
    /// <exception cref="Qcow2FormatException">The file is not a valid QCOW2 image.</exception>
    /// <exception cref="Qcow2NotSupportedException">The image uses a feature not supported here (encryption, unknown incompatible bits).</exception>
    /// <exception cref="Qcow2LockedException">Another process holds a conflicting lock.</exception>
    /// <remarks>Like <c>qemu-io [-r] [-U] FILE</c>.</remarks>
    public static Qcow2Image Open(string path, Qcow2OpenOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new Qcow2OpenOptions();
        return OpenChain(path, options, []);
    }

    /// <summary>Opens an image file (see <see cref="Open(string, Qcow2OpenOptions?)"/>).</summary>
    /// <param name="path">The image file.</param>
    /// <param name="options">How to open it.</param>
    /// <param name="cancellationToken">Cancels before the open starts.</param>
    /// <returns>The open image.</returns>
    public static ValueTask<Qcow2Image> OpenAsync(string path, Qcow2OpenOptions? options = null, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Open(path, options));
    }

    private static Qcow2Image OpenChain(string path, Qcow2OpenOptions options, HashSet<string> chain)
    {
        if (options.ForceShare && !options.ReadOnly)
            throw new ArgumentException("Force-share (-U) is only allowed for read-only opens.", nameof(options));
        var full = System.IO.Path.GetFullPath(path);
        if (!chain.Add(full))
            throw new Qcow2FormatException($"Backing chain loop: {full} is its own backing file.") { ImagePath = full };
        if (chain.Count > MaxChainDepth)
            throw new Qcow2FormatException($"Backing chain deeper than {MaxChainDepth} images.") { ImagePath = full };
        FileStorage file;
        try
        {
            file = new FileStorage(full, writable: !options.ReadOnly);
        }
        catch (FileNotFoundException ex)
        {
            throw new Qcow2Exception($"Could not open {full}: file not found.", ex) { ImagePath = full };
        }
        try
        {
            if (!options.ForceShare)
                FileLock.Acquire(file.Handle, !options.ReadOnly, full);
            return new Qcow2Image(file, options, chain);
        }
        catch (Qcow2Exception ex) when (ex.ImagePath is null)
        {
            file.Dispose();
            throw ex switch
            {
                Qcow2NotSupportedException => new Qcow2NotSupportedException($"{full}: {ex.Message}", ex) { ImagePath = full },
                Qcow2FormatException => new Qcow2FormatException($"{full}: {ex.Message}", ex) { ImagePath = full },
                _ => new Qcow2Exception($"{full}: {ex.Message}", ex) { ImagePath = full },
            };
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Opens an image over any storage (tests, memory images).</summary>
    internal static Qcow2Image Open(ImageStorage storage, Qcow2OpenOptions? options = null)
        => new(storage, options ?? new Qcow2OpenOptions(), []);

    /// <summary>True when the bytes start with the QCOW2 magic.</summary>
    /// <param name="path">The file to probe.</param>
    /// <returns>True for a QCOW2 file.</returns>
    public static bool IsQcow2(string path)
    {
        Span<byte> b = stackalloc byte[4];
        using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return RandomAccess.Read(h, b, 0) == 4 && BinaryPrimitives.ReadUInt32BigEndian(b) == Header.Magic;
    }

    /// <summary>The image file's full path (null for images not backed by a file).</summary>
    public string? Path => _file.Path;

    /// <summary>The virtual disk size in bytes.</summary>
    public long Size { get { lock (_lock) return _h.Size; } }

    /// <summary>The cluster size in bytes.</summary>
    public int ClusterSize => _cs;

    /// <summary>True when opened read-only.</summary>
    public bool IsReadOnly => _options.ReadOnly;

    /// <summary>The backing file name as stored in the header, or null.</summary>
    public string? BackingFile => _h.BackingFile;

    /// <summary>The backing file format as stored in the header, or null.</summary>
    public string? BackingFormat => _h.BackingFormat;

    /// <summary>The open backing image when the backing file is QCOW2 (null for raw or no backing).</summary>
    public Qcow2Image? Backing => (_backing as Qcow2Backing)?.Image;

    /// <summary>Describes the image like <c>qemu-img info</c>.</summary>
    /// <returns>The image's facts.</returns>
    public Qcow2ImageInfo GetInfo()
    {
        lock (_lock)
        {
            return new Qcow2ImageInfo
            {
                Filename = Path,
                VirtualSize = _h.Size,
                ActualSize = ActualSize(),
                ClusterSize = _cs,
                Version = (int)_h.Version,
                RefcountBits = _h.RefcountBits,
                CompressionType = (Qcow2CompressionType)_h.CompressionType,
                ExtendedL2 = _h.ExtendedL2,
                LazyRefcounts = (_h.Compatible & Header.CompatLazyRefcounts) != 0,
                Dirty = (_h.Incompatible & Header.IncompatDirty) != 0,
                Corrupt = (_h.Incompatible & Header.IncompatCorrupt) != 0,
                BackingFile = _h.BackingFile,
                FullBackingFile = _backing?.Path ?? ResolveBackingPath(_h.BackingFile),
                BackingFormat = _h.BackingFormat,
                DataFile = _h.HasDataFile ? _h.DataFileName : null,
                DataFileRaw = _h.HasDataFile && (_h.Autoclear & Header.AutoclearDataFileRaw) != 0,
                Snapshots = _snapshots.Select(s => s.ToInfo()).ToList(),
                Bitmaps = _bitmaps.Select(b => b.ToInfo()).ToList(),
            };
        }
    }

    private long ActualSize()
    {
        if (_file.Path is { } p && OperatingSystem.IsLinux())
        {
            try
            {
                return Native.AllocatedBytes(p) ?? _file.Length;
            }
            catch (IOException) { }
        }
        return _file.Length;
    }

    private ulong[] ReadTable(long offset, long entries, string what)
    {
        if (entries == 0)
            return [];
        long bytes = entries * 8;
        if (offset <= 0 || offset + bytes > _file.Length + _cs)
            throw new Qcow2FormatException($"The {what} lies outside the image file.");
        var raw = new byte[bytes];
        _file.Read(offset, raw);
        var t = new ulong[entries];
        for (int i = 0; i < t.Length; i++)
            t[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        return t;
    }

    private string? ResolveBackingPath(string? name)
    {
        if (name is not { Length: > 0 })
            return null;
        if (System.IO.Path.IsPathRooted(name))
            return name;
        return _file.Path is { } me ? System.IO.Path.GetFullPath(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(me)!, name)) : null;
    }

    /// <summary>Refuses a file the image names outside <see cref="Qcow2OpenOptions.AllowedDirectory"/> (symbolic links resolved).</summary>
    private void EnsureAllowed(string kind, string path)
    {
        if (_options.AllowedDirectory is not { Length: > 0 } allowed)
            return;
        string root = RealPath(allowed);
        string real = RealPath(path);
        string rel = System.IO.Path.GetRelativePath(root, real);
        bool inside = rel != "." && rel != ".." && !rel.StartsWith(".." + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal) && !System.IO.Path.IsPathRooted(rel);
        if (!inside)
            throw new Qcow2UnsafeReferenceException($"{_file.Path}: the image names the {kind} {path}{(real != path ? $" (resolved: {real})" : "")}, outside the allowed directory {root} (AllowedDirectory). Move the file into that directory, allow its directory, or open the image without its backing file (NoBacking).") { ImagePath = _file.Path, ReferencedPath = real };
    }

    /// <summary>The path with every symbolic link in it resolved (the parts that do not exist are kept as they are).</summary>
    internal static string RealPath(string path)
    {
        var pending = new Stack<string>(System.IO.Path.GetFullPath(path).Split(System.IO.Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Reverse());
        string current = System.IO.Path.GetPathRoot(System.IO.Path.GetFullPath(path)) ?? "/";
        int links = 0;
        while (pending.Count > 0)
        {
            string part = pending.Pop();
            if (part == ".")
                continue;
            if (part == "..")
            {
                current = System.IO.Path.GetDirectoryName(current) ?? current;
                continue;
            }
            string next = System.IO.Path.Combine(current, part);
            string? target = null;
            try
            {
                target = new FileInfo(next).LinkTarget;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            if (target is null)
            {
                current = next;
                continue;
            }
            if (++links > 40)
                throw new Qcow2Exception($"Too many levels of symbolic links in {path}.");
            if (System.IO.Path.IsPathRooted(target))
                current = System.IO.Path.GetPathRoot(target) ?? "/";
            foreach (var p in target.Split(System.IO.Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Reverse())
                pending.Push(p);
        }
        return current;
    }

    private IBacking? OpenBacking(HashSet<string> chain) => OpenBacking(chain, _h.BackingFile, _h.BackingFormat, writable: false);

    private IBacking? OpenBacking(HashSet<string> chain, string? name, string? givenFormat, bool writable)
    {
        if (name is not { Length: > 0 })
            return null;
        string full;
        if (System.IO.Path.IsPathRooted(name))
            full = name;
        else if (_file.Path is { } me)
            full = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(me)!, name);
        else
            throw new Qcow2Exception($"Cannot resolve the relative backing file name '{name}' of an image that is not a file.");
        full = System.IO.Path.GetFullPath(full);
        EnsureAllowed("backing file", full);
        if (!File.Exists(full))
            throw new Qcow2Exception($"Could not open backing file {full}: file not found.") { ImagePath = _file.Path };
        string format = givenFormat ?? (Qcow2Image.IsQcow2(full) ? "qcow2" : "raw");
        var backingOptions = new Qcow2OpenOptions
        {
            ReadOnly = !writable,
            ForceShare = _options.ForceShare && !writable,
            L2CacheSize = _options.L2CacheSize,
            AllowedDirectory = _options.AllowedDirectory,
            AllowExternalDataFile = _options.AllowExternalDataFile,
        };
        switch (format)
        {
            case "qcow2":
                return new Qcow2Backing(OpenChain(full, backingOptions, chain));
            case "raw":
                if (chain.Contains(full))
                    throw new Qcow2FormatException($"Backing chain loop: {full} appears twice.");
                var f = new FileStorage(full, writable);
                try
                {
                    if (!_options.ForceShare || writable)
                        FileLock.Acquire(f.Handle, writable, full);
                }
                catch
                {
                    f.Dispose();
                    throw;
                }
                return new RawBacking(f);
            default:
                throw new Qcow2NotSupportedException($"Backing file format '{format}' is not supported (only qcow2 and raw).");
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private void ThrowIfReadOnly()
    {
        if (_options.ReadOnly)
            throw new InvalidOperationException("The image is open read-only.");
    }

    /// <summary>Flushes, releases the locks and closes the file and its backing chain.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
                return;
            try
            {
                if (!_options.ReadOnly)
                {
                    FlushMetadata();
                    if (SyncOnClose)
                        _file.Flush();
                }
            }
            finally
            {
                _disposed = true;
                _backing?.Dispose();
                _dataFile?.Dispose();
                _file.Dispose();
            }
        }
    }

    /// <summary>
    /// False when closing should write the delayed metadata without making it durable: the converter's
    /// unsafe mode (qemu-img convert's default <c>-t unsafe</c>), whose output is a fresh temporary file.
    /// </summary>
    internal bool SyncOnClose { get; set; } = true;

    /// <summary>The image file's handle (null for images not backed by a file).</summary>
    internal Microsoft.Win32.SafeHandles.SafeFileHandle? FileHandle => (_file as FileStorage)?.Handle;

    /// <summary>The image file's current length.</summary>
    internal long FileLength => _file.Length;

    /// <summary>Closes the image (see <see cref="Dispose"/>).</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}

public sealed partial class Qcow2Image
{
    /// <summary>A seekable stream over the virtual disk (writable when the image is).</summary>
    /// <param name="leaveOpen">Keep the image open when the stream is disposed.</param>
    /// <returns>The stream.</returns>
    public Stream AsStream(bool leaveOpen = true) => new Qcow2Stream(this, leaveOpen);
}
