using System.Globalization;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory;

/// <summary>Who decides whether KSM runs.</summary>
public enum KsmMode
{
    /// <summary>The controller, by ksmtuned's rules: only when the host is both busy and short of memory.</summary>
    Auto,

    /// <summary>Always on (<c>vzsdk mem ksm on</c>).</summary>
    On,

    /// <summary>Always off (<c>vzsdk mem ksm off</c>).</summary>
    Off,
}

/// <summary>KSM's state and figures.</summary>
/// <param name="Mode">Who decides.</param>
/// <param name="Running">True when the kernel's KSM thread merges pages (<c>run</c> = 1).</param>
/// <param name="PagesToScan">Pages scanned per wake-up.</param>
/// <param name="SleepMilliseconds">Sleep between wake-ups.</param>
/// <param name="PagesShared">Shared pages in use (<c>pages_shared</c>).</param>
/// <param name="PagesSharing">Sites sharing them (<c>pages_sharing</c>): how many pages are saved.</param>
/// <param name="FullScans">Complete scans so far.</param>
public sealed record KsmStatus(KsmMode Mode, bool Running, int PagesToScan, int SleepMilliseconds, long PagesShared, long PagesSharing, long FullScans)
{
    /// <summary>Memory saved: <see cref="PagesSharing"/> pages of 4 KiB.</summary>
    public long SavedBytes => PagesSharing * 4096;
}

/// <summary>What the KSM rules look at.</summary>
/// <param name="TotalBytes">Host RAM.</param>
/// <param name="FreeBytes">Memory the kernel reports available.</param>
/// <param name="CommittedBytes">Σ of the running VEs' memory sizes (what they could use).</param>
public sealed record KsmInputs(long TotalBytes, long FreeBytes, long CommittedBytes);

/// <summary>KSM's tunables as the rules set them.</summary>
/// <param name="Run">Merge or not.</param>
/// <param name="PagesToScan">Pages per wake-up, 64 to 1250.</param>
/// <param name="SleepMilliseconds">Sleep between wake-ups.</param>
public sealed record KsmSettings(bool Run, int PagesToScan, int SleepMilliseconds);

/// <summary>
/// Kernel same-page merging, controlled as ksmtuned (and VCMMD's KSM controller, a copy of it) does: KSM runs only when
/// the host is busy (committed memory plus a 20 % threshold reaches RAM) and short of memory (free below 20 % of RAM);
/// while it runs, <c>pages_to_scan</c> grows by 300 when free memory is short and decays by 50 otherwise (64 to 1250),
/// and <c>sleep_millisecs</c> is 10 ms × 16 GiB / RAM. Switched on or off by hand, it stays so until set back to auto.
/// </summary>
/// <remarks>The equivalent of <c>ksmtuned</c>, and of <c>echo 1 &gt; /sys/kernel/mm/ksm/run</c> for <see cref="KsmMode.On"/>.</remarks>
public sealed class KsmController
{
    /// <summary>The default sysfs directory of KSM.</summary>
    public const string DefaultPath = "/sys/kernel/mm/ksm";

    /// <summary>The share of RAM below which free memory is short, and which committed memory must come within: 20 %.</summary>
    public const double Threshold = 0.20;

    /// <summary>Pages per wake-up when KSM is switched on by hand, and the rules' bounds.</summary>
    public const int ManualPagesToScan = 1250, MinPagesToScan = 64, MaxPagesToScan = 1250;

    private const int Boost = 300, Decay = 50;
    private readonly string _path;
    private readonly string _modeFile;

    /// <summary>A controller of the KSM at <paramref name="path"/>, whose mode is kept in <paramref name="modeFile"/> (so that every process sees it).</summary>
    public KsmController(string modeFile, string path = DefaultPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modeFile);
        ArgumentException.ThrowIfNullOrEmpty(path);
        _path = path;
        _modeFile = modeFile;
    }

    /// <summary>The ksmtuned rules: KSM's next settings from the host's state and the current settings. Pure.</summary>
    public static KsmSettings Decide(KsmInputs inputs, KsmSettings current)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(current);
        var threshold = (long)(inputs.TotalBytes * Threshold);
        var busy = inputs.CommittedBytes + threshold >= inputs.TotalBytes;
        var shortOfMemory = inputs.FreeBytes < threshold;
        var sleep = (int)Math.Clamp(10.0 * 16 * ByteSize.GiB / Math.Max(1, inputs.TotalBytes), 1, 1000);
        if (!busy || !shortOfMemory)
            return new KsmSettings(false, current.PagesToScan, sleep);
        var pages = Math.Clamp(current.PagesToScan + (shortOfMemory ? Boost : -Decay), MinPagesToScan, MaxPagesToScan);
        return new KsmSettings(true, pages, sleep);
    }

    /// <summary>True when this host has KSM.</summary>
    public bool IsAvailable => File.Exists(Path.Combine(_path, "run"));

    /// <summary>Reads KSM's state and figures.</summary>
    /// <exception cref="UnsupportedOnHostException">The kernel has no KSM.</exception>
    public async Task<KsmStatus> GetStatusAsync(CancellationToken cancellationToken = default)
    {
        RequireKsm();
        return new KsmStatus(await GetModeAsync(cancellationToken).ConfigureAwait(false), await ReadAsync("run", cancellationToken).ConfigureAwait(false) == 1,
            (int)await ReadAsync("pages_to_scan", cancellationToken).ConfigureAwait(false), (int)await ReadAsync("sleep_millisecs", cancellationToken).ConfigureAwait(false),
            await ReadAsync("pages_shared", cancellationToken).ConfigureAwait(false), await ReadAsync("pages_sharing", cancellationToken).ConfigureAwait(false),
            await ReadAsync("full_scans", cancellationToken).ConfigureAwait(false));
    }

    /// <summary>The mode in force (auto unless set).</summary>
    public async Task<KsmMode> GetModeAsync(CancellationToken cancellationToken = default)
    {
        if (!File.Exists(_modeFile))
            return KsmMode.Auto;
        var text = (await File.ReadAllTextAsync(_modeFile, cancellationToken).ConfigureAwait(false)).Trim();
        return Enum.TryParse<KsmMode>(text, ignoreCase: true, out var m) ? m : KsmMode.Auto;
    }

    /// <summary>Sets the mode and applies it at once: on starts merging (scanning fast), off stops it, auto leaves it to <see cref="TickAsync"/>.</summary>
    /// <remarks>The equivalent of <c>vzsdk mem ksm on|off</c>.</remarks>
    /// <exception cref="UnsupportedOnHostException">The kernel has no KSM.</exception>
    public async Task SetModeAsync(KsmMode mode, CancellationToken cancellationToken = default)
    {
        RequireKsm();
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(_modeFile))!);
        var tmp = _modeFile + ".tmp";
        await File.WriteAllTextAsync(tmp, mode.ToString().ToLowerInvariant() + "\n", cancellationToken).ConfigureAwait(false);
        File.Move(tmp, _modeFile, overwrite: true);
        if (mode == KsmMode.On)
            await ApplyAsync(new KsmSettings(true, ManualPagesToScan, 10), cancellationToken).ConfigureAwait(false);
        else if (mode == KsmMode.Off)
            await ApplyAsync(new KsmSettings(false, MinPagesToScan, 200), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One step of the controller in auto mode (nothing in on/off mode); returns the settings in force. Writes only what changes.</summary>
    public async Task<KsmSettings> TickAsync(KsmInputs inputs, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        RequireKsm();
        var current = new KsmSettings(await ReadAsync("run", cancellationToken).ConfigureAwait(false) == 1,
            (int)await ReadAsync("pages_to_scan", cancellationToken).ConfigureAwait(false), (int)await ReadAsync("sleep_millisecs", cancellationToken).ConfigureAwait(false));
        if (await GetModeAsync(cancellationToken).ConfigureAwait(false) != KsmMode.Auto)
            return current;
        var next = Decide(inputs, current);
        await ApplyAsync(next, cancellationToken, current).ConfigureAwait(false);
        return next;
    }

    private async Task ApplyAsync(KsmSettings s, CancellationToken ct, KsmSettings? current = null)
    {
        if (current?.PagesToScan != s.PagesToScan)
            await WriteAsync("pages_to_scan", s.PagesToScan, ct).ConfigureAwait(false);
        if (current?.SleepMilliseconds != s.SleepMilliseconds)
            await WriteAsync("sleep_millisecs", s.SleepMilliseconds, ct).ConfigureAwait(false);
        if (current?.Run != s.Run)
            await WriteAsync("run", s.Run ? 1 : 0, ct).ConfigureAwait(false);
    }

    private void RequireKsm()
    {
        if (!IsAvailable)
            throw new UnsupportedOnHostException($"This kernel has no KSM ({_path}/run is missing): kernel same-page merging cannot be controlled here.");
    }

    private async Task<long> ReadAsync(string name, CancellationToken ct)
    {
        var path = Path.Combine(_path, name);
        return File.Exists(path) ? long.Parse((await File.ReadAllTextAsync(path, ct).ConfigureAwait(false)).Trim(), CultureInfo.InvariantCulture) : 0;
    }

    private Task WriteAsync(string name, long value, CancellationToken ct)
        => File.WriteAllTextAsync(Path.Combine(_path, name), value.ToString(CultureInfo.InvariantCulture), ct);
}
