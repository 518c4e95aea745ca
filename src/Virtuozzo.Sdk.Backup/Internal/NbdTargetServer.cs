using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>
/// A minimal NBD server (fixed newstyle negotiation, simple replies) over a UNIX socket that receives a QEMU backup
/// job's writes and stores them in a backup file through the managed engine: each write is hashed into the file's
/// <see cref="ClusterDigest"/> and compressed on the SDK's side, several writes at once. So a running VE's backup is
/// compressed in parallel and its digest is computed while it is written, as for a stopped VE.
/// </summary>
/// <remarks>
/// Serves one client connection. Zero writes into a standalone (full) target are skipped: its unallocated clusters
/// read as zeroes. Into an incremental target (which has a backing file) they become zero clusters, which hide the
/// backing file's data as the guest's zeroes must.
/// </remarks>
internal sealed class NbdTargetServer : IAsyncDisposable
{
    private const ulong NbdMagic = 0x4e42444d41474943UL; // "NBDMAGIC"
    private const ulong OptMagic = 0x49484156454F5054UL; // "IHAVEOPT"
    private const ulong OptReplyMagic = 0x0003e889045565a9UL;
    private const uint RequestMagic = 0x25609513;
    private const uint SimpleReplyMagic = 0x67446698;
    private const uint OptExportName = 1, OptAbort = 2, OptInfo = 6, OptGo = 7;
    private const uint RepAck = 1, RepInfo = 3, RepErrUnsup = 0x80000001;
    private const ushort InfoExport = 0, InfoBlockSize = 3;
    private const ushort FlagHasFlags = 1 << 0, FlagSendFlush = 1 << 2, FlagSendTrim = 1 << 5, FlagSendWriteZeroes = 1 << 6;
    private const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdWriteZeroes = 6;
    private const uint EIO = 5, EINVAL = 22;
    private const int MaxPayload = 32 << 20;

    private readonly Qcow2Image _target;
    private readonly bool _compress;
    private readonly bool _standalone;
    private readonly int _cluster;
    private readonly ClusterDigest _digest = new();
    private readonly Socket _listener;
    private readonly SemaphoreSlim _inflight;
    private readonly object _sendLock = new();
    private readonly ILogger _logger;
    private readonly Task _serving;
    private readonly List<Task> _work = [];
    private readonly long[] _written; // one bit per cluster: a second write of a cluster spoils the running digest
    private bool _rewritten;
    private Exception? _failure;
    private Socket? _client;
    private long _writes, _writtenBytes, _zeroRequests;

    // Early writeback: the target is flushed before the backup is published, and a flush of the whole file at the end
    // took about a second of a 770 MiB backup. The stored data is handed to the disk in steps while the job runs
    // (sync_file_range, which starts writeback and does not wait), so the final flush has little left; it still runs.
    private const long WritebackStep = 32 << 20;
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle? _writeback;
    private long _writebackStarted;

    public NbdTargetServer(string socketPath, Qcow2Image target, bool compress, ILogger logger)
    {
        _target = target;
        _compress = compress;
        _standalone = target.BackingFile is null;
        _cluster = target.GetInfo().ClusterSize;
        _logger = logger;
        _inflight = new SemaphoreSlim(Math.Max(2, Environment.ProcessorCount * 2));
        var clusters = (target.Size + _cluster - 1) / _cluster;
        _written = new long[(clusters + 63) / 64];
        if (OperatingSystem.IsLinux() && target.Path is { } path)
        {
            try { _writeback = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete); }
            catch (IOException) { _writeback = null; } // only a hint: the final flush makes the backup durable either way
        }
        SocketPath = socketPath;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        _listener.Listen(1);
        _serving = Task.Factory.StartNew(Serve, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public string SocketPath { get; }

    /// <summary>The first error a write met (the backup job then fails too, with EIO), or null.</summary>
    public Exception? Failure => _failure;

    /// <summary>Waits for the client to disconnect and every write to land; returns the digest of what was stored.</summary>
    public async Task<string> CompleteAsync(CancellationToken ct)
    {
        await _serving.WaitAsync(ct).ConfigureAwait(false);
        if (_failure is not null)
            throw new IOException($"Writing the backup failed: {_failure.Message}", _failure);
        _target.Flush();
        _logger.LogDebug("NBD backup target: {Writes} writes ({Bytes} bytes), {Zeroes} zero requests", _writes, _writtenBytes, _zeroRequests);
        // A cluster written twice (a retried request) was hashed twice: hash what the file holds instead.
        return _rewritten ? DiskCopier.DigestOfOwnData(_target, ct) : _digest.Result();
    }

    private void Serve()
    {
        Socket? client = null;
        try
        {
            client = _listener.Accept();
            _client = client;
            using var stream = new NetworkStream(client, ownsSocket: false);
            if (!Negotiate(stream))
                return;
            Transmit(stream);
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or EndOfStreamException)
        {
            _logger.LogDebug("NBD backup target: connection ended: {Error}", ex.Message);
        }
        finally
        {
            DrainWork();
            client?.Dispose();
        }
    }

    private static void ReadExactly(Stream s, Span<byte> buffer) => s.ReadExactly(buffer);

    private static ulong ReadU64(Stream s)
    {
        Span<byte> b = stackalloc byte[8];
        ReadExactly(s, b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    private static uint ReadU32(Stream s)
    {
        Span<byte> b = stackalloc byte[4];
        ReadExactly(s, b);
        return BinaryPrimitives.ReadUInt32BigEndian(b);
    }

    private ushort TransmissionFlags => FlagHasFlags | FlagSendFlush | FlagSendTrim | FlagSendWriteZeroes;

    /// <summary>Fixed newstyle negotiation: answers INFO/GO (and the old EXPORT_NAME) for the single export; refuses the rest.</summary>
    private bool Negotiate(Stream s)
    {
        Span<byte> greeting = stackalloc byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting[8..], OptMagic);
        BinaryPrimitives.WriteUInt16BigEndian(greeting[16..], 1 | 2); // FIXED_NEWSTYLE | NO_ZEROES
        s.Write(greeting);
        var clientFlags = ReadU32(s);
        var noZeroes = (clientFlags & 2) != 0;
        while (true)
        {
            if (ReadU64(s) != OptMagic)
                throw new IOException("NBD client sent a bad option magic.");
            var option = ReadU32(s);
            var length = ReadU32(s);
            if (length > 65536)
                throw new IOException("NBD option too long.");
            var data = new byte[length];
            ReadExactly(s, data);
            switch (option)
            {
                case OptExportName:
                {
                    Span<byte> reply = stackalloc byte[10 + 124];
                    BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)_target.Size);
                    BinaryPrimitives.WriteUInt16BigEndian(reply[8..], TransmissionFlags);
                    reply[10..].Clear();
                    s.Write(noZeroes ? reply[..10] : reply);
                    return true;
                }
                case OptInfo or OptGo:
                {
                    Span<byte> export = stackalloc byte[12];
                    BinaryPrimitives.WriteUInt16BigEndian(export, InfoExport);
                    BinaryPrimitives.WriteUInt64BigEndian(export[2..], (ulong)_target.Size);
                    BinaryPrimitives.WriteUInt16BigEndian(export[10..], TransmissionFlags);
                    SendOptionReply(s, option, RepInfo, export);
                    Span<byte> sizes = stackalloc byte[14];
                    BinaryPrimitives.WriteUInt16BigEndian(sizes, InfoBlockSize);
                    BinaryPrimitives.WriteUInt32BigEndian(sizes[2..], 512);
                    BinaryPrimitives.WriteUInt32BigEndian(sizes[6..], (uint)_cluster);
                    BinaryPrimitives.WriteUInt32BigEndian(sizes[10..], MaxPayload);
                    SendOptionReply(s, option, RepInfo, sizes);
                    SendOptionReply(s, option, RepAck, []);
                    if (option == OptGo)
                        return true;
                    break;
                }
                case OptAbort:
                    SendOptionReply(s, option, RepAck, []);
                    return false;
                default:
                    SendOptionReply(s, option, RepErrUnsup, []);
                    break;
            }
        }
    }

    private static void SendOptionReply(Stream s, uint option, uint type, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[20];
        BinaryPrimitives.WriteUInt64BigEndian(header, OptReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header[8..], option);
        BinaryPrimitives.WriteUInt32BigEndian(header[12..], type);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], (uint)data.Length);
        s.Write(header);
        s.Write(data);
    }

    private void Transmit(Stream s)
    {
        Span<byte> request = stackalloc byte[28];
        while (true)
        {
            ReadExactly(s, request);
            if (BinaryPrimitives.ReadUInt32BigEndian(request) != RequestMagic)
                throw new IOException("NBD client sent a bad request magic.");
            var type = BinaryPrimitives.ReadUInt16BigEndian(request[6..]);
            var cookie = BinaryPrimitives.ReadUInt64BigEndian(request[8..]);
            var offset = (long)BinaryPrimitives.ReadUInt64BigEndian(request[16..]);
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(request[24..]);
            var valid = offset >= 0 && length >= 0 && length <= MaxPayload && offset <= _target.Size - length;
            switch (type)
            {
                case CmdWrite:
                {
                    _writes++;
                    _writtenBytes += length;
                    var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(1, length));
                    ReadExactly(s, buffer.AsSpan(0, length));
                    if (!valid)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                        Reply(s, cookie, EINVAL);
                        break;
                    }
                    Dispatch(s, cookie, () =>
                    {
                        try { StoreData(offset, buffer.AsSpan(0, length)); }
                        finally { ArrayPool<byte>.Shared.Return(buffer); }
                    });
                    break;
                }
                case CmdWriteZeroes:
                    _zeroRequests++;
                    if (!valid)
                        Reply(s, cookie, EINVAL);
                    else
                        Dispatch(s, cookie, () => StoreZeroes(offset, length));
                    break;
                case CmdTrim:
                    Reply(s, cookie, 0); // a backup target never needs to forget data
                    break;
                case CmdFlush:
                    DrainWork();
                    Reply(s, cookie, _failure is null ? 0 : EIO, flush: true);
                    break;
                case CmdRead:
                {
                    if (!valid)
                    {
                        Reply(s, cookie, EINVAL);
                        break;
                    }
                    DrainWork();
                    var data = new byte[length];
                    _target.Read(offset, data);
                    Reply(s, cookie, 0, data);
                    break;
                }
                case CmdDisc:
                    return;
                default:
                    Reply(s, cookie, EINVAL);
                    break;
            }
        }
    }

    private void Dispatch(Stream s, ulong cookie, Action store)
    {
        _inflight.Wait();
        var task = Task.Run(() =>
        {
            uint error = 0;
            try
            {
                if (_failure is null)
                {
                    store();
                    StartWriteback();
                }
                else
                    error = EIO;
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref _failure, ex, null);
                // Always EIO: QEMU stops the guest on ENOSPC from a disk (werror=enospc), and a guest write that copies
                // old data here first (copy-before-write) would carry it; a failing backup must fail only the backup.
                error = EIO;
                _logger.LogWarning("NBD backup target: a write failed: {Error}", ex.Message);
            }
            finally
            {
                _inflight.Release();
            }
            try { Reply(s, cookie, error); }
            catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException) { }
        });
        lock (_work)
        {
            _work.RemoveAll(t => t.IsCompleted);
            _work.Add(task);
        }
    }

    /// <summary>Starts writeback of what was stored since the last step, once a step's worth has accumulated (worker threads).</summary>
    private void StartWriteback()
    {
        if (_writeback is null)
            return;
        long end = RandomAccess.GetLength(_writeback), started = Volatile.Read(ref _writebackStarted);
        if (end - started < WritebackStep || Interlocked.CompareExchange(ref _writebackStarted, end, started) != started)
            return;
        _ = Core.Internal.Native.SyncFileRange(_writeback, started, end - started, Core.Internal.Native.SYNC_FILE_RANGE_WRITE); // a hint; errors show in the final flush
    }

    private void DrainWork()
    {
        Task[] pending;
        lock (_work)
            pending = [.. _work];
        Task.WaitAll(pending);
    }

    private void Reply(Stream s, ulong cookie, uint error, ReadOnlySpan<byte> data = default, bool flush = false)
    {
        Span<byte> header = stackalloc byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(header, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(header[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(header[8..], cookie);
        if (flush && error == 0)
            _target.Flush();
        lock (_sendLock)
        {
            s.Write(header);
            if (error == 0 && !data.IsEmpty)
                s.Write(data);
        }
    }

    private void MarkWritten(long offset, long length)
    {
        for (var c = offset / _cluster; c * _cluster < offset + length; c++)
        {
            var mask = 1L << (int)(c % 64);
            var old = Interlocked.Or(ref _written[c / 64], mask);
            if ((old & mask) != 0)
                _rewritten = true;
        }
    }

    private bool Aligned(long offset, int length) => offset % _cluster == 0 && (length % _cluster == 0 || offset + length == _target.Size);

    [ThreadStatic] private static Qcow2Image.CompressedClusters? t_packed;

    private void StoreData(long offset, ReadOnlySpan<byte> data)
    {
        if (!Aligned(offset, data.Length))
        {
            // Never seen from a backup job (it copies whole clusters); stored as is, and the digest is recomputed at the end.
            _rewritten = true;
            _target.Write(offset, data);
            return;
        }
        MarkWritten(offset, data.Length);
        // Runs of non-zero clusters are stored (compressed); all-zero clusters as for StoreZeroes.
        var runStart = -1;
        for (var at = 0; at <= data.Length; at += _cluster)
        {
            var end = at >= data.Length;
            var isZero = !end && !data.Slice(at, Math.Min(_cluster, data.Length - at)).ContainsAnyExcept((byte)0);
            if (!end && !isZero)
            {
                if (runStart < 0)
                    runStart = at;
                continue;
            }
            if (runStart >= 0)
            {
                var run = data[runStart..at];
                _digest.AddRun(offset + runStart, run, _cluster);
                if (_compress)
                {
                    // Compressed on this thread: the server already stores several requests at once.
                    var clusters = (run.Length + _cluster - 1) / _cluster;
                    var packed = t_packed is { } p && p.Lengths.Length >= clusters && p.Packed.Length >= clusters * _cluster
                        ? p : t_packed = _target.NewCompressedClusters(Math.Max(clusters, 16));
                    _target.CompressClusters(run, packed, skipZero: false);
                    _target.WriteCompressedClusters(offset + runStart, run, packed);
                }
                else
                    _target.Write(offset + runStart, run);
                runStart = -1;
            }
            if (isZero && !_standalone)
            {
                var n = Math.Min(_cluster, data.Length - at);
                _target.WriteZeroes(offset + at, n);
                _digest.AddZeroes(offset + at, n, _cluster);
            }
        }
    }

    private void StoreZeroes(long offset, int length)
    {
        if (_standalone)
            return; // a standalone image reads zeroes where it stores nothing
        if (!Aligned(offset, length))
        {
            _rewritten = true;
            _target.WriteZeroes(offset, length);
            return;
        }
        MarkWritten(offset, length);
        _target.WriteZeroes(offset, length);
        _digest.AddZeroes(offset, length, _cluster);
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        _client?.Dispose(); // a client that never hung up (a failed job) is cut off
        try { await _serving.ConfigureAwait(false); }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException) { }
        File.Delete(SocketPath);
        _inflight.Dispose();
        _writeback?.Dispose();
    }
}
