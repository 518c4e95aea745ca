using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;

// A tour of virtual machines with Virtuozzo.Sdk: create a VM that boots a small Linux guest, start it, run a
// command in it through its guest tools, hotplug memory, back it up while it runs, stop and delete it.
// Usage: VmSample DATA_ROOT GUEST_DIR   (GUEST_DIR holds VMLINUZ and INITRD, as tests/guest/build-guest.sh makes them)
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: VmSample DATA_ROOT GUEST_DIR  (build the guest with tests/guest/build-guest.sh)");
    return 2;
}
var dataRoot = Path.GetFullPath(args[0]);
var kernel = Path.Combine(args[1], "VMLINUZ");
var initrd = Path.Combine(args[1], "INITRD");

#region Snippet:Register
var services = new ServiceCollection().AddLogging(b => b.AddConsole().SetMinimumLevel(LogLevel.Warning));
services.AddVirtuozzoSdk(o => o.DataRoot = dataRoot)
        .AddVirtualMachines(o => o.StartTimeout = TimeSpan.FromSeconds(30))
        .AddBackup();
await using var provider = services.BuildServiceProvider();
var vms = provider.GetRequiredService<VirtualMachineClient>();
var backups = provider.GetRequiredService<BackupClient>();
#endregion

try
{
    #region Snippet:Create
    var vm = await vms.CreateAsync(new VmCreateOptions
    {
        Name = new VeName("demo-vm"),
        Cpus = 1,
        MemorySize = ByteSize.FromGiB(1),
        MemoryHotplug = true,                 // needs at least 1 GiB; the maximum defaults to 4 x memsize
        Disks = [new VmDiskOptions { Size = ByteSize.FromGiB(2) }],
        KernelPath = kernel,                  // direct kernel boot: no installer, no boot loader
        InitrdPath = initrd,
        KernelCommandLine = "console=ttyS0 memhp_default_state=online panic=-1",
        Network = VmNetworkMode.User,         // no host bridge needed
    });
    Console.WriteLine($"Created {vm.Name} ({vm.Id}): {vm.MemorySize.ToHumanString()}, guarantee {vm.MemoryGuaranteePercent}%");
    #endregion

    #region Snippet:StartAndExec
    await vms.StartAsync("demo-vm");
    await vms.WaitForGuestToolsAsync("demo-vm", TimeSpan.FromMinutes(1));
    var uname = await vms.ExecAsync("demo-vm", new VeExecOptions { Command = ["/bin/uname", "-sr"] });
    Console.WriteLine($"The guest runs {uname.StandardOutput.Trim()} (exit code {uname.ExitCode})");
    #endregion

    #region Snippet:Hotplug
    static async Task<long> GuestMemTotalMiB(VirtualMachineClient vms)
    {
        var meminfo = await vms.ExecAsync("demo-vm", new VeExecOptions { Command = ["/bin/cat", "/proc/meminfo"] });
        return long.Parse(Regex.Match(meminfo.StandardOutput, @"MemTotal:\s+(\d+) kB").Groups[1].Value) / 1024;
    }

    var before = await GuestMemTotalMiB(vms);
    await vms.SetAsync("demo-vm", new VmSetOptions { MemorySize = ByteSize.FromMiB(1536) }); // plugs a 512 MiB DIMM
    var after = before;
    for (var i = 0; i < 50 && after < before + 400; i++)
    {
        await Task.Delay(100);
        after = await GuestMemTotalMiB(vms);
    }
    Console.WriteLine($"Guest memory: {before} MiB before the hotplug, {after} MiB after");
    #endregion

    #region Snippet:Backup
    // Running: one point in time for all disks, the guest's file systems frozen through its agent for that instant.
    var backup = await backups.CreateAsync("demo-vm");
    Console.WriteLine($"Backed up: {backup.Backup.Id} ({backup.Backup.Type}, {backup.Backup.Disks.Count} disk); {backup.Consistency}");
    #endregion

    #region Snippet:StopAndDelete
    var how = await vms.StopAsync("demo-vm", new VeStopOptions { Timeout = TimeSpan.FromSeconds(30) });
    Console.WriteLine($"Stopped ({how})");
    await vms.DeleteAsync("demo-vm");
    #endregion
    Console.WriteLine("Deleted demo-vm");
    return 0;
}
finally
{
    // A tour that failed half-way must not leave a VM running.
    try
    {
        await vms.KillAsync("demo-vm");
        await vms.DeleteAsync("demo-vm");
    }
    catch (NotFoundException)
    {
    }
}
