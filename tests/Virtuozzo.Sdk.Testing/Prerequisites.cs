using Xunit;

namespace Virtuozzo.Sdk.Testing;

/// <summary>What an integration test needs from the machine, and how a missing piece is reported.</summary>
public static class Prerequisites
{
    /// <summary>True when the run is CI (<c>CI=true</c>): a missing prerequisite is then a failure, not a skip.</summary>
    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>True when the process runs as root.</summary>
    public static bool IsRoot => Environment.UserName == "root" || GetEuid() == 0;

    /// <summary>Finds an executable on PATH (or an absolute path); null when absent.</summary>
    public static string? FindTool(string name)
    {
        if (name.Contains('/'))
            return File.Exists(name) ? name : null;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Concat(["/usr/sbin", "/sbin"]))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }

    /// <summary>The skip reason for a test needing these: null in CI (a missing piece then fails the test) or when all is present.</summary>
    public static string? SkipReason(bool needsRoot, IEnumerable<string> tools)
        => MissingReason(needsRoot, tools) is { } reason && !IsCi ? reason : null;

    /// <summary>The reason the given tools or root are missing, or null when everything is present.</summary>
    public static string? MissingReason(bool needsRoot, IEnumerable<string> tools)
    {
        var missing = tools.Where(t => FindTool(t) is null).ToList();
        var reasons = new List<string>();
        if (missing.Count > 0)
            reasons.Add("missing tools: " + string.Join(", ", missing) + " (./build.sh test installs them)");
        if (needsRoot && !IsRoot)
            reasons.Add("needs root");
        return reasons.Count == 0 ? null : string.Join("; ", reasons);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEuidNative();

    private static uint GetEuid()
    {
        try { return GetEuidNative(); }
        catch (DllNotFoundException) { return uint.MaxValue; }
        catch (EntryPointNotFoundException) { return uint.MaxValue; }
    }
}

/// <summary>
/// A fact that needs tools on PATH and/or root. Outside CI it skips with the stated reason when
/// something is missing; with <c>CI=true</c> it runs anyway, so the missing piece fails the test.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class IntegrationFactAttribute : FactAttribute
{
    /// <summary>Creates the attribute.</summary>
    /// <param name="tools">Executables the test needs.</param>
    public IntegrationFactAttribute(params string[] tools) => Init(false, tools);

    /// <summary>Set to true when the test needs root.</summary>
    public bool Root { get => _root; set { _root = value; Init(value, _tools); } }

    private bool _root;
    private string[] _tools = [];

    private void Init(bool root, string[] tools)
    {
        _tools = tools;
        Skip = Prerequisites.SkipReason(root, tools)!;
    }
}

/// <summary>A theory counterpart of <see cref="IntegrationFactAttribute"/>.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class IntegrationTheoryAttribute : TheoryAttribute
{
    /// <summary>Creates the attribute.</summary>
    /// <param name="tools">Executables the test needs.</param>
    public IntegrationTheoryAttribute(params string[] tools) => Init(false, tools);

    /// <summary>Set to true when the test needs root.</summary>
    public bool Root { get => _root; set { _root = value; Init(value, _tools); } }

    private bool _root;
    private string[] _tools = [];

    private void Init(bool root, string[] tools)
    {
        _tools = tools;
        Skip = Prerequisites.SkipReason(root, tools)!;
    }
}
