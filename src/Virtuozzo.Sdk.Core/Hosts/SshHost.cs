using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Hosts;

/// <summary>
/// A remote host reached with the system <c>ssh</c> client: batch mode (never a password prompt), strict
/// host-key checking against a known-hosts file the caller controls, and connection multiplexing so that
/// many short commands share one connection.
/// </summary>
/// <remarks>
/// Commands run through the remote user's shell with every argument single-quoted, so arguments are passed
/// as is. Cancelling or timing out a command terminates the local <c>ssh</c> client; a remote program that
/// ignores the closed connection may keep running until it next writes.
/// </remarks>
public sealed class SshHost : IVirtuozzoHost, IAsyncDisposable, IDisposable
{
    private readonly SshHostOptions _options;
    private readonly CommandExecutor _executor;
    private readonly string _controlDirectory;

    /// <summary>Creates the host; nothing connects until the first command.</summary>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public SshHost(SshHostOptions options, ILogger<SshHost>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _controlDirectory = options.ControlDirectory ?? $"/tmp/vzsdk-ssh-{Native.GetEuid()}";
        _executor = new CommandExecutor(logger ?? (ILogger)NullLogger.Instance) { ErrorMapper = MapError };
    }

    /// <inheritdoc />
    public string Name => $"{_options.User}@{_options.HostName}:{_options.Port}";

    /// <inheritdoc />
    public bool IsLocal => false;

    /// <inheritdoc />
    public async Task<CommandResult> ExecuteAsync(Command command, CancellationToken cancellationToken = default)
    {
        try
        {
            return await _executor.ExecuteAsync(Wrap(command), cancellationToken).ConfigureAwait(false);
        }
        catch (ToolNotFoundException ex) when (ex.Tool == RemoteToolMarker)
        {
            throw new ToolNotFoundException(command.TargetFilePath, $"'{command.TargetFilePath}' is not installed on {Name}.", ex);
        }
    }

    /// <inheritdoc />
    public async Task<BufferedCommandResult> ExecuteBufferedAsync(Command command, CancellationToken cancellationToken = default)
    {
        try
        {
            return await _executor.ExecuteBufferedAsync(Wrap(command), cancellationToken).ConfigureAwait(false);
        }
        catch (ToolNotFoundException ex) when (ex.Tool == RemoteToolMarker)
        {
            throw new ToolNotFoundException(command.TargetFilePath, $"'{command.TargetFilePath}' is not installed on {Name}.", ex);
        }
    }

    private const string RemoteToolMarker = "<remote>";

    /// <inheritdoc />
    public async Task<byte[]> ReadFileAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var buffer = new MemoryStream();
        try
        {
            await ExecuteAsync(new Command("cat").WithArguments("--", path).WithStandardOutputPipe(PipeTarget.ToStream(buffer)), cancellationToken).ConfigureAwait(false);
        }
        catch (CommandFailedException ex) when (ex is not CommandTimeoutException && ex.StandardErrorTail.Contains("No such file", StringComparison.Ordinal))
        {
            throw new FileNotFoundException($"'{path}' does not exist on {Name}.", path, ex);
        }
        catch (CommandFailedException ex) when (ex is not CommandTimeoutException && ex.StandardErrorTail.Contains("Permission denied", StringComparison.Ordinal))
        {
            throw new UnauthorizedAccessException($"'{path}' on {Name} cannot be read: permission denied.", ex);
        }
        return buffer.ToArray();
    }

    /// <inheritdoc />
    public Task WriteFileAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        // Temp file next to the target, flushed, then renamed: readers see the old or the new file.
        const string script = "t=\"$1.vzsdk-tmp-$$\"; cat > \"$t\" && sync -- \"$t\" && mv -f -- \"$t\" \"$1\" || { rm -f -- \"$t\"; exit 1; }";
        return ExecuteAsync(new Command("sh").WithArguments("-c", script, "sh", path).WithStandardInput(content), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> FileExistsAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var r = await ExecuteAsync(new Command("test").WithArguments("-e", path).WithValidation(CommandResultValidation.None), cancellationToken).ConfigureAwait(false);
        return r.ExitCode == 0;
    }

    /// <inheritdoc />
    public Task DeleteFileAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return ExecuteAsync(new Command("rm").WithArguments("-f", "--", path), cancellationToken);
    }

    /// <inheritdoc />
    public Task<HostCapabilities> GetCapabilitiesAsync(CapabilityProbeOptions? options = null, CancellationToken cancellationToken = default)
        => HostProber.ProbeAsync(this, options ?? new CapabilityProbeOptions(), cancellationToken);

    /// <summary>Closes the multiplexed master connection, if one is open.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            var exit = new Command(_options.SshPath)
                .WithArguments(SshOptions().Concat(["-O", "exit", "--", Destination]))
                .WithValidation(CommandResultValidation.None)
                .WithTimeout(TimeSpan.FromSeconds(5));
            await new CommandExecutor(NullLogger.Instance).ExecuteAsync(exit, CancellationToken.None).ConfigureAwait(false);
        }
        catch (VirtuozzoException) { }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// Starts closing the multiplexed master connection, if one is open, and returns without waiting for it
    /// (the command runs through the SDK's runner in the background, for at most 5 s). Prefer <see cref="DisposeAsync"/>,
    /// which waits.
    /// </summary>
    public void Dispose() => _ = DisposeAsync().AsTask();

    private string Destination => $"{_options.User}@{_options.HostName}";

    private List<string> SshOptions()
    {
        if (!Directory.Exists(_controlDirectory))
            Directory.CreateDirectory(_controlDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var o = new List<string>
        {
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=" + (_options.AcceptNewHostKey ? "accept-new" : "yes"),
            "-o", "UserKnownHostsFile=" + _options.KnownHostsFile,
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=" + Math.Max(1, (int)_options.ConnectTimeout.TotalSeconds).ToString(CultureInfo.InvariantCulture),
            "-o", "ControlMaster=auto",
            "-o", "ControlPath=" + Path.Combine(_controlDirectory, "%C"),
            "-o", "ControlPersist=" + Math.Max(1, (int)_options.ControlPersist.TotalSeconds).ToString(CultureInfo.InvariantCulture),
            "-o", "LogLevel=ERROR",
            "-p", _options.Port.ToString(CultureInfo.InvariantCulture),
        };
        if (_options.IdentityFile is { } id)
            o.AddRange(["-i", id, "-o", "IdentitiesOnly=yes"]);
        return o;
    }

    /// <summary>The remote shell command for <paramref name="command"/>: every word single-quoted.</summary>
    internal static string RemoteCommandLine(Command command)
    {
        var sb = new StringBuilder();
        if (command.WorkingDirectory is { } wd)
            sb.Append("cd ").Append(Command.QuoteForShell(wd)).Append(" && ");
        sb.Append("exec ");
        if (!command.EnvironmentVariables.IsEmpty)
        {
            sb.Append("env ");
            foreach (var (k, v) in command.EnvironmentVariables)
            {
                if (v is null)
                    sb.Append("-u ").Append(Command.QuoteForShell(k)).Append(' ');
            }
            foreach (var (k, v) in command.EnvironmentVariables)
            {
                if (v is not null)
                    sb.Append(Command.QuoteForShell(k + "=" + v)).Append(' ');
            }
        }
        sb.Append(Command.QuoteForShell(command.TargetFilePath));
        foreach (var a in command.Arguments)
            sb.Append(' ').Append(Command.QuoteForShell(a));
        return sb.ToString();
    }

    private Command Wrap(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        var wrapped = new Command(_options.SshPath)
            .WithArguments(SshOptions().Concat(["--", Destination, RemoteCommandLine(command)]))
            .WithStandardInput(command.StandardInput)
            .WithStandardOutputPipe(command.StandardOutputPipe)
            .WithStandardErrorPipe(command.StandardErrorPipe)
            .WithTimeout(command.Timeout)
            .WithGracePeriod(command.GracePeriod)
            .WithValidation(command.Validation)
            .WithSecrets([.. command.Secrets]);
        return wrapped;
    }

    private Exception? MapError(Command wrapped, int exitCode, string stderrTail)
    {
        var display = wrapped.ToString();
        if (exitCode == 255)
        {
            if (stderrTail.Contains("Host key verification failed", StringComparison.Ordinal)
                || stderrTail.Contains("REMOTE HOST IDENTIFICATION HAS CHANGED", StringComparison.Ordinal)
                || stderrTail.Contains("No ED25519 host key is known", StringComparison.Ordinal)
                || stderrTail.Contains("host key is known", StringComparison.Ordinal))
            {
                return new HostKeyVerificationException(
                    $"The host key of {Name} is not in '{_options.KnownHostsFile}' or does not match it. Add the key (ssh-keyscan) after verifying it, or set AcceptNewHostKey for a host you trust.");
            }
            return new HostConnectionException($"Cannot reach {Name} over SSH (exit code 255).{CommandExecutor.FormatTail(stderrTail)}");
        }
        if (exitCode == 127 && stderrTail.Contains("not found", StringComparison.Ordinal))
        {
            return new ToolNotFoundException(RemoteToolMarker, $"A program is not installed on {Name}.{CommandExecutor.FormatTail(stderrTail)}");
        }
        return null;
    }
}
