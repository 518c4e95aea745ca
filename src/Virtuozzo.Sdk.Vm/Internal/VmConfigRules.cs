using System.Globalization;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Vm.Internal;

/// <summary>Validation and defaults of VM settings (pure; unit-tested).</summary>
internal static class VmConfigRules
{
    public const int MaxVcpus = 255;

    public static VmConfig FromCreateOptions(VmCreateOptions o, Guid id, DateTimeOffset now, int hostCpus, long hostMemoryBytes)
    {
        if (VeName.Validate(o.Name.Value) is { } problem)
            throw new ArgumentException(problem, nameof(o));
        if (o.Cpus is < 1 or > MaxVcpus)
            throw new ArgumentOutOfRangeException(nameof(o), o.Cpus, $"Cpus must be between 1 and {MaxVcpus}.");
        var maxCpus = o.MaxCpus ?? Math.Max(o.Cpus, hostCpus);
        if (maxCpus < o.Cpus || maxCpus > MaxVcpus)
            throw new ArgumentOutOfRangeException(nameof(o), maxCpus, $"MaxCpus must be between Cpus ({o.Cpus}) and {MaxVcpus}.");
        ValidateMemory(o.MemorySize.Bytes, nameof(o));
        ValidateGuarantee(o.MemoryGuaranteePercent, nameof(o));
        long maxMem = o.MemorySize.Bytes;
        var slots = 0;
        if (o.MemoryHotplug)
        {
            if (o.MemorySize < VmDefaults.MemoryHotplugMinimum)
                throw new ArgumentException($"Memory hotplug needs a VM of at least {VmDefaults.MemoryHotplugMinimum.ToHumanString()} (got {o.MemorySize.ToHumanString()}).", nameof(o));
            maxMem = o.MaxMemory?.Bytes ?? DefaultMaxMemory(o.MemorySize.Bytes, hostMemoryBytes);
            if (maxMem < o.MemorySize.Bytes)
                throw new ArgumentException($"MaxMemory ({ByteSize.FromBytes(maxMem).ToHumanString()}) must not be below MemorySize ({o.MemorySize.ToHumanString()}).", nameof(o));
            if (maxMem % VmDefaults.MemoryHotplugGranularity.Bytes != 0)
                throw new ArgumentException($"MaxMemory must be a multiple of {VmDefaults.MemoryHotplugGranularity.ToHumanString()}.", nameof(o));
            slots = o.MemorySlots ?? VmDefaults.MemorySlots;
            if (slots is < 1 or > 256)
                throw new ArgumentOutOfRangeException(nameof(o), slots, "MemorySlots must be between 1 and 256.");
        }
        else if (o.MaxMemory is not null || o.MemorySlots is not null)
        {
            throw new ArgumentException("MaxMemory and MemorySlots need MemoryHotplug.", nameof(o));
        }
        if (o.Disks.Count > QemuCommandLine.MaxDisks)
            throw new ArgumentException($"A VM has at most {QemuCommandLine.MaxDisks} disks.", nameof(o));
        foreach (var d in o.Disks)
        {
            if (d is null || (d.Size is null && d.SourceImagePath is null))
                throw new ArgumentException("Each disk needs a size or a source image.", nameof(o));
        }
        if (o.InitrdPath is not null && o.KernelPath is null)
            throw new ArgumentException("An initrd needs a kernel (KernelPath).", nameof(o));
        if (o.KernelCommandLine is not null && o.KernelPath is null)
            throw new ArgumentException("A kernel command line needs a kernel (KernelPath).", nameof(o));
        foreach (var f in new[] { o.KernelPath, o.InitrdPath, o.CdromImagePath })
        {
            if (f is not null && !File.Exists(f))
                throw new ArgumentException($"The file '{f}' does not exist.", nameof(o));
        }
        if (o.CpuMask is not null)
            ParseCpuList(o.CpuMask);
        if (o.CpuLimitPercent is { } limit)
            ValidateCpuLimit(limit, nameof(o));
        if (o.BootOrder.Distinct().Count() != o.BootOrder.Count)
            throw new ArgumentException("The boot order names a device twice.", nameof(o));
        return new VmConfig
        {
            Id = id,
            Name = o.Name.Value,
            CreatedAt = now,
            Cpus = o.Cpus,
            MaxCpus = maxCpus,
            MemoryBytes = o.MemorySize.Bytes,
            MemoryGuaranteePercent = o.MemoryGuaranteePercent,
            MemoryHotplug = o.MemoryHotplug,
            MaxMemoryBytes = maxMem,
            MemorySlots = slots,
            CdromImagePath = o.CdromImagePath is null ? null : Path.GetFullPath(o.CdromImagePath),
            KernelPath = o.KernelPath is null ? null : Path.GetFullPath(o.KernelPath),
            InitrdPath = o.InitrdPath is null ? null : Path.GetFullPath(o.InitrdPath),
            KernelCommandLine = o.KernelCommandLine,
            Network = o.Network,
            MacAddress = o.Network == VmNetworkMode.None ? null : NewMac(id),
            BootOrder = [.. o.BootOrder],
            CpuMask = o.CpuMask,
            CpuLimitPercent = o.CpuLimitPercent,
            Acceleration = o.Acceleration,
        };
    }

    /// <summary>4 × memory, capped at the host's RAM, rounded down to the hotplug granularity (never below memory).</summary>
    public static long DefaultMaxMemory(long memoryBytes, long hostMemoryBytes)
    {
        var g = VmDefaults.MemoryHotplugGranularity.Bytes;
        var max = Math.Min(4 * memoryBytes, hostMemoryBytes) / g * g;
        return Math.Max(max, (memoryBytes + g - 1) / g * g);
    }

    public static void ValidateMemory(long bytes, string param)
    {
        if (bytes < 64 * ByteSize.MiB || bytes % ByteSize.MiB != 0)
            throw new ArgumentOutOfRangeException(param, bytes, "Memory must be a whole number of MiB, at least 64 MiB.");
    }

    public static void ValidateCpuLimit(int percent, string param)
    {
        if (percent is < 1 or > 100 * MaxVcpus)
            throw new ArgumentOutOfRangeException(param, percent, "The CPU limit is a percentage of one host CPU, from 1 upwards.");
    }

    public static void ValidateGuarantee(int percent, string param)
    {
        if (percent is < 0 or > 100)
            throw new ArgumentOutOfRangeException(param, percent, "The memory guarantee is a percentage from 0 to 100.");
    }

    /// <summary>A locally administered unicast MAC in QEMU's 52:54:00 range, derived from the VM's id.</summary>
    public static string NewMac(Guid id)
    {
        var b = id.ToByteArray();
        return string.Create(CultureInfo.InvariantCulture, $"52:54:00:{b[0]:x2}:{b[1]:x2}:{b[2]:x2}");
    }

    /// <summary>Parses a CPU list (<c>0-2,5</c>).</summary>
    /// <exception cref="ArgumentException">It is not a valid list.</exception>
    public static SortedSet<int> ParseCpuList(string list)
    {
        var set = new SortedSet<int>();
        if (string.IsNullOrWhiteSpace(list))
            throw new ArgumentException("A CPU mask must name at least one CPU (like 0-1,3).", nameof(list));
        foreach (var part in list.Split(','))
        {
            var range = part.Trim().Split('-');
            if (range.Length is < 1 or > 2
                || !int.TryParse(range[0], NumberStyles.None, CultureInfo.InvariantCulture, out var from)
                || !int.TryParse(range[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var to)
                || to < from || to > 4095)
                throw new ArgumentException($"'{list}' is not a CPU list (like 0-1,3).", nameof(list));
            for (var i = from; i <= to; i++)
                set.Add(i);
        }
        return set;
    }

    /// <summary>
    /// Plans a live memory change the way Virtuozzo does: growing first deflates the balloon up to the memory already
    /// plugged, then adds one DIMM (a multiple of 128 MiB) for the rest; shrinking inflates the balloon.
    /// </summary>
    /// <returns>The DIMM to add (0 for none) and the new balloon target.</returns>
    public static (long DimmBytes, long BalloonTarget) PlanMemoryChange(VmConfig c, long pluggedBytes, int dimmsInUse, long newBytes)
    {
        ValidateMemory(newBytes, nameof(newBytes));
        if (newBytes <= pluggedBytes)
            return (0, newBytes);
        if (!c.MemoryHotplug)
            throw new InvalidStateException($"The VM '{c.Name}' cannot grow its memory while it runs: memory hotplug is off (turn it on with SetAsync(MemoryHotplug = true), then restart the VM).");
        if (newBytes > c.MaxMemoryBytes)
            throw new ArgumentOutOfRangeException(nameof(newBytes), newBytes, $"The VM '{c.Name}' may have at most {ByteSize.FromBytes(c.MaxMemoryBytes).ToHumanString()} of memory.");
        var g = VmDefaults.MemoryHotplugGranularity.Bytes;
        var dimm = (newBytes - pluggedBytes + g - 1) / g * g;
        if (pluggedBytes + dimm > c.MaxMemoryBytes)
            throw new ArgumentOutOfRangeException(nameof(newBytes), newBytes, $"Adding {ByteSize.FromBytes(dimm).ToHumanString()} would pass the VM's maximum of {ByteSize.FromBytes(c.MaxMemoryBytes).ToHumanString()}.");
        if (dimmsInUse >= c.MemorySlots)
            throw new InsufficientResourcesException($"The VM '{c.Name}' has no free memory slot (all {c.MemorySlots} hold DIMMs). Restart it to fold its memory into the base size.");
        return (dimm, newBytes);
    }
}
