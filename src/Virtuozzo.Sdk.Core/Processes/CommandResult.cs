namespace Virtuozzo.Sdk.Core.Processes;

/// <summary>The outcome of a command that ran to its end.</summary>
/// <param name="ExitCode">The exit code (128 + signal number when a signal ended it).</param>
/// <param name="StartTime">When the process started.</param>
/// <param name="ExitTime">When it exited.</param>
public record CommandResult(int ExitCode, DateTimeOffset StartTime, DateTimeOffset ExitTime)
{
    /// <summary>True when the exit code is zero.</summary>
    public bool IsSuccess => ExitCode == 0;

    /// <summary>How long the process ran.</summary>
    public TimeSpan RunTime => ExitTime - StartTime;
}

/// <summary>The outcome of a command whose output was buffered.</summary>
/// <param name="ExitCode">The exit code.</param>
/// <param name="StartTime">When the process started.</param>
/// <param name="ExitTime">When it exited.</param>
/// <param name="StandardOutput">Everything written to standard output (UTF-8).</param>
/// <param name="StandardError">Everything written to standard error (UTF-8).</param>
public sealed record BufferedCommandResult(int ExitCode, DateTimeOffset StartTime, DateTimeOffset ExitTime, string StandardOutput, string StandardError)
    : CommandResult(ExitCode, StartTime, ExitTime);
