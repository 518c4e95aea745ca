using BenchmarkDotNet.Running;
using Virtuozzo.Sdk.Benchmarks;

// ./build.sh bench                     every benchmark
// ./build.sh bench -- containers [N] [RUNNING]   container lifecycle latency and memory vs bare runc
// ./build.sh bench -- --filter '*CommandExecution*'   BenchmarkDotNet benchmarks
if (args.Length > 0 && args[0] == "containers")
    return await ContainerBenchmark.RunAsync(args.Skip(1).ToArray());
if (args.Length == 0)
{
    BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(["--filter", "*"]);
    return await ContainerBenchmark.RunAsync([]);
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
