using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Containers.Runtime.Local;

/// <summary>
/// The local runtime's container driver: a container's private area is a QCOW2 disk holding ext4; while the container
/// runs, qemu-storage-daemon exports the disk through FUSE, the SDK loop-mounts it as the root file system and runc runs
/// its init in namespaces and cgroups the SDK owns. All state lives in the data root, so another process using the SDK
/// sees and manages the same containers. Operations on one container hold its lock; different containers proceed in parallel.
/// </summary>
internal sealed partial class LocalContainerDriver : IContainerDriver
{
    private readonly VirtuozzoRuntime _runtime;
    private readonly IVirtuozzoHost _host;
    private readonly StateStore _store;
    private readonly VeRegistry _registry;
    private readonly ResourceLedger _ledger;
    private readonly TemplateStore _templates;
    private readonly HostBridge _bridge;
    private readonly Runc _runc;
    private readonly ILogger _logger;

    public LocalContainerDriver(VirtuozzoRuntime runtime)
    {
        if (runtime.Kind != RuntimeKind.Local)
            throw new UnsupportedOnHostException($"The local container driver cannot drive a {runtime.Kind} runtime.");
        _runtime = runtime;
        _host = runtime.Host;
        _store = runtime.Store;
        _registry = runtime.Registry;
        _ledger = runtime.Ledger;
        _templates = new TemplateStore(_host, _store);
        _bridge = runtime.Bridge;
        _runc = new Runc(_host, Path.Combine(_store.RunDirectory, "runc"));
        _logger = runtime.CreateLogger<LocalContainerDriver>();
    }

    public VeKind Kind => VeKind.Container;

    internal StateStore Store => _store;

    internal VeRegistry Registry => _registry;

    internal IVirtuozzoHost Host => _host;

    internal CgroupManager Cgroups => _runtime.Cgroups;


    internal string ConfigPath(VeId id) => Path.Combine(_store.PrivatePath(id), "container.json");

    internal string DiskPath(VeId id) => Path.Combine(_store.PrivatePath(id), "root.qcow2");

    internal StorageDaemonPaths DaemonPaths(VeId id)
    {
        var run = _store.RunPath(id);
        return new StorageDaemonPaths(DiskPath(id), Path.Combine(run, "disk.raw"), Path.Combine(run, "qsd.sock"), Path.Combine(run, "qsd.pid"));
    }

    // ---------------------------------------------------------------------------------------------------------
    // Create, list, info
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>Creates a stopped container from an OS template, with its own thin QCOW2 disk.</summary>
    /// <remarks>The equivalent of <c>prlctl create NAME --vmtype ct --ostemplate TEMPLATE</c>.</remarks>
    /// <exception cref="AlreadyExistsException">The name is used by another container or VM.</exception>
    /// <exception cref="NotFoundException">The template does not exist.</exception>
    public async Task<ContainerInfo> CreateAsync(ContainerCreateOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        OciSpec.Validate(options.Resources, HostMemoryBytes);
        var hostname = OciSpec.ValidateHostname(options.Hostname ?? options.Name.Value);
        await ValidateAddressesAsync(options.Name.Value, null, options.IpAddresses, cancellationToken).ConfigureAwait(false);
        foreach (var ns in options.Nameservers)
        {
            if (!System.Net.IPAddress.TryParse(ns, out _))
                throw new ArgumentException($"'{ns}' is not an IP address.", nameof(options));
        }
        var security = options.Security ?? throw new ArgumentException("Security may not be null: leave it out for the defaults.", nameof(options));
        SyscallProfile.ValidateNames(security.AllowedSyscalls ?? throw new ArgumentException("AllowedSyscalls may not be null.", nameof(options)));
        if (!Enum.IsDefined(security.SyscallFilter))
            throw new ArgumentOutOfRangeException(nameof(options), security.SyscallFilter, "SyscallFilter is Default or Unconfined.");
        var (manifest, tarball) = await _templates.GetAsync(options.Template, cancellationToken).ConfigureAwait(false);

        var id = VeId.New();
        await _registry.RegisterAsync(id, options.Name, VeKind.Container, cancellationToken).ConfigureAwait(false);
        try
        {
            using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
            var r = options.Resources;
            long? userIdStart = security.Privileged ? null : (await AllocateIdRangeAsync(id, null, cancellationToken).ConfigureAwait(false)).Start;
            var config = new ContainerConfig
            {
                UserIdStart = userIdStart,
                SyscallFilter = security.SyscallFilter == ContainerSyscallFilter.Unconfined ? ContainerConfig.UnconfinedFilter : ContainerConfig.DefaultFilter,
                AllowedSyscalls = [.. security.AllowedSyscalls.Distinct(StringComparer.Ordinal)],
                Template = manifest.Name,
                Hostname = hostname,
                MemSizeBytes = r.MemorySize.Bytes,
                SwapBytes = r.Swap.Bytes,
                MemGuaranteePercent = r.MemoryGuaranteePercent,
                Cpus = r.Cpus,
                CpuLimit = r.CpuLimitPercent,
                CpuUnits = r.CpuUnits,
                CpuMask = r.CpuMask,
                DiskSpaceBytes = r.DiskSpace.Bytes,
                Pids = r.MaxProcesses,
                IpAddresses = [.. options.IpAddresses],
                Nameservers = [.. options.Nameservers],
                Autostart = options.Autostart,
                Init = manifest.Init,
                StopSignal = manifest.StopSignal,
            };
            var systemd = await BuildDiskAsync(id, tarball, r.DiskSpace.Bytes, userIdStart ?? 0, manifest.Init[0], cancellationToken).ConfigureAwait(false);
            if (systemd && userIdStart is null)
                throw new ArgumentException($"The template {manifest.Name} boots systemd, which needs CAP_SYS_ADMIN: such containers run unprivileged (in a user namespace of their own). Leave Security.Privileged false.", nameof(options));
            config = config with { Systemd = systemd };
            await _store.WriteDocumentAsync(ConfigPath(id), config, ContainersJson.Default.ContainerConfig, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await UserIdRanges.ReleaseAsync(id, _store.DataRoot, CancellationToken.None).ConfigureAwait(false);
            await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The host's RAM (no container may be given more memory than the host has).</summary>
    private static long HostMemoryBytes => Core.Internal.HostProber.ParseMemTotal(File.ReadAllText("/proc/meminfo"));

    /// <summary>
    /// Refuses addresses a container cannot use: malformed, special (the bridge's own, its subnet's network and broadcast
    /// addresses, loopback, multicast…), repeated, or already configured on another container.
    /// </summary>
    private async Task ValidateAddressesAsync(string name, VeId? self, IReadOnlyList<string> addresses, CancellationToken ct)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var a in addresses)
        {
            if (_bridge.ProblemWithVeAddress(a) is { } problem)
                throw new ArgumentException($"The address {a} cannot be given to {name}: {problem}", nameof(addresses));
            if (!seen.Add(a.Split('/')[0]))
                throw new ArgumentException($"The address {a} is listed twice for {name}.", nameof(addresses));
        }
        if (seen.Count == 0)
            return;
        foreach (var other in await _registry.ListAsync(ct, VeKind.Container).ConfigureAwait(false))
        {
            if (other.VeId == self)
                continue;
            var config = await _store.ReadDocumentAsync(ConfigPath(other.VeId), ContainersJson.Default.ContainerConfig, ContainerConfig.CurrentVersion, ct).ConfigureAwait(false);
            var clash = config?.IpAddresses.FirstOrDefault(a => seen.Contains(a.Split('/')[0]));
            if (clash is not null)
                throw new AlreadyExistsException($"The address {clash.Split('/')[0]} is already configured on container {other.Name}; addresses are unique across the host's VEs.");
        }
    }

    /// <summary>
    /// The id range of container <paramref name="id"/>: the one it has, else <paramref name="preferred"/> when free, else a
    /// new one. Its private directory exists first, so that the host's registry never takes the range for a leftover.
    /// </summary>
    private Task<UserIdRange> AllocateIdRangeAsync(VeId id, long? preferred, CancellationToken ct)
    {
        Directory.CreateDirectory(_store.PrivatePath(id));
        return UserIdRanges.AllocateAsync(id, _store.DataRoot, preferred, ct);
    }

    /// <returns>True when the template's init is systemd.</returns>
    private async Task<bool> BuildDiskAsync(VeId id, string tarball, long size, long userIdStart, string init, CancellationToken ct)
    {
        var work = Path.Combine(_store.PrivatePath(id), ".build");
        try
        {
            var rootfs = Path.Combine(work, "rootfs");
            await _templates.ExtractAsync(tarball, rootfs, ct).ConfigureAwait(false);
            var systemd = TemplateStore.IsSystemd(rootfs, init);
            // An unprivileged container's files belong to its id range: shifted once, here, before the file system is made.
            OwnershipShift.Shift(rootfs, userIdStart, ct);
            var raw = Path.Combine(work, "root.raw");
            using (var f = new FileStream(raw, FileMode.CreateNew))
                f.SetLength(size);
            var owner = userIdStart.ToString(CultureInfo.InvariantCulture);
            await _host.ExecuteAsync(new Command("mkfs.ext4").WithArguments("-q", "-F", "-L", "vzroot", "-E", $"root_owner={owner}:{owner}", "-d", rootfs, raw)
                .WithTimeout(LocalTimeouts.FileSystemBuild), ct).ConfigureAwait(false);
            await Qcow2Converter.ConvertAsync(raw, DiskPath(id), new Qcow2ConvertOptions { SourceFormat = "raw", OutputFormat = "qcow2" }, cancellationToken: ct).ConfigureAwait(false);
            return systemd;
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); }
            catch (IOException) { }
        }
    }

    /// <summary>Lists containers: all of them, or only the running ones.</summary>
    /// <remarks>The equivalent of <c>prlctl list [-a] --vmtype ct</c>.</remarks>
    public async Task<IReadOnlyList<ContainerInfo>> ListAsync(bool all = true, CancellationToken cancellationToken = default)
    {
        var list = new List<ContainerInfo>();
        foreach (var identity in await _registry.ListAsync(cancellationToken, VeKind.Container).ConfigureAwait(false))
        {
            var info = await InfoAsync(identity, cancellationToken).ConfigureAwait(false);
            if (info is not null && (all || info.State is VeState.Running or VeState.Suspended))
                list.Add(info);
        }
        return list;
    }

    /// <summary>Gets a container by name or UUID.</summary>
    /// <remarks>The equivalent of <c>prlctl list -i NAME</c>.</remarks>
    /// <exception cref="NotFoundException">No such container.</exception>
    public async Task<ContainerInfo> GetAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var identity = await _registry.GetAsync(nameOrId, VeKind.Container, cancellationToken).ConfigureAwait(false);
        return await InfoAsync(identity, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException($"Container '{nameOrId}' is being created or deleted.");
    }

    private async Task<ContainerInfo?> InfoAsync(VeIdentity identity, CancellationToken ct)
    {
        var id = identity.VeId;
        var config = await _store.ReadDocumentAsync(ConfigPath(id), ContainersJson.Default.ContainerConfig, ContainerConfig.CurrentVersion, ct).ConfigureAwait(false);
        if (config is null)
            return null;
        var state = await StateOfAsync(id, ct).ConfigureAwait(false);
        // A disk mounted while an operation holds the container's lock is a start, stop or mount under way, not a
        // mounted container: say so instead of reporting the transient state.
        if (state == VeState.Mounted && _store.IsVeLocked(id))
            state = VeState.Busy;
        else if (state == VeState.Suspended && File.Exists(_store.FrozenByBackupMarker(id)) && !_store.IsVeLocked(id))
            state = await ThawAfterDeadBackupAsync(id, ct).ConfigureAwait(false);
        var r = config.ToResources();
        return new ContainerInfo
        {
            Id = id,
            Name = new VeName(identity.Name),
            Kind = VeKind.Container,
            State = state,
            Template = config.Template,
            Hostname = config.Hostname,
            IpAddresses = config.IpAddresses,
            Resources = r,
            Security = new ContainerSecurityOptions
            {
                Privileged = config.UserIdStart is null,
                SyscallFilter = config.SyscallFilter == ContainerConfig.UnconfinedFilter ? ContainerSyscallFilter.Unconfined : ContainerSyscallFilter.Default,
                AllowedSyscalls = config.AllowedSyscalls,
            },
            HostIdStart = config.UserIdStart,
            Autostart = config.Autostart,
            CreatedAt = identity.CreatedAt,
            Cpus = r.Cpus,
            CpuLimitPercent = r.CpuLimitPercent,
            CpuMask = r.CpuMask,
            MemorySize = r.MemorySize,
            MemoryGuaranteePercent = r.MemoryGuaranteePercent,
            DiskSize = r.DiskSpace,
        };
    }

    /// <summary>
    /// A container frozen by a backup that died before thawing it (its marker is there and no operation holds the lock):
    /// thaws it now rather than report it suspended until the backup's guardian gets to it, and returns its state.
    /// </summary>
    private async Task<VeState> ThawAfterDeadBackupAsync(VeId id, CancellationToken ct)
    {
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        var marker = _store.FrozenByBackupMarker(id);
        if (File.Exists(marker))
        {
            _logger.LogWarning("Container {Id} was left frozen by a backup that did not finish; thawing it", id);
            await ThawRootAsync(id).ConfigureAwait(false);
            Cgroups.Open(id).Thaw();
            File.Delete(marker);
        }
        for (var i = 0; i < 50; i++)
        {
            var state = await StateOfAsync(id, ct).ConfigureAwait(false);
            if (state != VeState.Suspended)
                return state;
            await Task.Delay(StopPollInterval, ct).ConfigureAwait(false); // the freezer reports THAWING for a moment
        }
        return VeState.Suspended;
    }

    internal async Task<VeState> StateOfAsync(VeId id, CancellationToken ct)
    {
        var status = await _runc.StatusAsync(id, ct).ConfigureAwait(false);
        return status switch
        {
            "running" or "created" => VeState.Running,
            "paused" => VeState.Suspended,
            _ when StorageDaemon.IsMounted(_store.RootPath(id)) => VeState.Mounted,
            _ => HasCheckpoint(id) ? VeState.Suspended : VeState.Stopped,
        };
    }

    private async Task<(VeIdentity Identity, ContainerConfig Config)> LoadAsync(string nameOrId, CancellationToken ct)
    {
        var identity = await _registry.GetAsync(nameOrId, VeKind.Container, ct).ConfigureAwait(false);
        var config = await _store.ReadDocumentAsync(ConfigPath(identity.VeId), ContainersJson.Default.ContainerConfig, ContainerConfig.CurrentVersion, ct).ConfigureAwait(false)
            ?? throw new NotFoundException($"Container '{nameOrId}' has no configuration (it is being created or deleted).");
        return (identity, config);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Start, stop, suspend
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>Starts a stopped container. A failed start rolls back completely.</summary>
    /// <remarks>The equivalent of <c>prlctl start NAME</c>.</remarks>
    /// <exception cref="InvalidStateException">It is already running, suspended or mounted.</exception>
    /// <exception cref="InsufficientResourcesException">Its memory guarantee cannot be admitted.</exception>
    public async Task<ContainerInfo> StartAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            if (state == VeState.Suspended && HasCheckpoint(id) && await _runc.StatusAsync(id, cancellationToken).ConfigureAwait(false) is null)
            {
                await RestoreFromCheckpointLockedAsync(id, identity, config, cancellationToken).ConfigureAwait(false); // suspended to disk: start = restore
            }
            else
            {
                VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Start);
                await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false); // leftovers of a crash, if any
                await StartLockedAsync(id, identity, config, cancellationToken).ConfigureAwait(false);
            }
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    private async Task StartLockedAsync(VeId id, VeIdentity identity, ContainerConfig config, CancellationToken ct, Func<string, string, Task>? launch = null)
    {
        var guarantee = config.ToResources().GuaranteeBytes;
        await _ledger.ReserveAsync(id, VeKind.Container, guarantee, 0, ct).ConfigureAwait(false);
        try
        {
            var run = _store.RunPath(id);
            Directory.CreateDirectory(run);
            var cgroup = Cgroups.Create(id);
            var daemon = DaemonPaths(id);
            await StorageDaemon.StartAsync(_host, daemon, cgroup, ct).ConfigureAwait(false);
            await GrowFileSystemOfflineAsync(daemon.ExportPath, ct).ConfigureAwait(false);
            var root = _store.RootPath(id);
            Directory.CreateDirectory(root);
            await _host.ExecuteAsync(new Command("mount").WithArguments("-o", "loop", daemon.ExportPath, root), ct).ConfigureAwait(false);
            config = await PrepareOwnershipAsync(id, identity, config, root, ct).ConfigureAwait(false);
            await WriteGuestFilesAsync(root, config, _logger, ct).ConfigureAwait(false);
            var userIds = config.UserIdStart is { } start ? new UserIdRange(start, UserIdRanges.PerContainer) : (UserIdRange?)null;
            var netns = await _bridge.CreateVeNamespaceAsync(id, config.IpAddresses, ct, userIds).ConfigureAwait(false);
            var bundle = Path.Combine(run, "bundle");
            Directory.CreateDirectory(bundle);
            var spec = OciSpec.Build(config, root, netns, Cgroups.RelativePath(id, CgroupRole.Payload), HostBridge.UserNamespacePath(id));
            await File.WriteAllTextAsync(Path.Combine(bundle, "config.json"), spec.ToJsonString(), ct).ConfigureAwait(false);
            if (config.Systemd && config.UserIdStart is { } owner)
                Cgroups.Delegate(id, owner);
            if (launch is not null)
                await launch(bundle, run).ConfigureAwait(false);
            else
            {
                await _runc.RunDetachedAsync(id, bundle, Path.Combine(run, "init.pid"), Path.Combine(run, "console.log"), ct).ConfigureAwait(false);
                await ConfirmStartedAsync(id, identity, config, Path.Combine(run, "console.log"), ct).ConfigureAwait(false);
            }
            _logger.LogDebug("Container {Name} ({Id}) started", identity.Name, id);
        }
        catch
        {
            await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Makes the mounted file system at <paramref name="root"/> belong to the container's id range before it starts: the
    /// range is confirmed in the host's registry (a container that came from another host, or from a backup, gets a new
    /// one when its old range is taken here — recorded in its configuration), and files still owned by another range (a
    /// clone's, a restored copy's, a template's) are moved to it. A privileged container's files are moved back to the
    /// host's ids the same way.
    /// </summary>
    private async Task<ContainerConfig> PrepareOwnershipAsync(VeId id, VeIdentity identity, ContainerConfig config, string root, CancellationToken ct)
    {
        if (config.UserIdStart is { } wanted)
        {
            var range = await AllocateIdRangeAsync(id, wanted, ct).ConfigureAwait(false);
            if (range.Start != wanted)
            {
                _logger.LogInformation("Container {Name} ({Id}): its id range at {Old} is taken on this host; it moves to {New}", identity.Name, id, wanted, range.Start);
                config = config with { UserIdStart = range.Start };
                await _store.WriteDocumentAsync(ConfigPath(id), config, ContainersJson.Default.ContainerConfig, ct).ConfigureAwait(false);
            }
        }
        var target = config.UserIdStart ?? 0;
        if (OwnershipShift.RangeOf(root) != target)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var changed = OwnershipShift.Shift(root, target, ct);
            _logger.LogInformation("Container {Name} ({Id}): {Count} files moved to the id range at {Start} in {Elapsed} ms", identity.Name, id, changed, target, watch.ElapsedMilliseconds);
        }
        return config;
    }

    /// <summary>
    /// Makes sure the init the start just launched lives: an init that exits at once (a template whose init cannot run)
    /// fails the start with its console output, and the caller rolls it back — never "running". A systemd container's
    /// start also waits, up to <see cref="LocalTimeouts.SystemdBoot"/>, for the boot to finish (<c>running</c>, or
    /// <c>degraded</c> with the failed units logged).
    /// </summary>
    private async Task ConfirmStartedAsync(VeId id, VeIdentity identity, ContainerConfig config, string consoleLog, CancellationToken ct)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var window = config.Systemd ? LocalTimeouts.SystemdBoot : TimeSpan.FromMilliseconds(60);
        while (true)
        {
            var status = await _runc.StatusAsync(id, ct).ConfigureAwait(false);
            if (status is not ("running" or "created" or "paused"))
            {
                await Task.Delay(50, CancellationToken.None).ConfigureAwait(false); // the console's reader may still be writing
                var output = File.Exists(consoleLog) ? string.Join(" | ", File.ReadLines(consoleLog).TakeLast(10)) : string.Empty;
                throw new CommandFailedException(
                    $"The init of container {identity.Name} ({string.Join(' ', config.Init)}) exited {watch.Elapsed.TotalSeconds:0.0} s after it started, so the container did not start. " +
                    $"Its console: {(output.Length > 0 ? output : "(empty)")}", string.Join(' ', config.Init), -1, output);
            }
            if (config.Systemd)
            {
                var state = (await _host.ExecuteBufferedAsync(_runc.Exec(id, new VeExecOptions { Command = ["systemctl", "is-system-running"] })
                    .WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(10)), ct).ConfigureAwait(false)).StandardOutput.Trim();
                if (state == "running")
                    return;
                if (state == "degraded")
                {
                    var failed = (await _host.ExecuteBufferedAsync(_runc.Exec(id, new VeExecOptions { Command = ["systemctl", "--failed", "--no-legend", "--plain"] })
                        .WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(10)), ct).ConfigureAwait(false)).StandardOutput;
                    _logger.LogWarning("Container {Name} booted degraded; failed units: {Units}", identity.Name,
                        string.Join(", ", failed.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ', 2)[0])));
                    return;
                }
            }
            if (watch.Elapsed >= window)
            {
                if (config.Systemd)
                    _logger.LogWarning("Container {Name} is still booting after {Seconds} s; the start returns while it goes on", identity.Name, window.TotalSeconds);
                return;
            }
            await Task.Delay(config.Systemd ? 200 : 30, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Grows the ext4 file system to the disk's size when the disk grew while the file system could not (offline resize).</summary>
    private async Task GrowFileSystemOfflineAsync(string device, CancellationToken ct)
    {
        var info = await _host.ExecuteBufferedAsync(new Command("dumpe2fs").WithArguments("-h", device).WithValidation(CommandResultValidation.None), ct).ConfigureAwait(false);
        long blocks = 0, blockSize = 0;
        foreach (var line in info.StandardOutput.Split('\n'))
        {
            var parts = line.Split(':', 2, StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && parts[0] == "Block count") long.TryParse(parts[1], CultureInfo.InvariantCulture, out blocks);
            if (parts.Length == 2 && parts[0] == "Block size") long.TryParse(parts[1], CultureInfo.InvariantCulture, out blockSize);
        }
        var diskSize = new FileInfo(device).Length;
        if (blocks == 0 || blockSize == 0 || blocks * blockSize + 4 * blockSize * 1024 > diskSize)
            return; // unknown, or already (nearly) the disk's size
        await _host.ExecuteAsync(new Command("e2fsck").WithArguments("-f", "-p", device).WithValidation(CommandResultValidation.None).WithTimeout(LocalTimeouts.FileSystemRepair), ct).ConfigureAwait(false);
        await _host.ExecuteAsync(new Command("resize2fs").WithArguments(device).WithTimeout(LocalTimeouts.FileSystemRepair), ct).ConfigureAwait(false);
    }

    private static async Task WriteGuestFilesAsync(string root, ContainerConfig config, ILogger logger, CancellationToken ct)
    {
        var etc = Path.Combine(root, "etc");
        // The container owns its file system: a symlinked /etc could point the SDK (running as root) at host files.
        if (new DirectoryInfo(etc) is { Exists: true, LinkTarget: not null } || (File.Exists(etc) && new FileInfo(etc).LinkTarget is not null))
            return;
        if (!Directory.Exists(etc))
        {
            Directory.CreateDirectory(etc);
            GiveToContainerRoot(etc, config);
        }
        // Never follow a symlink planted inside the container: replace it with a regular file.
        await WriteRegularFileAsync(Path.Combine(etc, "hostname"), config.Hostname + "\n", logger, ct).ConfigureAwait(false);
        var hosts = new StringBuilder("127.0.0.1 localhost\n::1 localhost\n");
        foreach (var a in config.IpAddresses)
            hosts.Append(a.Split('/')[0]).Append(' ').Append(config.Hostname).Append('\n');
        await WriteRegularFileAsync(Path.Combine(etc, "hosts"), hosts.ToString(), logger, ct).ConfigureAwait(false);
        if (config.Nameservers.Count > 0)
            await WriteRegularFileAsync(Path.Combine(etc, "resolv.conf"), string.Concat(config.Nameservers.Select(n => $"nameserver {n}\n")), logger, ct).ConfigureAwait(false);
        foreach (var file in new[] { "hostname", "hosts", "resolv.conf" })
        {
            if (config.Nameservers.Count > 0 || file != "resolv.conf")
                GiveToContainerRoot(Path.Combine(etc, file), config);
        }
    }

    /// <summary>A file the SDK writes into a container belongs to the container's root (its host id when unprivileged).</summary>
    private static void GiveToContainerRoot(string path, ContainerConfig config)
    {
        var root = (uint)(config.UserIdStart ?? 0);
        _ = Core.Internal.Native.Lchown(path, root, root);
    }

    private static async Task WriteRegularFileAsync(string path, string content, ILogger logger, CancellationToken ct)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is null && Directory.Exists(path))
        {
            // The guest made a directory of a file the SDK writes: keep its content aside (nothing of the guest's is
            // deleted) and write the file, so that the container starts.
            var aside = $"{path}.vzsdk-moved-{DateTime.UtcNow:yyyyMMddHHmmss}";
            Directory.Move(path, aside);
            logger.LogWarning("{Path} in the container was a directory; it was moved to {Aside} so that the SDK could write the file", path, aside);
        }
        else if (info.Exists || info.LinkTarget is not null)
            File.Delete(path);
        await File.WriteAllTextAsync(path, content, ct).ConfigureAwait(false);
    }

    private static Task<string> LoopDeviceAsync(string mountPoint)
        => StorageDaemon.MountSource(mountPoint) is { Length: > 0 } device
            ? Task.FromResult(device)
            : throw new InvalidStateException($"Nothing is mounted at {mountPoint}.");

    /// <summary>Thaws the container's root file system if it is frozen (<c>fsfreeze -f</c>); does nothing when it is not mounted or not frozen.</summary>
    private async Task ThawRootAsync(VeId id)
    {
        var root = _store.RootPath(id);
        if (!StorageDaemon.IsMounted(root))
            return;
        try
        {
            await _host.ExecuteAsync(new Command("fsfreeze").WithArguments("-u", root).WithValidation(CommandResultValidation.None), CancellationToken.None).ConfigureAwait(false);
        }
        catch (ToolNotFoundException)
        {
            // without util-linux's fsfreeze nothing here froze it
        }
    }

    /// <summary>Removes everything a running (or crashed) container holds: the runtime, the mount, the disk daemon, network, cgroups and its guarantee.</summary>
    private async Task TeardownAsync(VeId id, CancellationToken ct)
    {
        await UnmountUnderAsync(CriuWorkDirectory(id)).ConfigureAwait(false); // before anything below deletes the run directory

        await _runc.DeleteAsync(id, ct).ConfigureAwait(false);
        await ThawRootAsync(id).ConfigureAwait(false);
        var root = _store.RootPath(id);
        for (var i = 0; i < 20 && StorageDaemon.IsMounted(root); i++)
        {
            var r = await _host.ExecuteAsync(new Command("umount").WithArguments(root).WithValidation(CommandResultValidation.None), ct).ConfigureAwait(false);
            if (r.ExitCode != 0)
                await Task.Delay(100, ct).ConfigureAwait(false);
        }
        if (StorageDaemon.IsMounted(root))
            await _host.ExecuteAsync(new Command("umount").WithArguments("-l", root).WithValidation(CommandResultValidation.None), ct).ConfigureAwait(false);
        await StorageDaemon.StopAsync(_host, DaemonPaths(id), ct).ConfigureAwait(false);
        await _bridge.DeleteVeNamespaceAsync(id, ct).ConfigureAwait(false);
        if (Cgroups.Exists(id))
            await Cgroups.DeleteAsync(id, ct).ConfigureAwait(false);
        await _ledger.ReleaseAsync(id, ct).ConfigureAwait(false);
        var run = _store.RunPath(id);
        if (Directory.Exists(run))
        {
            try { Directory.Delete(run, recursive: true); }
            catch (IOException) { }
        }
        try
        {
            if (Directory.Exists(root) && !StorageDaemon.IsMounted(root))
                Directory.Delete(root);
        }
        catch (IOException) { }
    }

    /// <summary>
    /// Stops a container: the template's stop signal to its init, up to <see cref="VeStopOptions.Timeout"/>, then
    /// SIGKILL to every process; or SIGKILL at once with <see cref="VeStopOptions.Kill"/>. Stopping a stopped
    /// container does nothing.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME [--kill]</c>.</remarks>
    public async Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new VeStopOptions();
        options.Validate();
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Stop);
            if (state == VeState.Suspended && await _runc.StatusAsync(id, cancellationToken).ConfigureAwait(false) is null && DiscardCheckpoint(id))
                return VeStopMethod.Killed; // suspended to disk: stopping discards the saved processes
            return await StopLockedAsync(id, config, options, cancellationToken).ConfigureAwait(false);
        }
    }

    // teardown = false keeps the disk mounted and its storage daemon running (a restart migration copies the last delta from it).
    private async Task<VeStopMethod> StopLockedAsync(VeId id, ContainerConfig config, VeStopOptions options, CancellationToken ct, bool teardown = true)
    {
        var method = VeStopMethod.AlreadyStopped;
        var status = await _runc.StatusAsync(id, ct).ConfigureAwait(false);
        if (status == "paused")
            await _runc.ResumeAsync(id, ct).ConfigureAwait(false);
        if (status is "running" or "paused" or "created")
        {
            // a root left frozen (fsfreeze) by a backup that died with its guardian would keep every process that
            // writes to it in uninterruptible sleep: no signal would stop them and the unmount would fail
            await ThawRootAsync(id).ConfigureAwait(false);
            if (!options.Kill)
            {
                await _runc.KillAsync(id, config.StopSignal, all: false, ct).ConfigureAwait(false);
                var deadline = DateTime.UtcNow + (options.Timeout ?? VeStopOptions.DefaultContainerTimeout);
                while (DateTime.UtcNow < deadline && await _runc.StatusAsync(id, ct).ConfigureAwait(false) is "running" or "created")
                    await Task.Delay(StopPollInterval, ct).ConfigureAwait(false);
                method = VeStopMethod.Signal;
            }
            if (await _runc.StatusAsync(id, ct).ConfigureAwait(false) is "running" or "created" or "paused")
            {
                method = VeStopMethod.Killed;
                await _runc.KillAsync(id, "KILL", all: true, ct).ConfigureAwait(false);
                for (var i = 0; i < 100 && await _runc.StatusAsync(id, ct).ConfigureAwait(false) is "running" or "created"; i++)
                    await Task.Delay(50, ct).ConfigureAwait(false);
            }
        }
        if (teardown)
            await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
        return method;
    }

    /// <summary>How often a stop looks whether the container's init has exited.</summary>
    private static readonly TimeSpan StopPollInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>Stops (if running) and starts a container.</summary>
    /// <remarks>The equivalent of <c>prlctl restart NAME</c>.</remarks>
    public async Task<ContainerInfo> RestartAsync(string nameOrId, VeStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        (options ??= new VeStopOptions()).Validate();
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            VeTransitions.Require(VeKind.Container, identity.Name, await StateOfAsync(id, cancellationToken).ConfigureAwait(false), VeVerb.Restart);
            await StopLockedAsync(id, config, options, cancellationToken).ConfigureAwait(false);
            await StartLockedAsync(id, identity, config, cancellationToken).ConfigureAwait(false);
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Freezes every process of a running container; <see cref="ResumeAsync"/> continues them.</summary>
    /// <remarks>The equivalent of <c>prlctl suspend NAME</c> (here the freezer cgroup; memory stays in RAM).</remarks>
    public async Task<ContainerInfo> SuspendAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        using (await _store.LockVeAsync(identity.VeId, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
            VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Suspend);
            File.Delete(_store.FrozenByBackupMarker(identity.VeId)); // a dead backup's marker must not thaw this suspension later
            await _runc.PauseAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
        }
        return await GetAsync(identity.Id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Continues a suspended container.</summary>
    /// <remarks>The equivalent of <c>prlctl resume NAME</c>.</remarks>
    public async Task<ContainerInfo> ResumeAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        using (await _store.LockVeAsync(identity.VeId, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
            VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Resume);
            if (HasCheckpoint(identity.VeId) && await _runc.StatusAsync(identity.VeId, cancellationToken).ConfigureAwait(false) is null)
            {
                var (_, config) = await LoadAsync(identity.Id, cancellationToken).ConfigureAwait(false);
                await RestoreFromCheckpointLockedAsync(identity.VeId, identity, config, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await _runc.ResumeAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
            }
        }
        return await GetAsync(identity.Id, cancellationToken).ConfigureAwait(false);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Exec
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Runs a program inside a running container (the argument vector as is, no shell) and returns its exit code.
    /// Output streams to the given streams as it is produced, or is buffered into the result.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl exec NAME CMD…</c>. A program that is not found exits 127; not executable, 126.</remarks>
    /// <exception cref="InvalidStateException">The container is not running.</exception>
    public async Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var state = await StateOfAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
        VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Exec);

        var stdout = new MemoryStream();
        var stderr = new MemoryStream();
        using var filter = options.StandardError is { } callerErr ? new ExecFailure.FilterStream(callerErr) : null;
        var command = _runc.Exec(identity.VeId, options)
            .WithStandardOutputPipe(PipeTarget.ToStream(options.StandardOutput ?? stdout))
            .WithStandardErrorPipe(PipeTarget.ToStream(new TeeStream(filter ?? (Stream)stderr, stderr)))
            .WithTimeout(options.Timeout);
        if (options.StandardInput is not null)
            command = command.WithStandardInput(options.StandardInput);
        var result = await _host.ExecuteAsync(command, cancellationToken).ConfigureAwait(false);
        filter?.Flush();
        var errText = Encoding.UTF8.GetString(stderr.ToArray());
        var exit = result.ExitCode;
        if (ExecFailure.Classify(exit, errText) is { } failure)
        {
            // The OCI runtime could not start the program: say so in plain words, as a shell would, instead of its log line.
            exit = failure.ExitCode;
            errText = $"{options.EffectiveCommand[0]}: {failure.Reason}\n";
            options.StandardError?.Write(Encoding.UTF8.GetBytes(errText));
        }
        return new VeExecResult(exit,
            options.StandardOutput is null ? Encoding.UTF8.GetString(stdout.ToArray()) : string.Empty,
            options.StandardError is null ? errText : string.Empty);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Set, clone, rename, delete, mount
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>
    /// Changes a container's resources: applied live while it runs (memory, swap, CPU, pids, disk growth) and persisted
    /// always. A raised guarantee goes through the resource ledger first; if refused, nothing changes.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --memsize … --cpus … --diskspace …</c>.</remarks>
    /// <summary>Refused: the local runtime does not compact disks.</summary>
    public Task CompactDiskAsync(string nameOrId, CancellationToken cancellationToken)
        => throw new UnsupportedOnHostException(
            "Disk compaction (CompactDiskAsync) is not supported by the local runtime; vzctl compact is a Virtuozzo node's tool " +
            "(the Virtuozzo runtime maps it). Nothing was changed.");

    public async Task<ContainerInfo> SetAsync(string nameOrId, ContainerSetOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            config = (await _store.ReadDocumentAsync(ConfigPath(id), ContainersJson.Default.ContainerConfig, ContainerConfig.CurrentVersion, cancellationToken).ConfigureAwait(false))!;
            var updated = config with
            {
                MemSizeBytes = options.MemorySize?.Bytes ?? config.MemSizeBytes,
                SwapBytes = options.Swap?.Bytes ?? config.SwapBytes,
                MemGuaranteePercent = options.MemoryGuaranteePercent ?? config.MemGuaranteePercent,
                Cpus = options.Cpus is { } c ? (c == 0 ? null : c) : config.Cpus,
                CpuLimit = options.CpuLimitPercent is { } l ? (l == 0 ? null : l) : config.CpuLimit,
                CpuUnits = options.CpuUnits ?? config.CpuUnits,
                CpuMask = options.CpuMask is { } m ? (m.Length == 0 ? null : m) : config.CpuMask,
                DiskSpaceBytes = options.DiskSpace?.Bytes ?? config.DiskSpaceBytes,
                Pids = options.MaxProcesses ?? config.Pids,
                Hostname = options.Hostname is { } h ? OciSpec.ValidateHostname(h) : config.Hostname,
                Autostart = options.Autostart ?? config.Autostart,
            };
            OciSpec.Validate(updated.ToResources(), HostMemoryBytes);
            if (updated.DiskSpaceBytes < config.DiskSpaceBytes)
                throw new InvalidStateException($"The disk of {identity.Name} is {new ByteSize(config.DiskSpaceBytes)} and cannot shrink to {new ByteSize(updated.DiskSpaceBytes)}: container disks only grow.");

            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            var running = state is VeState.Running or VeState.Suspended;
            if (running)
            {
                var guarantee = updated.ToResources().GuaranteeBytes;
                if (guarantee != config.ToResources().GuaranteeBytes)
                    await _ledger.ReserveAsync(id, VeKind.Container, guarantee, 0, cancellationToken).ConfigureAwait(false);
                var cg = Cgroups.Open(id);
                await cg.ApplyMemoryLimitAsync(updated.MemSizeBytes, updated.SwapBytes, TimeSpan.FromSeconds(15), cancellationToken).ConfigureAwait(false);
                cg.SetCpuLimit(updated.EffectiveCpuPercent);
                cg.SetCpuUnits(updated.CpuUnits);
                if (updated.CpuMask != config.CpuMask)
                    cg.SetCpuMask(updated.CpuMask ?? File.ReadAllText("/sys/fs/cgroup/cpuset/cpuset.cpus").Trim());
                cg.SetPidsLimit(updated.Pids);
                if (updated.Hostname != config.Hostname)
                    await ApplyHostnameLiveAsync(id, updated, cancellationToken).ConfigureAwait(false);
            }
            if (updated.DiskSpaceBytes > config.DiskSpaceBytes)
                await GrowDiskAsync(id, updated.DiskSpaceBytes, state, cancellationToken).ConfigureAwait(false);
            await _store.WriteDocumentAsync(ConfigPath(id), updated, ContainersJson.Default.ContainerConfig, cancellationToken).ConfigureAwait(false);
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A running container gets a new host name at once: its <c>/etc/hostname</c> and <c>/etc/hosts</c>, and the name of its UTS namespace.</summary>
    private async Task ApplyHostnameLiveAsync(VeId id, ContainerConfig config, CancellationToken ct)
    {
        await WriteGuestFilesAsync(_store.RootPath(id), config, _logger, ct).ConfigureAwait(false);
        if (await _runc.InitPidAsync(id, ct).ConfigureAwait(false) is { } pid)
            await _host.ExecuteAsync(new Command("nsenter").WithArguments("--target", pid.ToString(CultureInfo.InvariantCulture), "--uts", "hostname", config.Hostname), ct).ConfigureAwait(false);
    }

    private async Task GrowDiskAsync(VeId id, long size, VeState state, CancellationToken ct)
    {
        // Change tracking cannot survive a resize (QEMU refuses to resize images with persistent bitmaps): the bitmaps
        // go, and the next backup is full because the disk was resized.
        if (state == VeState.Stopped)
        {
            using var image = Qcow2Image.Open(DiskPath(id));
            foreach (var b in image.Bitmaps.ToList())
                image.RemoveBitmap(b.Name);
            image.Resize(size);
            image.Flush();
            return; // the file system grows at the next start (resize2fs runs there)
        }
        var qmp = await StorageDaemon.ConnectAsync(DaemonPaths(id), ct).ConfigureAwait(false);
        await using (qmp.ConfigureAwait(false))
        {
            foreach (var b in await StorageDaemon.QueryBitmapsAsync(qmp, ct).ConfigureAwait(false))
                await qmp.ExecuteAsync("block-dirty-bitmap-remove", new System.Text.Json.Nodes.JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = b["name"]!.GetValue<string>() }, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
            await qmp.ExecuteAsync("block_resize", new System.Text.Json.Nodes.JsonObject { ["node-name"] = StorageDaemon.DiskNode, ["size"] = size }, LocalTimeouts.MonitorBlockCommand, ct).ConfigureAwait(false);
        }
        var loop = await LoopDeviceAsync(_store.RootPath(id)).ConfigureAwait(false);
        await _host.ExecuteAsync(new Command("losetup").WithArguments("-c", loop), ct).ConfigureAwait(false);
        // Online ext4 growth needs CAP_SYS_RESOURCE; without it (some sandboxes) the disk still grows now and the
        // file system follows at the next start, offline.
        var r = await _host.ExecuteBufferedAsync(new Command("resize2fs").WithArguments(loop).WithValidation(CommandResultValidation.None).WithTimeout(LocalTimeouts.FileSystemRepair), ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
        {
            if (r.StandardError.Contains("Permission denied", StringComparison.Ordinal))
                _logger.LogWarning("The disk of container {Id} grew to {Size}; its file system grows at the next start (online ext4 resize needs CAP_SYS_RESOURCE)", id, new ByteSize(size));
            else
                throw new CommandFailedException($"resize2fs {loop} failed: {r.StandardError.Trim()}", "resize2fs " + loop, r.ExitCode, r.StandardError.Trim());
        }
    }

    /// <summary>True when this process may grow a mounted ext4 file system (CAP_SYS_RESOURCE).</summary>
    internal static bool CanResizeOnline()
    {
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
        return line is not null && (ulong.Parse(line[7..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & (1UL << 24)) != 0;
    }

    /// <summary>Copies a stopped container (its disk and configuration) under a new name. Addresses are not copied.</summary>
    /// <remarks>The equivalent of <c>prlctl clone NAME --name NEW</c>.</remarks>
    public async Task<ContainerInfo> CloneAsync(string nameOrId, VeName newName, CancellationToken cancellationToken = default)
    {
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var newId = VeId.New();
        using (await _store.LockVeAsync(identity.VeId, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
            VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Clone);
            await _registry.RegisterAsync(newId, newName, VeKind.Container, cancellationToken).ConfigureAwait(false);
            try
            {
                await Qcow2Converter.ConvertAsync(DiskPath(identity.VeId), DiskPath(newId), new Qcow2ConvertOptions { SourceFormat = "qcow2", OutputFormat = "qcow2" }, cancellationToken: cancellationToken).ConfigureAwait(false);
                var cloned = config with { Hostname = config.Hostname == identity.Name ? newName.Value : config.Hostname, IpAddresses = [], Autostart = false };
                // A clone has ids of its own: its files move to them at its first start.
                if (config.UserIdStart is not null)
                    cloned = cloned with { UserIdStart = (await AllocateIdRangeAsync(newId, null, cancellationToken).ConfigureAwait(false)).Start };
                await _store.WriteDocumentAsync(ConfigPath(newId), cloned, ContainersJson.Default.ContainerConfig, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await UserIdRanges.ReleaseAsync(newId, _store.DataRoot, CancellationToken.None).ConfigureAwait(false);
                await _registry.UnregisterAsync(newId, CancellationToken.None).ConfigureAwait(false);
                throw;
            }
        }
        return await GetAsync(newId.ToString(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Renames a container (running or not).</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --name NEW</c>.</remarks>
    public async Task<ContainerInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken = default)
    {
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        using (await _store.LockVeAsync(identity.VeId, cancellationToken).ConfigureAwait(false))
            await _registry.RenameAsync(identity.VeId, newName, cancellationToken).ConfigureAwait(false);
        return await GetAsync(identity.Id, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Deletes a container and everything it has: a running container is killed first; nothing is left mounted,
    /// running, or on disk. Returns false when there was no such container (deleting twice is harmless).
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl delete NAME</c>.</remarks>
    public async Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var identity = await _registry.FindAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (identity is null)
            return false;
        if (identity.Kind != VeKind.Container)
            throw new NotFoundException($"'{nameOrId}' is a VM, not a container.");
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            // Another delete may have held the lock first: only one of them deletes (and reports it).
            if (await _registry.FindAsync(id.ToString(), cancellationToken).ConfigureAwait(false) is null)
                return false;
            if (await _runc.StatusAsync(id, cancellationToken).ConfigureAwait(false) is "paused")
                await _runc.ResumeAsync(id, cancellationToken).ConfigureAwait(false);
            await _runc.KillAsync(id, "KILL", all: true, cancellationToken).ConfigureAwait(false);
            await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
            await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
            await UserIdRanges.ReleaseAsync(id, _store.DataRoot, CancellationToken.None).ConfigureAwait(false);
        }
        return true;
    }

    /// <summary>Mounts a stopped container's disk on the host at the returned path (to inspect or repair its files).</summary>
    /// <remarks>The equivalent of <c>prlctl mount NAME</c>.</remarks>
    public async Task<string> MountAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Mount);
            try
            {
                Directory.CreateDirectory(_store.RunPath(id));
                var daemon = DaemonPaths(id);
                await StorageDaemon.StartAsync(_host, daemon, Cgroups.Create(id), cancellationToken).ConfigureAwait(false);
                Directory.CreateDirectory(_store.RootPath(id));
                await _host.ExecuteAsync(new Command("mount").WithArguments("-o", "loop", daemon.ExportPath, _store.RootPath(id)), cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
                throw;
            }
        }
        return _store.RootPath(id);
    }

    /// <summary>Unmounts a mounted container's disk.</summary>
    /// <remarks>The equivalent of <c>prlctl umount NAME</c>.</remarks>
    public async Task UnmountAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        using (await _store.LockVeAsync(identity.VeId, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
            VeTransitions.Require(VeKind.Container, identity.Name, state, VeVerb.Unmount);
            await TeardownAsync(identity.VeId, CancellationToken.None).ConfigureAwait(false);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Templates, autostart, reconciliation
    // ---------------------------------------------------------------------------------------------------------

    /// <summary>Lists the OS templates (the busybox template is built on first use).</summary>
    public async Task<IReadOnlyList<ContainerTemplate>> ListTemplatesAsync(CancellationToken cancellationToken = default)
    {
        await _templates.EnsureBusyboxAsync(cancellationToken).ConfigureAwait(false);
        return await _templates.ListAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Imports a root file system tarball as an OS template (replacing one of the same name).</summary>
    public Task<ContainerTemplate> ImportTemplateAsync(ContainerTemplateImportOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return _templates.ImportAsync(options, cancellationToken);
    }

    /// <summary>Builds an OS template from a distribution's packages (debootstrap).</summary>
    public Task<ContainerTemplate> CreateTemplateAsync(ContainerTemplateCreateOptions options, CancellationToken cancellationToken)
        => _templates.BuildAsync(options, cancellationToken);

    /// <summary>Rebuilds a template from its recipe.</summary>
    public Task<ContainerTemplate> UpdateTemplateAsync(string name, CancellationToken cancellationToken)
        => _templates.UpdateAsync(name, cancellationToken);

    /// <summary>Sets a user's password through the container's own chpasswd; the password goes through its standard input only.</summary>
    public async Task SetUserPasswordAsync(string nameOrId, string user, string password, CancellationToken cancellationToken)
    {
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var state = await StateOfAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
        if (state != VeState.Running)
            throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; passwords are set in a running container (start it first).");
        using var input = new MemoryStream(Encoding.UTF8.GetBytes($"{user}:{password}\n"));
        var r = await ExecAsync(identity.VeId.ToString(), new VeExecOptions { Command = ["chpasswd"], StandardInput = input, Timeout = TimeSpan.FromSeconds(60) }, cancellationToken).ConfigureAwait(false);
        if (r.ExitCode != 0)
        {
            var why = r.StandardError.Replace(password, "***", StringComparison.Ordinal).Trim();
            throw new CommandFailedException($"Container {identity.Name} refused the password of '{user}': {why}", "chpasswd", r.ExitCode, why);
        }
    }

    /// <summary>Starts every stopped container marked for autostart; returns those started. One failure does not stop the others.</summary>
    public async Task<IReadOnlyList<ContainerInfo>> StartAutostartAsync(CancellationToken cancellationToken = default)
    {
        await ReconcileAsync(cancellationToken).ConfigureAwait(false);
        var started = new List<ContainerInfo>();
        foreach (var c in await ListAsync(true, cancellationToken).ConfigureAwait(false))
        {
            if (!c.Autostart || c.State != VeState.Stopped)
                continue;
            try
            {
                started.Add(await StartAsync(c.Id.ToString(), cancellationToken).ConfigureAwait(false));
            }
            catch (VirtuozzoException ex)
            {
                _logger.LogWarning(ex, "Autostart of container {Name} failed", c.Name);
            }
        }
        return started;
    }

    /// <summary>
    /// Cleans up after a crash or reboot: for every container that is not running, removes leftover mounts, disk
    /// daemons, network links and cgroups; removes cgroups and links of containers that no longer exist; removes
    /// temp files of dead writers. Running containers, and containers a live process migrates out or in, are left alone;
    /// a migration whose process was killed is finished (the container restored on the source, or removed from the
    /// destination). Returns how many leftovers were removed.
    /// </summary>
    public async Task<int> ReconcileAsync(CancellationToken cancellationToken = default)
    {
        var removed = (await _store.ReconcileAsync(cancellationToken).ConfigureAwait(false)).Removed.Count;
        var known = (await _registry.ListAsync(cancellationToken).ConfigureAwait(false)).ToDictionary(i => i.VeId);
        foreach (var (id, identity) in known)
        {
            if (identity.Kind != VeKind.Container)
                continue;
            using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
            var recovery = await RecoverInterruptedMigrationLockedAsync(id, cancellationToken).ConfigureAwait(false);
            if (recovery == MigrationRecovery.InProgress)
                continue; // a live process migrates it (out, or in): its storage daemon serves the copy and must stay
            if (recovery != MigrationRecovery.None)
            {
                removed++;
                continue;
            }
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            if (state is VeState.Running or VeState.Suspended or VeState.Mounted)
                continue;
            if (StorageDaemon.RunningPid(DaemonPaths(id)) is not null || Cgroups.Exists(id) || Directory.Exists(_store.RunPath(id)))
            {
                await TeardownAsync(id, cancellationToken).ConfigureAwait(false);
                removed++;
            }
        }
        foreach (var orphan in Cgroups.ListVeIds().Where(i => !known.ContainsKey(i)))
        {
            await Cgroups.DeleteAsync(orphan, cancellationToken).ConfigureAwait(false);
            removed++;
        }
        return removed;
    }

    /// <summary>A stream that writes to two streams (stream the caller's way and keep a copy for error mapping).</summary>
    private sealed class TeeStream(Stream first, Stream second) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { first.Flush(); if (!ReferenceEquals(first, second)) second.Flush(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count)
        {
            first.Write(buffer, offset, count);
            if (!ReferenceEquals(first, second))
                second.Write(buffer, offset, count);
        }
    }
}
