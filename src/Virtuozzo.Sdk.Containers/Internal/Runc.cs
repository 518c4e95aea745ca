using System.Text.Json;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Containers.Internal;

/// <summary>runc, with the SDK's own state directory so that data roots never see each other's containers.</summary>
internal sealed class Runc(IVirtuozzoHost host, string stateRoot)
{
    public string StateRoot { get; } = stateRoot;

    private Command Cmd(params string[] args) => new Command("runc").WithArguments(["--root", StateRoot, .. args]).WithTimeout(LocalTimeouts.OciRuntimeCommand);

    /// <summary>runc's status of the container ("running", "paused", "stopped", "created"), or null when runc does not know it.</summary>
    public async Task<string?> StatusAsync(VeId id, CancellationToken ct)
    {
        // runc keeps a directory per container it knows: without one there is nothing to ask (and no process to start).
        if (host.IsLocal && !Directory.Exists(Path.Combine(StateRoot, id.ToString())))
            return null;
        var r = await host.ExecuteBufferedAsync(Cmd("state", id.ToString()).WithValidation(CommandResultValidation.None), ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
            return null;
        using var doc = JsonDocument.Parse(r.StandardOutput);
        return doc.RootElement.GetProperty("status").GetString();
    }

    /// <summary>The container's init pid as runc reports it, or null.</summary>
    public async Task<int?> InitPidAsync(VeId id, CancellationToken ct)
    {
        var r = await host.ExecuteBufferedAsync(Cmd("state", id.ToString()).WithValidation(CommandResultValidation.None), ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
            return null;
        using var doc = JsonDocument.Parse(r.StandardOutput);
        return doc.RootElement.TryGetProperty("pid", out var pid) && pid.GetInt32() > 0 ? pid.GetInt32() : null;
    }

    // The container's standard streams are pipes, never host files: CRIU can dump a process whose stdio are pipes (runc
    // records them and hands new ones over at restore) but not one holding a host file or /dev/null, which are outside
    // the container's mounts. Standard input is a pipe at end of file; output goes through a pipe to a detached `cat`
    // that appends to the console log and ends when the last process of the container closes it.
    private const string DetachedScript =
        "log=$1; st=$2; shift 2; rm -f \"$st\"; " +
        "{ : | \"$@\" 2>&1; echo $? >\"$st\"; } | { exec 3<&0; setsid cat <&3 >>\"$log\" 2>&1 3<&- & }; " +
        "rc=1; read rc <\"$st\" 2>/dev/null; rm -f \"$st\"; exit $rc";

    private Task RunScriptAsync(string consoleLog, IEnumerable<string> runcArguments, IReadOnlyDictionary<string, string?>? environment, TimeSpan timeout, CancellationToken ct)
    {
        var command = new Command("sh").WithArguments(["-c", DetachedScript, "sh", consoleLog, consoleLog + ".rc", "runc", "--root", StateRoot, .. runcArguments]).WithTimeout(timeout);
        if (environment is not null)
            command = command.WithEnvironmentVariables(environment);
        return host.ExecuteAsync(command, ct);
    }

    /// <summary>Starts the container detached; its init's standard streams go to <paramref name="consoleLog"/> through a pipe.</summary>
    public async Task RunDetachedAsync(VeId id, string bundle, string pidFile, string consoleLog, CancellationToken ct)
    {
        try
        {
            await RunScriptAsync(consoleLog, ["run", "-d", "--pid-file", pidFile, "--bundle", bundle, id.ToString()], null, LocalTimeouts.OciRuntimeCommand, ct).ConfigureAwait(false);
        }
        catch (CommandFailedException ex) when (ex is not CommandTimeoutException)
        {
            var tail = ConsoleTail(consoleLog);
            throw new CommandFailedException($"runc could not start container {id}: {tail}", ex.CommandLine, ex.ExitCode, tail, ex);
        }
    }

    /// <summary>
    /// Dumps the container's processes with CRIU into <paramref name="imageDirectory"/>; they are killed afterwards unless
    /// <paramref name="leaveRunning"/>.
    /// </summary>
    public async Task CheckpointAsync(VeId id, CriuTool criu, string imageDirectory, string workDirectory, bool leaveRunning, CancellationToken ct,
        bool preDump = false, string? parentPath = null)
    {
        var args = CheckpointArguments(StateRoot, criu.Path, id, imageDirectory, workDirectory, leaveRunning, preDump, parentPath);
        try
        {
            await host.ExecuteAsync(new Command("runc").WithArguments(args).WithEnvironmentVariables(criu.Environment).WithTimeout(LocalTimeouts.Checkpoint), ct).ConfigureAwait(false);
        }
        catch (CommandFailedException ex) when (ex is not CommandTimeoutException)
        {
            var why = CriuLogTail(Path.Combine(workDirectory, "dump.log"));
            throw new CommandFailedException($"CRIU could not checkpoint container {id}: {why}", ex.CommandLine, ex.ExitCode, why, ex);
        }
    }

    /// <summary>
    /// runc's arguments for a dump: a pre-dump (<paramref name="preDump"/>) copies the memory and leaves the container
    /// running with its memory tracked; <paramref name="parentPath"/> (relative to the image directory) names the previous
    /// pre-dump, so that only the pages dirtied since it are written (CRIU links the images to it as <c>parent</c>).
    /// </summary>
    internal static List<string> CheckpointArguments(string stateRoot, string criuPath, VeId id, string imageDirectory, string workDirectory, bool leaveRunning,
        bool preDump, string? parentPath)
    {
        if (parentPath is not null && Path.IsPathRooted(parentPath))
            throw new ArgumentException("The parent of a dump is named relative to its image directory.", nameof(parentPath));
        List<string> args = ["--root", stateRoot, "--criu", criuPath, "checkpoint", "--image-path", imageDirectory, "--work-path", workDirectory,
            "--tcp-established", "--file-locks", "--manage-cgroups-mode", "soft"];
        if (preDump)
            args.Add("--pre-dump");
        else if (leaveRunning)
            args.Add("--leave-running");
        if (parentPath is not null)
            args.AddRange(["--parent-path", parentPath]);
        args.Add(id.ToString());
        return args;
    }

    /// <summary>Restores a checkpointed container detached, from <paramref name="imageDirectory"/>, in the bundle's namespaces and cgroup.</summary>
    public async Task RestoreDetachedAsync(VeId id, CriuTool criu, string bundle, string imageDirectory, string workDirectory, string pidFile, string consoleLog, CancellationToken ct)
    {
        try
        {
            await RunScriptAsync(consoleLog, ["--criu", criu.Path, "restore", "-d", "--image-path", imageDirectory, "--work-path", workDirectory,
                "--tcp-established", "--file-locks", "--manage-cgroups-mode", "soft", "--pid-file", pidFile, "--bundle", bundle, id.ToString()],
                criu.Environment, LocalTimeouts.Checkpoint, ct).ConfigureAwait(false);
        }
        catch (CommandFailedException ex) when (ex is not CommandTimeoutException)
        {
            var why = CriuLogTail(Path.Combine(workDirectory, "restore.log"));
            throw new CommandFailedException($"CRIU could not restore container {id}: {why}", ex.CommandLine, ex.ExitCode, why, ex);
        }
    }

    private static string ConsoleTail(string consoleLog)
    {
        for (var i = 0; i < 20; i++)
        {
            // the console's `cat` may still be appending what runc printed
            if (File.Exists(consoleLog) && new FileInfo(consoleLog).Length > 0)
                break;
            Thread.Sleep(10);
        }
        return File.Exists(consoleLog) ? string.Join(" | ", File.ReadLines(consoleLog).TakeLast(5)) : string.Empty;
    }

    private static string CriuLogTail(string log)
    {
        if (!File.Exists(log))
            return "(no CRIU log)";
        var errors = File.ReadLines(log).Where(l => l.Contains("Error", StringComparison.Ordinal) && !l.Contains("RLIMIT_NOFILE", StringComparison.Ordinal)).TakeLast(3).ToList();
        return errors.Count > 0 ? string.Join(" | ", errors.Select(l => l.Trim())) : string.Join(" | ", File.ReadLines(log).TakeLast(3));
    }

    public Task KillAsync(VeId id, string signal, bool all, CancellationToken ct)
        => host.ExecuteAsync(Cmd(all ? ["kill", "--all", id.ToString(), SignalArgument(signal)] : ["kill", id.ToString(), SignalArgument(signal)]).WithValidation(CommandResultValidation.None), ct);

    /// <summary>
    /// The signal as runc takes it: runc 1.1 knows no real-time signal names, so <c>SIGRTMIN+N</c> (systemd's
    /// <c>SIGRTMIN+3</c>) and <c>SIGRTMAX-N</c> go as numbers (the C library's SIGRTMIN is 34, SIGRTMAX 64).
    /// </summary>
    internal static string SignalArgument(string signal)
    {
        var m = System.Text.RegularExpressions.Regex.Match(signal, @"^(SIG)?RT(MIN|MAX)([+-]\d+)?$");
        if (!m.Success)
            return signal;
        var offset = m.Groups[3].Success ? int.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        var number = (m.Groups[2].Value == "MIN" ? 34 : 64) + offset;
        return number is >= 34 and <= 64 ? number.ToString(System.Globalization.CultureInfo.InvariantCulture) : signal;
    }

    public Task DeleteAsync(VeId id, CancellationToken ct)
        => host.ExecuteAsync(Cmd("delete", "--force", id.ToString()).WithValidation(CommandResultValidation.None), ct);

    public Task PauseAsync(VeId id, CancellationToken ct) => host.ExecuteAsync(Cmd("pause", id.ToString()), ct);

    public Task ResumeAsync(VeId id, CancellationToken ct) => host.ExecuteAsync(Cmd("resume", id.ToString()), ct);

    /// <summary>The command that runs a program in the container (stdio as the caller wires them).</summary>
    public Command Exec(VeId id, VeExecOptions options)
    {
        var args = new List<string> { "--root", StateRoot, "exec", "--cwd", options.WorkingDirectory ?? "/" };
        foreach (var (k, v) in options.Environment)
            args.AddRange(["--env", k + "=" + v]);
        args.Add(id.ToString());
        args.AddRange(options.EffectiveCommand);
        return new Command("runc").WithArguments(args).WithValidation(CommandResultValidation.None);
    }
}
