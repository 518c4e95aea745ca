namespace Virtuozzo.Sdk.Containers.Runtime.Local;

/// <summary>Recognises the OCI runtime's own failure to start a program in a container (not the program's exit code).</summary>
internal static class ExecFailure
{
    /// <summary>The exit code the OCI runtime uses when it could not run the program at all.</summary>
    private const int RuntimeFailure = 255;

    /// <summary>
    /// Returns the shell's exit code (127 not found, 126 not executable) and a plain reason when <paramref name="standardError"/>
    /// is the runtime's report that it could not start the program; null when the program itself ran.
    /// </summary>
    public static (int ExitCode, string Reason)? Classify(int exitCode, string standardError)
    {
        if (exitCode != RuntimeFailure || !standardError.Contains("exec failed", StringComparison.Ordinal))
            return null;
        if (standardError.Contains("no such file or directory", StringComparison.OrdinalIgnoreCase)
            || standardError.Contains("not found", StringComparison.OrdinalIgnoreCase))
            return (127, "command not found");
        if (standardError.Contains("permission denied", StringComparison.OrdinalIgnoreCase))
            return (126, "permission denied (not executable)");
        if (standardError.Contains("exec format error", StringComparison.OrdinalIgnoreCase))
            return (126, "cannot execute (not a program for this machine)");
        return null;
    }
}
