using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Testing;

/// <summary>The test double met a command that its recording does not contain.</summary>
public sealed class UnrecordedCommandException(string message) : Exception(message);

/// <summary>
/// A TEST DOUBLE of a Virtuozzo node, for parsing and sequencing only: an <see cref="IVirtuozzoHost"/> that replays
/// recorded command → output pairs (exit code, standard output, standard error) and fails with
/// <see cref="UnrecordedCommandException"/> on any command it was not given. Nothing here runs prlctl; the outputs are
/// the formats the vendor documents (cited where each recording is made). Expectations for the same command are
/// answered in the order they were recorded; <see cref="Always"/> answers a command any number of times.
/// </summary>
public sealed class RecordedSessionHost : IVirtuozzoHost
{
    private readonly object _gate = new();
    private readonly Dictionary<string, Queue<Reply>> _replies = [];
    private readonly Dictionary<string, Reply> _always = [];

    private sealed record Reply(int ExitCode, string StandardOutput, string StandardError);

    /// <summary>Every command run, as its argument vector (program first), in order.</summary>
    public List<IReadOnlyList<string>> Commands { get; } = [];

    public string Name => "recorded-session";

    public bool IsLocal => false;

    /// <summary>Records one reply to <paramref name="argv"/> (program first).</summary>
    public RecordedSessionHost Expect(IReadOnlyList<string> argv, string standardOutput = "", string standardError = "", int exitCode = 0)
    {
        lock (_gate)
        {
            var key = Key(argv);
            if (!_replies.TryGetValue(key, out var q))
                _replies[key] = q = new Queue<Reply>();
            q.Enqueue(new Reply(exitCode, standardOutput, standardError));
        }
        return this;
    }

    /// <summary>Records a reply given every time <paramref name="argv"/> runs (after any <see cref="Expect"/>ed ones are used).</summary>
    public RecordedSessionHost Always(IReadOnlyList<string> argv, string standardOutput = "", string standardError = "", int exitCode = 0)
    {
        lock (_gate)
            _always[Key(argv)] = new Reply(exitCode, standardOutput, standardError);
        return this;
    }

    /// <summary>Throws when recorded replies were never asked for (the flow ran fewer commands than recorded).</summary>
    public void VerifyAllReplayed()
    {
        lock (_gate)
        {
            var left = _replies.Where(kv => kv.Value.Count > 0).Select(kv => kv.Key.Replace('\0', ' ') + $" (×{kv.Value.Count})").ToList();
            if (left.Count > 0)
                throw new UnrecordedCommandException("Recorded replies were never used: " + string.Join("; ", left));
        }
    }

    public Task<BufferedCommandResult> ExecuteBufferedAsync(Command command, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(command);
        cancellationToken.ThrowIfCancellationRequested();
        IReadOnlyList<string> argv = [command.TargetFilePath, .. command.Arguments];
        Reply? reply;
        lock (_gate)
        {
            Commands.Add(argv);
            var key = Key(argv);
            reply = _replies.TryGetValue(key, out var q) && q.Count > 0 ? q.Dequeue() : _always.GetValueOrDefault(key);
        }
        if (reply is null)
            throw new UnrecordedCommandException($"The recorded session has no reply to: {string.Join(' ', argv.Select(Command.QuoteForShell))}");
        var now = DateTimeOffset.UtcNow;
        if (reply.ExitCode != 0 && command.Validation == CommandResultValidation.ZeroExitCode)
            throw new CommandFailedException($"'{command}' failed with exit code {reply.ExitCode}.", command.ToString(), reply.ExitCode, reply.StandardError);
        return Task.FromResult(new BufferedCommandResult(reply.ExitCode, now, now, reply.StandardOutput, reply.StandardError));
    }

    public Task<CommandResult> ExecuteAsync(Command command, CancellationToken cancellationToken = default)
        => throw new UnrecordedCommandException($"The recorded session replays buffered commands only; it was asked to stream: {command}");

    public Task<byte[]> ReadFileAsync(string path, CancellationToken cancellationToken = default)
        => throw new UnrecordedCommandException($"The recorded session has no file {path}.");

    public Task WriteFileAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
        => throw new UnrecordedCommandException($"The recorded session does not write files ({path}).");

    public Task<bool> FileExistsAsync(string path, CancellationToken cancellationToken = default)
        => throw new UnrecordedCommandException($"The recorded session has no file {path}.");

    public Task DeleteFileAsync(string path, CancellationToken cancellationToken = default)
        => throw new UnrecordedCommandException($"The recorded session does not delete files ({path}).");

    /// <summary>What <see cref="GetCapabilitiesAsync"/> answers (the host's own facts); null makes it throw.</summary>
    public HostCapabilities? Capabilities { get; set; }

    /// <summary>Records the host's own facts (kernel, cgroups, CPUs, memory) that <see cref="GetCapabilitiesAsync"/> answers.</summary>
    public RecordedSessionHost WithCapabilities(HostCapabilities capabilities)
    {
        Capabilities = capabilities;
        return this;
    }

    public Task<HostCapabilities> GetCapabilitiesAsync(CapabilityProbeOptions? options = null, CancellationToken cancellationToken = default)
        => Capabilities is { } c ? Task.FromResult(c)
            : throw new UnrecordedCommandException("The recorded session was given no host capabilities (WithCapabilities).");

    private static string Key(IReadOnlyList<string> argv) => string.Join('\0', argv);
}
