using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

/// <summary>Runs the vzsdk tool as a user would: a separate process, its exit code and output.</summary>
internal static class VzsdkTool
{
    private static readonly LocalHost Host = new();

    public static string DllPath { get; } = Path.Combine(AppContext.BaseDirectory, "vzsdk.dll");

    public static Task<BufferedCommandResult> RunAsync(params string[] args)
        => Host.ExecuteBufferedAsync(new Command("dotnet").WithArguments([DllPath, .. args])
            .WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromMinutes(5)));

    /// <summary>Starts the tool and kills it (SIGKILL) after <paramref name="delay"/>, or lets it finish first.</summary>
    public static async Task RunAndKillAfterAsync(TimeSpan delay, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { DllPath }.Concat(args))
            psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        await Task.Delay(delay);
        try { p.Kill(); } catch (InvalidOperationException) { }
        await p.WaitForExitAsync();
    }
}
