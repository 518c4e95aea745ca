using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>
/// Runs a <see cref="Command"/> as a local process: the one process-execution seam of the SDK.
/// Output is pumped as produced; cancellation and timeouts terminate the whole process tree
/// (SIGTERM, then SIGKILL after the grace period); a non-zero exit throws a typed exception.
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

        var psi = new ProcessStartInfo(command.TargetFilePath)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = command.WorkingDirectory ?? string.Empty,
        };
        foreach (var a in command.Arguments)
            psi.ArgumentList.Add(a);
        foreach (var (k, v) in command.EnvironmentVariables)
        {
            if (v is null)
                psi.Environment.Remove(k);
            else
                psi.Environment[k] = v;
        }

        if (command.WorkingDirectory is { } wd && !Directory.Exists(wd))
            throw new CommandFailedException($"Cannot run {display}: the working directory '{wd}' does not exist.", display, -1, string.Empty);

        using var process = new Process { StartInfo = psi };
        logger.LogDebug("Running {Command}", display);
        var startTime = DateTimeOffset.UtcNow;
        try
        {
            process.Start();
        }
        catch (Win32Exception ex)
        {
            if (ex.NativeErrorCode == 2)
                throw new ToolNotFoundException(command.TargetFilePath,
                    $"Cannot run '{command.TargetFilePath}': it is not installed or not on PATH. Install it (./build.sh installs the SDK's prerequisites on Debian).", ex);
            throw new CommandFailedException($"Cannot run {display}: {ex.Message}.", display, -1, string.Empty, ex);
        }

        var stderrTail = new TailBuffer(StderrTailBytes);
        using var pumpCts = new CancellationTokenSource();
        var stdinTask = FeedStandardInputAsync(command.StandardInput, process.StandardInput.BaseStream, pumpCts.Token);
        var stdoutTask = PumpAsync(process.StandardOutput.BaseStream, command.StandardOutputPipe, null, pumpCts.Token);
        var stderrTask = PumpAsync(process.StandardError.BaseStream, command.StandardErrorPipe, stderrTail, pumpCts.Token);

        using var timeoutCts = command.Timeout is { } t ? new CancellationTokenSource(t) : new CancellationTokenSource();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutCts.Token);
        var stopped = false;
        try
        {
            await process.WaitForExitAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            stopped = true;
            logger.LogDebug("Terminating {Command} (pid {Pid}) and its children", display, process.Id);
            await ProcessTree.TerminateAsync(process.Id, command.GracePeriod).ConfigureAwait(false);
            using var reap = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try { await process.WaitForExitAsync(reap.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }

        // Drain what is left in the pipes; a grandchild that keeps them open must not hang us.
        var pumps = Task.WhenAll(stdoutTask, stderrTask);
        if (await Task.WhenAny(pumps, Task.Delay(stopped ? TimeSpan.FromMilliseconds(200) : TimeSpan.FromSeconds(2), CancellationToken.None)).ConfigureAwait(false) != pumps)
            pumpCts.Cancel();
        await IgnoreCancellation(pumps).ConfigureAwait(false);
        pumpCts.Cancel();
        await IgnoreCancellation(stdinTask).ConfigureAwait(false);

        var exitTime = DateTimeOffset.UtcNow;
        var tail = command.Redact(stderrTail.ToString());
        if (stopped)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw new CommandTimeoutException(
                $"{display} did not finish within {command.Timeout?.TotalSeconds:0.###} s and was terminated.{FormatTail(tail)}",
                display, command.Timeout ?? TimeSpan.Zero, tail);
        }

        var exitCode = process.ExitCode;
        logger.LogDebug("{Command} exited with {ExitCode} after {Elapsed} ms", display, exitCode, (long)(exitTime - startTime).TotalMilliseconds);
        if (exitCode != 0 && command.Validation == CommandResultValidation.ZeroExitCode)
        {
            throw ErrorMapper?.Invoke(command, exitCode, tail)
                ?? new CommandFailedException($"{display} failed with exit code {exitCode}.{FormatTail(tail)}", display, exitCode, tail);
        }
        return new CommandResult(exitCode, startTime, exitTime);
    }

    internal static string FormatTail(string tail)
    {
        var lines = tail.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return lines.Length == 0 ? string.Empty : " Standard error: " + string.Join(" | ", lines.TakeLast(5));
    }

    private static async Task FeedStandardInputAsync(PipeSource source, Stream stdin, CancellationToken ct)
    {
        try
        {
            await source.CopyToAsync(stdin, ct).ConfigureAwait(false);
        }
        catch (IOException) { } // the program closed its input early: not our failure
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
        finally
        {
            try { await stdin.DisposeAsync().ConfigureAwait(false); }
            catch (IOException) { }
        }
    }

    private static async Task PumpAsync(Stream source, PipeTarget target, TailBuffer? tail, CancellationToken ct)
    {
        var buffer = new byte[81920];
        while (true)
        {
            int n;
            try
            {
                n = await source.ReadAsync(buffer, ct).ConfigureAwait(false);
            }
            catch (IOException) { break; }
            if (n == 0)
                break;
            tail?.Append(buffer.AsSpan(0, n));
            await target.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
        }
        await target.CompleteAsync(ct).ConfigureAwait(false);
    }

    private static async Task IgnoreCancellation(Task task)
    {
        try { await task.ConfigureAwait(false); }
        catch (OperationCanceledException) { }
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

        public override string ToString()
        {
            lock (_data)
                return Encoding.UTF8.GetString(_data, 0, _length).TrimEnd();
        }
    }
}
