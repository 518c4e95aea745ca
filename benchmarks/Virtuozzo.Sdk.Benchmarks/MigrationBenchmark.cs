using System.Diagnostics;
using System.Globalization;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.Benchmarks;

/// <summary>
/// Live migration to a second host (a network and mount namespace with its own data root and sshd, as the tests use;
/// the published vzsdk runs there): an idle 1 GiB VM with a 1 GiB disk holding 256 MiB of data, a busy VM (its guest
/// rewriting 64 MiB of memory in a loop), and an idle busybox container with a 1 GiB disk. Peers, alternating in the
/// same run: for the VM, <c>qemu-img convert -U -O qcow2</c> of its (running) disk into the second host's data root (what an offline
/// move copies); for the container, <c>rsync -a</c> of its root file system followed by a cold start.
/// </summary>
internal static class MigrationBenchmark
{
    private static double Median(List<double> v)
    {
        v.Sort();
        return v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "build.sh")))
                return dir.FullName;
        }
        throw new FileNotFoundException("build.sh not found above " + AppContext.BaseDirectory);
    }

    private static async Task<double> TimeAsync(Func<Task> action)
    {
        var sw = Stopwatch.StartNew();
        await action();
        return sw.Elapsed.TotalSeconds;
    }

    public static async Task<int> RunAsync(string[] args)
    {
        var rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 3;
        var repo = RepositoryRoot();
        var vzsdk = Path.Combine(repo, "artifacts", "vzsdk", "vzsdk");
        if (!File.Exists(vzsdk))
            throw new FileNotFoundException("Run ./build.sh build first: the second host runs the published tool.", vzsdk);
        var host = new LocalHost();
        var guest = (await host.ExecuteBufferedAsync(new Command("/bin/sh").WithArguments(Path.Combine(repo, "tests", "guest", "build-guest.sh")).WithTimeout(TimeSpan.FromMinutes(5)))).StandardOutput.Trim().Split('\n')[^1];
        using var root = new TempDirectory("vzsdk-migbench");
        await using var host2 = await SecondHost.StartAsync([vzsdk], root.Path);
        var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = root.Path, LockTimeout = TimeSpan.FromMinutes(5) });
        var vms = new VirtualMachineClient(runtime);
        var containers = new ContainerClient(runtime);
        var migrations = new MigrationClient(runtime);
        var destination = MigrationDestination.OverSsh(host2.Ssh, host2.DataRoot, host2.Vzsdk);

        // A 1 GiB disk with 256 MiB of random data (set up with qemu-img: the peer's own format).
        var raw = Path.Combine(root.Path, "data.raw");
        await host.ExecuteAsync(new Command("sh").WithArguments("-c", $"truncate -s 1G '{raw}' && dd if=/dev/urandom of='{raw}' bs=1M count=256 conv=notrunc status=none").WithTimeout(TimeSpan.FromMinutes(2)));
        var data = Path.Combine(root.Path, "data.qcow2");
        await host.ExecuteAsync(new Command("qemu-img").WithArguments("convert", "-f", "raw", "-O", "qcow2", raw, data).WithTimeout(TimeSpan.FromMinutes(2)));
        File.Delete(raw);

        VmCreateOptions Vm(string name) => new()
        {
            Name = new VeName(name),
            MemorySize = ByteSize.FromGiB(1),
            KernelPath = Path.Combine(guest, "VMLINUZ"),
            InitrdPath = Path.Combine(guest, "INITRD"),
            KernelCommandLine = "console=ttyS0 panic=-1",
            Network = VmNetworkMode.User,
            Acceleration = VmAcceleration.Auto,
            Disks = [new VmDiskOptions { SourceImagePath = data }],
        };

        async Task DeleteThereAsync(string name)
        {
            await using var ssh = new SshHost(host2.Ssh);
            await ssh.ExecuteAsync(new Command(host2.Vzsdk).WithArguments("delete", name).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromMinutes(2)));
        }

        try
        {
            return await MeasureAsync(rounds, host, host2, vms, containers, migrations, destination, root.Path, Vm, DeleteThereAsync);
        }
        finally
        {
            // whatever a failed round left running on this side
            foreach (var v in await vms.ListAsync())
                await vms.KillAsync(v.Id.ToString());
            foreach (var c in await containers.ListAsync(all: true))
                await containers.DeleteAsync(c.Id.ToString());
        }
    }

    private static async Task<int> MeasureAsync(int rounds, LocalHost host, SecondHost host2, VirtualMachineClient vms, ContainerClient containers, MigrationClient migrations,
        MigrationDestination destination, string rootPath, Func<string, VmCreateOptions> Vm, Func<string, Task> DeleteThereAsync)
    {
        var idleTotal = new List<double>();
        var idleDowntime = new List<double>();
        var copyPeer = new List<double>();
        var busyTotal = new List<double>();
        var busyDowntime = new List<double>();
        var ctFrozen = new List<double>();
        var ctTotal = new List<double>();
        var ctPeer = new List<double>();
        for (var i = 0; i < rounds; i++)
        {
            // idle VM
            var name = $"idle{i}";
            var vm = await vms.CreateAsync(Vm(name));
            await vms.StartAsync(name);
            await vms.WaitForGuestToolsAsync(name, TimeSpan.FromMinutes(2));
            copyPeer.Add(await TimeAsync(() => host.ExecuteAsync(new Command("qemu-img").WithArguments("convert", "-U", "-O", "qcow2",
                Path.Combine(rootPath, "private", vm.Id.ToString(), "hdd0.qcow2"), Path.Combine(host2.DataRoot, "peer.qcow2")).WithTimeout(TimeSpan.FromMinutes(5)))));
            File.Delete(Path.Combine(host2.DataRoot, "peer.qcow2"));
            var r = await migrations.MigrateAsync(name, destination);
            idleTotal.Add(r.TotalTime.TotalSeconds);
            idleDowntime.Add(r.Downtime.TotalMilliseconds);
            await DeleteThereAsync(name);

            // busy VM: the guest rewrites 64 MiB of memory in a loop
            name = $"busy{i}";
            await vms.CreateAsync(Vm(name) with { Disks = [] });
            await vms.StartAsync(name);
            await vms.WaitForGuestToolsAsync(name, TimeSpan.FromMinutes(2));
            await vms.ExecAsync(name, new VeExecOptions { Command = ["setsid sh -c 'while true; do dd if=/dev/zero of=/run/dirty bs=1M count=64 2>/dev/null; done' </dev/null >/dev/null 2>&1 &"], Shell = true });
            r = await migrations.MigrateAsync(name, destination);
            busyTotal.Add(r.TotalTime.TotalSeconds);
            busyDowntime.Add(r.Downtime.TotalMilliseconds);
            await DeleteThereAsync(name);

            // idle container with a 1 GiB disk
            name = $"ct{i}";
            var ct = await containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.FromGiB(1) } });
            await containers.StartAsync(name);
            var rootfs = Path.Combine(rootPath, "root", ct.Id.ToString());
            var target = Path.Combine(host2.DataRoot, "rsync-peer");
            var rsync = await TimeAsync(() => host.ExecuteAsync(new Command("rsync").WithArguments("-a", rootfs + "/", target + "/").WithTimeout(TimeSpan.FromMinutes(5))));
            Directory.Delete(target, recursive: true);
            await containers.StopAsync(name);
            var coldStart = await TimeAsync(() => containers.StartAsync(name));
            ctPeer.Add(rsync + coldStart);
            r = await migrations.MigrateAsync(name, destination);
            ctFrozen.Add(r.Downtime.TotalMilliseconds);
            ctTotal.Add(r.TotalTime.TotalSeconds);
            await DeleteThereAsync(name);
        }

        Console.WriteLine();
        Console.WriteLine($"Live migration to a second host over SSH (veth), medians of {rounds}; {Environment.ProcessorCount} CPUs, {(await host.GetCapabilitiesAsync()).Kvm.Usable switch { true => "KVM", false => "TCG" }}");
        Console.WriteLine($"{"case",-44}{"total",10}{"downtime",12}{"peer",10}{"ratio",8}   target");
        Console.WriteLine($"{"idle VM, 1 GiB RAM, 1 GiB disk (256 MiB data)",-44}{Median(idleTotal),9:0.00}s{Median(idleDowntime),10:0}ms{Median(copyPeer),9:0.00}s{Median(idleTotal) / Median(copyPeer),8:0.0}   downtime <= 300 ms {(Median(idleDowntime) <= 300 ? "met" : "MISSED")}");
        Console.WriteLine($"{"busy VM, 1 GiB RAM, guest rewriting 64 MiB",-44}{Median(busyTotal),9:0.00}s{Median(busyDowntime),10:0}ms{"-",10}{"-",8}   converges (it did: {busyTotal.Count} of {rounds})");
        Console.WriteLine($"{"idle busybox container, 1 GiB disk",-44}{Median(ctTotal),9:0.00}s{Median(ctFrozen),10:0}ms{Median(ctPeer),9:0.00}s{Median(ctTotal) / Median(ctPeer),8:0.0}   frozen <= 1.5 s {(Median(ctFrozen) <= 1500 ? "met" : "MISSED")}");
        Console.WriteLine("peer: VM = qemu-img convert -O qcow2 of its disk into the second host's data root; container = rsync -a of its root file system + a cold start");
        return 0;
    }
}
