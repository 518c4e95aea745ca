using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.IntegrationTests.Core;

/// <summary>Runs the test program (tests/Virtuozzo.Sdk.TestProgram) through <c>dotnet</c>.</summary>
internal static class TestProgram
{
    public static string DllPath { get; } = Path.Combine(AppContext.BaseDirectory, "Virtuozzo.Sdk.TestProgram.dll");

    public static Command Command(params string[] args) => new Command("dotnet").WithArguments([DllPath, .. args]);
}
