using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Cgroups;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Network;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Qemu;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Containers;

/// <summary>
/// Manages system containers: isolated sets of processes with their own PID, mount, UTS, IPC, network and cgroup
/// namespaces, their own QCOW2 disk, and memory, CPU and process limits. The equivalent of <c>prlctl</c> for containers.
/// </summary>
/// <remarks>
/// On the local runtime a container's private area is a QCOW2 disk holding ext4. While the container runs, the disk is
/// exported to the host and loop-mounted as its root file system, and an OCI runtime runs its init. All state lives in
/// the data root, so another process using the SDK sees and manages the same containers.
/// Operations on one container are serialised (per-container lock); different containers proceed in parallel.
/// </remarks>
public sealed class ContainerClient
{
    /// <summary>The built-in template made from the host's busybox-static.</summary>
    public const string BusyboxTemplate = "busybox";

    private readonly IVirtuozzoHost _host;
    private readonly StateStore _store;
    private readonly VeRegistry _registry;
    private readonly ResourceLedger _ledger;
    private readonly TemplateStore _templates;
    private readonly HostBridge _bridge;
    private readonly Runc _runc;
    private readonly ILogger _logger;
    private CgroupManager? _cgroups;

    internal StateStore Store => _store;

    internal VeRegistry Registry => _registry;

    internal IVirtuozzoHost Host => _host;

    /// <summary>Creates a client for the local machine.</summary>
    /// <param name="options">Data root, bridge and locking options; null for the defaults.</param>
    /// <param name="loggerFactory">Receives the commands the client runs, at Debug level.</param>
    /// <exception cref="UnsupportedOnHostException">The options name a remote host: containers run on the local runtime.</exception>
    public ContainerClient(VirtuozzoSdkOptions? options = null, ILoggerFactory? loggerFactory = null)
        : this(options ?? new VirtuozzoSdkOptions(), new LocalHost(loggerFactory?.CreateLogger<LocalHost>()), null, loggerFactory)
    {
    }

    internal ContainerClient(VirtuozzoSdkOptions options, IVirtuozzoHost host, ResourceLedger? ledger, ILoggerFactory? loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = options.Validate();
        if (errors.Count > 0)
            throw new ArgumentException(string.Join(" ", errors), nameof(options));
        if (!host.IsLocal || options.RemoteHost is not null)
            throw new UnsupportedOnHostException("Containers run on the local runtime: a remote host is not supported by ContainerClient yet.");
        _host = host;
        _store = new StateStore(options.DataRoot, options.LockTimeout);
        _registry = new VeRegistry(_store);
        _ledger = ledger ?? new ResourceLedger(_store, ResourceLedger.LocalCapacity(options));
        _templates = new TemplateStore(host, _store);
        _bridge = new HostBridge(host, options.BridgeName, options.BridgeAddress, options.BridgeNat);
        _runc = new Runc(host, Path.Combine(_store.RunDirectory, "runc"));
        _logger = (ILogger?)loggerFactory?.CreateLogger<ContainerClient>() ?? NullLogger.Instance;
    }

    internal CgroupManager Cgroups => _cgroups ??= CgroupManager.Detect();

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
        OciSpec.Validate(options.Resources);
        var hostname = OciSpec.ValidateHostname(options.Hostname ?? options.Name.Value);
        foreach (var a in options.IpAddresses)
            HostBridge.ValidateAddress(a);
        foreach (var ns in options.Nameservers)
        {
            if (!System.Net.IPAddress.TryParse(ns, out _))
                throw new ArgumentException($"'{ns}' is not an IP address.", nameof(options));
        }
        var (manifest, tarball) = await _templates.GetAsync(options.Template, cancellationToken).ConfigureAwait(false);

        var id = VeId.New();
        await _registry.RegisterAsync(id, options.Name, VeKind.Container, cancellationToken).ConfigureAwait(false);
        try
        {
            using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
            var r = options.Resources;
            var config = new ContainerConfig
            {
                Template = manifest.Name,
                Hostname = hostname,
                MemSizeBytes = r.MemSize.Bytes,
                SwapBytes = r.Swap.Bytes,
                MemGuaranteePercent = r.MemGuaranteePercent,
                Cpus = r.Cpus,
                CpuLimit = r.CpuLimit,
                CpuUnits = r.CpuUnits,
                CpuMask = r.CpuMask,
                DiskSpaceBytes = r.DiskSpace.Bytes,
                Pids = r.Pids,
                IpAddresses = [.. options.IpAddresses],
                Nameservers = [.. options.Nameservers],
                Autostart = options.Autostart,
                Init = manifest.Init,
                StopSignal = manifest.StopSignal,
            };
            await BuildDiskAsync(id, tarball, r.DiskSpace.Bytes, cancellationToken).ConfigureAwait(false);
            await _store.WriteDocumentAsync(ConfigPath(id), config, ContainersJson.Default.ContainerConfig, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    private async Task BuildDiskAsync(VeId id, string tarball, long size, CancellationToken ct)
    {
        var work = Path.Combine(_store.PrivatePath(id), ".build");
        try
        {
            var rootfs = Path.Combine(work, "rootfs");
            await _templates.ExtractAsync(tarball, rootfs, ct).ConfigureAwait(false);
            var raw = Path.Combine(work, "root.raw");
            using (var f = new FileStream(raw, FileMode.CreateNew))
                f.SetLength(size);
            await _host.ExecuteAsync(new Command("mkfs.ext4").WithArguments("-q", "-F", "-L", "vzroot", "-E", "root_owner=0:0", "-d", rootfs, raw)
                .WithTimeout(TimeSpan.FromMinutes(20)), ct).ConfigureAwait(false);
            await Qcow2Converter.ConvertAsync(raw, DiskPath(id), new Qcow2ConvertOptions { SourceFormat = "raw", OutputFormat = "qcow2" }, cancellationToken: ct).ConfigureAwait(false);
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
            if (info is not null && (all || info.State is ContainerState.Running or ContainerState.Suspended))
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
        return new ContainerInfo(id, new VeName(identity.Name), state, config.Template, config.Hostname, config.IpAddresses, config.ToResources(), config.Autostart, identity.CreatedAt);
    }

    internal async Task<ContainerState> StateOfAsync(VeId id, CancellationToken ct)
    {
        var status = await _runc.StatusAsync(id, ct).ConfigureAwait(false);
        return status switch
        {
            "running" or "created" => ContainerState.Running,
            "paused" => ContainerState.Suspended,
            _ => StorageDaemon.IsMounted(_store.RootPath(id)) ? ContainerState.Mounted : ContainerState.Stopped,
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
            if (state != ContainerState.Stopped)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; only a stopped container can be started.");
            await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false); // leftovers of a crash, if any
            await StartLockedAsync(id, identity, config, cancellationToken).ConfigureAwait(false);
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    private async Task StartLockedAsync(VeId id, VeIdentity identity, ContainerConfig config, CancellationToken ct)
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
            await WriteGuestFilesAsync(root, config, ct).ConfigureAwait(false);
            var netns = await _bridge.CreateVeNamespaceAsync(id, config.IpAddresses, ct).ConfigureAwait(false);
            var bundle = Path.Combine(run, "bundle");
            Directory.CreateDirectory(bundle);
            var spec = OciSpec.Build(config, root, netns, Cgroups.RelativePath(id, CgroupRole.Payload));
            await File.WriteAllTextAsync(Path.Combine(bundle, "config.json"), spec.ToJsonString(), ct).ConfigureAwait(false);
            await _runc.RunDetachedAsync(id, bundle, Path.Combine(run, "init.pid"), Path.Combine(run, "console.log"), ct).ConfigureAwait(false);
            _logger.LogDebug("Container {Name} ({Id}) started", identity.Name, id);
        }
        catch
        {
            await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
            throw;
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
        await _host.ExecuteAsync(new Command("e2fsck").WithArguments("-f", "-p", device).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromMinutes(10)), ct).ConfigureAwait(false);
        await _host.ExecuteAsync(new Command("resize2fs").WithArguments(device).WithTimeout(TimeSpan.FromMinutes(10)), ct).ConfigureAwait(false);
    }

    private static async Task WriteGuestFilesAsync(string root, ContainerConfig config, CancellationToken ct)
    {
        var etc = Path.Combine(root, "etc");
        // The container owns its file system: a symlinked /etc could point the SDK (running as root) at host files.
        if (new DirectoryInfo(etc) is { Exists: true, LinkTarget: not null } || (File.Exists(etc) && new FileInfo(etc).LinkTarget is not null))
            return;
        Directory.CreateDirectory(etc);
        // Never follow a symlink planted inside the container: replace it with a regular file.
        await WriteRegularFileAsync(Path.Combine(etc, "hostname"), config.Hostname + "\n", ct).ConfigureAwait(false);
        var hosts = new StringBuilder("127.0.0.1 localhost\n::1 localhost\n");
        foreach (var a in config.IpAddresses)
            hosts.Append(a.Split('/')[0]).Append(' ').Append(config.Hostname).Append('\n');
        await WriteRegularFileAsync(Path.Combine(etc, "hosts"), hosts.ToString(), ct).ConfigureAwait(false);
        if (config.Nameservers.Count > 0)
            await WriteRegularFileAsync(Path.Combine(etc, "resolv.conf"), string.Concat(config.Nameservers.Select(n => $"nameserver {n}\n")), ct).ConfigureAwait(false);
    }

    private static async Task WriteRegularFileAsync(string path, string content, CancellationToken ct)
    {
        var info = new FileInfo(path);
        if (info.Exists || info.LinkTarget is not null)
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
    /// Stops a container: the template's stop signal to its init, up to <see cref="ContainerStopOptions.Timeout"/>, then
    /// SIGKILL to every process; or SIGKILL at once with <see cref="ContainerStopOptions.Kill"/>. Stopping a stopped
    /// container does nothing.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME [--kill]</c>.</remarks>
    public async Task<ContainerInfo> StopAsync(string nameOrId, ContainerStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new ContainerStopOptions();
        if (options.Timeout < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(options), options.Timeout, "The stop timeout cannot be negative.");
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            if (state == ContainerState.Mounted)
                throw new InvalidStateException($"Container {identity.Name} is mounted, not running: unmount it instead.");
            await StopLockedAsync(id, config, options, cancellationToken).ConfigureAwait(false);
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    private async Task StopLockedAsync(VeId id, ContainerConfig config, ContainerStopOptions options, CancellationToken ct)
    {
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
                var deadline = DateTime.UtcNow + options.Timeout;
                while (DateTime.UtcNow < deadline && await _runc.StatusAsync(id, ct).ConfigureAwait(false) is "running" or "created")
                    await Task.Delay(50, ct).ConfigureAwait(false);
            }
            if (await _runc.StatusAsync(id, ct).ConfigureAwait(false) is "running" or "created" or "paused")
            {
                await _runc.KillAsync(id, "KILL", all: true, ct).ConfigureAwait(false);
                for (var i = 0; i < 100 && await _runc.StatusAsync(id, ct).ConfigureAwait(false) is "running" or "created"; i++)
                    await Task.Delay(50, ct).ConfigureAwait(false);
            }
        }
        await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Stops (if running) and starts a container.</summary>
    /// <remarks>The equivalent of <c>prlctl restart NAME</c>.</remarks>
    public async Task<ContainerInfo> RestartAsync(string nameOrId, ContainerStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (identity, config) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var id = identity.VeId;
        using (await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false))
        {
            if (await StateOfAsync(id, cancellationToken).ConfigureAwait(false) == ContainerState.Mounted)
                throw new InvalidStateException($"Container {identity.Name} is mounted: unmount it first.");
            await StopLockedAsync(id, config, options ?? new ContainerStopOptions(), cancellationToken).ConfigureAwait(false);
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
            if (state != ContainerState.Running)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; only a running container can be suspended.");
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
            if (state != ContainerState.Suspended)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}, not suspended.");
            await _runc.ResumeAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
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
    public async Task<ContainerExecResult> ExecAsync(string nameOrId, ContainerExecOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Arguments.Count == 0 || string.IsNullOrEmpty(options.Arguments[0]))
            throw new ArgumentException("Exec needs a program to run.", nameof(options));
        if (!options.WorkingDirectory.StartsWith('/'))
            throw new ArgumentException("The working directory must be an absolute path inside the container.", nameof(options));
        foreach (var k in options.Environment.Keys)
        {
            if (string.IsNullOrEmpty(k) || k.Contains('=', StringComparison.Ordinal))
                throw new ArgumentException($"'{k}' is not a valid environment variable name.", nameof(options));
        }
        var (identity, _) = await LoadAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var state = await StateOfAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
        if (state != ContainerState.Running)
            throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; start it (or resume it) to run commands in it.");

        var stdout = new MemoryStream();
        var stderr = new MemoryStream();
        var command = _runc.Exec(identity.VeId, options)
            .WithStandardOutputPipe(PipeTarget.ToStream(options.StandardOutput ?? stdout))
            .WithStandardErrorPipe(PipeTarget.ToStream(new TeeStream(options.StandardError ?? stderr, stderr)))
            .WithTimeout(options.Timeout);
        if (options.StandardInput is not null)
            command = command.WithStandardInput(options.StandardInput);
        var result = await _host.ExecuteAsync(command, cancellationToken).ConfigureAwait(false);
        var errText = Encoding.UTF8.GetString(stderr.ToArray());
        var exit = result.ExitCode;
        if (exit == 255 && errText.Contains("exec failed", StringComparison.Ordinal))
        {
            exit = errText.Contains("no such file or directory", StringComparison.OrdinalIgnoreCase) || errText.Contains("not found", StringComparison.OrdinalIgnoreCase) ? 127
                : errText.Contains("permission denied", StringComparison.OrdinalIgnoreCase) ? 126 : exit;
        }
        return new ContainerExecResult(exit,
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
                MemSizeBytes = options.MemSize?.Bytes ?? config.MemSizeBytes,
                SwapBytes = options.Swap?.Bytes ?? config.SwapBytes,
                MemGuaranteePercent = options.MemGuaranteePercent ?? config.MemGuaranteePercent,
                Cpus = options.Cpus is { } c ? (c == 0 ? null : c) : config.Cpus,
                CpuLimit = options.CpuLimit is { } l ? (l == 0 ? null : l) : config.CpuLimit,
                CpuUnits = options.CpuUnits ?? config.CpuUnits,
                CpuMask = options.CpuMask is { } m ? (m.Length == 0 ? null : m) : config.CpuMask,
                DiskSpaceBytes = options.DiskSpace?.Bytes ?? config.DiskSpaceBytes,
                Pids = options.Pids ?? config.Pids,
                Hostname = options.Hostname is { } h ? OciSpec.ValidateHostname(h) : config.Hostname,
                Autostart = options.Autostart ?? config.Autostart,
            };
            OciSpec.Validate(updated.ToResources());
            if (updated.DiskSpaceBytes < config.DiskSpaceBytes)
                throw new ArgumentException($"The disk of {identity.Name} cannot shrink ({new ByteSize(config.DiskSpaceBytes)} → {new ByteSize(updated.DiskSpaceBytes)}).", nameof(options));

            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            var running = state is ContainerState.Running or ContainerState.Suspended;
            if (running)
            {
                var guarantee = updated.ToResources().GuaranteeBytes;
                if (guarantee != config.ToResources().GuaranteeBytes)
                    await _ledger.ReserveAsync(id, VeKind.Container, guarantee, 0, cancellationToken).ConfigureAwait(false);
                var cg = Cgroups.Open(id);
                cg.SetMemory(updated.MemSizeBytes, updated.SwapBytes);
                cg.SetCpuLimit(updated.EffectiveCpuPercent);
                cg.SetCpuUnits(updated.CpuUnits);
                if (updated.CpuMask != config.CpuMask)
                    cg.SetCpuMask(updated.CpuMask ?? File.ReadAllText("/sys/fs/cgroup/cpuset/cpuset.cpus").Trim());
                cg.SetPidsLimit(updated.Pids);
            }
            if (updated.DiskSpaceBytes > config.DiskSpaceBytes)
                await GrowDiskAsync(id, updated.DiskSpaceBytes, state, cancellationToken).ConfigureAwait(false);
            await _store.WriteDocumentAsync(ConfigPath(id), updated, ContainersJson.Default.ContainerConfig, cancellationToken).ConfigureAwait(false);
        }
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    private async Task GrowDiskAsync(VeId id, long size, ContainerState state, CancellationToken ct)
    {
        // Change tracking cannot survive a resize (QEMU refuses to resize images with persistent bitmaps): the bitmaps
        // go, and the next backup is full because the disk was resized.
        if (state == ContainerState.Stopped)
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
                await qmp.ExecuteAsync("block-dirty-bitmap-remove", new System.Text.Json.Nodes.JsonObject { ["node"] = StorageDaemon.DiskNode, ["name"] = b["name"]!.GetValue<string>() }, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            await qmp.ExecuteAsync("block_resize", new System.Text.Json.Nodes.JsonObject { ["node-name"] = StorageDaemon.DiskNode, ["size"] = size }, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
        }
        var loop = await LoopDeviceAsync(_store.RootPath(id)).ConfigureAwait(false);
        await _host.ExecuteAsync(new Command("losetup").WithArguments("-c", loop), ct).ConfigureAwait(false);
        // Online ext4 growth needs CAP_SYS_RESOURCE; without it (some sandboxes) the disk still grows now and the
        // file system follows at the next start, offline.
        var r = await _host.ExecuteBufferedAsync(new Command("resize2fs").WithArguments(loop).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromMinutes(10)), ct).ConfigureAwait(false);
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
            if (state != ContainerState.Stopped)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; stop it to clone it.");
            await _registry.RegisterAsync(newId, newName, VeKind.Container, cancellationToken).ConfigureAwait(false);
            try
            {
                await Qcow2Converter.ConvertAsync(DiskPath(identity.VeId), DiskPath(newId), new Qcow2ConvertOptions { SourceFormat = "qcow2", OutputFormat = "qcow2" }, cancellationToken: cancellationToken).ConfigureAwait(false);
                var cloned = config with { Hostname = config.Hostname == identity.Name ? newName.Value : config.Hostname, IpAddresses = [], Autostart = false };
                await _store.WriteDocumentAsync(ConfigPath(newId), cloned, ContainersJson.Default.ContainerConfig, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
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
            if (await _runc.StatusAsync(id, cancellationToken).ConfigureAwait(false) is "paused")
                await _runc.ResumeAsync(id, cancellationToken).ConfigureAwait(false);
            await _runc.KillAsync(id, "KILL", all: true, cancellationToken).ConfigureAwait(false);
            await TeardownAsync(id, CancellationToken.None).ConfigureAwait(false);
            await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
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
            if (state != ContainerState.Stopped)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}; only a stopped container can be mounted.");
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
            if (state != ContainerState.Mounted)
                throw new InvalidStateException($"Container {identity.Name} is {state.ToString().ToLowerInvariant()}, not mounted.");
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

    /// <summary>Starts every stopped container marked for autostart; returns those started. One failure does not stop the others.</summary>
    public async Task<IReadOnlyList<ContainerInfo>> StartAutostartAsync(CancellationToken cancellationToken = default)
    {
        await ReconcileAsync(cancellationToken).ConfigureAwait(false);
        var started = new List<ContainerInfo>();
        foreach (var c in await ListAsync(true, cancellationToken).ConfigureAwait(false))
        {
            if (!c.Autostart || c.State != ContainerState.Stopped)
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
    /// temp files of dead writers. Running containers are left alone. Returns how many leftovers were removed.
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
            var state = await StateOfAsync(id, cancellationToken).ConfigureAwait(false);
            if (state is ContainerState.Running or ContainerState.Suspended or ContainerState.Mounted)
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
