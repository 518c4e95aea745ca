using System.Globalization;

namespace Virtuozzo.Sdk.Vm.Internal;

/// <summary>Where a VM's files live: config and disks in its private directory, sockets and pid file in its run directory.</summary>
internal sealed record VmPaths(string PrivateDirectory, string RunDirectory)
{
    public string ConfigFile => Path.Combine(PrivateDirectory, VmConfig.FileName);

    public string ConsoleLog => Path.Combine(PrivateDirectory, "console.log");

    public string RuntimeFile => Path.Combine(RunDirectory, VmRuntime.FileName);

    // UNIX socket paths are limited to 107 bytes: keep the names short.
    public string CommandSocket => Path.Combine(RunDirectory, "qmp");

    public string EventSocket => Path.Combine(RunDirectory, "ev");

    public string AgentSocket => Path.Combine(RunDirectory, "ga");

    public string PidFile => Path.Combine(RunDirectory, "pid");

    public string DiskPath(VmDiskConfig disk) => Path.Combine(PrivateDirectory, disk.File);
}

/// <summary>What a start needs besides the config.</summary>
internal sealed record QemuLaunch
{
    public bool Software { get; init; }

    /// <summary>A saved-state file to resume from, or null for a fresh boot.</summary>
    public string? IncomingStateFile { get; init; }

    /// <summary>Wait for an incoming migration, whose address is given later over QMP (<c>-incoming defer</c>).</summary>
    public bool IncomingDeferred { get; init; }

    /// <summary>Start with the vCPUs stopped.</summary>
    public bool Paused { get; init; }

    /// <summary>A tap device for bridged networking.</summary>
    public string? TapDevice { get; init; }

    /// <summary>Memory to boot with (defaults to the config's memory size).</summary>
    public long? BaseMemoryBytes { get; init; }

    /// <summary>DIMMs to create at boot (to resume a VM that had memory hotplugged).</summary>
    public IReadOnlyList<VmDimm> Dimms { get; init; } = [];

    /// <summary>vCPUs to boot with (defaults to the config's count).</summary>
    public int? Cpus { get; init; }

    /// <summary>Hotplugged vCPUs to recreate as devices (to resume a VM that had vCPUs hotplugged).</summary>
    public IReadOnlyList<VmHotplugCpu> HotplugCpus { get; init; } = [];
}

/// <summary>Builds the emulator's argument vector from a VM's config. Pure: unit-tested without the emulator.</summary>
internal static class QemuCommandLine
{
    public const string AgentPortName = "org.qemu.guest_agent.0";

    private static string Inv(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Escapes a value for QEMU's comma-separated option syntax (a comma is doubled).</summary>
    public static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    public static List<string> Build(VmConfig c, VmPaths p, QemuLaunch launch)
    {
        var a = new List<string>
        {
            "-name", $"guest={Escape(c.Name)},debug-threads=on",
            "-uuid", c.Id.ToString(),
            "-machine", "pc",
            "-accel", launch.Software ? "tcg" : "kvm",
            "-cpu", launch.Software ? "qemu64" : "host",
            "-nodefaults", "-no-user-config",
            "-display", "none",
            "-serial", "file:" + p.ConsoleLog,
            "-daemonize",
            "-pidfile", p.PidFile,
            "-smp", $"{launch.Cpus ?? c.Cpus},maxcpus={Math.Max(launch.Cpus ?? c.Cpus, c.MaxCpus)}",
        };

        var mib = (launch.BaseMemoryBytes ?? c.MemoryBytes) / (1024 * 1024);
        a.Add("-m");
        a.Add(c.MemoryHotplug
            ? $"size={Inv(mib)}M,slots={c.MemorySlots},maxmem={Inv(c.MaxMemoryBytes / (1024 * 1024))}M"
            : $"size={Inv(mib)}M");

        foreach (var cpu in launch.HotplugCpus)
        {
            a.AddRange(["-device", $"{cpu.Driver},id={cpu.Id}," + string.Join(',', cpu.Properties.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={Inv(p.Value)}"))]);
        }
        foreach (var dimm in launch.Dimms)
        {
            a.AddRange(["-object", $"memory-backend-ram,id=mem-{dimm.Id},size={Inv(dimm.SizeBytes)}",
                "-device", $"pc-dimm,id={dimm.Id},memdev=mem-{dimm.Id}"]);
        }

        a.AddRange(["-chardev", $"socket,id=mon0,path={Escape(p.CommandSocket)},server=on,wait=off", "-mon", "chardev=mon0,mode=control"]);
        a.AddRange(["-chardev", $"socket,id=mon1,path={Escape(p.EventSocket)},server=on,wait=off", "-mon", "chardev=mon1,mode=control"]);
        a.AddRange(["-chardev", $"socket,id=ga0,path={Escape(p.AgentSocket)},server=on,wait=off",
            "-device", "virtio-serial-pci,id=vser0,addr=0x4",
            "-device", $"virtserialport,bus=vser0.0,chardev=ga0,name={AgentPortName}"]);
        a.AddRange(["-device", "virtio-balloon-pci,id=balloon0,addr=0x3"]);

        var bootIndex = 1;
        var diskBoot = c.BootOrder.IndexOf(VmBootDevice.Disk);
        var cdBoot = c.BootOrder.IndexOf(VmBootDevice.Cdrom);
        var netBoot = c.BootOrder.IndexOf(VmBootDevice.Network);
        for (var i = 0; i < c.Disks.Count; i++)
        {
            var d = c.Disks[i];
            a.AddRange(DiskArguments(d, p.DiskPath(d)));
            var dev = $"virtio-blk-pci,drive={d.Name}-fmt,id={d.Name},addr={DiskSlot(d.Name)}";
            if (i == 0 && diskBoot >= 0 && c.KernelPath is null)
                dev += $",bootindex={diskBoot + bootIndex}";
            a.AddRange(["-device", dev]);
        }
        if (c.CdromImagePath is { } iso)
        {
            a.AddRange(["-blockdev", $"driver=file,node-name=cd0-file,filename={Escape(iso)},read-only=on",
                "-blockdev", "driver=raw,node-name=cd0,file=cd0-file,read-only=on"]);
            var dev = "ide-cd,drive=cd0,id=cdrom0";
            if (cdBoot >= 0 && c.KernelPath is null)
                dev += $",bootindex={cdBoot + bootIndex}";
            a.AddRange(["-device", dev]);
        }
        switch (c.Network)
        {
            case VmNetworkMode.User:
                a.AddRange(["-netdev", "user,id=net0"]);
                break;
            case VmNetworkMode.Bridged:
                if (launch.TapDevice is null)
                    throw new InvalidOperationException("Bridged networking needs a tap device.");
                a.AddRange(["-netdev", $"tap,id=net0,ifname={launch.TapDevice},script=no,downscript=no"]);
                break;
        }
        if (c.Network != VmNetworkMode.None)
        {
            var dev = $"virtio-net-pci,netdev=net0,id=nic0,mac={c.MacAddress},addr=0x5";
            if (netBoot >= 0 && c.KernelPath is null)
                dev += $",bootindex={netBoot + bootIndex}";
            a.AddRange(["-device", dev]);
        }

        if (c.KernelPath is { } kernel)
        {
            a.AddRange(["-kernel", kernel]);
            if (c.InitrdPath is { } initrd)
                a.AddRange(["-initrd", initrd]);
            if (c.KernelCommandLine is { } append)
                a.AddRange(["-append", append]);
        }
        if (launch.IncomingStateFile is { } state)
            a.AddRange(["-incoming", "exec:cat " + ShellQuote(state)]);
        else if (launch.IncomingDeferred)
            a.AddRange(["-incoming", "defer"]);
        if (launch.Paused)
            a.Add("-S");
        return a;
    }

    /// <summary>The maximum number of disks (PCI slots 0x6 to 0x1f).</summary>
    public const int MaxDisks = 26;

    /// <summary>
    /// The fixed PCI slot of disk <c>hddN</c>. Fixed slots let a disk hotplugged into a running VM sit where a restart
    /// (or a resume from a saved state, which needs the same layout) puts it.
    /// </summary>
    public static string DiskSlot(string diskName)
    {
        var n = int.Parse(diskName.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture);
        if (n is < 0 or >= MaxDisks)
            throw new ArgumentOutOfRangeException(nameof(diskName), diskName, $"A VM has at most {MaxDisks} disks.");
        return "0x" + (6 + n).ToString("x", CultureInfo.InvariantCulture);
    }

    public static IEnumerable<string> DiskArguments(VmDiskConfig d, string path)
        =>
        [
            "-blockdev", $"driver=file,node-name={d.Name}-file,filename={Escape(path)},cache.direct=off",
            "-blockdev", $"driver=qcow2,node-name={d.Name}-fmt,file={d.Name}-file",
        ];

    /// <summary>Quotes a path for the <c>exec:</c> migration transport, which the emulator hands to <c>/bin/sh -c</c>.</summary>
    public static string ShellQuote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
