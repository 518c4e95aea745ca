using System.Globalization;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>Which part of a VE a process belongs to.</summary>
internal enum CgroupRole
{
    /// <summary>The VE itself: the container's processes or the VM's QEMU. Limits apply here.</summary>
    Payload,

    /// <summary>Helpers the SDK runs for the VE (qemu-storage-daemon): accounted to the VE, not limited by it.</summary>
    Service,
}

/// <summary>
/// The SDK's cgroups. Every VE gets <c>vzsdk/&lt;uuid&gt;</c> under the SDK's fixed parent in each controller
/// (<c>/sys/fs/cgroup/&lt;controller&gt;/vzsdk/…</c> on v1 and hybrid hosts, <c>/sys/fs/cgroup/vzsdk.slice/…</c> on v2) — never a
/// path relative to wherever the calling process lives — with two children: <c>ve</c> (the payload, where limits
/// apply) and <c>io</c> (the SDK's helper daemons, so that a container's OOM never takes its disk daemon down).
/// </summary>
internal sealed class CgroupManager
{
    internal static readonly string[] V1Controllers = ["memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "blkio"];

    public CgroupManager(CgroupLayout layout, string root = "/sys/fs/cgroup", string parent = "vzsdk")
    {
        if (layout == CgroupLayout.None)
            throw new UnsupportedOnHostException("No cgroup file system is mounted at /sys/fs/cgroup; containers and resource limits need cgroups.");
        Layout = layout;
        Root = root;
        Parent = layout == CgroupLayout.V2 ? parent + ".slice" : parent;
    }

    public CgroupLayout Layout { get; }

    public string Root { get; }

    public string Parent { get; }

    public bool IsV2 => Layout == CgroupLayout.V2;

    /// <summary>Detects the layout of the local machine; the parent cgroup is the one of <paramref name="dataRoot"/>'s VEs.</summary>
    public static CgroupManager Detect(string? dataRoot = null)
        => new(HostProber.ParseCgroupLayout(File.ReadAllText("/proc/mounts")), parent: ParentFor(dataRoot ?? VirtuozzoSdkOptions.DefaultDataRoot));

    /// <summary>
    /// The parent cgroup of one data root's VEs: <c>vzsdk</c> for the default data root, <c>vzsdk-&lt;8 hex digits of the
    /// root's SHA-256&gt;</c> for any other, so that two data roots on one host never share (or reconcile away) each other's cgroups.
    /// </summary>
    public static string ParentFor(string dataRoot)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dataRoot));
        if (full == VirtuozzoSdkOptions.DefaultDataRoot)
            return "vzsdk";
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(full));
        return "vzsdk-" + Convert.ToHexStringLower(hash, 0, 4);
    }

    /// <summary>
    /// Every hierarchy mounted under the root on a v1 or hybrid host (controllers, <c>systemd</c>, <c>unified</c>…),
    /// without the symbolic links that name a co-mounted hierarchy twice (<c>cpu</c> → <c>cpu,cpuacct</c>). The OCI runtime
    /// creates a VE's cgroup in each of them, so teardown and reconciliation must look in each.
    /// </summary>
    private IEnumerable<string> AllHierarchies()
    {
        if (IsV2 || !Directory.Exists(Root))
            return [""];
        return new DirectoryInfo(Root).EnumerateDirectories().Where(d => d.LinkTarget is null).Select(d => d.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();
    }

    /// <summary>The directories of a VE's cgroup in every hierarchy (for teardown: more than <see cref="Directories"/> covers).</summary>
    private IReadOnlyList<string> AllDirectories(VeId id)
        => AllHierarchies().Select(h => h.Length == 0 ? Path.Combine(Root, Parent, id.ToString()) : Path.Combine(Root, h, Parent, id.ToString())).ToList();

    /// <summary>The cgroup path, relative to each controller's root, for runc's <c>cgroupsPath</c>.</summary>
    public string RelativePath(VeId id, CgroupRole role) => $"/{Parent}/{id}/{RoleName(role)}";

    private static string RoleName(CgroupRole role) => role == CgroupRole.Payload ? "ve" : "io";

    /// <summary>The directories of a VE's cgroup (or one of its roles), per controller ("" on v2).</summary>
    public IReadOnlyDictionary<string, string> Directories(VeId id, CgroupRole? role = null)
    {
        var rel = role is { } r ? Path.Combine(Parent, id.ToString(), RoleName(r)) : Path.Combine(Parent, id.ToString());
        if (IsV2)
            return new Dictionary<string, string> { [""] = Path.Combine(Root, rel) };
        var dirs = V1Controllers.Where(c => Directory.Exists(Path.Combine(Root, c))).ToDictionary(c => c, c => Path.Combine(Root, c, rel));
        // Hybrid hosts: the v2 "unified" hierarchy binds no controller but gives every cgroup its own memory.pressure (PSI).
        if (Layout == CgroupLayout.Hybrid && File.Exists(Path.Combine(Root, Unified, "cgroup.procs")))
            dirs[Unified] = Path.Combine(Root, Unified, rel);
        return dirs;
    }

    /// <summary>The name of the v2 hierarchy on a hybrid host.</summary>
    internal const string Unified = "unified";

    /// <summary>Creates (or opens) the VE's cgroups and returns them.</summary>
    public VeCgroup Create(VeId id)
    {
        try
        {
            if (IsV2)
            {
                var parent = Path.Combine(Root, Parent);
                Directory.CreateDirectory(parent);
                EnableV2Controllers(Root);
                EnableV2Controllers(parent);
                var ve = Path.Combine(parent, id.ToString());
                Directory.CreateDirectory(ve);
                EnableV2Controllers(ve);
                Directory.CreateDirectory(Path.Combine(ve, "ve"));
                Directory.CreateDirectory(Path.Combine(ve, "io"));
            }
            else
            {
                foreach (var (controller, dir) in Directories(id))
                {
                    foreach (var level in new[] { Path.Combine(Root, controller, Parent), dir, Path.Combine(dir, "ve"), Path.Combine(dir, "io") })
                    {
                        Directory.CreateDirectory(level);
                        if (controller == "cpuset")
                            InheritCpuset(level);
                    }
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new UnsupportedOnHostException($"Cannot create the cgroups of VE {id} under {Root}: {ex.Message} (the local runtime needs root).", ex);
        }
        return new VeCgroup(this, id);
    }

    /// <summary>
    /// Delegates the VE's payload cgroup to the container's root (host id <paramref name="owner"/>), for an init that
    /// manages its own cgroups (systemd): on v1 and hybrid hosts the payload cgroup of the named <c>systemd</c> hierarchy,
    /// which binds no controller, so nothing the container does there lifts a limit; on v2 the payload directory with its
    /// <c>cgroup.procs</c>, <c>cgroup.threads</c> and <c>cgroup.subtree_control</c> (the kernel's delegation contract: the
    /// limits stay in files the container cannot write).
    /// </summary>
    public void Delegate(VeId id, long owner)
    {
        var uid = (uint)owner;
        var rel = Path.Combine(Parent, id.ToString(), RoleName(CgroupRole.Payload));
        string dir;
        string[] files;
        if (IsV2)
        {
            dir = Path.Combine(Root, rel);
            files = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];
        }
        else
        {
            var named = Path.Combine(Root, "systemd");
            if (!Directory.Exists(named))
                throw new UnsupportedOnHostException($"This host mounts no named systemd cgroup hierarchy at {named}: a container whose init is systemd cannot be given a cgroup subtree of its own.");
            dir = Path.Combine(named, rel);
            files = ["cgroup.procs", "tasks", "cgroup.clone_children", "notify_on_release"];
        }
        Directory.CreateDirectory(dir);
        foreach (var path in files.Select(f => Path.Combine(dir, f)).Where(File.Exists).Prepend(dir))
        {
            if (Native.Lchown(path, uid, uid) != 0)
                throw new UnsupportedOnHostException($"Cannot delegate the cgroup {dir} to the container (chown {path}: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}).");
        }
    }

    /// <summary>Opens an existing VE's cgroups (no check that they exist).</summary>
    public VeCgroup Open(VeId id) => new(this, id);

    /// <summary>True when the VE's cgroup directory exists in any hierarchy.</summary>
    public bool Exists(VeId id) => AllDirectories(id).Any(Directory.Exists);

    /// <summary>Kills every process left in the VE's cgroups and removes them, children first. Idempotent.</summary>
    public async Task DeleteAsync(VeId id, CancellationToken cancellationToken)
    {
        var cg = Open(id);
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var pids = cg.AllProcesses();
            if (pids.Count == 0)
                break;
            cg.Thaw();
            foreach (var pid in pids)
                Native.TrySignal(pid, Native.SIGKILL);
            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }
        foreach (var dir in AllDirectories(id))
        {
            if (!Directory.Exists(dir))
                continue;
            // Deepest first: the OCI runtime may nest cgroups below "ve" (and makes them in hierarchies the SDK never creates in).
            var below = Directory.EnumerateDirectories(dir, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length).ToList();
            foreach (var child in below.Append(dir))
            {
                for (var attempt = 0; attempt < 50 && Directory.Exists(child); attempt++)
                {
                    try
                    {
                        Directory.Delete(child);
                    }
                    catch (IOException) when (attempt < 49)
                    {
                        await Task.Delay(20, cancellationToken).ConfigureAwait(false); // a process is still exiting
                    }
                }
            }
        }
    }

    /// <summary>Ids of VEs that have cgroups under this data root's parent, in any hierarchy (for reconciliation).</summary>
    public IEnumerable<VeId> ListVeIds()
    {
        var ids = new HashSet<VeId>();
        foreach (var h in AllHierarchies())
        {
            var parent = h.Length == 0 ? Path.Combine(Root, Parent) : Path.Combine(Root, h, Parent);
            if (!Directory.Exists(parent))
                continue;
            foreach (var name in Directory.GetDirectories(parent).Select(Path.GetFileName))
            {
                if (VeId.TryParse(name, out var id))
                    ids.Add(id);
            }
        }
        return ids.OrderBy(i => i).ToList();
    }

    private static void InheritCpuset(string dir)
    {
        var parent = Path.GetDirectoryName(dir)!;
        foreach (var file in new[] { "cpuset.cpus", "cpuset.mems" })
        {
            var path = Path.Combine(dir, file);
            if (File.Exists(path) && File.ReadAllText(path).Trim().Length == 0)
                File.WriteAllText(path, File.ReadAllText(Path.Combine(parent, file)).Trim());
        }
    }

    private static void EnableV2Controllers(string dir)
    {
        var available = File.ReadAllText(Path.Combine(dir, "cgroup.controllers")).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var c in available.Where(c => c is "memory" or "cpu" or "cpuset" or "pids" or "io"))
        {
            try { File.WriteAllText(Path.Combine(dir, "cgroup.subtree_control"), "+" + c); }
            catch (IOException) { }
        }
    }
}

/// <summary>One VE's cgroups: add processes, set and read limits, freeze.</summary>
internal sealed class VeCgroup
{
    private readonly CgroupManager _manager;

    internal VeCgroup(CgroupManager manager, VeId id)
    {
        _manager = manager;
        Id = id;
    }

    public VeId Id { get; }

    private string Dir(string controller, CgroupRole role = CgroupRole.Payload)
        => _manager.IsV2 ? _manager.Directories(Id, role)[""] : _manager.Directories(Id, role).TryGetValue(controller, out var d) ? d : throw new UnsupportedOnHostException($"The cgroup controller '{controller}' is not mounted.");

    /// <summary>The <c>cgroup.procs</c> files a process must be written to, to join the role in every controller.</summary>
    public IReadOnlyList<string> ProcsFiles(CgroupRole role) => _manager.Directories(Id, role).Values.Select(d => Path.Combine(d, "cgroup.procs")).ToList();

    /// <summary>Moves a process into the role's cgroups.</summary>
    public void AddProcess(int pid, CgroupRole role)
    {
        foreach (var procs in ProcsFiles(role))
            File.WriteAllText(procs, pid.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Every pid in the VE's cgroups, both roles, nested cgroups included.</summary>
    public IReadOnlyList<int> AllProcesses()
    {
        var result = new HashSet<int>();
        foreach (var dir in _manager.Directories(Id).Values.Where(Directory.Exists))
        {
            foreach (var procs in Directory.EnumerateFiles(dir, "cgroup.procs", SearchOption.AllDirectories))
            {
                try
                {
                    foreach (var line in File.ReadAllLines(procs))
                        if (int.TryParse(line, CultureInfo.InvariantCulture, out var pid))
                            result.Add(pid);
                }
                catch (IOException) { }
            }
        }
        return result.ToList();
    }

    /// <summary>Sets the memory limit and memory+swap limit of the payload (<c>memsize</c>, <c>swap</c>).</summary>
    public void SetMemory(long limitBytes, long swapBytes)
    {
        if (_manager.IsV2)
        {
            Write("", "memory.max", limitBytes);
            Write("", "memory.swap.max", swapBytes);
            return;
        }
        var memsw = Path.Combine(Dir("memory"), "memory.memsw.limit_in_bytes");
        var current = long.Parse(Read("memory", "memory.limit_in_bytes"), CultureInfo.InvariantCulture);
        // v1 requires limit <= memsw at every step: raise memsw first when growing, lower the limit first when shrinking.
        if (limitBytes >= current)
        {
            if (File.Exists(memsw)) File.WriteAllText(memsw, (limitBytes + swapBytes).ToString(CultureInfo.InvariantCulture));
            Write("memory", "memory.limit_in_bytes", limitBytes);
        }
        else
        {
            Write("memory", "memory.limit_in_bytes", limitBytes);
            if (File.Exists(memsw)) File.WriteAllText(memsw, (limitBytes + swapBytes).ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>
    /// Lowers (or raises) the memory limit of a running payload without an instant OOM: the target comes down first
    /// (<c>memory.high</c> on v2, which throttles and reclaims), and the hard limit follows once usage is under it; on v1,
    /// where a limit write reclaims by itself and refuses (EBUSY) what it cannot reclaim, the limit comes down in steps.
    /// On a timeout the previous limits are put back and <see cref="InsufficientResourcesException"/> says what is in use.
    /// </summary>
    public async Task ApplyMemoryLimitAsync(long limitBytes, long swapBytes, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var current = MemoryLimit();
        if (limitBytes >= current || MemoryUsage() <= limitBytes)
        {
            SetMemory(limitBytes, swapBytes);
            if (_manager.IsV2)
                Write("", "memory.high", -1);
            return;
        }
        var deadline = DateTime.UtcNow + timeout;
        if (_manager.IsV2)
        {
            Write("", "memory.high", limitBytes);
            while (MemoryUsage() > limitBytes)
            {
                if (DateTime.UtcNow > deadline)
                {
                    Write("", "memory.high", -1);
                    throw new InsufficientResourcesException($"The VE still uses {new ByteSize(MemoryUsage()).ToHumanString()} after {timeout.TotalSeconds:F0} s of reclaim and cannot be limited to {new ByteSize(limitBytes).ToHumanString()}; the limit stays {new ByteSize(current).ToHumanString()}.", limitBytes, MemoryUsage());
                }
                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }
            SetMemory(limitBytes, swapBytes);
            Write("", "memory.high", -1);
            return;
        }
        var originalSwap = MemorySwapLimit() is { } memsw ? memsw - current : swapBytes;
        var step = current;
        while (true)
        {
            // Halfway from what is in use down to the new limit each step; the kernel reclaims on every write.
            var usage = MemoryUsage();
            var next = Math.Max(limitBytes, Math.Min(step, usage) - Math.Max(ByteSize.MiB, (Math.Min(step, usage) - limitBytes) / 2));
            try
            {
                SetMemory(next, swapBytes);
                step = next;
                if (next == limitBytes)
                    return;
            }
            catch (IOException) when (DateTime.UtcNow <= deadline)
            {
                await Task.Delay(50, cancellationToken).ConfigureAwait(false); // EBUSY: not reclaimable yet
            }
            catch (IOException ex)
            {
                try { SetMemory(current, originalSwap); } catch (IOException) { }
                throw new InsufficientResourcesException($"The VE still uses {new ByteSize(MemoryUsage()).ToHumanString()} and cannot be limited to {new ByteSize(limitBytes).ToHumanString()} ({ex.Message}); the limit stays {new ByteSize(current).ToHumanString()}.", limitBytes, MemoryUsage());
            }
        }
    }

    /// <summary>The memory+swap limit on v1 (null where there is none or on v2).</summary>
    public long? MemorySwapLimit()
    {
        if (_manager.IsV2)
            return null;
        var file = Path.Combine(Dir("memory"), "memory.memsw.limit_in_bytes");
        return File.Exists(file) ? long.Parse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture) : null;
    }

    /// <summary>
    /// Sets what the memory manager decides: on v2 <c>memory.min</c> = protection and <c>memory.high</c> = target; on v1,
    /// which has neither, <c>soft_limit_in_bytes</c> = protection (global reclaim takes from cgroups above it first) and,
    /// when <paramref name="capAtTarget"/>, the hard limit = target (v1 cannot throttle) with memsw kept ordered. Writes a
    /// file only when its value changes; returns how many it wrote.
    /// </summary>
    public int SetMemoryTarget(long protectionBytes, long targetBytes, bool capAtTarget, long swapBytes)
    {
        var writes = 0;
        if (_manager.IsV2)
        {
            writes += WriteIfChanged("", "memory.min", protectionBytes);
            writes += WriteIfChanged("", "memory.high", targetBytes);
            return writes;
        }
        writes += WriteIfChanged("memory", "memory.soft_limit_in_bytes", protectionBytes);
        if (capAtTarget && MemoryLimit() != targetBytes)
        {
            SetMemory(targetBytes, swapBytes);
            writes++;
        }
        return writes;
    }

    /// <summary>Reads one memory setting of the payload (v2 name on v2, v1 name on v1); null when the file is not there.</summary>
    public long? ReadMemorySetting(string file)
    {
        var path = Path.Combine(Dir(_manager.IsV2 ? "" : "memory"), file);
        if (!File.Exists(path))
            return null;
        var text = File.ReadAllText(path).Trim();
        return text == "max" ? long.MaxValue : long.Parse(text, CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// The payload's memory pressure: PSI <c>some total</c> in microseconds from its v2 cgroup (the <c>unified</c>
    /// hierarchy on hybrid hosts); null where the host has no per-cgroup PSI.
    /// </summary>
    public long? MemoryPressureTotal()
    {
        var dirs = _manager.Directories(Id, CgroupRole.Payload);
        var dir = _manager.IsV2 ? dirs[""] : dirs.TryGetValue(CgroupManager.Unified, out var u) ? u : null;
        var path = dir is null ? null : Path.Combine(dir, "memory.pressure");
        if (path is null || !File.Exists(path))
            return null;
        try
        {
            foreach (var line in File.ReadAllLines(path))
            {
                if (!line.StartsWith("some ", StringComparison.Ordinal))
                    continue;
                var total = line.Split(' ').FirstOrDefault(f => f.StartsWith("total=", StringComparison.Ordinal));
                return total is null ? null : long.Parse(total[6..], CultureInfo.InvariantCulture);
            }
        }
        catch (IOException) { }
        return null;
    }

    private int WriteIfChanged(string controller, string file, long value)
    {
        var path = Path.Combine(Dir(controller), file);
        var current = File.ReadAllText(path).Trim();
        var wanted = value < 0 || value == long.MaxValue ? (_manager.IsV2 ? "max" : "-1") : value.ToString(CultureInfo.InvariantCulture);
        if (current == wanted || (!_manager.IsV2 && wanted != "-1" && long.TryParse(current, CultureInfo.InvariantCulture, out var c) && c == (value + 4095) / 4096 * 4096))
            return 0;
        File.WriteAllText(path, wanted);
        return 1;
    }

    /// <summary>Memory protection for the guarantee (v2 <c>memory.low</c>; v1 has no equivalent outside Virtuozzo kernels).</summary>
    public void SetMemoryProtection(long bytes)
    {
        if (_manager.IsV2)
            Write("", "memory.low", bytes);
    }

    /// <summary>CPU bandwidth: <paramref name="percent"/> of one CPU (100 = one CPU), null for unlimited.</summary>
    public void SetCpuLimit(int? percent)
    {
        const long period = 100_000;
        var quota = percent is { } p ? Math.Max(1000, p * period / 100) : -1;
        if (_manager.IsV2)
        {
            File.WriteAllText(Path.Combine(Dir(""), "cpu.max"), quota < 0 ? $"max {period}" : $"{quota} {period}");
            return;
        }
        Write("cpu", "cpu.cfs_period_us", period);
        Write("cpu", "cpu.cfs_quota_us", quota);
    }

    /// <summary>CPU weight from Virtuozzo cpuunits (1000 = the default share).</summary>
    public void SetCpuUnits(int units)
    {
        if (_manager.IsV2)
            Write("", "cpu.weight", Math.Clamp(units / 10, 1, 10000));
        else
            Write("cpu", "cpu.shares", Math.Max(2, units * 1024L / 1000));
    }

    /// <summary>The CPUs the payload may run on, as a list such as <c>0-1,3</c>.</summary>
    public void SetCpuMask(string cpus) => File.WriteAllText(Path.Combine(Dir(_manager.IsV2 ? "" : "cpuset"), "cpuset.cpus"), cpus);

    /// <summary>The most processes the payload may have.</summary>
    public void SetPidsLimit(long? max)
        => File.WriteAllText(Path.Combine(Dir(_manager.IsV2 ? "" : "pids"), "pids.max"), max is { } m ? m.ToString(CultureInfo.InvariantCulture) : "max");

    /// <summary>Memory the payload uses now.</summary>
    /// <summary>CPU time the VE's processes have used (<c>cpu.stat</c> usage on v2, <c>cpuacct.usage</c> on v1); zero when unreadable.</summary>
    public TimeSpan CpuTime()
    {
        try
        {
            if (_manager.IsV2)
            {
                foreach (var line in Read("", "cpu.stat").Split('\n'))
                {
                    if (line.StartsWith("usage_usec ", StringComparison.Ordinal))
                        return TimeSpan.FromMicroseconds(long.Parse(line[11..], CultureInfo.InvariantCulture));
                }
                return TimeSpan.Zero;
            }
            return TimeSpan.FromTicks(long.Parse(Read("cpuacct", "cpuacct.usage"), CultureInfo.InvariantCulture) / 100);
        }
        catch (Exception ex) when (ex is IOException or FormatException or UnauthorizedAccessException)
        {
            return TimeSpan.Zero;
        }
    }

    public long MemoryUsage() => long.Parse(_manager.IsV2 ? Read("", "memory.current") : Read("memory", "memory.usage_in_bytes"), CultureInfo.InvariantCulture);

    /// <summary>The memory limit in force.</summary>
    public long MemoryLimit()
    {
        var text = _manager.IsV2 ? Read("", "memory.max") : Read("memory", "memory.limit_in_bytes");
        return text == "max" ? long.MaxValue : long.Parse(text, CultureInfo.InvariantCulture);
    }

    /// <summary>CPU throttling counters: periods throttled and time throttled.</summary>
    public (long ThrottledPeriods, TimeSpan ThrottledTime) CpuThrottling()
    {
        var stat = _manager.IsV2 ? Read("", "cpu.stat") : Read("cpu", "cpu.stat");
        long periods = 0, time = 0;
        foreach (var line in stat.Split('\n'))
        {
            var f = line.Split(' ');
            if (f.Length != 2) continue;
            if (f[0] == "nr_throttled") periods = long.Parse(f[1], CultureInfo.InvariantCulture);
            else if (f[0] == "throttled_time") time = long.Parse(f[1], CultureInfo.InvariantCulture) / 1000; // ns → µs
            else if (f[0] == "throttled_usec") time = long.Parse(f[1], CultureInfo.InvariantCulture);
        }
        return (periods, TimeSpan.FromMicroseconds(time));
    }

    /// <summary>Stops every payload process (freezer); <see cref="Thaw"/> resumes them.</summary>
    public async Task FreezeAsync(CancellationToken cancellationToken)
    {
        if (_manager.IsV2)
        {
            File.WriteAllText(Path.Combine(Dir(""), "cgroup.freeze"), "1");
            return;
        }
        var state = Path.Combine(Dir("freezer"), "freezer.state");
        File.WriteAllText(state, "FROZEN");
        for (var i = 0; i < 500 && File.ReadAllText(state).Trim() != "FROZEN"; i++)
            await Task.Delay(10, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Resumes frozen payload processes. Harmless when not frozen or when the cgroup is gone.</summary>
    public void Thaw()
    {
        try
        {
            var (file, value) = ThawWrite();
            File.WriteAllText(file, value);
        }
        catch (IOException) { }
        catch (UnsupportedOnHostException) { }
    }

    /// <summary>The file and the value that thaw the payload (for a process that must thaw it without this one).</summary>
    internal (string File, string Value) ThawWrite()
        => _manager.IsV2 ? (Path.Combine(Dir(""), "cgroup.freeze"), "0") : (Path.Combine(Dir("freezer"), "freezer.state"), "THAWED");

    /// <summary>True when the payload is frozen.</summary>
    public bool IsFrozen()
    {
        try
        {
            return _manager.IsV2
                ? File.ReadAllText(Path.Combine(Dir(""), "cgroup.events")).Contains("frozen 1", StringComparison.Ordinal)
                : File.ReadAllText(Path.Combine(Dir("freezer"), "freezer.state")).Trim() == "FROZEN";
        }
        catch (IOException) { return false; }
    }

    private string Read(string controller, string file) => File.ReadAllText(Path.Combine(Dir(controller), file)).Trim();

    private void Write(string controller, string file, long value)
        => File.WriteAllText(Path.Combine(Dir(controller), file), value < 0 && _manager.IsV2 ? "max" : value.ToString(CultureInfo.InvariantCulture));
}
