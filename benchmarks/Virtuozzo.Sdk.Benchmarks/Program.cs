using BenchmarkDotNet.Running;
using Virtuozzo.Sdk.Benchmarks;

// ./build.sh bench                     every benchmark
// ./build.sh bench sdk containers [N] [RUNNING]   container lifecycle latency and memory vs bare runc
// ./build.sh bench sdk backup [ROUNDS] [PARTS]    full/incremental backup, restore (vs qemu-img, outputs compared) and
//                                                 delete-merge ("stopped"), live backup of a running container ("running")
// ./build.sh bench sdk verbs [ROUNDS] [VZSDK]     vzsdk ct start/stop, vm start, list -a as processes vs the library calls
// ./build.sh bench sdk vms [ROUNDS]               VM start-to-guest-tools vs plain QEMU, memory hotplug latency, list of 100 VMs
// ./build.sh bench migration [ROUNDS]            VM and container live migration to a second host vs qemu-img/rsync copies
// ./build.sh bench memory [VES]                   memory policies through the simulator (table for docs/performance.md)
// ./build.sh bench memory real [POLICIES]         the memory manager for real (3 VMs, 3 containers) under each policy (root)
// ./build.sh bench sdk --filter '*CommandExecution*'   BenchmarkDotNet benchmarks
if (args.Length > 0 && args[0] == "verbs")
    return await VerbsBenchmark.RunAsync(args.Skip(1).ToArray());
if (args.Length > 1 && args[0] == "memory" && args[1] == "real")
    return await MemoryRealBenchmark.RunAsync(args.Skip(2).ToArray());
if (args.Length > 0 && args[0] == "memory")
    return MemoryBenchmark.Run(args.Skip(1).ToArray());
if (args.Length > 0 && args[0] == "containers")
    return await ContainerBenchmark.RunAsync(args.Skip(1).ToArray());
if (args.Length > 0 && args[0] == "backup")
    return await BackupBenchmark.RunAsync(args.Skip(1).ToArray());
if (args.Length > 0 && args[0] == "migration")
    return await MigrationBenchmark.RunAsync(args.Skip(1).ToArray());
if (args.Length > 0 && args[0] == "vms")
    return await VmBenchmark.RunAsync(args.Skip(1).ToArray());
if (args.Length == 0)
{
    BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(["--filter", "*"]);
    var containers = await ContainerBenchmark.RunAsync([]);
    if (containers != 0)
        return containers;
    var backup = await BackupBenchmark.RunAsync([]);
    if (backup != 0)
        return backup;
    var vms = await VmBenchmark.RunAsync([]);
    return vms != 0 ? vms : MemoryBenchmark.Run([]);
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
