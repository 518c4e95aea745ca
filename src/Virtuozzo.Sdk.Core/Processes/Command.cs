using System.Collections.Immutable;
using System.Text;

namespace Virtuozzo.Sdk.Core.Processes;

/// <summary>Whether a non-zero exit code throws.</summary>
public enum CommandResultValidation
{
    /// <summary>Never throw for the exit code; inspect <see cref="CommandResult.ExitCode"/>.</summary>
    None,

    /// <summary>Throw <see cref="CommandFailedException"/> when the exit code is not zero (the default).</summary>
    ZeroExitCode,
}

/// <summary>
/// An immutable description of a program to run: the executable, arguments as an array (never a shell
/// string), environment, working directory, standard input, where output goes, timeout and secrets.
/// Each <c>With…</c> method returns a modified copy. Run it on a host with
/// <see cref="Hosts.IVirtuozzoHost.ExecuteAsync"/> or <see cref="Hosts.IVirtuozzoHost.ExecuteBufferedAsync"/>.
/// </summary>
/// <example>
/// <code>
/// var result = await host.ExecuteBufferedAsync(
///     new Command("qemu-img").WithArguments("info", "--output=json", path).WithTimeout(TimeSpan.FromSeconds(30)));
/// </code>
/// </example>
public sealed class Command
{
    /// <summary>The grace period between the polite signal (SIGTERM) and SIGKILL when a command is cancelled or times out.</summary>
    public static readonly TimeSpan DefaultGracePeriod = TimeSpan.FromSeconds(5);

    /// <summary>Creates a command that runs <paramref name="targetFilePath"/> (a path, or a name looked up on PATH).</summary>
    /// <exception cref="ArgumentException">The path is empty or contains a NUL character.</exception>
    public Command(string targetFilePath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(targetFilePath);
        if (targetFilePath.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException("The program path contains a NUL character.", nameof(targetFilePath));
        TargetFilePath = targetFilePath;
    }

    private Command(Command other)
    {
        TargetFilePath = other.TargetFilePath;
        Arguments = other.Arguments;
        WorkingDirectory = other.WorkingDirectory;
        EnvironmentVariables = other.EnvironmentVariables;
        StandardInput = other.StandardInput;
        StandardOutputPipe = other.StandardOutputPipe;
        StandardErrorPipe = other.StandardErrorPipe;
        Timeout = other.Timeout;
        GracePeriod = other.GracePeriod;
        Validation = other.Validation;
        Secrets = other.Secrets;
    }

    /// <summary>The program.</summary>
    public string TargetFilePath { get; }

    /// <summary>The arguments, each passed to the program as is.</summary>
    public ImmutableArray<string> Arguments { get; private init; } = [];

    /// <summary>The working directory, or null for the runner's default.</summary>
    public string? WorkingDirectory { get; private init; }

    /// <summary>Environment changes: a null value removes the variable.</summary>
    public ImmutableDictionary<string, string?> EnvironmentVariables { get; private init; } = ImmutableDictionary<string, string?>.Empty;

    /// <summary>Standard input.</summary>
    public PipeSource StandardInput { get; private init; } = PipeSource.Null;

    /// <summary>Where standard output goes (besides the buffer of a buffered execution).</summary>
    public PipeTarget StandardOutputPipe { get; private init; } = PipeTarget.Null;

    /// <summary>Where standard error goes (besides the buffer of a buffered execution and the tail kept for errors).</summary>
    public PipeTarget StandardErrorPipe { get; private init; } = PipeTarget.Null;

    /// <summary>The time after which the whole process tree is terminated and <see cref="CommandTimeoutException"/> thrown; null for none.</summary>
    public TimeSpan? Timeout { get; private init; }

    /// <summary>The wait between SIGTERM and SIGKILL when the command is cancelled or times out.</summary>
    public TimeSpan GracePeriod { get; private init; } = DefaultGracePeriod;

    /// <summary>Whether a non-zero exit code throws.</summary>
    public CommandResultValidation Validation { get; private init; } = CommandResultValidation.ZeroExitCode;

    /// <summary>Values replaced by <c>***</c> in every log line, message and exception.</summary>
    public ImmutableArray<string> Secrets { get; private init; } = [];

    /// <summary>Replaces the arguments.</summary>
    public Command WithArguments(IEnumerable<string> arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        var list = arguments.ToImmutableArray();
        foreach (var a in list)
        {
            ArgumentNullException.ThrowIfNull(a, nameof(arguments));
            if (a.Contains('\0', StringComparison.Ordinal))
                throw new ArgumentException("An argument contains a NUL character.", nameof(arguments));
        }
        return new Command(this) { Arguments = list };
    }

    /// <summary>Replaces the arguments.</summary>
    public Command WithArguments(params string[] arguments) => WithArguments((IEnumerable<string>)arguments);

    /// <summary>Sets the working directory.</summary>
    public Command WithWorkingDirectory(string? workingDirectory) => new(this) { WorkingDirectory = workingDirectory };

    /// <summary>Adds or replaces environment variables; a null value removes the variable.</summary>
    public Command WithEnvironmentVariables(IReadOnlyDictionary<string, string?> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var env = EnvironmentVariables;
        foreach (var (k, v) in variables)
        {
            if (string.IsNullOrEmpty(k) || k.Contains('=', StringComparison.Ordinal) || k.Contains('\0', StringComparison.Ordinal))
                throw new ArgumentException($"'{k}' is not a valid environment variable name.", nameof(variables));
            env = env.SetItem(k, v);
        }
        return new Command(this) { EnvironmentVariables = env };
    }

    /// <summary>Sets standard input.</summary>
    public Command WithStandardInput(PipeSource source) => new(this) { StandardInput = source ?? throw new ArgumentNullException(nameof(source)) };

    /// <summary>Feeds these bytes to standard input, then closes it.</summary>
    public Command WithStandardInput(ReadOnlyMemory<byte> bytes) => WithStandardInput(PipeSource.FromBytes(bytes));

    /// <summary>Feeds this text (UTF-8) to standard input, then closes it.</summary>
    public Command WithStandardInput(string text) => WithStandardInput(PipeSource.FromString(text));

    /// <summary>Copies this stream to standard input, then closes it.</summary>
    public Command WithStandardInput(Stream stream) => WithStandardInput(PipeSource.FromStream(stream));

    /// <summary>Sends standard output to a target.</summary>
    public Command WithStandardOutputPipe(PipeTarget target) => new(this) { StandardOutputPipe = target ?? throw new ArgumentNullException(nameof(target)) };

    /// <summary>Sends standard error to a target.</summary>
    public Command WithStandardErrorPipe(PipeTarget target) => new(this) { StandardErrorPipe = target ?? throw new ArgumentNullException(nameof(target)) };

    /// <summary>Sets a timeout (null for none).</summary>
    public Command WithTimeout(TimeSpan? timeout)
    {
        if (timeout is { } t && t <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be positive.");
        return new Command(this) { Timeout = timeout };
    }

    /// <summary>Sets the wait between SIGTERM and SIGKILL on cancellation or timeout.</summary>
    public Command WithGracePeriod(TimeSpan gracePeriod)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(gracePeriod, TimeSpan.Zero);
        return new Command(this) { GracePeriod = gracePeriod };
    }

    /// <summary>Chooses whether a non-zero exit code throws.</summary>
    public Command WithValidation(CommandResultValidation validation) => new(this) { Validation = validation };

    /// <summary>Adds values to redact from logs, messages and exceptions (passwords, tokens).</summary>
    public Command WithSecrets(params string[] secrets)
        => new(this) { Secrets = Secrets.AddRange(secrets.Where(s => !string.IsNullOrEmpty(s))) };

    /// <summary>Replaces every secret in <paramref name="text"/> with <c>***</c>.</summary>
    public string Redact(string text)
    {
        foreach (var s in Secrets.OrderByDescending(s => s.Length))
            text = text.Replace(s, "***", StringComparison.Ordinal);
        return text;
    }

    /// <summary>The command line, shell-quoted for reading, with secrets redacted.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder(QuoteForDisplay(TargetFilePath));
        foreach (var a in Arguments)
            sb.Append(' ').Append(QuoteForDisplay(a));
        return Redact(sb.ToString());
    }

    /// <summary>Quotes an argument for a POSIX shell (single quotes), as used for display and for SSH remote commands.</summary>
    public static string QuoteForShell(string argument)
    {
        ArgumentNullException.ThrowIfNull(argument);
        return "'" + argument.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
    }

    private static string QuoteForDisplay(string a)
        => a.Length > 0 && a.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=:,@%+".Contains(c, StringComparison.Ordinal)) ? a : QuoteForShell(a);
}
