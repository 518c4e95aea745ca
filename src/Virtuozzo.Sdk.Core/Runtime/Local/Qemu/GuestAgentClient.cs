using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>The agent inside the guest did not answer in time, or is not running.</summary>
internal sealed class GuestAgentUnavailableException : VirtuozzoException
{
    public GuestAgentUnavailableException(string message, Exception? inner = null) : base(message, inner) { }

    public override bool IsTransient => true;
}

/// <summary>The agent answered a command with an error.</summary>
internal sealed class GuestAgentException : VirtuozzoException
{
    public GuestAgentException(string command, string errorClass, string description)
        : base($"Guest agent command '{command}' failed: {description} ({errorClass}).")
    {
        Command = command;
        ErrorClass = errorClass;
        Description = description;
    }

    public string Command { get; }

    public string ErrorClass { get; }

    public string Description { get; }
}

/// <summary>The outcome of a program run in the guest.</summary>
internal sealed record GuestExecOutcome(int ExitCode, int? Signal, byte[] StandardOutput, byte[] StandardError, bool OutputTruncated);

/// <summary>One network interface as the guest sees it.</summary>
internal sealed record GuestInterface(string Name, string? HardwareAddress, IReadOnlyList<GuestIpAddress> Addresses);

/// <summary>An address on a guest interface.</summary>
internal sealed record GuestIpAddress(string Address, int Prefix, bool IsIPv6);

/// <summary>What the guest says it runs.</summary>
internal sealed record GuestOsInfo(string? Id, string? Name, string? PrettyName, string? VersionId, string? KernelRelease, string? Machine);

/// <summary>A vCPU as the guest sees it.</summary>
internal sealed record GuestVcpu(int LogicalId, bool Online, bool CanOffline);

/// <summary>
/// A client of qemu-guest-agent over its virtio-serial channel (a UNIX socket on the host). The protocol is QMP-like
/// JSON without a greeting; since the channel can hold stale replies after a timeout, every session starts (and
/// every timeout is followed) by a <c>guest-sync-delimited</c> resynchronisation: a 0xFF byte resets the agent's
/// parser, and the reply is preceded by a 0xFF sentinel. The channel serves one client: hold it under the VE's lock.
/// </summary>
internal sealed class GuestAgentClient : IGuestAgentChannel, IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Channel<string> _messages = Channel.CreateUnbounded<string>();
    private readonly CancellationTokenSource _closing = new();
    private readonly Task _reader;
    private bool _synced;
    private long _nextSyncId = Random.Shared.NextInt64(1, int.MaxValue);
    private long _nextId;

    // Sync requests are re-sent until one is answered; the answers to the others arrive later, without an id (the
    // sync's return value is its id), and must not be taken for a command's reply.
    private readonly HashSet<long> _sentSyncIds = [];

    // Commands carry ids unique to this client; the agent echoes them, so a reply to anything else is skipped.
    private readonly string _idPrefix = Random.Shared.NextInt64().ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    private GuestAgentClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _reader = Task.Run(ReadLoopAsync);
    }

    /// <summary>Connects to the host end of the agent channel (retrying until the socket exists) and resynchronises.</summary>
    /// <exception cref="GuestAgentUnavailableException">The socket is absent, or the agent did not answer within <paramref name="timeout"/>.</exception>
    public static async Task<GuestAgentClient> ConnectAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + timeout;
        Exception? last = null;
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                cts.CancelAfter(Remaining(deadline, TimeSpan.FromMilliseconds(1)));
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token).ConfigureAwait(false);
                var client = new GuestAgentClient(socket);
                try
                {
                    await client.SyncAsync(Remaining(deadline, TimeSpan.FromMilliseconds(200)), cancellationToken).ConfigureAwait(false);
                    return client;
                }
                catch
                {
                    await client.DisposeAsync().ConfigureAwait(false);
                    throw;
                }
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                socket.Dispose();
                last = ex;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            if (DateTimeOffset.UtcNow >= deadline)
                throw new GuestAgentUnavailableException($"The guest agent did not answer at '{socketPath}' within {timeout.TotalSeconds:0.#} s; it may not be installed or running in the guest.", last);
            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    private static TimeSpan Remaining(DateTimeOffset deadline, TimeSpan min)
    {
        var r = deadline - DateTimeOffset.UtcNow;
        return r < min ? min : r;
    }

    /// <summary>
    /// Resynchronises the channel: sends 0xFF and <c>guest-sync-delimited</c> with a fresh id, discards everything
    /// until the reply carrying that id. Sends the request again every 250 ms until the deadline (the agent may
    /// still be starting).
    /// </summary>
    public async Task SyncAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await SyncLockedAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task SyncLockedAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (_messages.Reader.TryRead(out _)) { }
        while (true)
        {
            var id = Interlocked.Increment(ref _nextSyncId);
            _sentSyncIds.Add(id);
            var request = new JsonObject { ["execute"] = "guest-sync-delimited", ["arguments"] = new JsonObject { ["id"] = id } };
            var bytes = Encoding.UTF8.GetBytes(request.ToJsonString() + "\n");
            var buffer = new byte[bytes.Length + 1];
            buffer[0] = 0xFF;
            bytes.CopyTo(buffer, 1);
            await WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            var roundEnd = DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(250);
            if (roundEnd > deadline)
                roundEnd = deadline;
            while (true)
            {
                var left = roundEnd - DateTimeOffset.UtcNow;
                if (left <= TimeSpan.Zero)
                    break;
                var line = await ReadMessageAsync(left, cancellationToken).ConfigureAwait(false);
                if (line is null)
                    break;
                if (TryParse(line) is { } msg && msg["return"] is JsonValue v && v.TryGetValue<long>(out var got) && got == id)
                {
                    _synced = true;
                    return;
                }
            }
            if (DateTimeOffset.UtcNow >= deadline)
                throw new GuestAgentUnavailableException($"The guest agent did not answer within {timeout.TotalSeconds:0.#} s.");
        }
    }

    /// <summary>True when the agent answers <c>guest-ping</c> within the timeout.</summary>
    public async Task<bool> PingAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await ExecuteAsync("guest-ping", null, timeout, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (GuestAgentUnavailableException)
        {
            return false;
        }
    }

    /// <summary>Runs one agent command and returns its <c>return</c> value.</summary>
    /// <exception cref="GuestAgentException">The agent answered with an error.</exception>
    /// <exception cref="GuestAgentUnavailableException">No answer within the timeout (the next command resynchronises first).</exception>
    public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(command);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var deadline = DateTimeOffset.UtcNow + timeout;
            if (!_synced)
                await SyncLockedAsync(timeout, cancellationToken).ConfigureAwait(false);
            var requestId = _idPrefix + "-" + (++_nextId).ToString(System.Globalization.CultureInfo.InvariantCulture);
            var request = new JsonObject { ["execute"] = command, ["id"] = requestId };
            if (arguments is not null)
                request["arguments"] = arguments.DeepClone();
            await WriteAsync(Encoding.UTF8.GetBytes(request.ToJsonString() + "\n"), cancellationToken).ConfigureAwait(false);
            while (true)
            {
                var left = deadline - DateTimeOffset.UtcNow;
                var line = left > TimeSpan.Zero ? await ReadMessageAsync(left, cancellationToken).ConfigureAwait(false) : null;
                if (line is null)
                {
                    _synced = false; // a late reply must not be taken for the next command's
                    throw new GuestAgentUnavailableException($"The guest agent did not answer '{command}' within {timeout.TotalSeconds:0.#} s.");
                }
                if (TryParse(line) is not { } msg || !IsReplyTo(msg, requestId))
                    continue;
                if (msg["error"] is JsonObject error)
                    throw new GuestAgentException(command, error["class"]?.GetValue<string>() ?? "GenericError", error["desc"]?.GetValue<string>() ?? "unknown error");
                if (msg.ContainsKey("return"))
                    return msg["return"];
            }
        }
        catch (OperationCanceledException)
        {
            _synced = false;
            throw;
        }
        finally
        {
            _gate.Release();
        }
    }

    private bool IsReplyTo(JsonObject msg, string requestId)
    {
        if (msg["id"] is { } id)
            return id is JsonValue v && v.TryGetValue<string>(out var text) && text == requestId;
        // no id: an agent that does not echo ids, or the late answer to a re-sent sync
        return !(msg["return"] is JsonValue r && r.TryGetValue<long>(out var n) && _sentSyncIds.Contains(n));
    }

    /// <summary>Sends a command the agent does not answer on success (<c>guest-shutdown</c>, <c>guest-suspend-*</c>).</summary>
    public async Task SendWithoutReplyAsync(string command, JsonObject? arguments, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_synced)
                await SyncLockedAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            var request = new JsonObject { ["execute"] = command };
            if (arguments is not null)
                request["arguments"] = arguments.DeepClone();
            await WriteAsync(Encoding.UTF8.GetBytes(request.ToJsonString() + "\n"), cancellationToken).ConfigureAwait(false);
            _synced = false; // an error reply may still arrive
        }
        finally
        {
            _gate.Release();
        }
    }

    internal static IReadOnlyList<GuestInterface> ParseInterfaces(JsonNode? reply)
    {
        var list = new List<GuestInterface>();
        foreach (var i in reply as JsonArray ?? [])
        {
            if (i is not JsonObject o)
                continue;
            var addrs = new List<GuestIpAddress>();
            foreach (var a in o["ip-addresses"] as JsonArray ?? [])
            {
                if (a?["ip-address"]?.GetValue<string>() is not { } ip)
                    continue;
                addrs.Add(new GuestIpAddress(ip, a["prefix"]?.GetValue<int>() ?? 0, a["ip-address-type"]?.GetValue<string>() == "ipv6"));
            }
            list.Add(new GuestInterface(o["name"]?.GetValue<string>() ?? string.Empty, o["hardware-address"]?.GetValue<string>(), addrs));
        }
        return list;
    }

    /// <summary>What operating system the guest runs.</summary>
    public async Task<GuestOsInfo> GetOsInfoAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var r = await ExecuteAsync("guest-get-osinfo", null, timeout, cancellationToken).ConfigureAwait(false) as JsonObject ?? [];
        return new GuestOsInfo(Str(r, "id"), Str(r, "name"), Str(r, "pretty-name"), Str(r, "version-id"), Str(r, "kernel-release"), Str(r, "machine"));
    }

    private static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    /// <summary>Asks the guest to power off (<c>guest-shutdown</c>, mode <c>powerdown</c>); no reply is expected.</summary>
    public Task ShutdownAsync(CancellationToken cancellationToken)
        => SendWithoutReplyAsync("guest-shutdown", new JsonObject { ["mode"] = "powerdown" }, cancellationToken);

    /// <summary>The guest's vCPUs.</summary>
    public async Task<IReadOnlyList<GuestVcpu>> GetVcpusAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var r = await ExecuteAsync("guest-get-vcpus", null, timeout, cancellationToken).ConfigureAwait(false) as JsonArray ?? [];
        return r.OfType<JsonObject>()
            .Select(o => new GuestVcpu(o["logical-id"]!.GetValue<int>(), o["online"]!.GetValue<bool>(), o["can-offline"]?.GetValue<bool>() ?? false))
            .ToList();
    }

    /// <summary>Brings vCPUs online or offline; returns how many changes the guest made.</summary>
    public async Task<int> SetVcpusAsync(IEnumerable<GuestVcpu> vcpus, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var arr = new JsonArray(vcpus.Select(v => (JsonNode)new JsonObject { ["logical-id"] = v.LogicalId, ["online"] = v.Online }).ToArray());
        var r = await ExecuteAsync("guest-set-vcpus", new JsonObject { ["vcpus"] = arr }, timeout, cancellationToken).ConfigureAwait(false);
        return r?.GetValue<int>() ?? 0;
    }

    /// <summary>Freezes the guest's file systems; returns how many were frozen.</summary>
    public async Task<int> FreezeFileSystemsAsync(TimeSpan timeout, CancellationToken cancellationToken)
        => (await ExecuteAsync("guest-fsfreeze-freeze", null, timeout, cancellationToken).ConfigureAwait(false))?.GetValue<int>() ?? 0;

    /// <summary>Thaws the guest's file systems; returns how many were thawed.</summary>
    public async Task<int> ThawFileSystemsAsync(TimeSpan timeout, CancellationToken cancellationToken)
        => (await ExecuteAsync("guest-fsfreeze-thaw", null, timeout, cancellationToken).ConfigureAwait(false))?.GetValue<int>() ?? 0;

    /// <summary>True when the guest's file systems are frozen.</summary>
    public async Task<bool> AreFileSystemsFrozenAsync(TimeSpan timeout, CancellationToken cancellationToken)
        => (await ExecuteAsync("guest-fsfreeze-status", null, timeout, cancellationToken).ConfigureAwait(false))?.GetValue<string>() == "frozen";

    private async Task WriteAsync(byte[] bytes, CancellationToken cancellationToken)
    {
        try
        {
            await _stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            throw new GuestAgentUnavailableException("The guest agent channel closed.", ex);
        }
    }

    private async Task<string?> ReadMessageAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            return await _messages.Reader.ReadAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        catch (ChannelClosedException ex)
        {
            throw new GuestAgentUnavailableException("The guest agent channel closed.", ex);
        }
    }

    private static JsonObject? TryParse(string line)
    {
        try
        {
            return JsonNode.Parse(line) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Splits the byte stream into JSON messages; a 0xFF byte (the sync sentinel) discards what came before it.</summary>
    private async Task ReadLoopAsync()
    {
        var buffer = new byte[65536];
        var pending = new List<byte>();
        try
        {
            while (!_closing.IsCancellationRequested)
            {
                var n = await _stream.ReadAsync(buffer, _closing.Token).ConfigureAwait(false);
                if (n == 0)
                    break;
                foreach (var b in buffer.AsSpan(0, n))
                {
                    if (b == 0xFF)
                    {
                        pending.Clear();
                    }
                    else if (b == (byte)'\n')
                    {
                        if (pending.Count > 0)
                            _messages.Writer.TryWrite(Encoding.UTF8.GetString(pending.ToArray()));
                        pending.Clear();
                    }
                    else
                    {
                        pending.Add(b);
                        if (pending.Count > 64 * 1024 * 1024)
                            pending.Clear(); // a runaway message; the next sync recovers
                    }
                }
            }
        }
        catch (OperationCanceledException) { }
        catch (IOException) { }
        catch (ObjectDisposedException) { }
        finally
        {
            _messages.Writer.TryComplete();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _closing.CancelAsync().ConfigureAwait(false);
        try { _socket.Shutdown(SocketShutdown.Both); }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        try { await _reader.ConfigureAwait(false); }
        catch (Exception) { }
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
        _closing.Dispose();
        _gate.Dispose();
    }

    internal static string FormatId(long id) => id.ToString(CultureInfo.InvariantCulture);
}

/// <summary>Something that carries guest-agent commands: the SDK's own client on the agent's socket, or libvirt's agent API.</summary>
internal interface IGuestAgentChannel
{
    /// <summary>Runs one agent command and returns its <c>return</c> value.</summary>
    /// <exception cref="GuestAgentException">The agent answered with an error.</exception>
    /// <exception cref="GuestAgentUnavailableException">No answer within the timeout.</exception>
    Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken);
}

/// <summary>The guest-agent commands the runtimes share, over any <see cref="IGuestAgentChannel"/>.</summary>
internal static class GuestAgentCommands
{
    /// <summary>
    /// Runs a program in the guest (no shell), feeding <paramref name="input"/> to its standard input, and waits for it
    /// to end; returns its exit code (128 + signal when a signal ended it) and captured output.
    /// </summary>
    /// <exception cref="TimeoutException">The program did not end within <paramref name="timeout"/> (it keeps running in the guest).</exception>
    public static async Task<GuestExecOutcome> ExecAsync(this IGuestAgentChannel agent,
        string path, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment, byte[]? input,
        TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var args = new JsonObject
        {
            ["path"] = path,
            ["arg"] = new JsonArray(arguments.Select(a => (JsonNode)JsonValue.Create(a)!).ToArray()),
            ["capture-output"] = true,
        };
        if (environment is { Count: > 0 })
            args["env"] = new JsonArray(environment.Select(kv => (JsonNode)JsonValue.Create($"{kv.Key}={kv.Value}")!).ToArray());
        if (input is { Length: > 0 })
            args["input-data"] = Convert.ToBase64String(input);
        var started = await agent.ExecuteAsync("guest-exec", args, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
        var pid = started?["pid"]?.GetValue<long>() ?? throw new GuestAgentException("guest-exec", "GenericError", "no pid in the reply");
        var deadline = DateTimeOffset.UtcNow + timeout;
        var delay = 20;
        while (true)
        {
            var status = await agent.ExecuteAsync("guest-exec-status", new JsonObject { ["pid"] = pid }, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false) as JsonObject;
            if (status?["exited"]?.GetValue<bool>() == true)
            {
                var signal = status["signal"]?.GetValue<int>();
                var code = status["exitcode"]?.GetValue<int>() ?? (signal is { } s ? 128 + s : -1);
                return new GuestExecOutcome(
                    code, signal,
                    Decode(status["out-data"]), Decode(status["err-data"]),
                    status["out-truncated"]?.GetValue<bool>() == true || status["err-truncated"]?.GetValue<bool>() == true);
            }
            if (DateTimeOffset.UtcNow >= deadline)
                throw new TimeoutException($"The program '{path}' (guest pid {pid}) did not end within {timeout.TotalSeconds:0.#} s; it is still running in the guest.");
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = Math.Min(delay * 2, 250);
        }
    }

    private static byte[] Decode(JsonNode? node) => node is null ? [] : Convert.FromBase64String(node.GetValue<string>());

    /// <summary>Sets a user's password (<c>guest-set-user-password</c>); the password never leaves this process unencoded.</summary>
    public static Task SetUserPasswordAsync(this IGuestAgentChannel agent, string user, string password, bool crypted, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentNullException.ThrowIfNull(password);
        return agent.ExecuteAsync("guest-set-user-password", new JsonObject
        {
            ["username"] = user,
            ["password"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(password)),
            ["crypted"] = crypted,
        }, timeout, cancellationToken);
    }

    /// <summary>The guest's network interfaces and addresses.</summary>
    public static async Task<IReadOnlyList<GuestInterface>> GetNetworkInterfacesAsync(this IGuestAgentChannel agent, TimeSpan timeout, CancellationToken cancellationToken)
        => GuestAgentClient.ParseInterfaces(await agent.ExecuteAsync("guest-network-get-interfaces", null, timeout, cancellationToken).ConfigureAwait(false));

}
