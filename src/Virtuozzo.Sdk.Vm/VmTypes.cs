using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Vm;

/// <summary>How a VM's network card reaches the world.</summary>
public enum VmNetworkMode
{
    /// <summary>No network card.</summary>
    None,

    /// <summary>
    /// User-mode networking: the VM gets a private address (10.0.2.15 by DHCP) and reaches out through the host's own
    /// connections, with no host configuration. Needs no privileges.
    /// </summary>
    User,

    /// <summary>A tap device attached to the host bridge <c>vzbr0</c> that containers share.</summary>
    Bridged,
}

/// <summary>The accelerator a VM runs under.</summary>
public enum VmAcceleration
{
    /// <summary>Hardware virtualisation when the host's probe says it works, software emulation otherwise.</summary>
    Auto,

    /// <summary>Hardware virtualisation (KVM); starting fails when the host cannot provide it.</summary>
    Hardware,

    /// <summary>Software emulation: slow, but works everywhere.</summary>
    Software,
}

/// <summary>A device a VM can boot from.</summary>
public enum VmBootDevice
{
    /// <summary>The first hard disk.</summary>
    Disk,

    /// <summary>The CD/DVD drive.</summary>
    Cdrom,

    /// <summary>The network (PXE).</summary>
    Network,
}

/// <summary>A disk to create with a new VM, or to add to one.</summary>
public sealed record VmDiskOptions
{
    /// <summary>The disk's virtual size. Required unless <see cref="SourceImagePath"/> is set.</summary>
    public ByteSize? Size { get; init; }

    /// <summary>
    /// An existing QCOW2 image to copy into the VM as this disk, instead of creating an empty one (its virtual size is
    /// used when <see cref="Size"/> is null).
    /// </summary>
    public string? SourceImagePath { get; init; }
}

/// <summary>Options of <see cref="VirtualMachineClient.CreateAsync"/>.</summary>
/// <remarks>The equivalent of <c>prlctl create NAME --vmtype vm</c> followed by <c>prlctl set</c>.</remarks>
public sealed record VmCreateOptions
{
    /// <summary>The VM's name, unique among the host's containers and VMs. Required.</summary>
    public required VeName Name { get; init; }

    /// <summary>Virtual CPUs. Default 1.</summary>
    public int Cpus { get; init; } = 1;

    /// <summary>
    /// The most vCPUs the VM may have after CPU hotplug. Default: the larger of <see cref="Cpus"/> and the host's CPU count.
    /// </summary>
    public int? MaxCpus { get; init; }

    /// <summary>Memory size. Default 1 GiB.</summary>
    public ByteSize MemorySize { get; init; } = ByteSize.FromGiB(1);

    /// <summary>The memory guarantee in percent of <see cref="MemorySize"/>, admitted by the host's resource ledger on start. Default 80.</summary>
    public int MemoryGuaranteePercent { get; init; } = VmDefaults.MemoryGuaranteePercent;

    /// <summary>Allow memory hotplug (only for VMs of at least 1 GiB). Default false.</summary>
    public bool MemoryHotplug { get; init; }

    /// <summary>The most memory hotplug may reach. Default 4 × <see cref="MemorySize"/>, capped at the host's RAM.</summary>
    public ByteSize? MaxMemory { get; init; }

    /// <summary>Memory slots for hotplugged DIMMs. Default 8.</summary>
    public int? MemorySlots { get; init; }

    /// <summary>Disks, in order (the first is <c>hdd0</c>). Default none.</summary>
    public IReadOnlyList<VmDiskOptions> Disks { get; init; } = [];

    /// <summary>An ISO image to attach to the CD/DVD drive.</summary>
    public string? CdromImagePath { get; init; }

    /// <summary>A kernel to boot directly (appliances, tests); with <see cref="InitrdPath"/> and <see cref="KernelCommandLine"/>.</summary>
    public string? KernelPath { get; init; }

    /// <summary>An initial RAM disk for direct kernel boot.</summary>
    public string? InitrdPath { get; init; }

    /// <summary>The kernel command line for direct kernel boot.</summary>
    public string? KernelCommandLine { get; init; }

    /// <summary>
    /// The network card's mode. Default <see cref="VmNetworkMode.Bridged"/>: a tap on the host bridge <c>vzbr0</c> that
    /// containers share (needs root); <see cref="VmNetworkMode.User"/> needs no host configuration.
    /// </summary>
    public VmNetworkMode Network { get; init; } = VmNetworkMode.Bridged;

    /// <summary>The boot order. Default disk, then CD/DVD.</summary>
    public IReadOnlyList<VmBootDevice> BootOrder { get; init; } = [VmBootDevice.Disk, VmBootDevice.Cdrom];

    /// <summary>Host CPUs the vCPUs may run on, in the kernel's list format (<c>0-1,3</c>); null for all.</summary>
    public string? CpuMask { get; init; }

    /// <summary>CPU bandwidth limit in percent of one host CPU (200 = two CPUs), enforced on the VM's whole process; null for none.</summary>
    public int? CpuLimitPercent { get; init; }

    /// <summary>The accelerator. Default <see cref="VmAcceleration.Auto"/>.</summary>
    public VmAcceleration Acceleration { get; init; } = VmAcceleration.Auto;
}

/// <summary>Defaults shared by the VM API and the tool.</summary>
public static class VmDefaults
{
    /// <summary>The default memory guarantee of a VM in percent (Virtuozzo's default for VMs).</summary>
    public const int MemoryGuaranteePercent = 80;

    /// <summary>The default wait for a guest to power off before it is killed.</summary>
    public static readonly TimeSpan StopTimeout = VeStopOptions.DefaultVmTimeout;

    /// <summary>The granularity of hotplugged memory (DIMM sizes are multiples of it).</summary>
    public static readonly ByteSize MemoryHotplugGranularity = ByteSize.FromMiB(128);

    /// <summary>The smallest VM that may use memory hotplug.</summary>
    public static readonly ByteSize MemoryHotplugMinimum = ByteSize.FromGiB(1);

    /// <summary>The default number of DIMM slots for memory hotplug.</summary>
    public const int MemorySlots = 8;
}

/// <summary>Options of <see cref="VirtualMachineClient.SetAsync"/>; null members are left unchanged.</summary>
/// <remarks>The equivalent of <c>prlctl set NAME …</c>. Changes are persisted, and applied live where the running VM allows.</remarks>
public sealed record VmSetOptions
{
    /// <summary>New memory size (live through balloon and DIMM hotplug when memory hotplug is on).</summary>
    public ByteSize? MemorySize { get; init; }

    /// <summary>New vCPU count (live increase through CPU hotplug, up to the maximum; decrease applies at the next start).</summary>
    public int? Cpus { get; init; }

    /// <summary>New memory guarantee in percent.</summary>
    public int? MemoryGuaranteePercent { get; init; }

    /// <summary>Turn memory hotplug on or off (applies at the next start).</summary>
    public bool? MemoryHotplug { get; init; }

    /// <summary>New CPU mask (live: the vCPU threads are pinned at once); empty string clears it.</summary>
    public string? CpuMask { get; init; }

    /// <summary>New CPU bandwidth limit in percent of one host CPU (live); 0 removes the limit.</summary>
    public int? CpuLimitPercent { get; init; }

    /// <summary>New ISO for the CD/DVD drive (applies at the next start); empty string detaches it.</summary>
    public string? CdromImagePath { get; init; }

    /// <summary>New kernel command line for direct kernel boot (applies at the next start).</summary>
    public string? KernelCommandLine { get; init; }
}

/// <summary>A disk of a VM.</summary>
/// <param name="Name">The disk's name: <c>hdd0</c>, <c>hdd1</c>…</param>
/// <param name="ImagePath">The QCOW2 image file.</param>
/// <param name="Size">The virtual size.</param>
public sealed record VmDiskInfo(string Name, string ImagePath, ByteSize Size);

/// <summary>An address of a guest's network interface.</summary>
/// <param name="Address">The address.</param>
/// <param name="PrefixLength">The prefix length.</param>
/// <param name="IsIPv6">True for IPv6.</param>
public sealed record VmGuestAddress(string Address, int PrefixLength, bool IsIPv6);

/// <summary>A network interface inside a guest, as its guest tools report it.</summary>
/// <param name="Name">The guest's name for it (<c>eth0</c>).</param>
/// <param name="MacAddress">Its hardware address.</param>
/// <param name="Addresses">Its addresses.</param>
public sealed record VmGuestInterface(string Name, string? MacAddress, IReadOnlyList<VmGuestAddress> Addresses);

/// <summary>A VM: the common <see cref="VeInfo"/> (identity, state, CPUs, memory) plus the VM's own configuration.</summary>
public sealed record VmInfo : VeInfo
{
    /// <summary>The most vCPUs CPU hotplug may reach.</summary>
    public required int MaxCpus { get; init; }

    /// <summary>True when memory hotplug is on.</summary>
    public required bool MemoryHotplug { get; init; }

    /// <summary>The most memory hotplug may reach (equal to <see cref="VeInfo.MemorySize"/> when hotplug is off).</summary>
    public required ByteSize MaxMemory { get; init; }

    /// <summary>The disks.</summary>
    public required IReadOnlyList<VmDiskInfo> Disks { get; init; }

    /// <summary>The ISO in the CD/DVD drive, or null.</summary>
    public string? CdromImagePath { get; init; }

    /// <summary>The network mode.</summary>
    public required VmNetworkMode Network { get; init; }

    /// <summary>The network card's MAC address, or null without a card.</summary>
    public string? MacAddress { get; init; }

    /// <summary>The kernel booted directly, or null.</summary>
    public string? KernelPath { get; init; }
}

/// <summary>A snapshot of a VM.</summary>
/// <param name="Id">The snapshot's id (a UUID).</param>
/// <param name="Name">Its name.</param>
/// <param name="Description">Its description.</param>
/// <param name="CreatedAt">When it was taken.</param>
/// <param name="ParentId">The snapshot it was taken on top of, or null for a root.</param>
/// <param name="IncludesMemory">True when it holds the running VM's memory (switching to it resumes the VM where it was).</param>
/// <param name="IsCurrent">True for the snapshot the VM's current state descends from.</param>
public sealed record VmSnapshotInfo(Guid Id, string Name, string? Description, DateTimeOffset CreatedAt, Guid? ParentId, bool IncludesMemory, bool IsCurrent);

/// <summary>Options of <see cref="VirtualMachineClient.CloneAsync"/>.</summary>
/// <remarks>The equivalent of <c>prlctl clone NAME --name NEW [--linked]</c>.</remarks>
public sealed record VmCloneOptions
{
    /// <summary>The clone's name. Required.</summary>
    public required VeName Name { get; init; }

    /// <summary>
    /// Make a linked clone: each disk of the clone is a thin overlay on a read-only copy of the source disk's current
    /// content, instead of a full copy.
    /// </summary>
    public bool Linked { get; init; }
}

/// <summary>
/// Options of the <see cref="VirtualMachineClient"/>. They configure the runtime's VM driver, which every VM client of
/// one <see cref="VirtuozzoRuntime"/> shares: the first client created on a runtime sets them.
/// </summary>
public sealed class VirtualMachineClientOptions
{
    /// <summary>How long to wait for a started VM's control channel. Default 30 s.</summary>
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long to wait for an answer from the guest tools for quick requests. Default 10 s.</summary>
    public TimeSpan GuestToolsTimeout { get; set; } = TimeSpan.FromSeconds(10);
}
