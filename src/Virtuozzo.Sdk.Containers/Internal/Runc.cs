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

    /// <summary>Starts the container detached; its init's standard streams go to <paramref name="consoleLog"/>.</summary>
    public async Task RunDetachedAsync(VeId id, string bundle, string pidFile, string consoleLog, CancellationToken ct)
    {
        const string script = "log=$1; shift; exec \"$@\" </dev/null >>\"$log\" 2>&1";
        try
        {
            await host.ExecuteAsync(new Command("sh").WithArguments(["-c", script, "sh", consoleLog, "runc", "--root", StateRoot, "run", "-d", "--pid-file", pidFile, "--bundle", bundle, id.ToString()])
                .WithTimeout(LocalTimeouts.OciRuntimeCommand), ct).ConfigureAwait(false);
        }
        catch (CommandFailedException ex) when (ex is not CommandTimeoutException)
        {
            var tail = File.Exists(consoleLog) ? string.Join(" | ", File.ReadLines(consoleLog).TakeLast(5)) : string.Empty;
            throw new CommandFailedException($"runc could not start container {id}: {tail}", ex.CommandLine, ex.ExitCode, tail, ex);
        }
    }

    public Task KillAsync(VeId id, string signal, bool all, CancellationToken ct)
        => host.ExecuteAsync(Cmd(all ? ["kill", "--all", id.ToString(), signal] : ["kill", id.ToString(), signal]).WithValidation(CommandResultValidation.None), ct);

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
