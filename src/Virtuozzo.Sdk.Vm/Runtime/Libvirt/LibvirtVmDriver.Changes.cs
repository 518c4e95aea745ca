using System.Globalization;
using System.Xml.Linq;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using Virtuozzo.Sdk.Vm.Internal;
using static Virtuozzo.Sdk.Core.Runtime.Libvirt.LibvirtNative;

namespace Virtuozzo.Sdk.Vm.Runtime.Libvirt;

// Changes to a VM's settings, disks and snapshots, clones, usage, and the verbs every VE has.
internal sealed partial class LibvirtVmDriver
{
    private static string Kib(long bytes) => (bytes / 1024).ToString(CultureInfo.InvariantCulture);

    public Task<VmInfo> SetAsync(string nameOrId, VmSetOptions options, CancellationToken cancellationToken)
    {
        VmShared.ValidateSet(options, cdromMustExistHere: _conn.IsLocal);
        var ct = cancellationToken;
        return WithVmAsync(nameOrId, async (dom, s) =>
        {
            var running = StateOf(s.Summary) is VeState.Running or VeState.Paused;
            if (StateOf(s.Summary) == VeState.Suspended)
                throw new InvalidStateException($"The VM '{s.Model.Name}' is suspended; resume it before changing its settings.");
            if (options.KernelCommandLine is not null && s.Model.KernelPath is null)
                throw new ArgumentException("The VM boots no kernel directly; a kernel command line does not apply.", nameof(options));
            var live = s.Model;
            if (running)
            {
                if (options.MemorySize is { } mem)
                    await SetMemoryLiveAsync(dom, live, mem.Bytes, ct).ConfigureAwait(false);
                if (options.Cpus is { } cpus && cpus != live.Cpus)
                {
                    if (cpus > live.MaxCpus)
                        throw new InvalidStateException($"The VM '{live.Name}' can hotplug at most {live.MaxCpus} vCPUs while it runs; stop it to raise the maximum.");
                    // More vCPUs are plugged at once; fewer apply at the next start, as on the local runtime.
                    var flags = cpus > live.Cpus ? AffectLive | AffectConfig : AffectConfig;
                    await dom.CallAsync(d => virDomainSetVcpusFlags(d, (uint)cpus, flags), $"Setting the vCPUs of {live.Name} to {cpus}", ct).ConfigureAwait(false);
                }
            }
            // Everything else is the persistent definition (for a running VM: what its next start uses).
            var inactive = await dom.GetXmlAsync(inactive: true, ct).ConfigureAwait(false);
            var hostMemory = Core.Internal.HostProber.ParseMemTotal(await File.ReadAllTextAsync("/proc/meminfo", ct).ConfigureAwait(false));
            var edited = DomainXml.Edit(inactive, d => ApplyToDefinition(d, options, running, hostMemory));
            if (edited != XDocument.Parse(inactive).Root!.ToString())
                using (await _conn.DefineAsync(edited, $"Changing the definition of {live.Name}", ct).ConfigureAwait(false)) { }
            return await InfoAsync(dom, ct).ConfigureAwait(false);
        }, cancellationToken);
    }

    private async Task SetMemoryLiveAsync(LibvirtDomain dom, DomainModel live, long newBytes, CancellationToken ct)
    {
        var plan = new VmConfig
        {
            Id = live.Id, Name = live.Name, CreatedAt = live.CreatedAt, Cpus = live.Cpus, MaxCpus = live.MaxCpus, MemoryBytes = live.MemoryBytes,
            MemoryGuaranteePercent = live.MemoryGuaranteePercent, MemoryHotplug = live.MaxMemoryBytes is not null,
            MaxMemoryBytes = live.MaxMemoryBytes ?? live.MemoryBytes, MemorySlots = live.MemorySlots,
        };
        var dimmsInUse = (int)(live.DimmBytes == 0 ? 0 : XDocument.Parse(await dom.GetXmlAsync(false, ct).ConfigureAwait(false)).Root!
            .Element("devices")!.Elements("memory").Count(e => (string?)e.Attribute("model") == "dimm"));
        var (dimm, target) = VmConfigRules.PlanMemoryChange(plan, live.MemoryBytes, dimmsInUse, newBytes);
        if (dimm > 0)
        {
            await dom.CallAsync(d => virDomainAttachDeviceFlags(d, DomainXml.Dimm(dimm), AffectLive | AffectConfig),
                $"Plugging {ByteSize.FromBytes(dimm).ToHumanString()} of memory into {live.Name}", ct).ConfigureAwait(false);
        }
        await dom.CallAsync(d => virDomainSetMemoryFlags(d, (nuint)(target / 1024), AffectLive | AffectConfig),
            $"Setting the balloon of {live.Name} to {ByteSize.FromBytes(target).ToHumanString()}", ct).ConfigureAwait(false);
    }

    /// <summary>Applies a change to a domain's persistent XML. For a running VM, memory and vCPUs were changed live already.</summary>
    internal static void ApplyToDefinition(XElement d, VmSetOptions o, bool running, long hostMemory)
    {
        if (o.MemoryGuaranteePercent is { } pct)
            DomainXml.SetGuarantee(d, pct);
        var vcpu = d.Element("vcpu") ?? DomainXml.SetElement(d, "vcpu", 1, "currentMemory");
        var maxCpus = int.Parse(vcpu.Value, CultureInfo.InvariantCulture);
        // Memory hotplug is switched in the definition only (for a running VM: from its next start), as on the local runtime.
        if (o.MemoryHotplug is { } hp)
        {
            var memory = long.Parse(d.Element("memory")!.Value, CultureInfo.InvariantCulture) * 1024;
            if (!running && o.MemorySize is { } resized)
                memory = resized.Bytes; // a stopped VM takes its new size in the same change
            if (hp && d.Element("maxMemory") is null)
            {
                if (memory < VmDefaults.MemoryHotplugMinimum.Bytes)
                    throw new ArgumentException($"Memory hotplug needs a VM of at least {VmDefaults.MemoryHotplugMinimum.ToHumanString()}.", nameof(o));
                var max = VmConfigRules.DefaultMaxMemory(Math.Max(memory, o.MemorySize?.Bytes ?? 0), hostMemory);
                d.Element("memory")!.AddBeforeSelf(new XElement("maxMemory", new XAttribute("slots", VmDefaults.MemorySlots), new XAttribute("unit", "KiB"), Kib(max)));
                EnsureNumaCell(d, maxCpus, memory);
            }
            else if (!hp)
            {
                d.Element("maxMemory")?.Remove();
                d.Element("cpu")?.Element("numa")?.Remove();
                d.Element("devices")?.Elements("memory").Where(e => (string?)e.Attribute("model") == "dimm").Remove();
            }
        }
        if (!running)
        {
            if (o.MemorySize is { } mem)
            {
                // A stopped VM's memory is its boot RAM: DIMMs plugged while it ran fold into it.
                d.Element("devices")?.Elements("memory").Where(e => (string?)e.Attribute("model") == "dimm").Remove();
                foreach (var name in new[] { "memory", "currentMemory" })
                {
                    var e = d.Element(name) ?? DomainXml.SetElement(d, name, 0, "vcpu");
                    e.SetAttributeValue("unit", "KiB");
                    e.Value = Kib(mem.Bytes);
                }
                if (d.Element("maxMemory") is { } max && long.Parse(max.Value, CultureInfo.InvariantCulture) * 1024 < mem.Bytes)
                    max.Value = Kib(VmConfigRules.DefaultMaxMemory(mem.Bytes, long.MaxValue));
                if (d.Element("cpu")?.Element("numa")?.Element("cell") is { } cell)
                {
                    cell.SetAttributeValue("memory", Kib(mem.Bytes));
                    cell.SetAttributeValue("unit", "KiB");
                }
            }
            if (o.Cpus is { } cpus)
            {
                var newMax = Math.Max(maxCpus, cpus);
                vcpu.Value = newMax.ToString(CultureInfo.InvariantCulture);
                vcpu.SetAttributeValue("current", cpus == newMax ? null : cpus);
                d.Element("cpu")?.Element("numa")?.Element("cell")?.SetAttributeValue("cpus", $"0-{newMax - 1}");
            }
        }
        if (o.CpuMask is { } cm)
            vcpu.SetAttributeValue("cpuset", cm.Length == 0 ? null : cm);
        if (o.CpuLimitPercent is { } cl)
        {
            d.Element("cputune")?.Element("global_quota")?.Remove();
            d.Element("cputune")?.Element("global_period")?.Remove();
            if (cl != 0)
            {
                var tune = d.Element("cputune") ?? DomainXml.SetElement(d, "cputune", string.Empty, "vcpu");
                tune.Add(new XElement("global_period", DomainXml.CpuPeriodMicroseconds), new XElement("global_quota", DomainXml.CpuPeriodMicroseconds * cl / 100));
            }
            if (d.Element("cputune") is { HasElements: false } empty)
                empty.Remove();
        }
        if (o.KernelCommandLine is { } append)
            DomainXml.SetElement(d.Element("os")!, "cmdline", append, "initrd");
        if (o.CdromImagePath is { } cd)
        {
            var devices = d.Element("devices")!;
            devices.Elements("disk").Where(e => (string?)e.Attribute("device") == "cdrom").Remove();
            if (cd.Length > 0)
                devices.Add(DomainXml.CdromElement(Path.GetFullPath(cd)));
        }
    }

    private static void EnsureNumaCell(XElement d, int maxCpus, long memoryBytes)
    {
        var cpu = d.Element("cpu");
        if (cpu is null)
        {
            cpu = new XElement("cpu");
            (d.Element("features") ?? d.Element("os")!).AddAfterSelf(cpu);
        }
        if (cpu.Element("numa") is null)
        {
            cpu.Add(new XElement("numa", new XElement("cell", new XAttribute("id", 0), new XAttribute("cpus", $"0-{maxCpus - 1}"),
                new XAttribute("memory", Kib(memoryBytes)), new XAttribute("unit", "KiB"))));
        }
    }

    // ------------------------------------------------------------------ disks

    public Task<VmDiskInfo> AddDiskAsync(string nameOrId, VmDiskOptions disk, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(disk);
        RequireLocal("Adding a disk");
        return WithVmAsync(nameOrId, async (dom, s) =>
        {
            var index = 0;
            while (s.Model.Disks.Any(d => d.Name == $"hdd{index}" || d.Target == DomainXml.TargetOf(index)))
                index++;
            if (index >= 26)
                throw new InsufficientResourcesException($"The VM {s.Model.Name} has no free disk slot.");
            var dir = _store.PrivatePath(new VeId(s.Model.Id));
            Directory.CreateDirectory(dir);
            var made = await MakeDiskAsync(dir, $"hdd{index}", disk, cancellationToken).ConfigureAwait(false);
            var path = Path.Combine(dir, made.File);
            var flags = IsActive(s) ? AffectLive | AffectConfig : AffectConfig;
            try
            {
                await dom.CallAsync(d => virDomainAttachDeviceFlags(d, DomainXml.DiskElement(made.Name, DomainXml.TargetOf(index), path).ToString(), flags),
                    $"Attaching the disk {made.Name} to {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                File.Delete(path);
                throw;
            }
            return new VmDiskInfo(made.Name, path, ByteSize.FromBytes(made.SizeBytes));
        }, cancellationToken);
    }

    public Task RemoveDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(diskName);
        return WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            var disk = s.Model.Disks.FirstOrDefault(d => d.Name == diskName) ?? throw new NotFoundException($"The VM {s.Model.Name} has no disk {diskName}.");
            var flags = IsActive(s) ? AffectLive | AffectConfig : AffectConfig;
            var xml = DomainXml.DiskElement(disk.Name, disk.Target, disk.Path).ToString();
            await dom.CallAsync(d => virDomainDetachDeviceFlags(d, xml, flags), $"Detaching the disk {diskName} from {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            if (IsOurs(s.Model.Id, disk.Path))
                File.Delete(disk.Path);
            return true;
        }, cancellationToken);
    }

    public Task<VmDiskInfo> ResizeDiskAsync(string nameOrId, string diskName, ByteSize newSize, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(diskName);
        if (newSize.Bytes <= 0 || newSize.Bytes % ByteSize.MiB != 0)
            throw new ArgumentOutOfRangeException(nameof(newSize), newSize, "A disk's size must be a positive whole number of MiB.");
        return WithVmAsync(nameOrId, async (dom, s) =>
        {
            var disk = s.Model.Disks.FirstOrDefault(d => d.Name == diskName) ?? throw new NotFoundException($"The VM {s.Model.Name} has no disk {diskName}.");
            var size = await SizeOfAsync(disk.Path, cancellationToken).ConfigureAwait(false);
            if (newSize.Bytes < size)
                throw new InvalidStateException($"The disk {diskName} of {s.Model.Name} is {ByteSize.FromBytes(size)} and cannot shrink to {newSize}: disks only grow.");
            if (IsActive(s))
            {
                await dom.CallAsync(d => virDomainBlockResize(d, disk.Target, (ulong)newSize.Bytes, BlockResizeBytes),
                    $"Growing the disk {diskName} of {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            }
            else
            {
                RequireLocal("Growing the disk of a stopped VM");
                await _disks.ResizeAsync(disk.Path, newSize.Bytes, cancellationToken).ConfigureAwait(false);
            }
            return new VmDiskInfo(disk.Name, disk.Path, newSize);
        }, cancellationToken);
    }

    /// <summary>Refused: compaction is prl_disk_tool's on a Virtuozzo node; rewriting the image would drop its internal snapshots.</summary>
    public Task<VmDiskInfo> CompactDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken)
        => Task.FromException<VmDiskInfo>(Unsupported("Disk compaction (CompactDiskAsync)", "nothing was changed."));

    // ------------------------------------------------------------------ snapshots (libvirt's internal QCOW2 snapshots)

    public Task<VmSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description, CancellationToken cancellationToken)
    {
        LibvirtSnapshots.ValidateName(snapshotName);
        return WithVmAsync(nameOrId, async (dom, s) =>
        {
            if (StateOf(s.Summary) == VeState.Suspended)
                throw new InvalidStateException($"The VM {s.Model.Name} is suspended; resume it before taking a snapshot.");
            return ToRecord(await LibvirtSnapshots.CreateAsync(dom, s.Model.Id, "The VM " + s.Model.Name, snapshotName, description, cancellationToken).ConfigureAwait(false));
        }, cancellationToken);
    }

    public async Task<IReadOnlyList<VmSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken cancellationToken)
    {
        using var dom = await OpenAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var s = await ReadAsync(dom, cancellationToken).ConfigureAwait(false);
        return (await LibvirtSnapshots.ListAsync(dom, s.Model.Id, cancellationToken).ConfigureAwait(false)).Select(ToRecord).ToList();
    }

    private static VmSnapshotInfo ToRecord(LibvirtSnapshot x) => new(x.Id, x.Name, x.Description, x.CreatedAt, x.ParentId, x.IncludesMemory, x.IsCurrent);

    /// <summary>A snapshot record from libvirt's <c>&lt;domainsnapshot&gt;</c> XML.</summary>
    internal static VmSnapshotInfo ParseSnapshot(string xml, Guid domainId, bool isCurrent) => ToRecord(LibvirtSnapshots.Parse(xml, domainId, isCurrent));

    private static async Task<VmSnapshotInfo> FindSnapshotAsync(LibvirtDomain dom, DomainModel m, string idOrName, CancellationToken ct)
        => ToRecord(await LibvirtSnapshots.FindAsync(dom, m.Id, "The VM " + m.Name, idOrName, ct).ConfigureAwait(false));

    private static Task OnSnapshotAsync(LibvirtDomain dom, string name, Func<nint, int> call, string what, CancellationToken ct) => LibvirtSnapshots.OnAsync(dom, name, call, what, ct);

    public Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            var snap = await FindSnapshotAsync(dom, s.Model, snapshotIdOrName, cancellationToken).ConfigureAwait(false);
            // The switch rewrites the disks behind any change tracking (and QEMU refuses it while bitmaps are active):
            // the backups' checkpoints go first, so the next backup is full rather than wrong.
            await ForgetChangeTrackingAsync(dom, s, cancellationToken).ConfigureAwait(false);
            // A snapshot with memory brings the VM back running as it was; a disk-only one leaves it stopped.
            await OnSnapshotAsync(dom, snap.Name, p => virDomainRevertToSnapshot(p, SnapshotRevertForce),
                $"Switching {s.Model.Name} to the snapshot '{snap.Name}'", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    public Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            var snap = await FindSnapshotAsync(dom, s.Model, snapshotIdOrName, cancellationToken).ConfigureAwait(false);
            await OnSnapshotAsync(dom, snap.Name, p => virDomainSnapshotDelete(p, 0), $"Deleting the snapshot '{snap.Name}' of {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    // ------------------------------------------------------------------ clone

    public Task<VmInfo> CloneAsync(string nameOrId, VmCloneOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        RequireLocal("Cloning a VM");
        return WithVmAsync(nameOrId, async (dom, s) =>
        {
            RequireStopped(s, "cloning it");
            if (await _conn.FindDomainAsync(options.Name.Value, cancellationToken).ConfigureAwait(false) is { } taken)
            {
                taken.Dispose();
                throw new AlreadyExistsException($"A domain named {options.Name} already exists on {Where}.");
            }
            var id = Guid.NewGuid();
            var dir = _store.PrivatePath(new VeId(id));
            Directory.CreateDirectory(dir);
            try
            {
                var paths = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var disk in s.Model.Disks)
                {
                    var target = Path.Combine(dir, disk.Name + ".qcow2");
                    if (options.Linked)
                        await _disks.CreateAsync(target, await SizeOfAsync(disk.Path, cancellationToken).ConfigureAwait(false), disk.Path, cancellationToken).ConfigureAwait(false);
                    else
                        await CopyFileAsync(disk.Path, target, cancellationToken).ConfigureAwait(false);
                    paths[disk.Path] = target;
                }
                var xml = AsNewDomain(await dom.GetXmlAsync(inactive: true, cancellationToken).ConfigureAwait(false), options.Name, id, dir, paths);
                using var clone = await _conn.DefineAsync(xml, $"Defining the clone {options.Name} of {s.Model.Name}", cancellationToken).ConfigureAwait(false);
                return await InfoAsync(clone, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                TryDeleteDirectory(dir);
                throw;
            }
        }, cancellationToken);
    }

    /// <summary>
    /// A domain's XML as a new domain's (a clone, a restored backup): another name and UUID, a new MAC address, the disks at
    /// <paramref name="diskPaths"/> (old path → new path), the serial log and the creation time in <paramref name="dir"/>.
    /// </summary>
    private static string AsNewDomain(string xml, VeName name, Guid id, string dir, IReadOnlyDictionary<string, string> diskPaths)
        => DomainXml.Edit(xml, d =>
        {
            d.Element("name")!.Value = name.Value;
            d.Element("uuid")!.Value = id.ToString();
            foreach (var source in d.Element("devices")!.Elements("disk").Select(e => e.Element("source")).OfType<XElement>())
            {
                if ((string?)source.Attribute("file") is { } f && diskPaths.TryGetValue(f, out var p))
                    source.SetAttributeValue("file", p);
            }
            foreach (var mac in d.Element("devices")!.Elements("interface").Select(e => e.Element("mac")).OfType<XElement>())
                mac.SetAttributeValue("address", VmConfigRules.NewMac(id));
            foreach (var serial in d.Element("devices")!.Elements("serial").Select(e => e.Element("source")).OfType<XElement>())
            {
                if (serial.Attribute("path") is not null)
                    serial.SetAttributeValue("path", Path.Combine(dir, "console.log"));
            }
            d.Element("metadata")?.Element(DomainXml.MetadataNamespace + "vm")?.SetAttributeValue("created", DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture));
        });

    private static async Task CopyFileAsync(string from, string to, CancellationToken ct)
    {
        var source = new FileStream(from, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        await using (source.ConfigureAwait(false))
        {
            var target = new FileStream(to, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20, useAsync: true);
            await using (target.ConfigureAwait(false))
            {
                await source.CopyToAsync(target, ct).ConfigureAwait(false);
                await target.FlushAsync(ct).ConfigureAwait(false);
                target.Flush(flushToDisk: true);
            }
        }
    }

    // ------------------------------------------------------------------ the verbs every VE has

    async Task<IReadOnlyList<VeInfo>> IVeDriver.ListVesAsync(CancellationToken cancellationToken) => await ListAsync(cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.GetVeAsync(VeId id, CancellationToken cancellationToken) => await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.StartVeAsync(VeId id, CancellationToken cancellationToken) => await StartAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    Task<VeStopMethod> IVeDriver.StopVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken) => StopAsync(id.ToString(), options, cancellationToken);

    async Task<VeInfo> IVeDriver.RestartVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken)
    {
        await StopAsync(id.ToString(), options, cancellationToken).ConfigureAwait(false);
        return await StartAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    async Task<VeInfo> IVeDriver.SuspendVeAsync(VeId id, CancellationToken cancellationToken)
    {
        await SuspendAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    async Task<VeInfo> IVeDriver.ResumeVeAsync(VeId id, CancellationToken cancellationToken)
    {
        await ResumeAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    Task<bool> IVeDriver.DeleteVeAsync(VeId id, CancellationToken cancellationToken) => DeleteAsync(id.ToString(), cancellationToken);

    async Task<VeInfo> IVeDriver.RenameVeAsync(VeId id, VeName newName, CancellationToken cancellationToken) => await RenameAsync(id.ToString(), newName, cancellationToken).ConfigureAwait(false);

    Task<VeExecResult> IVeDriver.ExecVeAsync(VeId id, VeExecOptions options, CancellationToken cancellationToken) => ExecAsync(id.ToString(), options, cancellationToken);

    /// <summary>Usage from the domain's statistics (<c>virDomainListGetStats</c>, this domain only): CPU time, the guest's resident memory, block and interface counters.</summary>
    async Task<VeUsage> IVeDriver.GetVeUsageAsync(VeId id, CancellationToken cancellationToken)
    {
        using var dom = await OpenAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        var info = await InfoAsync(dom, cancellationToken).ConfigureAwait(false);
        var stats = await dom.GetStatsAsync(cancellationToken).ConfigureAwait(false);
        return UsageOf(info, stats?.Fields ?? new Dictionary<string, object>(), DateTimeOffset.UtcNow);
    }

    /// <summary>Maps libvirt's statistics fields to the SDK's usage record.</summary>
    internal static VeUsage UsageOf(VmInfo info, IReadOnlyDictionary<string, object> f, DateTimeOffset now)
    {
        long Sum(string prefix, string suffix) => f.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal) && kv.Key.EndsWith(suffix, StringComparison.Ordinal) && kv.Value is long)
            .Sum(kv => (long)kv.Value);
        long? Get(string key) => f.TryGetValue(key, out var v) && v is long l ? l : null;
        var rss = Get("balloon.rss");
        var used = Get("balloon.current") is { } current && Get("balloon.unused") is { } unused ? (current - unused) * 1024 : rss * 1024;
        var allocated = Sum("block.", ".allocation");
        var capacity = Sum("block.", ".capacity");
        return new VeUsage(info.Id, VeKind.Vm, info.State, TimeSpan.FromTicks((Get("cpu.time") ?? 0) / 100),
            info.IsRunning ? used : null, allocated, capacity > 0 ? capacity : info.DiskSize.Bytes,
            Sum("net.", ".rx.bytes"), Sum("net.", ".tx.bytes"), now);
    }
}
