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
}
