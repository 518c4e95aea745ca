using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using Cli = CliWrap.Cli;

using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>
/// Runs a <see cref="Command"/> as a local process with CliWrap: the one process-execution seam of the SDK.
/// CliWrap starts the process and pumps its pipes as the output is produced; the SDK adds the argument vector
/// passed as is, cancellation and timeouts that terminate the whole process tree (SIGTERM, then SIGKILL after the
/// grace period, from <see cref="ProcessTree"/>), typed errors with the redacted command line and stderr tail, and
/// debug logs with secrets redacted.
/// </summary>
internal sealed class CommandExecutor(ILogger logger)
{
    private const int StderrTailBytes = 4096;

    /// <summary>Maps a failed command to an exception; hosts override to recognise their own failures (SSH's 255).</summary>
    public Func<Command, int, string, Exception?>? ErrorMapper { get; init; }

    public async Task<BufferedCommandResult> ExecuteBufferedAsync(Command command, CancellationToken cancellationToken)
    {
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var result = await ExecuteAsync(
            command
                .WithStandardOutputPipe(PipeTarget.Merge(command.StandardOutputPipe, PipeTarget.ToStringBuilder(stdout)))
                .WithStandardErrorPipe(PipeTarget.Merge(command.StandardErrorPipe, PipeTarget.ToStringBuilder(stderr))),
            cancellationToken).ConfigureAwait(false);
        return new BufferedCommandResult(result.ExitCode, result.StartTime, result.ExitTime, stdout.ToString(), stderr.ToString());
    }

    public async Task<CommandResult> ExecuteAsync(Command command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        cancellationToken.ThrowIfCancellationRequested();
        var display = command.ToString();

        if (command.WorkingDirectory is { } wd && !Directory.Exists(wd))
            throw new CommandFailedException($"Cannot run {display}: the working directory '{wd}' does not exist.", display, -1, string.Empty);

        var stderrTail = new TailBuffer(StderrTailBytes);
        var cli = Cli.Wrap(command.TargetFilePath)
            .WithEnvironmentVariables(command.EnvironmentVariables)
            .WithStandardInputPipe(ToCliWrap(command.StandardInput))
            .WithStandardOutputPipe(command.StandardOutputPipe.ToCliWrap())
            .WithStandardErrorPipe(CliWrap.PipeTarget.Merge(command.StandardErrorPipe.ToCliWrap(), stderrTail.ToCliWrap()))
            // Exit codes are validated below, so that the error is the SDK's typed one with the stderr tail.
            .WithValidation(CliWrap.CommandResultValidation.None);
        if (command.WorkingDirectory is { } dir)
            cli = cli.WithWorkingDirectory(dir);

        // The process's exit, seen independently of CliWrap's task: that task also waits for the output pipes, which a
        // daemon started by the command may hold open long after the command itself has exited.
        var exit = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnExited(Process p)
        {
            int code;
            try { code = p.ExitCode; }
            catch (InvalidOperationException) { code = -1; }
            exit.TrySetResult(code);
        }

        // Forceful cancellation of CliWrap's execution is only ever used after the SDK has terminated the process tree
        // itself (or after the process exited), to stop reading pipes that a surviving daemon holds open.
        using var stopPiping = new CancellationTokenSource();
        logger.LogDebug("Running {Command}", display);
        var startTime = DateTimeOffset.UtcNow;
        CliWrap.CommandTask<CliWrap.CommandResult> task;
        try
        {
            task = cli.ExecuteAsync(
                startInfo =>
                {
                    // The argument vector goes to execve as is: no string to escape and parse back.
                    startInfo.Arguments = string.Empty;
                    foreach (var a in command.Arguments)
                        startInfo.ArgumentList.Add(a);
                },
                process =>
                {
                    process.Exited += (_, _) => OnExited(process);
                    if (process.HasExited)
                        OnExited(process);
                },
                stopPiping.Token,
                CancellationToken.None);
        }
        catch (Win32Exception ex)
        {
            var native = (ex.InnerException as Win32Exception ?? ex).NativeErrorCode;
            if (native == 2)
                throw new ToolNotFoundException(command.TargetFilePath,
                    $"Cannot run '{command.TargetFilePath}': it is not installed or not on PATH. Install it (./build.sh installs the SDK's prerequisites on Debian).", ex);
            throw new CommandFailedException($"Cannot run {display}: {(ex.InnerException ?? ex).Message}.", display, -1, string.Empty, ex);
        }
        catch (InvalidOperationException ex)
        {
            throw new CommandFailedException($"Cannot run {display}: {ex.Message}", display, -1, string.Empty, ex);
        }

        var pid = task.ProcessId;
        using var timeoutCts = command.Timeout is { } t ? new CancellationTokenSource(t) : new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutCts.Token);
        var stopped = false;
        try
        {
            await exit.Task.WaitAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
            stopped = true;
            if (!exit.Task.IsCompleted)
            {
                logger.LogDebug("Terminating {Command} (pid {Pid}) and its children", display, pid);
                await ProcessTree.TerminateAsync(pid, command.GracePeriod).ConfigureAwait(false);
                try { await exit.Task.WaitAsync(TimeSpan.FromSeconds(10), CancellationToken.None).ConfigureAwait(false); }
                catch (TimeoutException) { }
            }
        }

        // Drain what is left in the pipes; a grandchild that keeps them open must not hang us.
        var drain = stopped ? TimeSpan.FromMilliseconds(200) : TimeSpan.FromSeconds(2);
        if (await Task.WhenAny(task.Task, Task.Delay(drain, CancellationToken.None)).ConfigureAwait(false) != task.Task)
            await stopPiping.CancelAsync().ConfigureAwait(false);
        CliWrap.CommandResult? finished = null;
        try
        {
            finished = await task.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopPiping.IsCancellationRequested) { }
        catch (TimeoutException) when (stopped) { } // CliWrap's own kill did not end it either; the tree was signalled

        var exitTime = DateTimeOffset.UtcNow;
        var tail = command.Redact(stderrTail.ToString());
        if (stopped)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw new CommandTimeoutException(
                $"{display} did not finish within {command.Timeout?.TotalSeconds:0.###} s and was terminated.{FormatTail(tail)}",
                display, command.Timeout ?? TimeSpan.Zero, tail);
        }

        var exitCode = finished?.ExitCode ?? await exit.Task.ConfigureAwait(false);
        logger.LogDebug("{Command} exited with {ExitCode} after {Elapsed} ms", display, exitCode, (long)(exitTime - startTime).TotalMilliseconds);
        if (exitCode != 0 && command.Validation == CommandResultValidation.ZeroExitCode)
        {
            throw ErrorMapper?.Invoke(command, exitCode, tail)
                ?? new CommandFailedException($"{display} failed with exit code {exitCode}.{FormatTail(tail)}", display, exitCode, tail);
        }
        return new CommandResult(exitCode, startTime, exitTime);
    }

    private static CliWrap.PipeSource ToCliWrap(PipeSource source)
        => ReferenceEquals(source, PipeSource.Null) ? CliWrap.PipeSource.Null : CliWrap.PipeSource.Create(source.CopyToAsync);

    internal static string FormatTail(string tail)
    {
        var lines = tail.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return lines.Length == 0 ? string.Empty : " Standard error: " + string.Join(" | ", lines.TakeLast(5));
    }

    /// <summary>Keeps the last N bytes written to it.</summary>
    private sealed class TailBuffer(int capacity)
    {
        private readonly byte[] _data = new byte[capacity];
        private int _length;

        public void Append(ReadOnlySpan<byte> bytes)
        {
            lock (_data)
            {
                if (bytes.Length >= capacity)
                {
                    bytes[^capacity..].CopyTo(_data);
                    _length = capacity;
                    return;
                }
                var keep = Math.Min(_length, capacity - bytes.Length);
                Buffer.BlockCopy(_data, _length - keep, _data, 0, keep);
                bytes.CopyTo(_data.AsSpan(keep));
                _length = keep + bytes.Length;
            }
        }

        /// <summary>A CliWrap target that keeps the tail of what it reads.</summary>
        public CliWrap.PipeTarget ToCliWrap() => CliWrap.PipeTarget.Create(async (source, ct) =>
        {
            var buffer = new byte[16384];
            int n;
            while ((n = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                Append(buffer.AsSpan(0, n));
        });

        public override string ToString()
        {
            lock (_data)
                return Encoding.UTF8.GetString(_data, 0, _length).TrimEnd();
        }
    }
}
