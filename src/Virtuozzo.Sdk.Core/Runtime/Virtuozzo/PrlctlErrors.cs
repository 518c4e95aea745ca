using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>
/// The one table that turns a failed <c>prlctl</c>/<c>vzctl</c> run into the SDK's exceptions. prlctl's exit code says
/// little (<c>prlerr2exitcode</c>: 253 the dispatcher is unreachable, 254 the VE is frozen, 255 any other error, 1 a bad
/// command line), so the message on standard error decides the type; the deprecation banner is never a failure.
/// Each typed exception carries the <see cref="CommandFailedException"/> (command line, exit code, stderr) as its inner exception.
/// </summary>
internal static partial class PrlctlErrors
{
    /// <summary>prlctl ≥ 7.0.224 prints this on standard error for every action but <c>list</c> and <c>exec</c>.</summary>
    public const string DeprecationBanner =
        "WARNING: You are using a deprecated CLI component that won't be installed by default in the next major release. Please use virsh instead";

    /// <summary>Standard error without the deprecation banners of prlctl and vzctl.</summary>
    public static string WithoutBanner(string? standardError)
    {
        if (string.IsNullOrEmpty(standardError))
            return string.Empty;
        var lines = standardError.Split('\n')
            .Select(l => l.TrimEnd('\r'))
            .Where(l => !l.StartsWith("WARNING: You are using a deprecated CLI component", StringComparison.Ordinal)
                && !VzctlDeprecated().IsMatch(l));
        return string.Join('\n', lines).Trim();
    }

    /// <summary>Maps a failed run to the SDK's exception.</summary>
    /// <param name="commandLine">The redacted command line.</param>
    /// <param name="exitCode">Its exit code (not zero).</param>
    /// <param name="standardOutput">Its standard output (some errors are printed there).</param>
    /// <param name="standardError">Its standard error.</param>
    /// <param name="hostName">The node, for messages.</param>
    public static VirtuozzoException Map(string commandLine, int exitCode, string standardOutput, string standardError, string hostName)
    {
        var program = commandLine.Split(' ', 2)[0];
        var err = WithoutBanner(standardError);
        var text = err.Length > 0 ? err : (standardOutput ?? string.Empty).Trim();
        var tail = Tail(text);
        var failed = new CommandFailedException(
            $"'{commandLine}' failed on {hostName} with exit code {exitCode}: {(tail.Length > 0 ? tail : "(no message)")}",
            commandLine, exitCode, tail);

        if (exitCode == 127 && (text.Contains("not found", StringComparison.OrdinalIgnoreCase) || text.Length == 0))
            return new ToolNotFoundException(program,
                $"'{program}' is not installed on {hostName}; the Virtuozzo runtime needs a Virtuozzo Hybrid Server 7 / OpenVZ 7 node with prlctl and vzctl.", failed);
        // ssh exits 255 too when it cannot reach the node; its own messages tell the two apart.
        if (exitCode == 255 && SshFailure().IsMatch(text))
            return new HostConnectionException($"The node {hostName} cannot be reached over SSH ('{commandLine}'): {tail}", failed);
        if (exitCode == 253)
            return new HostConnectionException(
                $"prlctl on {hostName} cannot reach the Virtuozzo service (exit 253): start it with 'systemctl start prl-disp-service' and retry. {tail}".TrimEnd(), failed);
        if (exitCode == 254)
            return new InvalidStateException(
                $"The VE is frozen on {hostName} (exit 254, '{commandLine}'): wait for the operation that froze it to finish, or resume it, then retry. {tail}".TrimEnd(), failed);

        if (NotFound().IsMatch(text))
            return new NotFoundException($"{tail} ('{commandLine}' on {hostName}, exit {exitCode})", failed);
        if (AlreadyExists().IsMatch(text))
            return new AlreadyExistsException($"{tail} ('{commandLine}' on {hostName}, exit {exitCode}): choose another name or UUID.");
        if (Resources().IsMatch(text))
            return new InsufficientResourcesException(
                $"{tail} ('{commandLine}' on {hostName}, exit {exitCode}): the node refused it for lack of resources; lower the VE's memory guarantee or stop other VEs.");
        if (WrongState().IsMatch(text))
            return new InvalidStateException($"{tail} ('{commandLine}' on {hostName}, exit {exitCode})", failed);
        return failed;
    }

    private static string Tail(string text)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var tail = string.Join(" ", lines.TakeLast(5));
        return tail.Length > 1000 ? tail[^1000..] : tail;
    }

    [GeneratedRegex(@"^ssh: |Host key verification failed|Permission denied \((publickey|password|keyboard)|Connection (refused|timed out|closed by remote host)|Could not resolve hostname",
        RegexOptions.CultureInvariant | RegexOptions.Multiline)]
    private static partial Regex SshFailure();

    [GeneratedRegex(@"^Warning: The '[^']*' action is deprecated", RegexOptions.CultureInvariant)]
    private static partial Regex VzctlDeprecated();

    [GeneratedRegex(@"does not exist|doesn't exist|not found|(could|can) ?not be found|unable to find|no such|is not registered|PRL_ERR_VM_UUID_NOT_FOUND",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex NotFound();

    [GeneratedRegex(@"already exists|already registered|is already in use|name .* is used", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex AlreadyExists();

    [GeneratedRegex(@"memory guarantee|guarantee cannot|not enough (memory|disk|space|free)|insufficient|no space left|out of memory",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Resources();

    [GeneratedRegex(@"is not running|is already running|is running|is not started|is stopped|is suspended|is paused|is mounted|invalid state|in the .* state|not in the .* state|is being|frozen|PRL_ERR_DISP_VM_IS_NOT_STARTED",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex WrongState();
}
