using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

/// <summary>Runs the vzsdk tool as a user would: a separate process, its exit code and output.</summary>
internal static class VzsdkTool
{
    private static readonly LocalHost Host = new();

    public static string DllPath { get; } = Path.Combine(AppContext.BaseDirectory, "vzsdk.dll");

    /// <summary>
    /// The published tool when <c>VZSDK_TOOL</c> names it (./build.sh test sets it to the Native AOT executable in
    /// artifacts/vzsdk, so CI runs what users run); otherwise the freshly built vzsdk.dll under <c>dotnet</c>.
    /// </summary>
    public static string? PublishedPath { get; } = Environment.GetEnvironmentVariable("VZSDK_TOOL") is { Length: > 0 } p ? Path.GetFullPath(p) : null;

    /// <summary>The program and the leading arguments that start the tool.</summary>
    private static (string Program, string[] Prefix) Launcher => PublishedPath is { } exe
        ? (File.Exists(exe) ? exe : throw new FileNotFoundException($"VZSDK_TOOL names {exe}, which does not exist: run ./build.sh build"), [])
        : ("dotnet", [DllPath]);

    /// <summary>The whole command line that runs the tool with <paramref name="args"/>: the program first.</summary>
    public static string[] StartLine(params string[] args) => [Launcher.Program, .. Launcher.Prefix, .. args];

    /// <summary>A command that runs the tool with <paramref name="args"/>, exit code not checked.</summary>
    public static Command Command(params string[] args)
        => new Command(Launcher.Program).WithArguments([.. Launcher.Prefix, .. args]).WithValidation(CommandResultValidation.None);

    public static Task<BufferedCommandResult> RunAsync(params string[] args)
        => Host.ExecuteBufferedAsync(Command(args).WithTimeout(TimeSpan.FromMinutes(5)));

    /// <summary>Starts the tool and kills it (SIGKILL) after <paramref name="delay"/>, or lets it finish first.</summary>
    public static async Task RunAndKillAfterAsync(TimeSpan delay, params string[] args)
    {
        var line = StartLine(args);
        var psi = new System.Diagnostics.ProcessStartInfo(line[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in line.Skip(1))
            psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        await Task.Delay(delay);
        try { p.Kill(); } catch (InvalidOperationException) { }
        await p.WaitForExitAsync();
    }
}
