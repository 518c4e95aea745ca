using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Virtuozzo;

/// <summary>The argument vectors of the VM operations on a Virtuozzo node (prlctl's <c>create</c> and <c>set</c> options for VMs).</summary>
internal static class VirtuozzoVmCommands
{
    /// <summary>
    /// The commands that create a VM, in order: <c>prlctl create NAME --vmtype vm --uuid UUID --no-hdd</c>; one
    /// <c>prlctl set</c> with CPUs, memory, guarantee, hotplug, mask and limit; <c>--device-add hdd --size MiB</c> per disk;
    /// <c>--device-add cdrom --image ISO</c>; then the boot order (and <c>--device-del net0</c> for no network).
    /// Validates the options first and refuses what prlctl cannot express, by name.
    /// </summary>
    /// <exception cref="ArgumentException">A value is invalid.</exception>
    /// <exception cref="UnsupportedOnHostException">Direct kernel boot, user-mode networking, software emulation, a memory-hotplug ceiling or slot count, or a disk copied from an image file.</exception>
    public static IReadOnlyList<PrlctlCommand> Create(VmCreateOptions o, VeId id)
    {
        ArgumentNullException.ThrowIfNull(o);
        if (o.KernelPath is not null || o.InitrdPath is not null || o.KernelCommandLine is not null)
            throw Unsupported("Direct kernel boot (KernelPath, InitrdPath, KernelCommandLine)", "boot the VM from a disk or an ISO image.");
        if (o.Network == VmNetworkMode.User)
            throw Unsupported("User-mode networking", "VMs on a Virtuozzo node join a virtual network; use Bridged.");
        if (o.Acceleration == VmAcceleration.Software)
            throw Unsupported("Software emulation", "Virtuozzo runs VMs with hardware virtualization; use Auto or Hardware.");
        if (o.MaxMemory is not null || o.MemorySlots is not null)
            throw Unsupported("A memory hotplug ceiling or slot count (MaxMemory, MemorySlots)", "the node sizes hotplug itself; set MemoryHotplug only.");
        if (o.Cpus is < 1 or > VmConfigRules.MaxVcpus)
            throw new ArgumentOutOfRangeException(nameof(o), o.Cpus, $"Cpus must be between 1 and {VmConfigRules.MaxVcpus}.");
        if (o.MaxCpus is { } max && (max < o.Cpus || max > VmConfigRules.MaxVcpus))
            throw new ArgumentOutOfRangeException(nameof(o), max, $"MaxCpus must be between Cpus and {VmConfigRules.MaxVcpus}.");
        VmConfigRules.ValidateMemory(o.MemorySize.Bytes, nameof(o.MemorySize));
        VmConfigRules.ValidateGuarantee(o.MemoryGuaranteePercent, nameof(o.MemoryGuaranteePercent));
        if (o.CpuLimitPercent is { } l)
            VmConfigRules.ValidateCpuLimit(l, nameof(o.CpuLimitPercent));
        if (o.CpuMask is { } m)
            VmConfigRules.ParseCpuList(m);

        var uuid = id.ToString();
        var commands = new List<PrlctlCommand> { Prlctl.Of("create", o.Name.Value, "--vmtype", "vm", "--uuid", uuid, "--no-hdd") };
        var set = new List<string>
        {
            "--cpus", Prlctl.Num(o.Cpus),
            "--memsize", Prlctl.Mib(o.MemorySize),
            "--memguarantee", Prlctl.Num(o.MemoryGuaranteePercent),
            "--mem-hotplug", Prlctl.OnOff(o.MemoryHotplug),
            "--cpu-hotplug", Prlctl.OnOff(o.MaxCpus is { } mc && mc > o.Cpus),
        };
        if (o.CpuMask is { } mask)
            set.AddRange(["--cpumask", mask]);
        if (o.CpuLimitPercent is { } limit)
            set.AddRange(["--cpulimit", Prlctl.Num(limit)]);
        commands.Add(Prlctl.Set(uuid, set)!);
        foreach (var disk in o.Disks ?? [])
            commands.Add(AddDisk(uuid, disk));
        if (o.CdromImagePath is { } iso)
            commands.Add(Prlctl.Of("set", uuid, "--device-add", "cdrom", "--image", iso));
        var boot = new List<string>();
        var order = (o.BootOrder ?? []).Select(d => d switch
        {
            VmBootDevice.Disk => o.Disks?.Count > 0 ? "hdd0" : null,
            VmBootDevice.Cdrom => o.CdromImagePath is not null ? "cdrom0" : null,
            VmBootDevice.Network => o.Network == VmNetworkMode.None ? null : "net0",
            _ => null,
        }).OfType<string>().Distinct().ToList();
        if (order.Count > 0)
            boot.AddRange(["--device-bootorder", string.Join(' ', order)]);
        if (o.Network == VmNetworkMode.None)
            boot.AddRange(["--device-del", "net0"]);
        if (Prlctl.Set(uuid, boot) is { } last)
            commands.Add(last);
        return commands;
    }

    /// <summary><c>prlctl set ID --device-add hdd --size MiB</c>.</summary>
    /// <exception cref="ArgumentException">No size, or a size under 1 MiB.</exception>
    /// <exception cref="UnsupportedOnHostException">A disk copied from an image file.</exception>
    public static PrlctlCommand AddDisk(string id, VmDiskOptions disk)
    {
        ArgumentNullException.ThrowIfNull(disk);
        if (disk.SourceImagePath is not null)
            throw Unsupported("A disk copied from an image file (SourceImagePath)", "create an empty disk, or restore a backup.");
        if (disk.Size is not { } size || size.Bytes < ByteSize.MiB)
            throw new ArgumentException("A new disk needs a Size of at least 1 MiB.", nameof(disk));
        return Prlctl.Of("set", id, "--device-add", "hdd", "--size", Prlctl.Mib(size));
    }

    /// <summary><c>prlctl set ID --device-del hddN --destroy-image</c>: the disk leaves the VM and its image is deleted.</summary>
    public static PrlctlCommand RemoveDisk(string id, string diskName) => Prlctl.Of("set", id, "--device-del", ValidateDiskName(diskName), "--destroy-image");

    /// <summary><c>prlctl set ID --device-set hddN --size MiB</c> (prlctl resizes the image and its last partition).</summary>
    public static PrlctlCommand ResizeDisk(string id, string diskName, ByteSize size)
        => Prlctl.Of("set", id, "--device-set", ValidateDiskName(diskName), "--size", Prlctl.Mib(size));

    /// <summary>
    /// The <c>prlctl set</c> options of a change: <c>--memsize</c>, <c>--cpus</c>, <c>--memguarantee</c> (admitted by the
    /// node's VCMMD, not by the SDK's ledger), <c>--mem-hotplug</c>, <c>--cpumask</c> (<c>all</c> for an empty mask),
    /// <c>--cpulimit</c> (0 = none), <c>--device-set cdrom0 --image ISO</c>. Empty when nothing changes.
    /// </summary>
    /// <exception cref="ArgumentException">A value is invalid.</exception>
    /// <exception cref="UnsupportedOnHostException">A kernel command line, or ejecting the CD (empty path).</exception>
    public static IReadOnlyList<string> Set(VmSetOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var args = new List<string>();
        if (o.MemorySize is { } mem)
        {
            VmConfigRules.ValidateMemory(mem.Bytes, nameof(o.MemorySize));
            args.AddRange(["--memsize", Prlctl.Mib(mem)]);
        }
        if (o.Cpus is { } cpus)
        {
            if (cpus is < 1 or > VmConfigRules.MaxVcpus)
                throw new ArgumentOutOfRangeException(nameof(o), cpus, $"Cpus must be between 1 and {VmConfigRules.MaxVcpus}.");
            args.AddRange(["--cpus", Prlctl.Num(cpus)]);
        }
        if (o.MemoryGuaranteePercent is { } g)
        {
            VmConfigRules.ValidateGuarantee(g, nameof(o.MemoryGuaranteePercent));
            args.AddRange(["--memguarantee", Prlctl.Num(g)]);
        }
        if (o.MemoryHotplug is { } hp)
            args.AddRange(["--mem-hotplug", Prlctl.OnOff(hp)]);
        if (o.CpuMask is { } mask)
        {
            if (mask.Length > 0)
                VmConfigRules.ParseCpuList(mask);
            args.AddRange(["--cpumask", mask.Length == 0 ? "all" : mask]);
        }
        if (o.CpuLimitPercent is { } limit)
        {
            if (limit != 0)
                VmConfigRules.ValidateCpuLimit(limit, nameof(o.CpuLimitPercent));
            args.AddRange(["--cpulimit", Prlctl.Num(limit)]);
        }
        if (o.CdromImagePath is { } iso)
        {
            if (iso.Length == 0)
                throw Unsupported("Ejecting the CD/DVD image", "attach another image instead.");
            args.AddRange(["--device-set", "cdrom0", "--image", iso]);
        }
        if (o.KernelCommandLine is not null)
            throw Unsupported("A kernel command line (KernelCommandLine)", "direct kernel boot is not available on a Virtuozzo node.");
        return args;
    }

    internal static string ValidateDiskName(string diskName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(diskName);
        if (!System.Text.RegularExpressions.Regex.IsMatch(diskName, "^hdd[0-9]{1,2}$"))
            throw new ArgumentException($"'{diskName}' is not a disk name such as hdd0.", nameof(diskName));
        return diskName;
    }

    private static UnsupportedOnHostException Unsupported(string feature, string instead)
        => new($"{feature} is not supported by the Virtuozzo runtime; {instead}");
}
