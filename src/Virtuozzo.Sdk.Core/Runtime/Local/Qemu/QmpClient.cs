using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>An asynchronous event from QEMU or qemu-storage-daemon (<c>SHUTDOWN</c>, <c>BLOCK_JOB_COMPLETED</c>…).</summary>
internal sealed record QmpEvent(string Name, JsonObject Data, DateTimeOffset Timestamp);

/// <summary>A QMP command returned an error.</summary>
internal sealed class QmpException : VirtuozzoException
{
    public QmpException(string command, string errorClass, string description)
        : base($"QMP command '{command}' failed: {description} ({errorClass}).")
    {
        Command = command;
        ErrorClass = errorClass;
        Description = description;
    }

    public QmpException(string message, Exception? inner = null) : base(message, inner)
    {
        Command = ErrorClass = Description = string.Empty;
    }

    public string Command { get; }

    public string ErrorClass { get; }

    public string Description { get; }
}

/// <summary>
/// A client of the QEMU Machine Protocol over a UNIX socket — the protocol of both QEMU and qemu-storage-daemon.
/// Connects, negotiates capabilities, runs commands one at a time (each with a timeout), and delivers events on a
/// channel. A monitor serves one client: hold it under the VE's lock, and use a second monitor to watch events
/// while commands run.
/// </summary>
internal sealed class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _commandGate = new(1, 1);
    private readonly Channel<QmpEvent> _events = Channel.CreateBounded<QmpEvent>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropOldest });
    private readonly CancellationTokenSource _closing = new();
    private readonly Task _reader;
    private Pending? _pending;
    private long _nextId;

    // Ids are unique to this connection: QEMU's monitor belongs to the socket, not to a connection, so a reply to a
    // command of a client that went away (killed mid-command) can arrive on the next connection; it carries that
    // client's id and must not be taken for this one's answer.
    private readonly string _idPrefix = Random.Shared.NextInt64().ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    private sealed record Pending(string Id, TaskCompletionSource<JsonObject> Reply);

    private QmpClient(Socket socket, ILogger logger)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _logger = logger;
        Greeting = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously);
        _reader = Task.Run(ReadLoopAsync);
    }

    private TaskCompletionSource<JsonObject> Greeting { get; }

    /// <summary>The server's version from its greeting (<c>QMP.version.qemu</c>), e.g. "7.2.22".</summary>
    public string ServerVersion { get; private set; } = string.Empty;

    /// <summary>Events in arrival order. Completed when the connection closes.</summary>
    public ChannelReader<QmpEvent> Events => _events.Reader;

    /// <summary>Connects to a QMP socket and negotiates capabilities, retrying until the socket appears or the timeout expires.</summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken, ILogger? logger = null)
    {
        using var timeoutCts = new CancellationTokenSource(timeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutCts.Token);
        Exception? last = null;
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), linked.Token).ConfigureAwait(false);
                var client = new QmpClient(socket, logger ?? NullLogger.Instance);
                try
                {
                    var greeting = await client.Greeting.Task.WaitAsync(linked.Token).ConfigureAwait(false);
                    client.ServerVersion = ParseVersion(greeting);
                    await client.ExecuteAsync("qmp_capabilities", null, timeout, linked.Token).ConfigureAwait(false);
                    return client;
                }
                catch
                {
                    await client.DisposeAsync().ConfigureAwait(false);
                    throw;
                }
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                last = ex;
                cancellationToken.ThrowIfCancellationRequested();
                if (timeoutCts.IsCancellationRequested)
                    throw new QmpException($"No QMP monitor answered at '{socketPath}' within {timeout.TotalSeconds:0.#} s.", ex);
            }
            catch (OperationCanceledException) when (timeoutCts.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                socket.Dispose();
                throw new QmpException($"No QMP monitor answered at '{socketPath}' within {timeout.TotalSeconds:0.#} s.", last);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            try
            {
                await Task.Delay(20, linked.Token).ConfigureAwait(false); // the socket may not exist yet
            }
            catch (OperationCanceledException) when (timeoutCts.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                throw new QmpException($"No QMP monitor answered at '{socketPath}' within {timeout.TotalSeconds:0.#} s.", last);
            }
        }
    }

    private static string ParseVersion(JsonObject greeting)
    {
        var q = greeting["QMP"]?["version"]?["qemu"];
        return q is null ? string.Empty : $"{q["major"]}.{q["minor"]}.{q["micro"]}";
    }

    /// <summary>Runs one command and returns its <c>return</c> value.</summary>
    /// <exception cref="QmpException">QEMU answered with an error, or the connection closed.</exception>
    /// <exception cref="TimeoutException">No answer within the timeout (the connection is then unusable and closed).</exception>
    public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(command);
        await _commandGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var id = _idPrefix + "-" + Interlocked.Increment(ref _nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
            var message = new JsonObject { ["execute"] = command, ["id"] = id };
            if (arguments is not null)
                message["arguments"] = arguments.DeepClone();
            var tcs = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _pending, new Pending(id, tcs));
            if (_reader.IsCompleted)
                throw new QmpException($"The QMP connection is closed; cannot run '{command}'.");
            var bytes = Encoding.UTF8.GetBytes(message.ToJsonString() + "\n");
            _logger.LogDebug("QMP -> {Message}", command);
            await _stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            JsonObject reply;
            try
            {
                reply = await tcs.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                await CloseAsync().ConfigureAwait(false); // a late reply would be mistaken for the next command's
                throw new TimeoutException($"QMP command '{command}' got no answer within {timeout.TotalSeconds:0.#} s; the monitor connection was closed.");
            }
            if (reply["error"] is JsonObject error)
                throw new QmpException(command, error["class"]?.GetValue<string>() ?? "GenericError", error["desc"]?.GetValue<string>() ?? "unknown error");
            return reply["return"];
        }
        finally
        {
            Volatile.Write(ref _pending, null);
            _commandGate.Release();
        }
    }

    private async Task ReadLoopAsync()
    {
        var reader = new StreamReader(_stream, Encoding.UTF8, false, 65536, leaveOpen: true);
        try
        {
            while (!_closing.IsCancellationRequested)
            {
                var line = await reader.ReadLineAsync(_closing.Token).ConfigureAwait(false);
                if (line is null)
                    break;
                if (line.Length == 0)
                    continue;
                JsonObject msg;
                try
                {
                    msg = JsonNode.Parse(line) as JsonObject ?? throw new JsonException("not an object");
                }
                catch (JsonException ex)
                {
                    _logger.LogDebug("QMP: ignoring a malformed message: {Error}", ex.Message);
                    continue;
                }
                if (msg.ContainsKey("QMP"))
                {
                    Greeting.TrySetResult(msg);
                }
                else if (msg["event"] is JsonNode ev)
                {
                    var ts = msg["timestamp"];
                    var when = ts is null ? DateTimeOffset.UtcNow
                        : DateTimeOffset.FromUnixTimeMilliseconds(ts["seconds"]!.GetValue<long>() * 1000 + ts["microseconds"]!.GetValue<long>() / 1000);
                    _logger.LogDebug("QMP <- event {Event}", ev.GetValue<string>());
                    _events.Writer.TryWrite(new QmpEvent(ev.GetValue<string>(), msg["data"] as JsonObject ?? [], when));
                }
                else if (msg.ContainsKey("return") || msg.ContainsKey("error"))
                {
                    var pending = Volatile.Read(ref _pending);
                    // A reply without an id answers a request QEMU could not parse: ours, if anybody's.
                    if (msg["id"] is not { } replyId || (replyId is JsonValue v && v.TryGetValue<string>(out var text) && text == pending?.Id))
                        pending?.Reply.TrySetResult(msg);
                    else
                        _logger.LogDebug("QMP: ignoring a reply to another connection's command {Id}", replyId.ToJsonString());
                }
            }
        }
        catch (OperationCanceledException) { }
        catch (IOException) { }
        catch (ObjectDisposedException) { }
        finally
        {
            _events.Writer.TryComplete();
            var closed = new QmpException("The QMP connection closed.");
            Greeting.TrySetException(closed);
            Volatile.Read(ref _pending)?.Reply.TrySetException(closed);
        }
    }

    /// <summary>Waits for the next event named <paramref name="name"/> that satisfies <paramref name="match"/>.</summary>
    public async Task<QmpEvent> WaitForEventAsync(string name, Func<QmpEvent, bool>? match, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var timeoutCts = new CancellationTokenSource(timeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutCts.Token);
        try
        {
            await foreach (var ev in _events.Reader.ReadAllAsync(linked.Token).ConfigureAwait(false))
            {
                if (ev.Name == name && (match is null || match(ev)))
                    return ev;
            }
        }
        catch (OperationCanceledException) when (timeoutCts.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"No QMP event '{name}' within {timeout.TotalSeconds:0.#} s.");
        }
        throw new QmpException($"The QMP connection closed while waiting for event '{name}'.");
    }

    private async Task CloseAsync()
    {
        await _closing.CancelAsync().ConfigureAwait(false);
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
    }

    public async ValueTask DisposeAsync()
    {
        await CloseAsync().ConfigureAwait(false);
        try { await _reader.ConfigureAwait(false); }
        catch (Exception) { } // the loop ends on close; its fault is not the caller's
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        _closing.Dispose();
        _commandGate.Dispose();
    }
}
