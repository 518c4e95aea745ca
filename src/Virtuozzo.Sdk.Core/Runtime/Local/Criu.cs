using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>A CRIU that works here, and how it must be run.</summary>
/// <param name="Path">The program.</param>
/// <param name="Version">Its version.</param>
/// <param name="Environment">Variables to run it with (<c>CRIU_FAULT=130</c> where hardware breakpoints do not fire).</param>
internal sealed record CriuTool(string Path, string Version, IReadOnlyDictionary<string, string?> Environment);

/// <summary>What probing CRIU found (cached per boot in the data root's run directory: the test dump takes seconds).</summary>
internal sealed record CriuProbeResult
{
    public int FormatVersion { get; init; } = 1;

    public string? Path { get; init; }

    public string? Version { get; init; }

    public bool Usable { get; init; }

    public bool BreakpointsWork { get; init; }

    public bool MemoryDirtyTracking { get; init; }

    public bool LazyPages { get; init; }

    public string? Reason { get; init; }

    public string? BootId { get; init; }

    public long ProgramStamp { get; init; }

    public CriuTool? Tool => Usable && Path is not null
        ? new CriuTool(Path, Version ?? "?", BreakpointsWork ? new Dictionary<string, string?>() : new Dictionary<string, string?> { ["CRIU_FAULT"] = Criu.NoBreakpointsFault })
        : null;
}

[JsonSerializable(typeof(CriuProbeResult))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class CriuJson : JsonSerializerContext;

/// <summary>
/// Finds and probes CRIU. CRIU 4 is needed (Debian 12's 3.17 fails <c>criu check</c> on current kernels); where hardware
/// breakpoints never fire (some virtual machines), a dump hangs at the end of its parasite code unless CRIU is told to
/// stop tasks by tracing system calls instead (<c>CRIU_FAULT=130</c>): the probe dumps a sleeping process to find out,
/// as CRIU upstream's kerndat now does.
/// </summary>
internal static class Criu
{
    /// <summary>CRIU's fault-injection code that disables hardware breakpoints (criu/include/fault-injection.h: FI_NO_BREAKPOINTS).</summary>
    public const string NoBreakpointsFault = "130";

    /// <summary>Where <c>./build.sh</c> installs CRIU 4 when the system's does not work.</summary>
    public const string PrivateInstallPath = "/opt/vzsdk/criu/criu";

    private static readonly SemaphoreSlim Gate = new(1, 1);

    /// <summary>The CRIU programs to try, in order.</summary>
    public static IEnumerable<string> Candidates(string? configured)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            yield return configured;
            yield break;
        }
        if (System.Environment.GetEnvironmentVariable("VZSDK_CRIU") is { Length: > 0 } env)
            yield return env;
        if (File.Exists(PrivateInstallPath))
            yield return PrivateInstallPath;
        yield return "criu";
    }

    /// <summary>Probes CRIU (or reads this boot's cached probe from <paramref name="runDirectory"/>).</summary>
    public static async Task<CriuProbeResult> ProbeAsync(IVirtuozzoHost host, string? configured, string runDirectory, CancellationToken ct)
    {
        await Gate.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var bootId = ReadBootId();
            var cacheFile = System.IO.Path.Combine(runDirectory, "criu-probe.json");
            var candidates = Candidates(configured).ToList();
            if (TryReadCache(cacheFile) is { } cached && cached.BootId == bootId && cached.Path is not null
                && candidates.Contains(cached.Path) && cached.ProgramStamp == Stamp(cached.Path))
                return cached;
            CriuProbeResult? last = null;
            foreach (var candidate in candidates)
            {
                last = await ProbeOneAsync(host, candidate, ct).ConfigureAwait(false) with { BootId = bootId, ProgramStamp = Stamp(candidate) };
                if (last.Usable)
                    break;
            }
            last ??= new CriuProbeResult { Reason = "no CRIU program was found" };
            try
            {
                Directory.CreateDirectory(runDirectory);
                await File.WriteAllTextAsync(cacheFile, JsonSerializer.Serialize(last, CriuJson.Default.CriuProbeResult), ct).ConfigureAwait(false);
            }
            catch (IOException)
            {
                // a cache only
            }
            return last;
        }
        finally
        {
            Gate.Release();
        }
    }

    private static CriuProbeResult? TryReadCache(string file)
    {
        try
        {
            return File.Exists(file) ? JsonSerializer.Deserialize(File.ReadAllText(file), CriuJson.Default.CriuProbeResult) : null;
        }
        catch (Exception ex) when (ex is IOException or JsonException)
        {
            return null;
        }
    }

    private static string? ReadBootId()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static long Stamp(string program)
    {
        var path = program.Contains('/', StringComparison.Ordinal) ? program : FindOnPath(program);
        return path is not null && File.Exists(path) ? File.GetLastWriteTimeUtc(path).Ticks : 0;
    }

    private static string? FindOnPath(string program)
        => (System.Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Select(d => System.IO.Path.Combine(d, program)).FirstOrDefault(File.Exists);

    private static Command Cmd(string program, params string[] args)
        => new Command(program).WithArguments(args).WithTimeout(LocalTimeouts.CriuProbe).WithValidation(CommandResultValidation.None);

    private static async Task<CriuProbeResult> ProbeOneAsync(IVirtuozzoHost host, string program, CancellationToken ct)
    {
        BufferedCommandResult version;
        try
        {
            version = await host.ExecuteBufferedAsync(Cmd(program, "--version"), ct).ConfigureAwait(false);
        }
        catch (ToolNotFoundException)
        {
            return new CriuProbeResult { Path = program, Reason = $"'{program}' was not found" };
        }
        var v = version.StandardOutput.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("Version:", StringComparison.Ordinal))?["Version:".Length..].Trim();
        var check = await host.ExecuteBufferedAsync(Cmd(program, "check"), ct).ConfigureAwait(false);
        if (check.ExitCode != 0)
        {
            var why = (check.StandardError + check.StandardOutput).Split('\n').Where(l => l.Contains("Error", StringComparison.Ordinal) || l.Contains("fail", StringComparison.OrdinalIgnoreCase)).LastOrDefault()?.Trim();
            return new CriuProbeResult { Path = program, Version = v, Reason = $"'criu check' fails with CRIU {v} on this kernel ({why ?? "exit code " + check.ExitCode.ToString(CultureInfo.InvariantCulture)}); CRIU 4 is needed (./build.sh installs it)" };
        }
        var dirty = (await host.ExecuteBufferedAsync(Cmd(program, "check", "--feature", "mem_dirty_track"), ct).ConfigureAwait(false)).ExitCode == 0;
        var lazy = (await host.ExecuteBufferedAsync(Cmd(program, "check", "--feature", "uffd-noncoop"), ct).ConfigureAwait(false)).ExitCode == 0;
        if (await TestDumpAsync(host, program, null, ct).ConfigureAwait(false))
            return new CriuProbeResult { Path = program, Version = v, Usable = true, BreakpointsWork = true, MemoryDirtyTracking = dirty, LazyPages = lazy };
        if (await TestDumpAsync(host, program, NoBreakpointsFault, ct).ConfigureAwait(false))
            return new CriuProbeResult { Path = program, Version = v, Usable = true, BreakpointsWork = false, MemoryDirtyTracking = dirty, LazyPages = lazy };
        return new CriuProbeResult { Path = program, Version = v, Reason = "a test dump of a sleeping process failed, with and without hardware breakpoints" };
    }

    /// <summary>Dumps a sleeping process (which the dump kills); false when the dump fails or hangs.</summary>
    private static async Task<bool> TestDumpAsync(IVirtuozzoHost host, string program, string? fault, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("vzsdk-criu-probe-").FullName;
        int pid = 0;
        try
        {
            var start = await host.ExecuteBufferedAsync(new Command("sh").WithArguments("-c", "setsid sleep 120 </dev/null >/dev/null 2>&1 & echo $!").WithTimeout(LocalTimeouts.CriuProbe), ct).ConfigureAwait(false);
            pid = int.Parse(start.StandardOutput.Trim(), CultureInfo.InvariantCulture);
            var dump = Cmd(program, "dump", "-t", pid.ToString(CultureInfo.InvariantCulture), "-D", dir, "-o", "dump.log", "-v2");
            if (fault is not null)
                dump = dump.WithEnvironmentVariables(new Dictionary<string, string?> { ["CRIU_FAULT"] = fault });
            try
            {
                return (await host.ExecuteBufferedAsync(dump, ct).ConfigureAwait(false)).ExitCode == 0;
            }
            catch (CommandTimeoutException)
            {
                return false; // the hang of a dump waiting for a breakpoint that never fires
            }
        }
        finally
        {
            if (pid > 0)
                Native.TrySignal(pid, Native.SIGKILL);
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }
}
