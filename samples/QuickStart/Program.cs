using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Resources;

// The quick start: a tour of what the SDK sees on this machine. Run it with ./build.sh demo.
// Later capabilities (containers, VMs, disks, backups) extend this tour.
var dataRoot = args.Length > 0 ? args[0] : Path.Combine(Path.GetTempPath(), "vzsdk-quickstart");

#region Snippet:Registration
var services = new ServiceCollection();
services.AddVirtuozzoSdk(options =>
{
    options.DataRoot = dataRoot;                      // default: /var/lib/vzsdk
    options.HostMemoryReserve = ByteSize.Parse("512M"); // kept back for the host itself
});
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
