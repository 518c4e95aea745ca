using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Vm;

// The quick start: a tour of what the SDK sees on this machine. Run it with ./build.sh demo.
// Later capabilities (containers, VMs, disks, backups) extend this tour.
var dataRoot = args.Length > 0 ? args[0] : Path.Combine(Path.GetTempPath(), "vzsdk-quickstart");

#region Snippet:Registration
var services = new ServiceCollection();
services.AddVirtuozzoSdk(options =>
{
    options.DataRoot = dataRoot;                      // default: /var/lib/vzsdk
    options.HostMemoryReserve = ByteSize.Parse("512M"); // kept back for the host itself
})
.UseLocalRuntime()     // the default: this machine, managed by the SDK itself
.AddContainers()
.AddVirtualMachines()
.AddBackup();
await using var provider = services.BuildServiceProvider();
var host = provider.GetRequiredService<IVirtuozzoHost>();
#endregion

#region Snippet:Capabilities
HostCapabilities caps = await host.GetCapabilitiesAsync();
Console.WriteLine($"{caps.HostName}: Linux {caps.Kernel}, cgroup {caps.Cgroup}, {caps.Cpus} CPUs, {new ByteSize(caps.MemoryBytes).ToHumanString()} RAM");
Console.WriteLine($"KVM:  {(caps.Kvm.Usable ? "usable" : "not usable")} ({caps.Kvm.Reason})");
Console.WriteLine($"CRIU: {(caps.Criu.Usable ? "usable" : "not usable")} ({caps.Criu.Reason})");
foreach (var (tool, version) in caps.Tools)
    Console.WriteLine($"  {tool,-22}{version ?? "missing"}");
#endregion

#region Snippet:RunCommand
var result = await host.ExecuteBufferedAsync(
    new Command("uname").WithArguments("-s", "-r").WithTimeout(TimeSpan.FromSeconds(10)));
Console.WriteLine($"uname says: {result.StandardOutput.Trim()} (exit code {result.ExitCode})");

try
{
    await host.ExecuteAsync(new Command("sh").WithArguments("-c", "echo 'no such disk' >&2; exit 3"));
}
catch (CommandFailedException ex)
{
    Console.WriteLine($"A failing command throws: exit code {ex.ExitCode}, stderr '{ex.StandardErrorTail}'");
}
#endregion

#region Snippet:Ledger
var ledger = provider.GetRequiredService<ResourceLedger>();
var web = VeId.New();
await ledger.ReserveAsync(web, VeKind.Vm, guaranteeBytes: ByteSize.Parse("1G").Bytes);
try
{
    // More than the host can guarantee is refused, and nothing changes.
    await ledger.ReserveAsync(VeId.New(), VeKind.Container, guaranteeBytes: ledger.CapacityBytes);
}
catch (InsufficientResourcesException ex)
{
    Console.WriteLine($"Refused: {ex.Message}");
}
var snapshot = await ledger.GetSnapshotAsync();
Console.WriteLine($"Guaranteed: {new ByteSize(snapshot.ReservedBytes).ToHumanString()} of {new ByteSize(snapshot.CapacityBytes).ToHumanString()}");
await ledger.ReleaseAsync(web);
#endregion

if (Environment.UserName != "root")
{
    Console.WriteLine("Containers need root: run the rest of the tour as root (./build.sh demo does).");
    return;
}

#region Snippet:ContainerLifecycle
var containers = provider.GetRequiredService<ContainerClient>();
var name = new VeName("demo-" + Guid.NewGuid().ToString("N")[..6]);
ContainerInfo ct = await containers.CreateAsync(new ContainerCreateOptions
{
    Name = name,
    Template = ContainerClient.BusyboxTemplate,   // built from the host's busybox-static
    Hostname = "demo",
    Resources = new ContainerResources { MemorySize = ByteSize.Parse("256M"), CpuLimitPercent = 50, DiskSpace = ByteSize.Parse("256M") },
});
Console.WriteLine($"Created container {ct.Name} ({ct.Id}), state {ct.State}");
await containers.StartAsync(name);
#endregion

try
{
    #region Snippet:ContainerExec
    var ps = await containers.ExecAsync(name, new VeExecOptions { Command = ["ps", "-o", "pid,comm"] });
    Console.WriteLine("Processes inside (its own PID 1, no host process visible):");
    Console.Write(ps.StandardOutput);
    var hostname = await containers.ExecAsync(name, new VeExecOptions { Command = ["hostname"] });
    Console.WriteLine($"hostname inside: {hostname.StandardOutput.Trim()}");
    #endregion

    #region Snippet:UnifiedClient
    // One client for every VE: containers and VMs listed together, the same verbs for both kinds.
    var all = provider.GetRequiredService<VirtualEnvironmentClient>();
    foreach (VeInfo ve in await all.ListAsync())
        Console.WriteLine($"{(ve.Kind == VeKind.Container ? "CT" : "VM")} {ve.Name,-16} {ve.State,-10} {ve.MemorySize}");
    VeUsage usage = await all.GetUsageAsync(name);
    Console.WriteLine($"{name} uses {usage.CpuTime.TotalMilliseconds:F0} ms of CPU, {new ByteSize(usage.MemoryUsedBytes ?? 0).ToHumanString()} of memory, " +
        $"{new ByteSize(usage.DiskAllocatedBytes).ToHumanString()} of disk");
    #endregion

    #region Snippet:WatchEvents
    // A panel keeps its view current from the event stream instead of polling the list.
    using var watching = new CancellationTokenSource(TimeSpan.FromSeconds(30));
    var seen = new TaskCompletionSource();
    var watcher = Task.Run(async () =>
    {
        await foreach (VeEvent e in all.WatchAsync(new VeWatchOptions { IncludeExisting = true }, watching.Token))
        {
            Console.WriteLine($"event: {e.Type} {e.Kind} {e.Name} {e.PreviousState?.ToString() ?? "-"} -> {e.State}");
            if (e.Type == VeEventType.Created && e.Name == name)
                seen.TrySetResult();                       // the watcher knows the container: now change it
            if (e.Type == VeEventType.StateChanged && e.Name == name && e.State == VeState.Suspended)
                break;
        }
    });
    await seen.Task.WaitAsync(watching.Token);
    await all.SuspendAsync(name);
    await watcher.WaitAsync(watching.Token);
    await all.ResumeAsync(name);
    #endregion

    #region Snippet:ContainerSetLive
    var changed = await containers.SetAsync(name, new ContainerSetOptions { MemorySize = ByteSize.Parse("512M"), CpuLimitPercent = 100 });
    Console.WriteLine($"Live change: memsize {changed.Resources.MemorySize}, cpulimit {changed.Resources.CpuLimitPercent}% while {changed.State}");
    #endregion

    #region Snippet:BackupChain
    var backups = provider.GetRequiredService<BackupClient>();
    await containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "echo before > /root/note && sync"] });
    BackupResult first = await backups.CreateAsync(name);      // full: the first backup of the container
    await containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "echo after > /root/note && sync"] });
    BackupResult second = await backups.CreateAsync(name);     // incremental: only what changed
    Console.WriteLine($"Backups: {first.Backup.Id} ({first.Backup.Type}), {second.Backup.Id} ({second.Backup.Type}, parent {second.Backup.ParentId})");

    await backups.DeleteAsync(first.Backup.Id);                      // the second becomes a standalone full, same id
    VeId restored = await backups.RestoreAsync(second.Backup.Id, new BackupRestoreOptions { NewName = new VeName(name.Value + "-restored") });
    await containers.StartAsync(restored.ToString());
    var note = await containers.ExecAsync(restored.ToString(), new VeExecOptions { Command = ["cat", "/root/note"] });
    Console.WriteLine($"Restored {second.Backup.Id} into {name.Value}-restored: /root/note says '{note.StandardOutput.Trim()}'");
    await containers.DeleteAsync(restored.ToString());
    foreach (var b in await backups.ListAsync(name))
        await backups.DeleteAsync(b.Id);
    #endregion
}
finally
{
    #region Snippet:ContainerDelete
    await containers.StopAsync(name, new VeStopOptions { Timeout = TimeSpan.FromSeconds(5) });
    await containers.DeleteAsync(name);
    Console.WriteLine($"Deleted container {name}");
    #endregion
}
