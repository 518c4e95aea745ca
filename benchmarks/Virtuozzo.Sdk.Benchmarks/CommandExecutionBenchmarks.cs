using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// The cost of the SDK's process seam (argument array, pumps, stderr tail, validation, logging hooks) compared with
/// what a user would otherwise write: System.Diagnostics.Process with redirected output.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(warmupCount: 3, iterationCount: 10)]
public class CommandExecutionBenchmarks
{
    private readonly LocalHost _host = new();

    [Benchmark(Baseline = true, Description = "Process.Start + ReadToEnd (baseline)")]
    public async Task<string> RawProcess()
    {
        var psi = new ProcessStartInfo("/bin/echo") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("hello");
        using var p = Process.Start(psi)!;
        var output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        return output;
    }

    [Benchmark(Description = "LocalHost.ExecuteBufferedAsync")]
    public async Task<string> Sdk()
        => (await _host.ExecuteBufferedAsync(new Command("/bin/echo").WithArguments("hello"))).StandardOutput;
}
