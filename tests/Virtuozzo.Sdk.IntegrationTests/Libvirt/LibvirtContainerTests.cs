using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Libvirt;

/// <summary>
/// Containers on the libvirt runtime: the <c>exe</c> domains of Virtuozzo's <c>vz</c> driver. No Virtuozzo node runs
/// here, so libvirt's own test driver (<c>test:///FILE</c>, in libvirt's client library, loaded from a node description
/// holding a container and a VM) stands in for the node: the SDK's binding, its kind detection and the container
/// driver's calls run against libvirt for real; what only a node does (a container's processes) is not exercised.
/// </summary>
public sealed class LibvirtContainerTests : IDisposable
{
    private readonly TempDirectory _root = new("vzsdk-lvct");

    private const string ContainerId = "8d0c3f4e-9a2b-4c1d-8e7f-102030405060";

    private string NodeFile()
    {
        var path = Path.Combine(_root.Path, "node.xml");
        File.WriteAllText(path, $"""
            <node>
              <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active><mhz>2000</mhz></cpu>
              <memory>8388608</memory>
              <domain type='test'>
                <name>ct101</name>
                <uuid>{ContainerId}</uuid>
                <memory unit='MiB'>512</memory>
                <vcpu>2</vcpu>
                <os><type>exe</type><init>/sbin/init</init></os>
                <devices>
                  <filesystem type='file'><source file='/vz/private/101/root.hdd'/><target dir='/'/></filesystem>
                  <interface type='bridge'><source bridge='br0'/><ip address='10.0.0.101' prefix='24'/></interface>
                </devices>
              </domain>
              <domain type='test'>
                <name>vm1</name>
                <memory unit='MiB'>256</memory>
                <os><type>hvm</type></os>
              </domain>
            </node>
            """);
        return path;
    }

    public void Dispose() => _root.Dispose();

    [IntegrationFact("virsh")]
    public async Task The_exe_domains_of_a_libvirt_driver_are_containers_with_the_verbs_the_vz_driver_offers()
    {
        var runtime = VirtuozzoRuntime.CreateLibvirt("test://" + NodeFile(), new VirtuozzoSdkOptions { DataRoot = Path.Combine(_root.Path, "data") });
        var containers = new ContainerClient(runtime);
        var vms = new VirtualMachineClient(runtime);
        var all = new VirtualEnvironmentClient(runtime);

        // Kinds: the exe domain is a container, the hvm one a VM, in every listing.
        (await all.ListAsync()).Select(v => (v.Name.Value, v.Kind)).Should().Contain([("ct101", VeKind.Container), ("vm1", VeKind.Vm)]);
        (await vms.ListAsync()).Select(v => v.Name.Value).Should().NotContain("ct101");
        var ct = (await containers.ListAsync(all: true)).Should().ContainSingle().Subject;
        ct.Id.Should().Be(VeId.Parse(ContainerId));
        (ct.State, ct.MemorySize, ct.Cpus).Should().Be((VeState.Running, ByteSize.FromMiB(512), 2), "the test driver starts the domains of its node file");
        ct.IpAddresses.Should().Equal("10.0.0.101/24");
        await FluentActions.Awaiting(() => containers.GetAsync("vm1")).Should().ThrowAsync<NotFoundException>().WithMessage("*VM, not a container*");

        // Lifecycle.
        (await containers.StopAsync("ct101")).Should().Be(VeStopMethod.Signal);
        (await containers.ListAsync(all: false)).Should().BeEmpty("a stopped container is not running");
        (await containers.StopAsync("ct101")).Should().Be(VeStopMethod.AlreadyStopped);
        (await containers.StartAsync("ct101")).State.Should().Be(VeState.Running);
        (await containers.ListAsync(all: false)).Should().ContainSingle();
        await FluentActions.Awaiting(() => containers.StartAsync("ct101")).Should().ThrowAsync<InvalidStateException>();
        (await containers.SuspendAsync("ct101")).State.Should().Be(VeState.Suspended);
        (await containers.ResumeAsync("ct101")).State.Should().Be(VeState.Running);
        (await containers.SetAsync("ct101", new ContainerSetOptions { MemorySize = ByteSize.FromMiB(256) })).MemorySize.Should().Be(ByteSize.FromMiB(256));
        await FluentActions.Awaiting(() => containers.SetAsync("ct101", new ContainerSetOptions { MemorySize = ByteSize.FromGiB(1) }))
            .Should().ThrowAsync<InvalidStateException>().WithMessage("*stop it*");
        var usage = await all.GetUsageAsync("ct101");
        (usage.Kind, usage.State).Should().Be((VeKind.Container, VeState.Running));

        // Snapshots through libvirt's snapshot API, with the SDK's stable ids.
        var snap = await containers.CreateSnapshotAsync("ct101", "s1", "first");
        snap.Description.Should().Be("first");
        await FluentActions.Awaiting(() => containers.CreateSnapshotAsync("ct101", "s1")).Should().ThrowAsync<AlreadyExistsException>();
        (await containers.ListSnapshotsAsync("ct101")).Should().ContainSingle(s => s.Id == snap.Id && s.IsCurrent);
        await containers.SwitchSnapshotAsync("ct101", snap.Id.ToString());
        await containers.DeleteSnapshotAsync("ct101", "s1");
        (await containers.ListSnapshotsAsync("ct101")).Should().BeEmpty();

        // What the vz driver does not expose is refused by name, pointing to the Virtuozzo runtime; nothing changes.
        foreach (var refused in new Func<Task>[]
                 {
                     () => containers.ExecAsync("ct101", new VeExecOptions { Command = ["true"] }),
                     () => containers.SetAsync("ct101", new ContainerSetOptions { Cpus = 1 }),
                     () => containers.CloneAsync("ct101", new VeName("ct102")),
                     () => containers.CreateAsync(new ContainerCreateOptions { Name = new VeName("ct103"), Template = "debian-12" }),
                 })
            await refused.Should().ThrowAsync<UnsupportedOnHostException>().WithMessage("*Virtuozzo runtime*");

        // Stop, rename, the larger memory a stopped container may take, delete.
        (await containers.StopAsync("ct101", new VeStopOptions { Kill = true })).Should().Be(VeStopMethod.Killed);
        (await containers.GetAsync("ct101")).State.Should().Be(VeState.Stopped);
        (await containers.RenameAsync("ct101", new VeName("web1"))).Name.Value.Should().Be("web1");
        (await containers.SetAsync("web1", new ContainerSetOptions { MemorySize = ByteSize.FromGiB(1) })).MemorySize.Should().Be(ByteSize.FromGiB(1));
        (await containers.DeleteAsync("web1")).Should().BeTrue();
        (await containers.DeleteAsync("web1")).Should().BeFalse();
        (await all.ListAsync()).Select(v => v.Name.Value).Should().Equal("vm1");
        (await runtime.GetHostCapabilitiesAsync()).Features["containers"].Usable.Should().BeTrue();
    }

    [IntegrationFact("libvirtd", "virsh", Root = true)]
    public async Task A_QEMU_connection_still_refuses_containers_by_name()
    {
        await LibvirtFixture.EnsureDaemonAsync();
        var runtime = VirtuozzoRuntime.CreateLibvirt(LibvirtFixture.Uri, new VirtuozzoSdkOptions { DataRoot = Path.Combine(_root.Path, "data") });
        FluentActions.Invoking(() => new ContainerClient(runtime)).Should().Throw<UnsupportedOnHostException>().WithMessage("*vz driver*");
    }
}
