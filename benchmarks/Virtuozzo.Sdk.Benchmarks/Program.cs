using BenchmarkDotNet.Running;

// ./build.sh bench [-- BenchmarkDotNet arguments, e.g. --filter '*CommandExecution*']
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args.Length > 0 ? args : ["--filter", "*"]);
