using System.Xml.Linq;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm.Internal;
using Virtuozzo.Sdk.Vm.Runtime.Libvirt;

namespace Virtuozzo.Sdk.Vm.Tests;

/// <summary>
/// The libvirt runtime's pure parts: the domain XML generated from the VM model (checked element by element against
/// libvirt's documented format, https://libvirt.org/formatdomain.html) and read back, snapshot XML and statistics (errors and URIs: Core.Tests, LibvirtErrorsTests).
/// The real daemon's view of the same XML is in the integration tests (LibvirtVmTests).
/// </summary>
public sealed class LibvirtDomainXmlTests
{
    private static VmConfig Config(Action<VmCreateOptions>? _ = null, VmCreateOptions? options = null)
        => VmConfigRules.FromCreateOptions(options ?? new VmCreateOptions
        {
            Name = new VeName("web1"),
            Cpus = 2,
            MaxCpus = 4,
            MemorySize = ByteSize.FromGiB(1),
            MemoryHotplug = true,
            MaxMemory = ByteSize.FromGiB(4),
            CpuMask = "0-1",
            CpuLimitPercent = 150,
            MemoryGuaranteePercent = 60,
            Network = VmNetworkMode.Bridged,
        }, Guid.Parse("5c5a3f1e-8a9b-4c1d-9e2f-0a1b2c3d4e5f"), DateTimeOffset.Parse("2026-12-06T03:00:00Z"), 8, 16L << 30)
        with
        {
            Disks = [new VmDiskConfig("hdd0", "hdd0.qcow2", 10L << 30), new VmDiskConfig("hdd1", "hdd1.qcow2", 1L << 30)],
            // Set on the model: the rules check that a kernel given in options exists on this machine.
            KernelPath = "/boot/vmlinuz",
            InitrdPath = "/boot/initrd",
            KernelCommandLine = "console=ttyS0",
        };

    private static DomainXml.Placement Placement(bool software = true)
        => new(d => "/srv/vz/private/x/" + d.File, "/srv/vz/private/x/console.log", "vzbr0", software, RunAsRoot: true);

    [Fact]
    public void The_generated_domain_carries_every_setting_where_libvirt_reads_it()
    {
        var c = Config();
        var d = XDocument.Parse(DomainXml.Build(c, Placement())).Root!;

        d.Attribute("type")!.Value.Should().Be("qemu");
        d.Element("name")!.Value.Should().Be("web1");
        d.Element("uuid")!.Value.Should().Be("5c5a3f1e-8a9b-4c1d-9e2f-0a1b2c3d4e5f");
        d.Element("maxMemory")!.Attribute("slots")!.Value.Should().Be(VmDefaults.MemorySlots.ToString());
        d.Element("maxMemory")!.Value.Should().Be((4L * 1024 * 1024).ToString());
        d.Element("memory")!.Value.Should().Be((1024 * 1024).ToString());
        d.Element("currentMemory")!.Value.Should().Be((1024 * 1024).ToString());
        d.Element("vcpu")!.Value.Should().Be("4");
        d.Element("vcpu")!.Attribute("current")!.Value.Should().Be("2");
        d.Element("vcpu")!.Attribute("cpuset")!.Value.Should().Be("0-1");
        d.Element("cputune")!.Element("global_quota")!.Value.Should().Be("150000");
        d.Element("cputune")!.Element("global_period")!.Value.Should().Be("100000");
        d.Element("os")!.Element("kernel")!.Value.Should().Be("/boot/vmlinuz");
        d.Element("os")!.Element("cmdline")!.Value.Should().Be("console=ttyS0");
        d.Element("os")!.Elements("boot").Should().BeEmpty("a directly booted kernel needs no boot order");
        var cell = d.Element("cpu")!.Element("numa")!.Element("cell")!;
        (cell.Attribute("cpus")!.Value, cell.Attribute("memory")!.Value).Should().Be(("0-3", (1024 * 1024).ToString()));

        var devices = d.Element("devices")!;
        var disks = devices.Elements("disk").ToList();
        disks.Select(x => x.Element("target")!.Attribute("dev")!.Value).Should().Equal("vda", "vdb");
        disks.Select(x => x.Element("source")!.Attribute("file")!.Value).Should().Equal("/srv/vz/private/x/hdd0.qcow2", "/srv/vz/private/x/hdd1.qcow2");
        disks.Select(x => x.Element("alias")!.Attribute("name")!.Value).Should().Equal("ua-hdd0", "ua-hdd1");
        disks.Should().OnlyContain(x => x.Element("driver")!.Attribute("type")!.Value == "qcow2");
        var nic = devices.Element("interface")!;
        nic.Attribute("type")!.Value.Should().Be("bridge");
        nic.Element("source")!.Attribute("bridge")!.Value.Should().Be("vzbr0");
        nic.Element("mac")!.Attribute("address")!.Value.Should().Be(c.MacAddress);
        devices.Element("channel")!.Element("target")!.Attribute("name")!.Value.Should().Be("org.qemu.guest_agent.0");
        devices.Element("memballoon")!.Attribute("model")!.Value.Should().Be("virtio");
        devices.Element("serial")!.Element("source")!.Attribute("path")!.Value.Should().Be("/srv/vz/private/x/console.log");
        d.Element("seclabel")!.Element("label")!.Value.Should().Be("+0:+0");
    }

    [Fact]
    public void What_is_generated_reads_back_as_the_same_model()
    {
        var c = Config();
        var m = DomainXml.Parse(DomainXml.Build(c, Placement(software: false)));

        m.Type.Should().Be("kvm");
        (m.Id, m.Name).Should().Be((c.Id, c.Name));
        (m.MemoryBytes, m.CurrentMemoryBytes, m.MaxMemoryBytes, m.MemorySlots).Should().Be((1L << 30, 1L << 30, (long?)(4L << 30), VmDefaults.MemorySlots));
        (m.Cpus, m.MaxCpus, m.CpuMask, m.CpuLimitPercent).Should().Be((2, 4, "0-1", (int?)150));
        (m.KernelPath, m.InitrdPath, m.KernelCommandLine).Should().Be(("/boot/vmlinuz", "/boot/initrd", "console=ttyS0"));
        m.Disks.Should().Equal(new DomainDisk("hdd0", "vda", "/srv/vz/private/x/hdd0.qcow2"), new DomainDisk("hdd1", "vdb", "/srv/vz/private/x/hdd1.qcow2"));
        (m.Network, m.MacAddress).Should().Be((VmNetworkMode.Bridged, c.MacAddress));
        (m.MemoryGuaranteePercent, m.CreatedAt, m.MadeBySdk).Should().Be((60, c.CreatedAt, true));
    }

    [Fact]
    public void A_domain_the_SDK_did_not_define_reads_with_libvirts_defaults_and_units()
    {
        const string Xml = """
            <domain type='kvm'>
              <name>legacy</name>
              <uuid>0b7a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d</uuid>
              <memory unit='MiB'>2048</memory>
              <currentMemory unit='KiB'>1048576</currentMemory>
              <vcpu>2</vcpu>
              <os><type>hvm</type><boot dev='hd'/></os>
              <devices>
                <disk type='file' device='disk'><source file='/var/lib/libvirt/images/legacy.qcow2'/><target dev='sda' bus='scsi'/></disk>
                <disk type='file' device='cdrom'><source file='/iso/debian.iso'/><target dev='hdc'/></disk>
                <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/></interface>
                <memory model='dimm'><target><size unit='MiB'>512</size><node>0</node></target></memory>
              </devices>
            </domain>
            """;
        var m = DomainXml.Parse(Xml);
        (m.MemoryBytes, m.CurrentMemoryBytes, m.MaxMemoryBytes, m.DimmBytes).Should().Be((2048L << 20, 1L << 30, (long?)null, 512L << 20));
        (m.Cpus, m.MaxCpus, m.CpuLimitPercent).Should().Be((2, 2, (int?)null));
        m.Disks.Should().Equal(new DomainDisk("sda", "sda", "/var/lib/libvirt/images/legacy.qcow2"));
        m.CdromImagePath.Should().Be("/iso/debian.iso");
        (m.Network, m.MacAddress).Should().Be((VmNetworkMode.Bridged, "52:54:00:aa:bb:cc"));
        (m.MadeBySdk, m.MemoryGuaranteePercent).Should().Be((false, VmDefaults.MemoryGuaranteePercent));
    }

    [Fact]
    public void Names_with_markup_characters_are_escaped_in_the_xml()
    {
        var c = Config() with { KernelCommandLine = "a<b & c>'d\"" };
        var xml = DomainXml.Build(c, Placement());
        DomainXml.Parse(xml).KernelCommandLine.Should().Be("a<b & c>'d\"");
    }

    [Fact]
    public void A_disk_less_user_network_vm_without_hotplug_has_no_numa_and_boots_in_order()
    {
        var c = VmConfigRules.FromCreateOptions(new VmCreateOptions { Name = new VeName("plain"), Network = VmNetworkMode.User, BootOrder = [VmBootDevice.Cdrom, VmBootDevice.Disk] },
            Guid.NewGuid(), DateTimeOffset.UtcNow, 8, 16L << 30);
        var d = XDocument.Parse(DomainXml.Build(c, Placement())).Root!;
        d.Element("maxMemory").Should().BeNull();
        d.Element("cpu")!.Element("numa").Should().BeNull();
        d.Element("os")!.Elements("boot").Select(b => b.Attribute("dev")!.Value).Should().Equal("cdrom", "hd");
        d.Element("devices")!.Element("interface")!.Attribute("type")!.Value.Should().Be("user");
        d.Element("vcpu")!.Value.Should().Be(c.MaxCpus.ToString());
        d.Element("vcpu")!.Attribute("current")?.Value.Should().Be(c.MaxCpus > 1 ? "1" : null);
    }

    [Fact]
    public void A_DIMM_is_a_memory_device_for_node_zero_in_KiB()
    {
        var x = XElement.Parse(DomainXml.Dimm(256L << 20));
        x.Attribute("model")!.Value.Should().Be("dimm");
        x.Element("target")!.Element("size")!.Value.Should().Be("262144");
        x.Element("target")!.Element("node")!.Value.Should().Be("0");
    }

    [Fact]
    public void Snapshot_xml_maps_to_the_SDKs_record_with_stable_ids()
    {
        var domain = Guid.NewGuid();
        const string Xml = """
            <domainsnapshot>
              <name>after-update</name>
              <description>post apt upgrade</description>
              <state>running</state>
              <parent><name>base</name></parent>
              <creationTime>1796526000</creationTime>
            </domainsnapshot>
            """;
        var s = LibvirtVmDriver.ParseSnapshot(Xml, domain, isCurrent: true);
        (s.Name, s.Description, s.IncludesMemory, s.IsCurrent).Should().Be(("after-update", "post apt upgrade", true, true));
        s.CreatedAt.Should().Be(DateTimeOffset.FromUnixTimeSeconds(1796526000));
        s.Id.Should().Be(DomainXml.SnapshotId(domain, "after-update"));
        s.ParentId.Should().Be(DomainXml.SnapshotId(domain, "base"));
        DomainXml.SnapshotId(domain, "a").Should().NotBe(DomainXml.SnapshotId(domain, "b")).And.NotBe(DomainXml.SnapshotId(Guid.NewGuid(), "a"));
        LibvirtVmDriver.ParseSnapshot(Xml.Replace("running", "shutoff"), domain, false).IncludesMemory.Should().BeFalse();
    }

    [Fact]
    public void Statistics_fields_map_to_usage()
    {
        var info = new VmInfo
        {
            Id = new VeId(Guid.NewGuid()), Name = new VeName("u"), Kind = VeKind.Vm, State = VeState.Running, MemorySize = ByteSize.FromGiB(1),
            MaxCpus = 1, MemoryHotplug = false, MaxMemory = ByteSize.FromGiB(1), Disks = [], Network = VmNetworkMode.User,
        };
        var fields = new Dictionary<string, object>
        {
            ["cpu.time"] = 2_500_000_000L, ["balloon.current"] = 1048576L, ["balloon.unused"] = 786432L, ["balloon.rss"] = 300000L,
            ["net.0.rx.bytes"] = 100L, ["net.1.rx.bytes"] = 20L, ["net.0.tx.bytes"] = 7L,
            ["block.0.allocation"] = 1000L, ["block.0.capacity"] = 4096L, ["block.1.allocation"] = 24L, ["block.1.capacity"] = 4096L,
            ["block.count"] = 2L,
        };
        var u = LibvirtVmDriver.UsageOf(info, fields, DateTimeOffset.UnixEpoch);
        u.CpuTime.Should().Be(TimeSpan.FromSeconds(2.5));
        u.MemoryUsedBytes.Should().Be((1048576L - 786432L) * 1024, "used memory is the balloon's size less what the guest reports unused");
        (u.DiskAllocatedBytes, u.DiskSizeBytes, u.NetworkReceivedBytes, u.NetworkSentBytes).Should().Be((1024L, 8192L, 120L, 7L));
        LibvirtVmDriver.UsageOf(info, new Dictionary<string, object> { ["balloon.rss"] = 10L }, DateTimeOffset.UnixEpoch).MemoryUsedBytes.Should().Be(10240);
        LibvirtVmDriver.UsageOf(info with { State = VeState.Stopped }, fields, DateTimeOffset.UnixEpoch).MemoryUsedBytes.Should().BeNull();
    }

    [Fact]
    public void A_change_to_a_stopped_VMs_definition_edits_the_xml_libvirt_keeps()
    {
        var d = XDocument.Parse(DomainXml.Build(Config(), Placement())).Root!;
        d.Element("devices")!.Add(XElement.Parse(DomainXml.Dimm(256L << 20)));

        LibvirtVmDriver.ApplyToDefinition(d, new VmSetOptions
        {
            MemorySize = ByteSize.FromGiB(2), Cpus = 3, CpuMask = "", CpuLimitPercent = 0, MemoryGuaranteePercent = 10, CdromImagePath = "/tmp",
        }, running: false, hostMemory: 16L << 30);
        var m = DomainXml.Parse(d.ToString());
        (m.MemoryBytes, m.CurrentMemoryBytes, m.DimmBytes).Should().Be((2L << 30, 2L << 30, 0L), "a stopped VM's DIMMs fold into its boot RAM");
        d.Element("cpu")!.Element("numa")!.Element("cell")!.Attribute("memory")!.Value.Should().Be((2L * 1024 * 1024).ToString());
        (m.Cpus, m.MaxCpus, m.CpuMask, m.CpuLimitPercent, m.MemoryGuaranteePercent).Should().Be((3, 4, (string?)null, (int?)null, 10));
        d.Element("cputune").Should().BeNull("an empty cputune is removed");
        m.CdromImagePath.Should().Be("/tmp");

        LibvirtVmDriver.ApplyToDefinition(d, new VmSetOptions { MemoryHotplug = false, CdromImagePath = "" }, running: false, hostMemory: 16L << 30);
        m = DomainXml.Parse(d.ToString());
        (m.MaxMemoryBytes, m.CdromImagePath).Should().Be(((long?)null, (string?)null));
        d.Element("cpu")!.Element("numa").Should().BeNull();

        LibvirtVmDriver.ApplyToDefinition(d, new VmSetOptions { MemoryHotplug = true, Cpus = 1, MemorySize = ByteSize.FromGiB(1) }, running: true, hostMemory: 16L << 30);
        m = DomainXml.Parse(d.ToString());
        (m.MaxMemoryBytes is > 0, m.MemoryBytes, m.Cpus).Should().Be((true, 2L << 30, 3), "a running VM's memory and vCPUs change live, not here; hotplug applies at its next start");
        FluentActions.Invoking(() => LibvirtVmDriver.ApplyToDefinition(XDocument.Parse(DomainXml.Build(
                VmConfigRules.FromCreateOptions(new VmCreateOptions { Name = new VeName("small"), MemorySize = ByteSize.FromMiB(512) }, Guid.NewGuid(), DateTimeOffset.UtcNow, 8, 16L << 30),
                Placement())).Root!, new VmSetOptions { MemoryHotplug = true }, running: false, hostMemory: 16L << 30))
            .Should().Throw<ArgumentException>().WithMessage("*hotplug needs*");
    }
}
