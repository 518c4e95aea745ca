using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>Reads a host's capabilities through <see cref="IVirtuozzoHost"/> only, so local and SSH hosts share one code path.</summary>
internal static partial class HostProber
{
    internal const string KvmCachePath = "/run/vzsdk/kvm-probe.json";
    private const int ProbeExitValue = 0x31;

    /// <summary>isa-debug-exit makes QEMU exit with (value &lt;&lt; 1) | 1.</summary>
    internal const int ProbeExitCode = (ProbeExitValue << 1) | 1;

    public static async Task<HostCapabilities> ProbeAsync(IVirtuozzoHost host, CapabilityProbeOptions options, CancellationToken ct)
    {
        var hostName = (await ReadTextAsync(host, "/proc/sys/kernel/hostname", ct).ConfigureAwait(false))?.Trim() ?? host.Name;
        var kernel = (await ReadTextAsync(host, "/proc/sys/kernel/osrelease", ct).ConfigureAwait(false))?.Trim() ?? "unknown";
        var mounts = await ReadTextAsync(host, "/proc/mounts", ct).ConfigureAwait(false) ?? string.Empty;
        var meminfo = await ReadTextAsync(host, "/proc/meminfo", ct).ConfigureAwait(false) ?? string.Empty;
        var online = await ReadTextAsync(host, "/sys/devices/system/cpu/online", ct).ConfigureAwait(false) ?? "0";

        var toolTasks = HostCapabilities.KnownTools.ToDictionary(t => t, t => ToolVersionAsync(host, t, ct));
        await Task.WhenAll(toolTasks.Values).ConfigureAwait(false);
        var tools = toolTasks.ToDictionary(kv => kv.Key, kv => kv.Value.Result);

        FeatureStatus kvm, criu;
        if (options.SkipProbes)
        {
            kvm = new FeatureStatus(false, "not probed");
            criu = new FeatureStatus(false, "not probed");
        }
        else
        {
            kvm = tools["qemu-system-x86_64"] is null
                ? new FeatureStatus(false, "qemu-system-x86_64 is not installed")
                : await KvmStatusAsync(host, options, ct).ConfigureAwait(false);
            criu = host.IsLocal
                ? await LocalCriuStatusAsync(host, ct).ConfigureAwait(false)
                : tools["criu"] is null
                    ? new FeatureStatus(false, "criu is not installed")
                    : await CriuStatusAsync(host, ct).ConfigureAwait(false);
        }

        return new HostCapabilities(hostName, kernel, ParseCgroupLayout(mounts), ParseCpuList(online), ParseMemTotal(meminfo), kvm, tools, criu);
    }

    internal static CgroupLayout ParseCgroupLayout(string mounts)
    {
        bool v1 = false, v2Root = false, v2Unified = false;
        foreach (var line in mounts.Split('\n'))
        {
            var f = line.Split(' ');
            if (f.Length < 3)
                continue;
            if (f[2] == "cgroup")
                v1 = true;
            else if (f[2] == "cgroup2")
            {
                if (f[1] == "/sys/fs/cgroup")
                    v2Root = true;
                else
                    v2Unified = true;
            }
        }
        return v2Root ? CgroupLayout.V2 : v1 && v2Unified ? CgroupLayout.Hybrid : v1 ? CgroupLayout.V1 : v2Unified ? CgroupLayout.V2 : CgroupLayout.None;
    }

    internal static long ParseMemTotal(string meminfo)
    {
        var m = MemTotalRegex().Match(meminfo);
        return m.Success ? long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) * 1024 : 0;
    }

    internal static int ParseCpuList(string list)
    {
        var count = 0;
        foreach (var part in list.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var range = part.Split('-');
            if (range.Length == 2 && int.TryParse(range[0], CultureInfo.InvariantCulture, out var a) && int.TryParse(range[1], CultureInfo.InvariantCulture, out var b) && b >= a)
                count += b - a + 1;
            else if (int.TryParse(part, CultureInfo.InvariantCulture, out _))
                count++;
        }
        return Math.Max(count, 1);
    }

    internal static string? ParseVersion(string output)
    {
        var m = VersionRegex().Match(output);
        return m.Success ? m.Value : null;
    }

    private static async Task<string?> ToolVersionAsync(IVirtuozzoHost host, string tool, CancellationToken ct)
    {
        try
        {
            var r = await host.ExecuteBufferedAsync(
                new Command(tool).WithArguments("--version").WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(15)).WithGracePeriod(TimeSpan.FromSeconds(1)),
                ct).ConfigureAwait(false);
            if (r.ExitCode == 127)
                return null; // remote shell: command not found
            return ParseVersion(r.StandardOutput + "\n" + r.StandardError) ?? "unknown";
        }
        catch (ToolNotFoundException)
        {
            return null;
        }
        catch (CommandFailedException)
        {
            return "unknown";
        }
    }

    /// <summary>The local runtime's own CRIU probe (the program it would use, a test dump included; cached per boot under /run).</summary>
    private static async Task<FeatureStatus> LocalCriuStatusAsync(IVirtuozzoHost host, CancellationToken ct)
    {
        var p = await Runtime.Local.Criu.ProbeAsync(host, null, "/run/vzsdk", ct).ConfigureAwait(false);
        if (!p.Usable)
            return new FeatureStatus(false, p.Reason ?? "not usable");
        var notes = new List<string>();
        if (!p.BreakpointsWork)
            notes.Add("hardware breakpoints do not fire here: run with CRIU_FAULT=130");
        notes.Add(p.MemoryDirtyTracking ? "memory dirty tracking available" : "no memory dirty tracking (no pre-dumps)");
        return new FeatureStatus(true, $"CRIU {p.Version} at {p.Path} ({string.Join("; ", notes)})");
    }

    internal static async Task<FeatureStatus> CriuStatusAsync(IVirtuozzoHost host, CancellationToken ct)
    {
        try
        {
            var r = await host.ExecuteBufferedAsync(
                new Command("criu").WithArguments("check").WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(30)), ct).ConfigureAwait(false);
            if (r.ExitCode == 0)
                return new FeatureStatus(true, "criu check passed");
            var lines = (r.StandardError + "\n" + r.StandardOutput).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var reason = lines.FirstOrDefault(l => l.Contains("Error", StringComparison.OrdinalIgnoreCase) && !l.Contains("exited, status", StringComparison.Ordinal))
                ?? lines.LastOrDefault() ?? $"exit code {r.ExitCode}";
            return new FeatureStatus(false, "criu check failed: " + reason);
        }
        catch (CommandFailedException ex)
        {
            return new FeatureStatus(false, "criu check failed: " + ex.Message);
        }
    }

    private static async Task<FeatureStatus> KvmStatusAsync(IVirtuozzoHost host, CapabilityProbeOptions options, CancellationToken ct)
    {
        if (!await host.FileExistsAsync("/dev/kvm", ct).ConfigureAwait(false))
            return new FeatureStatus(false, "/dev/kvm does not exist (no hardware virtualisation or the kvm module is not loaded)");

        var bootId = (await ReadTextAsync(host, "/proc/sys/kernel/random/boot_id", ct).ConfigureAwait(false))?.Trim() ?? string.Empty;
        if (!options.RefreshKvmProbe && await ReadTextAsync(host, KvmCachePath, ct).ConfigureAwait(false) is { } cached)
        {
            try
            {
                var c = JsonSerializer.Deserialize(cached, CoreJsonContext.Default.KvmProbeCache);
                if (c is not null && c.BootId == bootId && bootId.Length > 0)
                    return new FeatureStatus(c.Usable, c.Reason);
            }
            catch (JsonException) { } // a damaged cache is simply probed again
        }

        var status = await ProbeAcceleratorAsync(host, "kvm", ProbeGuest(hang: false), options.KvmProbeTimeout, ct).ConfigureAwait(false);
        try
        {
            await host.ExecuteAsync(new Command("mkdir").WithArguments("-p", "/run/vzsdk"), ct).ConfigureAwait(false);
            await host.WriteFileAsync(KvmCachePath, JsonSerializer.SerializeToUtf8Bytes(new KvmProbeCache(bootId, status.Usable, status.Reason), CoreJsonContext.Default.KvmProbeCache), ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException)
        {
            // Not cached: the next call probes again. Not a reason to fail.
        }
        return status;
    }

    /// <summary>
    /// A boot sector that makes one million port-I/O exits (<c>out 0x80</c>) and then writes to the isa-debug-exit
    /// port (QEMU then exits with <see cref="ProbeExitCode"/>); or, with <paramref name="hang"/>, spins forever —
    /// the stand-in for an accelerator that hangs.
    /// </summary>
    /// <remarks>
    /// Merely booting is not proof: on nested hosts where /dev/kvm exists, a trivial KVM guest can boot while every
    /// VM exit costs microseconds, so real guests crawl or hang. Measured on such a host: TCG 0.15 s, KVM 7.7 s for
    /// this guest (3.4 s of it before the first instruction). A healthy KVM runs it in well under a second.
    /// </remarks>
    internal static byte[] ProbeGuest(bool hang)
    {
        var sector = new byte[512];
        byte[] code = hang
            ? [0xFA, 0xEB, 0xFE] // cli; jmp $
            :
            [
                0xFA,                   // cli
                0xBB, 20, 0,            // mov bx, 20         (outer loop)
                0xB9, 0x50, 0xC3,       // L1: mov cx, 50000  (inner loop)
                0xE6, 0x80,             // L2: out 0x80, al   (a VM exit each time)
                0xE2, 0xFC,             // loop L2
                0x4B,                   // dec bx
                0x75, 0xF6,             // jnz L1
                0xB0, ProbeExitValue,   // mov al, 0x31
                0xE6, 0xF4,             // out 0xf4, al       (isa-debug-exit)
                0xF4,                   // hlt
                0xEB, 0xFD,             // jmp hlt
            ];
        code.CopyTo(sector, 0);
        sector[510] = 0x55;
        sector[511] = 0xAA;
        return sector;
    }

    /// <summary>
    /// Boots <paramref name="guest"/> under <paramref name="accelerator"/> with a hard timeout (then SIGKILL).
    /// Usable only when the guest reaches its exit port in time.
    /// </summary>
    internal static async Task<FeatureStatus> ProbeAcceleratorAsync(IVirtuozzoHost host, string accelerator, byte[] guest, TimeSpan timeout, CancellationToken ct)
    {
        var dir = (await host.ExecuteBufferedAsync(new Command("mktemp").WithArguments("-d", "/tmp/vzsdk-probe.XXXXXX"), ct).ConfigureAwait(false)).StandardOutput.Trim();
        try
        {
            var image = dir + "/probe.img";
            await host.WriteFileAsync(image, guest, ct).ConfigureAwait(false);
            var started = DateTime.UtcNow;
            var r = await host.ExecuteBufferedAsync(
                new Command("qemu-system-x86_64")
                    .WithArguments(
                        "-accel", accelerator, "-machine", "pc", "-m", "32", "-nodefaults", "-display", "none", "-no-reboot",
                        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                        "-drive", $"file={image},format=raw,if=ide")
                    .WithValidation(CommandResultValidation.None)
                    .WithTimeout(timeout)
                    .WithGracePeriod(TimeSpan.FromMilliseconds(500)),
                ct).ConfigureAwait(false);
            var secs = (DateTime.UtcNow - started).TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture);
            if (r.ExitCode == ProbeExitCode)
                return new FeatureStatus(true, $"a {accelerator} test guest booted and exited in {secs} s");
            var err = r.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
            return new FeatureStatus(false, $"a {accelerator} test guest failed (QEMU exit code {r.ExitCode}{(err is null ? string.Empty : ": " + err)})");
        }
        catch (CommandTimeoutException)
        {
            return new FeatureStatus(false, $"a {accelerator} test guest did not finish within {timeout.TotalSeconds:0.#} s and was killed (guests hang or crawl under this accelerator)");
        }
        finally
        {
            await host.ExecuteAsync(new Command("rm").WithArguments("-rf", "--", dir).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<string?> ReadTextAsync(IVirtuozzoHost host, string path, CancellationToken ct)
    {
        try
        {
            return Encoding.UTF8.GetString(await host.ReadFileAsync(path, ct).ConfigureAwait(false));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [GeneratedRegex(@"MemTotal:\s+(\d+)\s*kB")]
    private static partial Regex MemTotalRegex();

    [GeneratedRegex(@"\d+\.\d+(\.\d+)*")]
    private static partial Regex VersionRegex();
}
