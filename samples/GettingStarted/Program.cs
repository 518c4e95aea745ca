// The getting-started program (docs/articles/getting-started.md shows it whole). It compiles as it is in a new
// `dotnet new console` project that references the packages: ./build.sh test checks that against the packed
// packages, with warnings as errors, and runs it.
#region Snippet:GettingStarted
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Vm;

// Where the SDK keeps its VEs (default /var/lib/vzsdk); the first argument overrides it.
var dataRoot = args.Length > 0 ? args[0] : "/var/lib/vzsdk";

var services = new ServiceCollection();
services.AddLogging(logging => logging.AddConsole().SetMinimumLevel(LogLevel.Warning));
var sdk = services.AddVirtuozzoSdk(options => options.DataRoot = dataRoot);
// The runtime: this machine, managed by the SDK itself (the default), a Virtuozzo node through its own tools when
// VZSDK_NODE names one ("local" for prlctl on this machine, or ssh://root@node1.example.com), or a libvirt daemon when it
// is a libvirt URI (qemu:///system, qemu+ssh://root@host/system).
var node = Environment.GetEnvironmentVariable("VZSDK_NODE");
if (string.IsNullOrEmpty(node))
    sdk.UseLocalRuntime();
else if (node == "local")
    sdk.UseVirtuozzoRuntime(new LocalHost());
else if (!node.StartsWith("ssh://", StringComparison.Ordinal))
    sdk.UseLibvirtRuntime(node);
else
{
    var uri = new Uri(node);
    sdk.UseVirtuozzoRuntime(new SshHost(new SshHostOptions
    {
        HostName = uri.Host,
        User = uri.UserInfo.Length > 0 ? uri.UserInfo : "root",
        Port = uri.Port > 0 ? uri.Port : 22,
    }));
}
sdk.AddContainers().AddVirtualMachines();
await using var provider = services.BuildServiceProvider();

// One client for every VE, containers and VMs alike (as prlctl list -a).
var ves = provider.GetRequiredService<VirtualEnvironmentClient>();
IReadOnlyList<VeInfo> all = await ves.ListAsync(all: true);
Console.WriteLine($"{all.Count} VEs in {dataRoot}");
foreach (VeInfo ve in all)
    Console.WriteLine($"  {ve.Kind} {ve.Name} {ve.State}");

// The QCOW2 engine works on its own too: create a disk and read back what qemu-img info would say.
var diskPath = Path.Combine(dataRoot, "getting-started.qcow2");
using (var disk = Qcow2Image.Create(diskPath, new Qcow2CreateOptions { Size = 1L << 30 }))
{
    Qcow2ImageInfo info = disk.GetInfo();
    Console.WriteLine($"{diskPath}: qcow2, virtual size {info.VirtualSize} bytes");
}
File.Delete(diskPath);
#endregion
