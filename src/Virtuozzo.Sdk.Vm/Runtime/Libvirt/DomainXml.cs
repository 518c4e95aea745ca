using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Libvirt;

/// <summary>A disk of a domain as its XML describes it.</summary>
/// <param name="Name">The SDK's disk name (<c>hdd0</c>…, from the user alias <c>ua-hdd0</c>), or the target device for disks the SDK did not make.</param>
/// <param name="Target">The guest device (<c>vda</c>).</param>
/// <param name="Path">The image on the host.</param>
internal sealed record DomainDisk(string Name, string Target, string Path);

/// <summary>What the SDK reads back from a domain's XML.</summary>
internal sealed record DomainModel
{
    public required Guid Id { get; init; }

    public required string Name { get; init; }

    public required string Type { get; init; }

    /// <summary>Memory the domain has (<c>&lt;memory&gt;</c>: boot RAM plus DIMMs), bytes.</summary>
    public required long MemoryBytes { get; init; }

    /// <summary>The balloon's target (<c>&lt;currentMemory&gt;</c>), bytes.</summary>
    public required long CurrentMemoryBytes { get; init; }

    /// <summary><c>&lt;maxMemory&gt;</c> when memory hotplug is configured, bytes.</summary>
    public long? MaxMemoryBytes { get; init; }

    public int MemorySlots { get; init; }

    /// <summary>The total size of plugged DIMMs, bytes.</summary>
    public long DimmBytes { get; init; }

    public required int Cpus { get; init; }

    public required int MaxCpus { get; init; }

    public string? CpuMask { get; init; }

    public int? CpuLimitPercent { get; init; }

    public string? KernelPath { get; init; }

    public string? InitrdPath { get; init; }

    public string? KernelCommandLine { get; init; }

    public IReadOnlyList<DomainDisk> Disks { get; init; } = [];

    public string? CdromImagePath { get; init; }

    public VmNetworkMode Network { get; init; }

    public string? MacAddress { get; init; }

    public DateTimeOffset CreatedAt { get; init; }

    public int MemoryGuaranteePercent { get; init; } = VmDefaults.MemoryGuaranteePercent;

    /// <summary>True when the SDK defined this domain (its metadata element is present).</summary>
    public bool MadeBySdk { get; init; }
}

/// <summary>
/// The domain XML the libvirt runtime defines, generated from the same validated <see cref="VmConfig"/> the local runtime
/// runs, and read back into a <see cref="DomainModel"/>. The SDK's own facts that libvirt has no element for (the memory
/// guarantee, when the VM was made) live in a namespaced <c>&lt;metadata&gt;</c> element, which libvirt keeps verbatim.
/// Reference: https://libvirt.org/formatdomain.html.
/// </summary>
internal static class DomainXml
{
    /// <summary>The namespace of the SDK's metadata element in domain XML.</summary>
    public static readonly XNamespace MetadataNamespace = "urn:virtuozzo-sdk:vm:1";

    /// <summary>The guest-agent channel's name (what qemu-guest-agent opens in the guest).</summary>
    public const string AgentChannel = "org.qemu.guest_agent.0";

    /// <summary>CPU bandwidth period: 100 ms, the kernel's default CFS period.</summary>
    public const long CpuPeriodMicroseconds = 100_000;

    /// <summary>Where the parts of a VM go on the host.</summary>
    /// <param name="DiskPath">The image file of each disk, by name.</param>
    /// <param name="ConsoleLog">The serial console's log file.</param>
    /// <param name="Bridge">The host bridge for <see cref="VmNetworkMode.Bridged"/>.</param>
    /// <param name="Software">Software emulation (<c>type='qemu'</c>) rather than KVM.</param>
    /// <param name="RunAsRoot">Run the emulator as root with the files' ownership left as it is (the SDK's data root is root's).</param>
    public sealed record Placement(Func<VmDiskConfig, string> DiskPath, string ConsoleLog, string Bridge, bool Software, bool RunAsRoot);

    public static string Build(VmConfig c, Placement p)
    {
        var kib = (Func<long, string>)(bytes => (bytes / 1024).ToString(CultureInfo.InvariantCulture));
        var domain = new XElement("domain", new XAttribute("type", p.Software ? "qemu" : "kvm"),
            new XElement("name", c.Name),
            new XElement("uuid", c.Id.ToString()),
            new XElement("metadata", Metadata(c.CreatedAt, c.MemoryGuaranteePercent)));
        if (c.MemoryHotplug)
            domain.Add(new XElement("maxMemory", new XAttribute("slots", c.MemorySlots), new XAttribute("unit", "KiB"), kib(c.MaxMemoryBytes)));
        domain.Add(
            new XElement("memory", new XAttribute("unit", "KiB"), kib(c.MemoryBytes)),
            new XElement("currentMemory", new XAttribute("unit", "KiB"), kib(c.MemoryBytes)));
        var vcpu = new XElement("vcpu", new XAttribute("placement", "static"), Math.Max(c.Cpus, c.MaxCpus));
        if (c.MaxCpus > c.Cpus)
            vcpu.Add(new XAttribute("current", c.Cpus));
        if (c.CpuMask is { } mask)
            vcpu.Add(new XAttribute("cpuset", mask));
        domain.Add(vcpu);
        if (c.CpuLimitPercent is { } limit)
        {
            domain.Add(new XElement("cputune",
                new XElement("global_period", CpuPeriodMicroseconds),
                new XElement("global_quota", CpuPeriodMicroseconds * limit / 100)));
        }

        var os = new XElement("os", new XElement("type", new XAttribute("arch", "x86_64"), new XAttribute("machine", "pc"), "hvm"));
        if (c.KernelPath is { } kernel)
        {
            os.Add(new XElement("kernel", kernel));
            if (c.InitrdPath is { } initrd)
                os.Add(new XElement("initrd", initrd));
            if (c.KernelCommandLine is { } cmdline)
                os.Add(new XElement("cmdline", cmdline));
        }
        else
        {
            foreach (var b in c.BootOrder)
                os.Add(new XElement("boot", new XAttribute("dev", b switch { VmBootDevice.Disk => "hd", VmBootDevice.Cdrom => "cdrom", _ => "network" })));
        }
        domain.Add(os, new XElement("features", new XElement("acpi")));

        var cpu = p.Software
            ? new XElement("cpu", new XAttribute("mode", "custom"), new XAttribute("match", "exact"), new XElement("model", new XAttribute("fallback", "allow"), "qemu64"))
            : new XElement("cpu", new XAttribute("mode", "host-passthrough"));
        if (c.MemoryHotplug)
        {
            // DIMM hotplug needs a NUMA topology: one cell holding every vCPU and the boot RAM.
            cpu.Add(new XElement("numa", new XElement("cell", new XAttribute("id", 0), new XAttribute("cpus", $"0-{Math.Max(c.Cpus, c.MaxCpus) - 1}"),
                new XAttribute("memory", kib(c.MemoryBytes)), new XAttribute("unit", "KiB"))));
        }
        domain.Add(cpu,
            new XElement("on_poweroff", "destroy"),
            new XElement("on_reboot", "restart"),
            new XElement("on_crash", "destroy"));

        var devices = new XElement("devices");
        for (var i = 0; i < c.Disks.Count; i++)
            devices.Add(DiskElement(c.Disks[i].Name, TargetOf(i), p.DiskPath(c.Disks[i])));
        if (c.CdromImagePath is { } iso)
            devices.Add(CdromElement(iso));
        switch (c.Network)
        {
            case VmNetworkMode.Bridged:
                devices.Add(new XElement("interface", new XAttribute("type", "bridge"),
                    new XElement("mac", new XAttribute("address", c.MacAddress!)),
                    new XElement("source", new XAttribute("bridge", p.Bridge)),
                    new XElement("model", new XAttribute("type", "virtio"))));
                break;
            case VmNetworkMode.User:
                devices.Add(new XElement("interface", new XAttribute("type", "user"),
                    new XElement("mac", new XAttribute("address", c.MacAddress!)),
                    new XElement("model", new XAttribute("type", "virtio"))));
                break;
        }
        devices.Add(
            new XElement("serial", new XAttribute("type", "file"), new XElement("source", new XAttribute("path", p.ConsoleLog)), new XElement("target", new XAttribute("port", 0))),
            new XElement("channel", new XAttribute("type", "unix"), new XElement("target", new XAttribute("type", "virtio"), new XAttribute("name", AgentChannel))),
            new XElement("memballoon", new XAttribute("model", "virtio"), new XElement("stats", new XAttribute("period", 2))));
        domain.Add(devices);
        if (p.RunAsRoot)
        {
            domain.Add(new XElement("seclabel", new XAttribute("type", "static"), new XAttribute("model", "dac"), new XAttribute("relabel", "no"),
                new XElement("label", "+0:+0")));
        }
        return domain.ToString(SaveOptions.None);
    }

    private static XElement Metadata(DateTimeOffset createdAt, int guarantee)
        => new(MetadataNamespace + "vm",
            new XAttribute(XNamespace.Xmlns + "vzsdk", MetadataNamespace.NamespaceName),
            new XAttribute("created", createdAt.ToString("O", CultureInfo.InvariantCulture)),
            new XAttribute("memory-guarantee", guarantee));

    /// <summary>The guest device of the SDK's <paramref name="index"/>-th disk: <c>vda</c>, <c>vdb</c>…</summary>
    public static string TargetOf(int index) => "vd" + (char)('a' + index);

    public static XElement DiskElement(string name, string target, string path)
        => new("disk", new XAttribute("type", "file"), new XAttribute("device", "disk"),
            new XElement("driver", new XAttribute("name", "qemu"), new XAttribute("type", "qcow2"), new XAttribute("discard", "unmap")),
            new XElement("source", new XAttribute("file", path)),
            new XElement("target", new XAttribute("dev", target), new XAttribute("bus", "virtio")),
            new XElement("alias", new XAttribute("name", "ua-" + name)));

    public static XElement CdromElement(string iso)
        => new("disk", new XAttribute("type", "file"), new XAttribute("device", "cdrom"),
            new XElement("driver", new XAttribute("name", "qemu"), new XAttribute("type", "raw")),
            new XElement("source", new XAttribute("file", iso)),
            new XElement("target", new XAttribute("dev", "sda"), new XAttribute("bus", "sata")),
            new XElement("readonly"));

    /// <summary>A DIMM of <paramref name="bytes"/> for NUMA node 0 (<c>virDomainAttachDevice</c>).</summary>
    public static string Dimm(long bytes)
        => new XElement("memory", new XAttribute("model", "dimm"),
            new XElement("target", new XElement("size", new XAttribute("unit", "KiB"), bytes / 1024), new XElement("node", 0))).ToString();

    public static DomainModel Parse(string xml)
    {
        var d = XDocument.Parse(xml).Root ?? throw new FormatException("The domain XML is empty.");
        var devices = d.Element("devices");
        var vcpu = d.Element("vcpu");
        var maxCpus = IntOf(vcpu?.Value) ?? 1;
        var meta = d.Element("metadata")?.Element(MetadataNamespace + "vm");
        var disks = new List<DomainDisk>();
        string? cdrom = null;
        foreach (var disk in devices?.Elements("disk") ?? [])
        {
            var path = disk.Element("source")?.Attribute("file")?.Value;
            var target = disk.Element("target")?.Attribute("dev")?.Value ?? string.Empty;
            if ((string?)disk.Attribute("device") == "cdrom")
            {
                cdrom ??= path;
                continue;
            }
            if ((string?)disk.Attribute("device") is not (null or "disk") || path is null)
                continue;
            var alias = disk.Element("alias")?.Attribute("name")?.Value;
            disks.Add(new DomainDisk(alias is not null && alias.StartsWith("ua-", StringComparison.Ordinal) ? alias[3..] : target, target, path));
        }
        var nic = devices?.Element("interface");
        var quota = LongOf(d.Element("cputune")?.Element("global_quota")?.Value);
        var period = LongOf(d.Element("cputune")?.Element("global_period")?.Value) ?? CpuPeriodMicroseconds;
        var maxMemory = d.Element("maxMemory");
        return new DomainModel
        {
            Id = Guid.Parse(d.Element("uuid")?.Value ?? throw new FormatException("The domain XML has no <uuid>.")),
            Name = d.Element("name")?.Value ?? throw new FormatException("The domain XML has no <name>."),
            Type = (string?)d.Attribute("type") ?? "qemu",
            MemoryBytes = Bytes(d.Element("memory")) ?? 0,
            CurrentMemoryBytes = Bytes(d.Element("currentMemory")) ?? Bytes(d.Element("memory")) ?? 0,
            MaxMemoryBytes = Bytes(maxMemory),
            MemorySlots = IntOf((string?)maxMemory?.Attribute("slots")) ?? 0,
            DimmBytes = (devices?.Elements("memory") ?? []).Where(m => (string?)m.Attribute("model") == "dimm").Sum(m => Bytes(m.Element("target")?.Element("size")) ?? 0),
            Cpus = IntOf((string?)vcpu?.Attribute("current")) ?? maxCpus,
            MaxCpus = maxCpus,
            CpuMask = (string?)vcpu?.Attribute("cpuset"),
            CpuLimitPercent = quota is > 0 && period > 0 ? (int)(quota.Value * 100 / period) : null,
            KernelPath = d.Element("os")?.Element("kernel")?.Value,
            InitrdPath = d.Element("os")?.Element("initrd")?.Value,
            KernelCommandLine = d.Element("os")?.Element("cmdline")?.Value,
            Disks = disks,
            CdromImagePath = cdrom,
            Network = nic is null ? VmNetworkMode.None : (string?)nic.Attribute("type") == "user" ? VmNetworkMode.User : VmNetworkMode.Bridged,
            MacAddress = (string?)nic?.Element("mac")?.Attribute("address"),
            CreatedAt = DateTimeOffset.TryParse((string?)meta?.Attribute("created"), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var created) ? created : DateTimeOffset.MinValue,
            MemoryGuaranteePercent = IntOf((string?)meta?.Attribute("memory-guarantee")) ?? VmDefaults.MemoryGuaranteePercent,
            MadeBySdk = meta is not null,
        };
    }

    /// <summary>Changes the persistent definition of a domain: <paramref name="edit"/> works on the parsed document.</summary>
    public static string Edit(string xml, Action<XElement> edit)
    {
        var doc = XDocument.Parse(xml);
        edit(doc.Root!);
        return doc.Root!.ToString();
    }

    /// <summary>Sets (or adds) the SDK's metadata element's memory guarantee.</summary>
    public static void SetGuarantee(XElement domain, int percent)
    {
        var metadata = domain.Element("metadata") ?? AddAfter(domain, "metadata", "uuid");
        var vm = metadata.Element(MetadataNamespace + "vm");
        if (vm is null)
            metadata.Add(Metadata(DateTimeOffset.UtcNow, percent));
        else
            vm.SetAttributeValue("memory-guarantee", percent);
    }

    private static XElement AddAfter(XElement parent, string name, string after)
    {
        var e = new XElement(name);
        if (parent.Element(after) is { } anchor)
            anchor.AddAfterSelf(e);
        else
            parent.AddFirst(e);
        return e;
    }

    /// <summary>Sets an element's text (creating it after <paramref name="after"/> when missing), in KiB for sizes.</summary>
    public static XElement SetElement(XElement parent, string name, object value, string after)
    {
        var e = parent.Element(name) ?? AddAfter(parent, name, after);
        e.Value = Convert.ToString(value, CultureInfo.InvariantCulture)!;
        return e;
    }

    /// <summary>A stable id for a libvirt snapshot: see <see cref="LibvirtSnapshots.SnapshotId"/>.</summary>
    public static Guid SnapshotId(Guid domain, string name) => LibvirtSnapshots.SnapshotId(domain, name);

    private static long? Bytes(XElement? e) => LibvirtDomainSummary.Bytes(e);

    private static int? IntOf(string? s) => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : null;

    private static long? LongOf(string? s) => long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : null;
}
