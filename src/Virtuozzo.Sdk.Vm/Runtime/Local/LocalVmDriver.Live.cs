using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

internal sealed partial class LocalVmDriver
{
    private static string Inv(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Pins every vCPU thread of a running VM to the CPUs in <paramref name="mask"/>.</summary>
    private async Task ApplyCpuMaskAsync(VmSession s, string mask, CancellationToken ct)
    {
        VmConfigRules.ParseCpuList(mask);
        var cpus = await QmpAsync(s, "query-cpus-fast", null, ct).ConfigureAwait(false);
        foreach (var cpu in cpus?.AsArray() ?? [])
        {
            var tid = cpu?["thread-id"]?.GetValue<int>();
            if (tid is > 0)
                await _host.ExecuteBufferedAsync(new Command("taskset").WithArguments("-pc", mask, Inv(tid.Value)).WithTimeout(TimeSpan.FromSeconds(10)), ct).ConfigureAwait(false);
        }
    }

    // ------------------------------------------------------------------ set

    /// <summary>
    /// Changes a VM's settings. They are persisted, and applied to a running VM where it allows: memory through the
    /// balloon and DIMM hotplug (growing deflates the balloon first, then plugs a DIMM that is a multiple of 128 MiB;
    /// shrinking inflates the balloon), vCPUs through CPU hotplug (brought online by the guest tools), the CPU mask by
    /// pinning the vCPU threads. A raised guarantee is admitted by the resource ledger first.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --memsize … --cpus … --cpumask …</c>.</remarks>
    /// <exception cref="InvalidStateException">The change cannot be made live (memory hotplug off), or the VM is suspended.</exception>
    /// <exception cref="InsufficientResourcesException">The host cannot guarantee the new memory, or no DIMM slot is free.</exception>
    public Task<VmInfo> SetAsync(string nameOrId, VmSetOptions options, CancellationToken cancellationToken = default)
    {
        VmShared.ValidateSet(options);
        var ct = cancellationToken;
        return WithVmAsync(nameOrId, async s =>
        {
            if (s.Runtime is null && s.Config.SuspendedStateFile is not null)
                throw new InvalidStateException($"The VM '{s.Config.Name}' is suspended; resume it (or delete its saved state by resuming and stopping it) before changing its settings.");
            var c = s.Config;
            var next = c;
            if (options.MemoryHotplug is { } hp && hp != c.MemoryHotplug)
            {
                if (hp && c.MemoryBytes < VmDefaults.MemoryHotplugMinimum.Bytes)
                    throw new ArgumentException($"Memory hotplug needs a VM of at least {VmDefaults.MemoryHotplugMinimum.ToHumanString()}.", nameof(options));
                var hostMem = Core.Internal.HostProber.ParseMemTotal(await File.ReadAllTextAsync("/proc/meminfo", ct).ConfigureAwait(false));
                next = next with
                {
                    MemoryHotplug = hp,
                    MaxMemoryBytes = hp ? VmConfigRules.DefaultMaxMemory(c.MemoryBytes, hostMem) : c.MemoryBytes,
                    MemorySlots = hp ? VmDefaults.MemorySlots : 0,
                };
            }
            if (options.MemoryGuaranteePercent is { } pct)
                next = next with { MemoryGuaranteePercent = pct };
            if (options.MemorySize is { } mem)
            {
                if (s.Runtime is null && next.MemoryHotplug && mem.Bytes > next.MaxMemoryBytes)
                    next = next with { MaxMemoryBytes = Math.Max(next.MaxMemoryBytes, VmConfigRules.DefaultMaxMemory(mem.Bytes, long.MaxValue)) };
                next = next with { MemoryBytes = mem.Bytes };
            }
            if (options.Cpus is { } cpus)
                next = next with { Cpus = cpus, MaxCpus = Math.Max(next.MaxCpus, cpus) };
            if (options.CpuMask is { } cm)
                next = next with { CpuMask = cm.Length == 0 ? null : cm };
            if (options.CpuLimitPercent is { } cl)
                next = next with { CpuLimitPercent = cl == 0 ? null : cl };
            if (options.CdromImagePath is { } cd)
                next = next with { CdromImagePath = cd.Length == 0 ? null : Path.GetFullPath(cd) };
            if (options.KernelCommandLine is { } append)
            {
                if (c.KernelPath is null)
                    throw new ArgumentException("The VM boots no kernel directly; a kernel command line does not apply.", nameof(options));
                next = next with { KernelCommandLine = append };
            }

            if (s.Runtime is { } rt)
            {
                if (options.Cpus is { } n && n > c.MaxCpus)
                    throw new InvalidStateException($"The VM '{c.Name}' can hotplug at most {c.MaxCpus} vCPUs while it runs; stop it to raise the maximum.");
                rt = await ApplyMemoryLiveAsync(s, rt, next, options.MemorySize?.Bytes, ct).ConfigureAwait(false);
                if (options.Cpus is { } want && want > rt.Cpus)
                    rt = await HotplugCpusAsync(s, rt, want, next.CpuMask, ct).ConfigureAwait(false);
                if (options.CpuLimitPercent is not null)
                {
                    if (!rt.InCgroup)
                        rt = rt with { InCgroup = JoinCgroup(s.Id, rt.Pid, next.CpuLimitPercent) };
                    else
                        Cgroups.Open(s.Id).SetCpuLimit(next.CpuLimitPercent);
                }
                if (options.CpuMask is not null)
                    await ApplyCpuMaskAsync(s, next.CpuMask ?? "0-" + Inv(Environment.ProcessorCount - 1), ct).ConfigureAwait(false);
                s.Runtime = rt;
                await WriteRuntimeAsync(s.Paths, rt, ct).ConfigureAwait(false);
            }
            s.Config = next;
            await WriteConfigAsync(s.Paths, next, ct).ConfigureAwait(false);
            return ToInfo(s, await QueryStateAsync(s, ct).ConfigureAwait(false));
        }, cancellationToken);
    }

    private async Task<VmRuntime> ApplyMemoryLiveAsync(VmSession s, VmRuntime rt, VmConfig next, long? newMemory, CancellationToken ct)
    {
        var plugged = rt.BaseMemoryBytes + rt.Dimms.Sum(d => d.SizeBytes);
        var target = newMemory ?? rt.TargetMemoryBytes;
        // Validate the change before anything else; then admission: a raised guarantee must fit the host first.
        var (dimm, balloon) = newMemory is null ? (0L, target) : VmConfigRules.PlanMemoryChange(s.Config, plugged, rt.Dimms.Count, target);
        await _ledger.ReserveAsync(s.Id, VeKind.Vm, target * next.MemoryGuaranteePercent / 100, Overhead(plugged + dimm), ct).ConfigureAwait(false);
        if (newMemory is null)
            return rt;
        try
        {
            var dimms = rt.Dimms;
            var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                if (dimm > 0)
                {
                    var id = "dimm" + Inv(Enumerable.Range(0, 1024).First(i => rt.Dimms.All(d => d.Id != "dimm" + Inv(i))));
                    await qmp.ExecuteAsync("object-add", new JsonObject { ["qom-type"] = "memory-backend-ram", ["id"] = "mem-" + id, ["size"] = dimm }, QmpTimeout, ct).ConfigureAwait(false);
                    try
                    {
                        await qmp.ExecuteAsync("device_add", new JsonObject { ["driver"] = "pc-dimm", ["id"] = id, ["memdev"] = "mem-" + id }, QmpTimeout, ct).ConfigureAwait(false);
                    }
                    catch (QmpException ex)
                    {
                        try { await qmp.ExecuteAsync("object-del", new JsonObject { ["id"] = "mem-" + id }, QmpTimeout, ct).ConfigureAwait(false); }
                        catch (QmpException) { }
                        throw new InvalidStateException($"The VM '{s.Config.Name}' refused a {ByteSize.FromBytes(dimm).ToHumanString()} DIMM: {ex.Description}", ex);
                    }
                    dimms = [.. rt.Dimms, new VmDimm(id, dimm)];
                    _logger.LogDebug("VM {Name}: plugged DIMM {Id} of {Size} bytes", s.Config.Name, id, dimm);
                    // Recorded at once: the DIMM stays plugged even if the balloon call below fails.
                    s.Runtime = rt = rt with { Dimms = dimms };
                    await WriteRuntimeAsync(s.Paths, rt, ct).ConfigureAwait(false);
                }
                await qmp.ExecuteAsync("balloon", new JsonObject { ["value"] = balloon }, QmpTimeout, ct).ConfigureAwait(false);
            }
            return rt with { Dimms = dimms, TargetMemoryBytes = balloon };
        }
        catch
        {
            // Put the reservation back to what the VM still has.
            var now = rt.BaseMemoryBytes + rt.Dimms.Sum(d => d.SizeBytes);
            await _ledger.ReserveAsync(s.Id, VeKind.Vm, rt.TargetMemoryBytes * s.Config.MemoryGuaranteePercent / 100, Overhead(now), CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    private async Task<VmRuntime> HotplugCpusAsync(VmSession s, VmRuntime rt, int want, string? mask, CancellationToken ct)
    {
        var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
        await using (qmp.ConfigureAwait(false))
        {
            var slots = (await qmp.ExecuteAsync("query-hotpluggable-cpus", null, QmpTimeout, ct).ConfigureAwait(false))?.AsArray() ?? [];
            var free = slots.OfType<JsonObject>().Where(o => o["qom-path"] is null)
                .OrderBy(o => o["props"]?["socket-id"]?.GetValue<int>() ?? 0).ThenBy(o => o["props"]?["core-id"]?.GetValue<int>() ?? 0)
                .ToList();
            var add = want - rt.Cpus;
            if (free.Count < add)
                throw new InvalidStateException($"The VM '{s.Config.Name}' has only {free.Count} free vCPU slots.");
            foreach (var slot in free.Take(add))
            {
                var cpu = new VmHotplugCpu("vcpu" + Guid.NewGuid().ToString("N")[..8], slot["type"]!.GetValue<string>(),
                    slot["props"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<long>()));
                var args = new JsonObject { ["driver"] = cpu.Driver, ["id"] = cpu.Id };
                foreach (var (k, v) in cpu.Properties)
                    args[k] = v;
                await qmp.ExecuteAsync("device_add", args, QmpTimeout, ct).ConfigureAwait(false);
                rt = rt with { HotplugCpus = [.. rt.HotplugCpus, cpu] };
                s.Runtime = rt;
                await WriteRuntimeAsync(s.Paths, rt, ct).ConfigureAwait(false);
            }
        }
        // The guest sees new vCPUs offline: bring them online through the guest tools (best effort: a guest without
        // them, or one that onlines CPUs itself, still gets the vCPUs).
        try
        {
            using var agentLock = await AgentLockAsync(s.Config.Id, ct, LocalTimeouts.GuestToolsLock).ConfigureAwait(false);
            var agent = await GuestAgentClient.ConnectAsync(s.Paths.AgentSocket, TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
            await using (agent.ConfigureAwait(false))
            {
                for (var attempt = 0; attempt < 20; attempt++)
                {
                    var vcpus = await agent.GetVcpusAsync(AgentTimeout, ct).ConfigureAwait(false);
                    var offline = vcpus.Where(v => !v.Online).ToList();
                    if (vcpus.Count >= want && offline.Count == 0)
                        break;
                    if (offline.Count > 0)
                        await agent.SetVcpusAsync(offline.Select(v => v with { Online = true }), AgentTimeout, ct).ConfigureAwait(false);
                    await Task.Delay(100, ct).ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (ex is VirtuozzoException or TimeoutException)
        {
            _logger.LogDebug("VM {Name}: could not online new vCPUs through the guest tools: {Error}", s.Config.Name, ex.Message);
        }
        if (mask is not null)
            await ApplyCpuMaskAsync(s, mask, ct).ConfigureAwait(false);
        return rt with { Cpus = want };
    }

    // ------------------------------------------------------------------ disks

    /// <summary>Adds a new (or copied) QCOW2 disk to a VM; a running VM gets it hotplugged.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --device-add hdd --size SIZE</c>.</remarks>
    public Task<VmDiskInfo> AddDiskAsync(string nameOrId, VmDiskOptions disk, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(disk);
        if (disk.Size is null && disk.SourceImagePath is null)
            throw new ArgumentException("A disk needs a size or a source image.", nameof(disk));
        var ct = cancellationToken;
        return WithVmAsync(nameOrId, async s =>
        {
            var free = Enumerable.Range(0, QemuCommandLine.MaxDisks).Where(i => s.Config.Disks.All(d => d.Name != "hdd" + Inv(i))).ToList();
            if (free.Count == 0)
                throw new InsufficientResourcesException($"The VM '{s.Config.Name}' already has {QemuCommandLine.MaxDisks} disks, the most it can have.");
            var name = "hdd" + Inv(free[0]);
            var d = await MakeDiskAsync(s.Paths, name, disk, ct).ConfigureAwait(false);
            var path = s.Paths.DiskPath(d);
            try
            {
                if (s.Runtime is not null)
                {
                    var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
                    await using (qmp.ConfigureAwait(false))
                    {
                        await qmp.ExecuteAsync("blockdev-add", new JsonObject
                        {
                            ["driver"] = "qcow2",
                            ["node-name"] = name + "-fmt",
                            ["file"] = new JsonObject { ["driver"] = "file", ["node-name"] = name + "-file", ["filename"] = path },
                        }, QmpTimeout, ct).ConfigureAwait(false);
                        try
                        {
                            await qmp.ExecuteAsync("device_add", new JsonObject { ["driver"] = "virtio-blk-pci", ["drive"] = name + "-fmt", ["id"] = name, ["addr"] = QemuCommandLine.DiskSlot(name) }, QmpTimeout, ct).ConfigureAwait(false);
                        }
                        catch (QmpException)
                        {
                            await qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = name + "-fmt" }, QmpTimeout, ct).ConfigureAwait(false);
                            throw;
                        }
                    }
                }
                s.Config = s.Config with { Disks = [.. s.Config.Disks, d] };
                await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            }
            catch
            {
                File.Delete(path);
                throw;
            }
            return new VmDiskInfo(d.Name, path, Core.ByteSize.FromBytes(d.SizeBytes));
        }, cancellationToken);
    }

    /// <summary>Removes a disk from a VM (unplugging it from a running VM) and deletes its image.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --device-del hddN</c>.</remarks>
    public Task RemoveDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(diskName);
        var ct = cancellationToken;
        return WithVmAsync<bool>(nameOrId, async s =>
        {
            var d = FindDisk(s, diskName);
            if (s.Runtime is not null)
            {
                var events = await QmpClient.ConnectAsync(s.Paths.EventSocket, TimeSpan.FromSeconds(10), ct, _logger).ConfigureAwait(false);
                await using (events.ConfigureAwait(false))
                {
                    var deleted = events.WaitForEventAsync("DEVICE_DELETED", e => e.Data["device"]?.GetValue<string>() == d.Name, TimeSpan.FromSeconds(30), ct);
                    await QmpAsync(s, "device_del", new JsonObject { ["id"] = d.Name }, ct).ConfigureAwait(false);
                    try
                    {
                        await deleted.ConfigureAwait(false);
                    }
                    catch (TimeoutException ex)
                    {
                        throw new InvalidStateException($"The guest of '{s.Config.Name}' did not release the disk {d.Name} within 30 s (it must support ACPI PCI hotplug).", ex);
                    }
                }
                await QmpAsync(s, "blockdev-del", new JsonObject { ["node-name"] = d.Name + "-fmt" }, ct).ConfigureAwait(false);
            }
            s.Config = s.Config with { Disks = s.Config.Disks.Where(x => x.Name != d.Name).ToList() };
            await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            File.Delete(s.Paths.DiskPath(d));
            return true;
        }, cancellationToken);
    }

    /// <summary>Grows a disk of a VM, online (the guest sees the new size at once) or offline. Shrinking is refused.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --device-set hddN --size SIZE</c> and <c>prl_disk_tool resize</c>.</remarks>
    /// <summary>
    /// Refused: the local runtime does not compact disks. Rewriting the image (a convert that skips zero clusters) would
    /// drop its internal snapshots and the dirty bitmaps incremental backups start from.
    /// </summary>
    public Task<VmDiskInfo> CompactDiskAsync(string nameOrId, string diskName, CancellationToken cancellationToken = default)
        => throw new UnsupportedOnHostException(
            "Disk compaction (CompactDiskAsync) is not supported by the local runtime; prl_disk_tool compact is a Virtuozzo node's tool " +
            "(the Virtuozzo runtime maps it). Nothing was changed.");

    public Task<VmDiskInfo> ResizeDiskAsync(string nameOrId, string diskName, ByteSize newSize, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(diskName);
        if (newSize.Bytes <= 0 || newSize.Bytes % ByteSize.MiB != 0)
            throw new ArgumentOutOfRangeException(nameof(newSize), newSize, "A disk's size must be a positive whole number of MiB.");
        var ct = cancellationToken;
        return WithVmAsync(nameOrId, async s =>
        {
            var d = FindDisk(s, diskName);
            if (newSize.Bytes < d.SizeBytes)
                throw new ArgumentOutOfRangeException(nameof(newSize), newSize, $"The disk {d.Name} has {ByteSize.FromBytes(d.SizeBytes).ToHumanString()}; shrinking a disk is not supported.");
            // Change tracking does not survive a resize (images with persistent bitmaps cannot be resized): the
            // bitmaps go, and the next backup is full because the disk was resized.
            var reason = $"the disk was resized from {ByteSize.FromBytes(d.SizeBytes).ToHumanString()} to {newSize.ToHumanString()}";
            if (s.Runtime is not null)
            {
                var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
                await using (qmp.ConfigureAwait(false))
                {
                    await ChangeTracking.RemoveBitmapsAsync(qmp, d.Name + "-fmt", ct).ConfigureAwait(false);
                    await qmp.ExecuteAsync("block_resize", new JsonObject { ["node-name"] = d.Name + "-fmt", ["size"] = newSize.Bytes }, TimeSpan.FromSeconds(60), ct).ConfigureAwait(false);
                }
            }
            else
            {
                RemoveTrackingBitmaps(s.Paths.DiskPath(d));
                await _disks.ResizeAsync(s.Paths.DiskPath(d), newSize.Bytes, ct).ConfigureAwait(false);
            }
            s.Config = WithTrackingReset(s.Config, d.Name, reason);
            var updated = d with { SizeBytes = newSize.Bytes };
            s.Config = s.Config with { Disks = s.Config.Disks.Select(x => x.Name == d.Name ? updated : x).ToList() };
            await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            return new VmDiskInfo(d.Name, s.Paths.DiskPath(d), newSize);
        }, cancellationToken);
    }

    private static VmDiskConfig FindDisk(VmSession s, string name)
        => s.Config.Disks.FirstOrDefault(d => d.Name == name)
           ?? throw new NotFoundException($"The VM '{s.Config.Name}' has no disk '{name}' (it has: {string.Join(", ", s.Config.Disks.Select(d => d.Name))}).");

    // ------------------------------------------------------------------ suspend

    /// <summary>
    /// Suspends a running VM to a state file in its private directory and ends its process; the next start (or
    /// <see cref="ResumeAsync"/>) continues the guest where it was. Releases the memory guarantee meanwhile.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl suspend NAME</c>.</remarks>
    public Task SuspendAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var ct = cancellationToken;
        return WithVmAsync<bool>(nameOrId, async s =>
        {
            RequireRunning(s);
            const string file = "suspended.sav";
            var path = Path.Combine(s.Paths.PrivateDirectory, file);
            var tmp = path + ".partial";
            File.Delete(tmp);
            var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                await qmp.ExecuteAsync("stop", null, QmpTimeout, ct).ConfigureAwait(false);
                try
                {
                    await qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = "exec:cat > " + QemuCommandLine.ShellQuote(tmp) }, QmpTimeout, ct).ConfigureAwait(false);
                    while (true)
                    {
                        var st = (await qmp.ExecuteAsync("query-migrate", null, QmpTimeout, ct).ConfigureAwait(false))?["status"]?.GetValue<string>();
                        if (st == "completed")
                            break;
                        if (st is "failed" or "cancelled")
                            throw new InvalidStateException($"Saving the state of '{s.Config.Name}' failed ({st}); the VM stays paused.");
                        await Task.Delay(50, ct).ConfigureAwait(false);
                    }
                }
                catch
                {
                    File.Delete(tmp);
                    throw;
                }
            }
            File.Move(tmp, path, overwrite: true);
            var rt = s.Runtime!;
            s.Config = s.Config with
            {
                SuspendedStateFile = file,
                SuspendedHardware = new VmSuspendedHardware(rt.BaseMemoryBytes, rt.Dimms, rt.Cpus, rt.TargetMemoryBytes, rt.HotplugCpus, rt.BootCpus),
            };
            await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
            await KillProcessAsync(s.Runtime!.Pid, CancellationToken.None).ConfigureAwait(false);
            await CleanUpAfterExitAsync(s.Id, s.Paths, CancellationToken.None).ConfigureAwait(false);
            s.Runtime = null;
            return true;
        }, cancellationToken);
    }
}
