using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Containers.Internal;

/// <summary>Writes the OCI runtime configuration runc runs a container from.</summary>
internal static class OciSpec
{
    /// <summary>Docker's default capability set.</summary>
    internal static readonly string[] DefaultCapabilities =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ];

    /// <summary>
    /// What systemd as init holds beyond <see cref="DefaultCapabilities"/>, inside the container's user namespace only
    /// (a systemd container is always unprivileged): mounts and namespaces for its services, network setup, resource
    /// settings of its own processes, reboot of its own PID namespace.
    /// </summary>
    internal static readonly string[] SystemdCapabilities =
    [
        "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_RESOURCE", "CAP_SYS_NICE", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_LINUX_IMMUTABLE", "CAP_SYS_BOOT", "CAP_LEASE", "CAP_NET_BROADCAST",
        "CAP_SYS_TTY_CONFIG", "CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
    ];

    internal static readonly string[] MaskedPaths =
    [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ];

    /// <summary>What the host's <c>/sys</c> (bound read-only into an unprivileged container) also holds and the container must not see.</summary>
    internal static readonly string[] HostSysMaskedPaths = ["/sys/kernel/debug", "/sys/kernel/tracing", "/sys/kernel/security", "/sys/fs/bpf", "/sys/fs/fuse/connections"];

    internal static readonly string[] ReadonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

    public static JsonObject Build(ContainerConfig config, string rootPath, string networkNamespacePath, string cgroupsPath, string? userNamespacePath = null)
    {
        var caps = new JsonArray(DefaultCapabilities.Concat(config.Systemd ? SystemdCapabilities : []).Select(c => (JsonNode)c).ToArray());
        var resources = new JsonObject
        {
            ["devices"] = Devices(),
            ["memory"] = new JsonObject { ["limit"] = config.MemSizeBytes, ["swap"] = config.MemSizeBytes + config.SwapBytes },
            ["cpu"] = Cpu(config),
            ["pids"] = new JsonObject { ["limit"] = config.Pids },
        };
        var unprivileged = config.UserIdStart is not null;
        var spec = new JsonObject
        {
            ["ociVersion"] = "1.0.2",
            ["process"] = new JsonObject
            {
                ["terminal"] = false,
                ["user"] = new JsonObject { ["uid"] = 0, ["gid"] = 0 },
                ["args"] = new JsonArray(config.Init.Select(a => (JsonNode)a).ToArray()),
                ["env"] = new JsonArray("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", "container=vzsdk"),
                ["cwd"] = "/",
                ["capabilities"] = new JsonObject { ["bounding"] = caps.DeepClone(), ["effective"] = caps.DeepClone(), ["permitted"] = caps.DeepClone() },
                ["rlimits"] = new JsonArray(new JsonObject { ["type"] = "RLIMIT_NOFILE", ["hard"] = OpenFilesLimit(), ["soft"] = OpenFilesLimit() }),
                // systemd's logins and su need set-user-id programs, which gain only the user namespace's root
                ["noNewPrivileges"] = !config.Systemd,
            },
            ["root"] = new JsonObject { ["path"] = rootPath, ["readonly"] = false },
            ["hostname"] = config.Hostname,
            ["mounts"] = new JsonArray(
                Mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
                Mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
                Mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
                Mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
                Mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
                // A user namespace may not mount sysfs for a network namespace it does not own (the SDK makes the
                // network namespace beforehand, as the host's root): it gets the host's /sys, read-only, masked as below.
                unprivileged ? Mount("/sys", "bind", "/sys", "rbind", "nosuid", "noexec", "nodev", "ro") : Mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
                config.Systemd
                    ? Mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime") // its delegated subtree is writable
                    : Mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
                Mount("/run", "tmpfs", "tmpfs", "nosuid", "nodev", "mode=755", "size=65536k")),
            ["linux"] = new JsonObject
            {
                ["cgroupsPath"] = cgroupsPath,
                ["resources"] = resources,
                ["namespaces"] = new JsonArray(
                    new JsonObject { ["type"] = "pid" },
                    new JsonObject { ["type"] = "network", ["path"] = networkNamespacePath },
                    new JsonObject { ["type"] = "ipc" },
                    new JsonObject { ["type"] = "uts" },
                    new JsonObject { ["type"] = "mount" },
                    new JsonObject { ["type"] = "cgroup" }),
                ["maskedPaths"] = new JsonArray(MaskedPaths.Concat(unprivileged ? HostSysMaskedPaths : []).Select(p => (JsonNode)p).ToArray()),
                ["readonlyPaths"] = new JsonArray(ReadonlyPaths.Select(p => (JsonNode)p).ToArray()),
            },
        };
        if (config.Systemd)
        {
            var mounts = spec["mounts"]!.AsArray();
            mounts.Add((JsonNode)Mount("/run/lock", "tmpfs", "tmpfs", "nosuid", "nodev", "noexec", "mode=1777", "size=5120k"));
            mounts.Add((JsonNode)Mount("/tmp", "tmpfs", "tmpfs", "nosuid", "nodev", "mode=1777"));
        }
        var linux = spec["linux"]!.AsObject();
        if (config.UserIdStart is { } start)
        {
            var user = new JsonObject { ["type"] = "user" };
            if (userNamespacePath is not null)
                user["path"] = userNamespacePath; // the one that owns the network namespace (HostBridge made both)
            linux["namespaces"]!.AsArray().Insert(0, user);
            linux["uidMappings"] = new JsonArray(IdMapping(start));
            linux["gidMappings"] = new JsonArray(IdMapping(start));
        }
        if (SyscallProfile.Build(config) is { } seccomp)
            linux["seccomp"] = seccomp;
        return spec;
    }

    private static JsonObject IdMapping(long start)
        => new() { ["containerID"] = 0, ["hostID"] = start, ["size"] = Core.Runtime.Local.UserIdRanges.PerContainer };

    /// <summary>The open-files limit: as high as Docker's 1048576, but never above what the SDK's own process may grant.</summary>
    private static long OpenFilesLimit()
    {
        foreach (var line in File.ReadLines("/proc/self/limits"))
        {
            if (!line.StartsWith("Max open files", StringComparison.Ordinal))
                continue;
            var f = line[14..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 2 && long.TryParse(f[1], System.Globalization.CultureInfo.InvariantCulture, out var hard))
                return Math.Min(hard, 1048576);
        }
        return 1024;
    }

    private static JsonObject Cpu(ContainerConfig config)
    {
        var cpu = new JsonObject { ["shares"] = Math.Max(2, config.CpuUnits * 1024L / 1000) };
        if (config.EffectiveCpuPercent is { } percent)
        {
            cpu["period"] = 100_000;
            cpu["quota"] = Math.Max(1000, percent * 1000L);
        }
        if (!string.IsNullOrEmpty(config.CpuMask))
            cpu["cpus"] = config.CpuMask;
        return cpu;
    }

    private static JsonArray Devices()
    {
        var list = new JsonArray(new JsonObject { ["allow"] = false, ["access"] = "rwm" });
        foreach (var (type, major, minor) in new (string, int, int)[] { ("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 8), ("c", 1, 9), ("c", 5, 0), ("c", 5, 1), ("c", 5, 2), ("c", 136, -1), ("c", 10, 200) })
        {
            var d = new JsonObject { ["allow"] = true, ["type"] = type, ["major"] = major, ["access"] = "rwm" };
            if (minor >= 0)
                d["minor"] = minor;
            list.Add((JsonNode)d);
        }
        return list;
    }

    private static JsonObject Mount(string destination, string type, string source, params string[] options)
        => new() { ["destination"] = destination, ["type"] = type, ["source"] = source, ["options"] = new JsonArray(options.Select(o => (JsonNode)o).ToArray()) };

    /// <summary>Validates a signal name such as SIGTERM or SIGRTMIN+3.</summary>
    public static string ValidateSignal(string signal)
    {
        if (string.IsNullOrWhiteSpace(signal) || !System.Text.RegularExpressions.Regex.IsMatch(signal, "^(SIG)?[A-Z0-9+]{2,12}$"))
            throw new ArgumentException($"'{signal}' is not a signal name such as SIGTERM.", nameof(signal));
        return signal;
    }

    /// <summary>Validates a CPU list such as 0-1,3.</summary>
    public static string ValidateCpuMask(string mask)
    {
        if (!System.Text.RegularExpressions.Regex.IsMatch(mask, @"^\d+(-\d+)?(,\d+(-\d+)?)*$"))
            throw new ArgumentException($"'{mask}' is not a CPU list such as 0-1,3.", nameof(mask));
        return mask;
    }

    /// <summary>Validates a host name.</summary>
    public static string ValidateHostname(string hostname)
    {
        if (hostname.Length is 0 or > 63 || !System.Text.RegularExpressions.Regex.IsMatch(hostname, "^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$"))
            throw new ArgumentException($"'{hostname}' is not a valid host name.", nameof(hostname));
        return hostname;
    }

    /// <summary>
    /// Checks a resource set and says what is wrong, in the API's terms. <paramref name="hostMemoryBytes"/> (the host's RAM)
    /// refuses a memory size no start could ever honour; null skips that check.
    /// </summary>
    public static void Validate(ContainerResources r, long? hostMemoryBytes = null)
    {
        if (r.MemorySize.Bytes < 16 * ByteSize.MiB)
            throw new ArgumentOutOfRangeException(nameof(r), r.MemorySize, "MemorySize must be at least 16 MiB.");
        if (hostMemoryBytes is { } ram && r.MemorySize.Bytes > ram)
            throw new ArgumentOutOfRangeException(nameof(r), r.MemorySize, $"MemorySize ({r.MemorySize}) is larger than the host's memory ({new ByteSize(ram)}); such a container could never get it.");
        if (r.Swap.Bytes < 0 || r.Swap.Bytes > MaxSwapBytes)
            throw new ArgumentOutOfRangeException(nameof(r), r.Swap, $"Swap must be between 0 and {new ByteSize(MaxSwapBytes)}.");
        if (r.MemorySize.Bytes > MaxSwapBytes)
            throw new ArgumentOutOfRangeException(nameof(r), r.MemorySize, $"MemorySize may be at most {new ByteSize(MaxSwapBytes)}.");
        if (r.MemoryGuaranteePercent is < 0 or > 100)
            throw new ArgumentOutOfRangeException(nameof(r), r.MemoryGuaranteePercent, "MemoryGuaranteePercent is a percentage between 0 and 100.");
        if (r.Cpus is < 1 or > 4096)
            throw new ArgumentOutOfRangeException(nameof(r), r.Cpus, "Cpus must be between 1 and 4096.");
        if (r.CpuLimitPercent is < 1 or > 409600)
            throw new ArgumentOutOfRangeException(nameof(r), r.CpuLimitPercent, "CpuLimitPercent is a percentage of one CPU, at least 1.");
        if (r.CpuUnits is < 8 or > 500000)
            throw new ArgumentOutOfRangeException(nameof(r), r.CpuUnits, "CpuUnits must be between 8 and 500000.");
        if (r.DiskSpace.Bytes < 64 * ByteSize.MiB)
            throw new ArgumentOutOfRangeException(nameof(r), r.DiskSpace, "DiskSpace must be at least 64 MiB (an ext4 file system needs room).");
        if (r.DiskSpace.Bytes > 16 * ByteSize.TiB)
            throw new ArgumentOutOfRangeException(nameof(r), r.DiskSpace, "DiskSpace may be at most 16 TiB.");
        if (r.MaxProcesses is < 8)
            throw new ArgumentOutOfRangeException(nameof(r), r.MaxProcesses, "MaxProcesses must be at least 8.");
        if (r.CpuMask is not null)
            ValidateCpuMask(r.CpuMask);
    }

    /// <summary>
    /// The largest memory size or swap accepted (1 PiB): far above any host, and small enough that memory plus swap never
    /// overflows the 64-bit limits the kernel takes.
    /// </summary>
    internal const long MaxSwapBytes = 1024 * ByteSize.TiB;
}
