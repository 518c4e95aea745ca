using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Vm;

// Migration with Virtuozzo.Sdk: a VM that boots a small Linux guest moves live to a second runtime (another data root,
// disks and memory over TCP), is stopped there and moves back offline (its disk images over TCP), then is deleted.
// Usage: MigrationSample SOURCE_ROOT DESTINATION_ROOT GUEST_DIR   (GUEST_DIR holds VMLINUZ and INITRD, as
//        tests/guest/build-guest.sh makes them)
//        MigrationSample ct NAME HOST                             (migrates the container NAME of the default data
//        root to HOST over SSH, as root with the default key)
//        MigrationSample suspend NAME                             (suspends the container NAME to disk and resumes it)
if (args is ["ct", var ctName, var host])
{
    await MigrateContainerAsync(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions()), ctName, host);
    return 0;
}
if (args is ["suspend", var suspendName])
{
    await SuspendToDiskAsync(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions()), suspendName);
    return 0;
}
if (args.Length != 3)
{
    Console.Error.WriteLine("usage: MigrationSample SOURCE_ROOT DESTINATION_ROOT GUEST_DIR | MigrationSample ct NAME HOST | MigrationSample suspend NAME");
    return 2;
}
var sourceRoot = Path.GetFullPath(args[0]);
var destinationRoot = Path.GetFullPath(args[1]);
var vms = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = sourceRoot }));
await vms.CreateAsync(new VmCreateOptions
{
    Name = new VeName("web1"),
    MemorySize = ByteSize.FromMiB(512),
    Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(64) }],
    KernelPath = Path.Combine(args[2], "VMLINUZ"),
    InitrdPath = Path.Combine(args[2], "INITRD"),
    KernelCommandLine = "console=ttyS0 panic=-1",
    Network = VmNetworkMode.User,
});
await vms.StartAsync("web1");
await vms.WaitForGuestToolsAsync("web1", TimeSpan.FromSeconds(90));

#region Snippet:LiveVm
var source = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = sourceRoot });
var destination = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = destinationRoot });
var migrations = new MigrationClient(source);

var result = await migrations.MigrateAsync("web1", MigrationDestination.ToRuntime(destination, "127.0.0.1"),
    new MigrationOptions { DowntimeLimit = TimeSpan.FromMilliseconds(300) },
    new Progress<MigrationProgress>(p => Console.WriteLine($"{p.Phase}: {p.BytesTransferred:N0} sent, {p.BytesRemaining:N0} left")));
Console.WriteLine($"{result.Name} moved {result.Mode} in {result.TotalTime}; paused for {result.Downtime.TotalMilliseconds} ms");
#endregion

var there = new VirtualMachineClient(destination);
await there.StopAsync("web1");

#region Snippet:OfflineVm
// web1 is stopped on the destination runtime: it moves back offline (Mode = Auto would choose that too).
var back = await new MigrationClient(destination).MigrateAsync("web1", MigrationDestination.ToRuntime(source),
    new MigrationOptions { Mode = MigrationMode.Offline });
Console.WriteLine($"{back.Name} moved {back.Mode} in {back.TotalTime.TotalSeconds:0.0} s: {back.DiskBytes:N0} bytes of disk images ({back.Reason})");
#endregion

var home = await vms.GetAsync("web1");
Console.WriteLine($"web1 is {home.State} on the source again");
await vms.DeleteAsync("web1");
Console.WriteLine("Deleted web1");
return 0;

static async Task MigrateContainerAsync(VirtuozzoRuntime runtime, string name, string host)
{
    #region Snippet:Container
    var migrations = new MigrationClient(runtime);
    var ssh = new SshHostOptions { HostName = host, IdentityFile = "/root/.ssh/id_ed25519", KnownHostsFile = "/root/.ssh/known_hosts" };
    var result = await migrations.MigrateAsync(name, MigrationDestination.OverSsh(ssh));
    Console.WriteLine($"{result.Mode} ({result.Reason}); frozen {result.Downtime.TotalMilliseconds} ms of {result.TotalTime}");
    #endregion
}

static async Task SuspendToDiskAsync(VirtuozzoRuntime runtime, string name)
{
    #region Snippet:SuspendToDisk
    var containers = new ContainerClient(runtime);
    var support = await containers.GetCheckpointSupportAsync();
    if (!support.Usable) Console.WriteLine(support.Reason);

    await containers.SuspendToDiskAsync(name);   // processes saved beside the disk; the container stops (state Suspended)
    await containers.ResumeAsync(name);          // or StartAsync: restored with the same PIDs, memory, files and address
    #endregion
}
