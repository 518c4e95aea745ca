using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

/// <summary>
/// The local runtime's VM driver: each VM is an emulator process the SDK starts with a control socket, a guest-agent
/// channel and a serial log, its disks QCOW2 images made by the SDK's engine. Every operation on one VM holds that VM's
/// lock; memory guarantees are admitted by the runtime's <see cref="ResourceLedger"/>, the same account containers use.
/// A new process using the SDK finds running VMs again through their control sockets.
/// </summary>
internal sealed partial class LocalVmDriver : IVmDriver
{
    private static readonly TimeSpan QmpTimeout = TimeSpan.FromSeconds(15);
    private readonly VirtuozzoRuntime _runtime;
    private readonly IVirtuozzoHost _host;
    private readonly StateStore _store;
    private readonly ResourceLedger _ledger;
    private readonly VirtualMachineClientOptions _options;
    private readonly ILogger _logger;
    private readonly IDiskImages _disks;
    private readonly VeRegistry _registry;
    private readonly HostBridge _bridge;
    private HostCapabilities? _capabilities;

    public LocalVmDriver(VirtuozzoRuntime runtime, VirtualMachineClientOptions options)
    {
        if (runtime.Kind != RuntimeKind.Local)
            throw new UnsupportedOnHostException($"The local VM driver cannot drive a {runtime.Kind} runtime.");
        _runtime = runtime;
        _host = runtime.Host;
        _store = runtime.Store;
        _ledger = runtime.Ledger;
        _options = options;
        _logger = runtime.CreateLogger<LocalVmDriver>();
        _disks = new Qcow2DiskImages();
        _registry = runtime.Registry;
        _bridge = runtime.Bridge;
    }

    public VeKind Kind => VeKind.Vm;

    private CgroupManager Cgroups => _runtime.Cgroups;

    /// <summary>The resource ledger that admits this driver's memory guarantees.</summary>
    internal ResourceLedger Ledger => _ledger;

    private string Emulator => _runtime.Options.Local.EmulatorPath ?? "qemu-system-x86_64";

    private TimeSpan AgentTimeout => _options.GuestToolsTimeout;

    // ------------------------------------------------------------------ lookup

    private VmPaths PathsOf(Guid id) => new(_store.PrivatePath(new VeId(id)), _store.RunPath(new VeId(id)));

    private Task<VmConfig?> ReadConfigAsync(VmPaths paths, CancellationToken ct)
        => _store.ReadDocumentAsync(paths.ConfigFile, VmJsonContext.Default.VmConfig, VmConfig.CurrentFormatVersion, ct);

    private Task WriteConfigAsync(VmPaths paths, VmConfig config, CancellationToken ct)
        => _store.WriteDocumentAsync(paths.ConfigFile, config, VmJsonContext.Default.VmConfig, ct);

    private async Task<List<VmConfig>> ReadAllConfigsAsync(CancellationToken ct)
    {
        var list = new List<VmConfig>();
        foreach (var identity in await _registry.ListAsync(ct, VeKind.Vm).ConfigureAwait(false))
        {
            var cfg = await ReadConfigAsync(PathsOf(identity.VeId.Value), ct).ConfigureAwait(false);
            if (cfg is not null)
                list.Add(cfg with { Name = identity.Name });
        }
        return list;
    }

    private async Task<Guid> ResolveAsync(string nameOrId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        var identity = await _registry.GetAsync(nameOrId.Trim(), VeKind.Vm, ct).ConfigureAwait(false);
        if (!File.Exists(PathsOf(identity.VeId.Value).ConfigFile))
            throw new NotFoundException($"The VM '{nameOrId}' is being created or deleted by another operation.");
        return identity.VeId.Value;
    }

    /// <summary>What an operation on one VM works with, under that VM's lock.</summary>
    private sealed class VmSession(VmConfig config, VmPaths paths, VmRuntime? runtime)
    {
        public VmConfig Config { get; set; } = config;

        public VmPaths Paths { get; } = paths;

        /// <summary>The running process, or null when the VM is not running.</summary>
        public VmRuntime? Runtime { get; set; } = runtime;

        public VeId Id => new(Config.Id);
    }

    private async Task<T> WithVmAsync<T>(string nameOrId, Func<VmSession, Task<T>> operation, CancellationToken ct)
    {
        var id = await ResolveAsync(nameOrId, ct).ConfigureAwait(false);
        using var veLock = await _store.LockVeAsync(new VeId(id), ct).ConfigureAwait(false);
        var session = await OpenSessionAsync(id, ct).ConfigureAwait(false)
            ?? throw new NotFoundException($"The VM '{nameOrId}' was deleted by another operation.");
        await RecoverInterruptedMigrationAsync(session, ct).ConfigureAwait(false);
        return await operation(session).ConfigureAwait(false);
    }

    /// <summary>Reads config and runtime; a runtime whose process is gone is cleaned up (the VM is then stopped).</summary>
    private async Task<VmSession?> OpenSessionAsync(Guid id, CancellationToken ct)
    {
        var paths = PathsOf(id);
        var config = await ReadConfigAsync(paths, ct).ConfigureAwait(false);
        if (config is null)
            return null;
        var runtime = await ReadRuntimeAsync(paths, ct).ConfigureAwait(false);
        if (runtime is not null && !IsAlive(runtime))
        {
            _logger.LogDebug("VM {Id}: its process {Pid} is gone; cleaning up", id, runtime.Pid);
            await CleanUpAfterExitAsync(new VeId(id), paths, ct).ConfigureAwait(false);
            runtime = null;
        }
        return new VmSession(config, paths, runtime);
    }

    private async Task<VmRuntime?> ReadRuntimeAsync(VmPaths paths, CancellationToken ct)
    {
        try
        {
            return await _store.ReadDocumentAsync(paths.RuntimeFile, VmJsonContext.Default.VmRuntime, VmRuntime.CurrentFormatVersion, ct).ConfigureAwait(false);
        }
        catch (StateStoreException)
        {
            return null; // a torn runtime file is treated as a stopped VM; its process, if any, is found by pid file below
        }
    }

    private Task WriteRuntimeAsync(VmPaths paths, VmRuntime runtime, CancellationToken ct)
        => _store.WriteDocumentAsync(paths.RuntimeFile, runtime, VmJsonContext.Default.VmRuntime, ct);

    private static bool IsAlive(VmRuntime runtime) => ProcessTree.IsAlive(new ProcessTree.ProcessKey(runtime.Pid, runtime.ProcessStartTime));

    /// <summary>Puts the emulator in the VE's cgroup under the SDK's parent (with its CPU limit); skipped without root when no limit asks for it.</summary>
    private bool JoinCgroup(VeId id, int pid, int? cpuLimit)
    {
        if (Native.GetEuid() != 0 && cpuLimit is null)
            return false;
        var cg = Cgroups.Create(id);
        cg.AddProcess(pid, CgroupRole.Payload);
        cg.SetCpuLimit(cpuLimit);
        return true;
    }

    private async Task CleanUpAfterExitAsync(VeId id, VmPaths paths, CancellationToken ct)
    {
        var runtime = await ReadRuntimeAsync(paths, ct).ConfigureAwait(false);
        if (runtime?.TapDevice is not null)
        {
            try { await _bridge.DeleteVeNamespaceAsync(id, ct).ConfigureAwait(false); }
            catch (VirtuozzoException ex) { _logger.LogWarning("VM {Id}: could not remove its tap: {Error}", id, ex.Message); }
        }
        if (runtime?.InCgroup == true || (Native.GetEuid() == 0 && Cgroups.Exists(id)))
        {
            try { await Cgroups.DeleteAsync(id, ct).ConfigureAwait(false); }
            catch (Exception ex) when (ex is VirtuozzoException or IOException) { _logger.LogWarning("VM {Id}: could not remove its cgroup: {Error}", id, ex.Message); }
        }
        try
        {
            if (Directory.Exists(paths.RunDirectory))
                Directory.Delete(paths.RunDirectory, recursive: true);
        }
        catch (IOException ex)
        {
            _logger.LogWarning("VM {Id}: could not remove {Dir}: {Error}", id, paths.RunDirectory, ex.Message);
        }
        await _ledger.ReleaseAsync(id, ct).ConfigureAwait(false);
    }

    private async Task<QmpClient> ConnectAsync(VmPaths paths, CancellationToken ct, TimeSpan? timeout = null)
    {
        try
        {
            return await QmpClient.ConnectAsync(paths.CommandSocket, timeout ?? LocalTimeouts.MonitorConnect, ct, _logger).ConfigureAwait(false);
        }
        catch (QmpException ex)
        {
            throw new InvalidStateException($"The VM's control channel at '{paths.CommandSocket}' does not answer: {ex.Message}", ex);
        }
    }

    private async Task<JsonNode?> QmpAsync(VmSession s, string command, JsonObject? args, CancellationToken ct, TimeSpan? timeout = null)
    {
        var qmp = await ConnectAsync(s.Paths, ct).ConfigureAwait(false);
        await using (qmp.ConfigureAwait(false))
            return await qmp.ExecuteAsync(command, args, timeout ?? QmpTimeout, ct).ConfigureAwait(false);
    }

    private static VeState MapStatus(string? status) => status switch
    {
        "running" => VeState.Running,
        "shutdown" => VeState.Stopped,
        "inmigrate" or "postmigrate" or "finish-migrate" or "save-vm" or "restore-vm" or "colo" => VeState.Busy,
        _ => VeState.Paused, // paused, prelaunch, suspended (guest S3), io-error, internal-error, guest-panicked, watchdog, debug
    };

    private async Task<VeState> QueryStateAsync(VmSession s, CancellationToken ct)
    {
        if (s.Runtime is null)
            return s.Config.SuspendedStateFile is not null ? VeState.Suspended : VeState.Stopped;
        try
        {
            var status = await QmpAsync(s, "query-status", null, ct, LocalTimeouts.MonitorQuickCommand).ConfigureAwait(false);
            return MapStatus(status?["status"]?.GetValue<string>());
        }
        catch (Exception ex) when (ex is VirtuozzoException or TimeoutException)
        {
            return IsAlive(s.Runtime) ? VeState.Busy : VeState.Stopped;
        }
    }

    private VmInfo ToInfo(VmSession s, VeState state)
    {
        var c = s.Config;
        var running = s.Runtime is not null && state is not VeState.Stopped and not VeState.Suspended;
        return new VmInfo
        {
            Id = s.Id,
            Name = new VeName(c.Name),
            Kind = VeKind.Vm,
            State = state,
            Cpus = running && s.Runtime!.Cpus > 0 ? s.Runtime.Cpus : c.Cpus,
            MaxCpus = c.MaxCpus,
            MemorySize = ByteSize.FromBytes(running && s.Runtime!.TargetMemoryBytes > 0 ? s.Runtime.TargetMemoryBytes : c.MemoryBytes),
            MemoryGuaranteePercent = c.MemoryGuaranteePercent,
            MemoryHotplug = c.MemoryHotplug,
            MaxMemory = ByteSize.FromBytes(c.MemoryHotplug ? c.MaxMemoryBytes : c.MemoryBytes),
            Disks = c.Disks.Select(d => new VmDiskInfo(d.Name, s.Paths.DiskPath(d), ByteSize.FromBytes(d.SizeBytes))).ToList(),
            CdromImagePath = c.CdromImagePath,
            Network = c.Network,
            MacAddress = c.MacAddress,
            KernelPath = c.KernelPath,
            CpuMask = c.CpuMask,
            CpuLimitPercent = c.CpuLimitPercent,
            DiskSize = ByteSize.FromBytes(c.Disks.Sum(d => d.SizeBytes)),
            CreatedAt = c.CreatedAt,
        };
    }

    // ------------------------------------------------------------------ create, list, info

    /// <summary>Creates a VM (stopped) with its disks.</summary>
    /// <remarks>The equivalent of <c>prlctl create NAME --vmtype vm</c> and <c>vzsdk vm create</c>.</remarks>
    /// <exception cref="ArgumentException">The name or a setting is invalid.</exception>
    /// <exception cref="AlreadyExistsException">A container or VM with that name exists.</exception>
    public async Task<VmInfo> CreateAsync(VmCreateOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var hostMemory = HostProber.ParseMemTotal(File.ReadAllText("/proc/meminfo"));
        var config = VmConfigRules.FromCreateOptions(options, Guid.NewGuid(), DateTimeOffset.UtcNow, Environment.ProcessorCount, hostMemory);
        var paths = PathsOf(config.Id);
        // The registry checks the name across containers and VMs and creates the private directory.
        await _registry.RegisterAsync(new VeId(config.Id), new VeName(config.Name), VeKind.Vm, cancellationToken).ConfigureAwait(false);
        using var veLock = await _store.LockVeAsync(new VeId(config.Id), cancellationToken).ConfigureAwait(false);
        try
        {
            var disks = new List<VmDiskConfig>();
            for (var i = 0; i < options.Disks.Count; i++)
                disks.Add(await MakeDiskAsync(paths, $"hdd{i}", options.Disks[i], cancellationToken).ConfigureAwait(false));
            config = config with { Disks = disks };
            await WriteConfigAsync(paths, config, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await _registry.UnregisterAsync(new VeId(config.Id), CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        _logger.LogDebug("Created VM {Name} ({Id})", config.Name, config.Id);
        return ToInfo(new VmSession(config, paths, null), VeState.Stopped);
    }

    /// <summary>
    /// An image the SDK did not create may name other host files (an external data file, a backing file elsewhere) that
    /// the VM would then read: such an image is refused before it is copied into the VM.
    /// </summary>
    internal static void RefuseUnsafeImage(string source)
    {
        Span<byte> magic = stackalloc byte[4];
        using (var f = File.OpenRead(source))
        {
            if (f.Read(magic) < 4 || !magic.SequenceEqual((ReadOnlySpan<byte>)[0x51, 0x46, 0x49, 0xFB]))
                return; // not QCOW2: nothing in it names another file
        }
        try
        {
            using var image = Storage.Qcow2.Qcow2Image.Open(source, new Storage.Qcow2.Qcow2OpenOptions
            {
                ReadOnly = true, ForceShare = true, AllowExternalDataFile = false, AllowedDirectory = Path.GetDirectoryName(Path.GetFullPath(source)),
            });
            if (image.Backing is not null)
                throw new ArgumentException($"The disk image '{source}' has a backing file; give a standalone image (qemu-img convert makes one).", "d");
        }
        catch (Storage.Qcow2.Qcow2Exception ex)
        {
            throw new ArgumentException($"The disk image '{source}' cannot be used: {ex.Message}", "d", ex);
        }
    }

    private Task<VmDiskConfig> MakeDiskAsync(VmPaths paths, string name, VmDiskOptions d, CancellationToken ct)
        => VmShared.MakeDiskAsync(_disks, paths.PrivateDirectory, name, d, ct);

    /// <summary>Lists the host's VMs with their state.</summary>
    /// <remarks>The equivalent of <c>prlctl list -a --vmtype vm</c>.</remarks>
    public async Task<IReadOnlyList<VmInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var list = new List<VmInfo>();
        foreach (var c in (await ReadAllConfigsAsync(cancellationToken).ConfigureAwait(false)).OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            try
            {
                list.Add(await GetCoreAsync(c.Id, cancellationToken).ConfigureAwait(false));
            }
            catch (NotFoundException) { } // deleted meanwhile
        }
        return list;
    }

    /// <summary>Returns one VM's configuration and state.</summary>
    /// <remarks>The equivalent of <c>prlctl list -i NAME</c>.</remarks>
    /// <exception cref="NotFoundException">No VM has this name or UUID.</exception>
    public async Task<VmInfo> GetAsync(string nameOrId, CancellationToken cancellationToken = default)
        => await GetCoreAsync(await ResolveAsync(nameOrId, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);

    private async Task<VmInfo> GetCoreAsync(Guid id, CancellationToken ct)
    {
        // A short try for the VM's lock: an operation in progress (a stop waiting for the guest) must not block a listing.
        FileLock? veLock = null;
        try
        {
            veLock = await _store.LockVeAsync(new VeId(id), ct, TimeSpan.FromMilliseconds(250)).ConfigureAwait(false);
        }
        catch (LockTimeoutException) { }
        using (veLock)
        {
            if (veLock is null)
            {
                var paths = PathsOf(id);
                var config = await ReadConfigAsync(paths, ct).ConfigureAwait(false) ?? throw new NotFoundException($"There is no VM with the UUID {id}.");
                var runtime = await ReadRuntimeAsync(paths, ct).ConfigureAwait(false);
                var alive = runtime is not null && IsAlive(runtime);
                var s = new VmSession(config, paths, alive ? runtime : null);
                return ToInfo(s, alive ? VeState.Busy : config.SuspendedStateFile is not null ? VeState.Suspended : VeState.Stopped);
            }
            var session = await OpenSessionAsync(id, ct).ConfigureAwait(false) ?? throw new NotFoundException($"There is no VM with the UUID {id}.");
            return ToInfo(session, await QueryStateAsync(session, ct).ConfigureAwait(false));
        }
    }

    /// <summary>
    /// Cleans up after VMs whose emulator is gone (a crash, a kill, a host reboot): removes their sockets and pid files,
    /// taps and cgroups, and releases their memory guarantees. Returns how many VMs were cleaned. Other operations do
    /// the same lazily for the VM they touch; call this at service start to settle the ledger at once.
    /// </summary>
    /// <summary>How old a registration without a configuration, held by no operation and marked by no receiving process, must be before reconcile removes it.</summary>
    internal static readonly TimeSpan OrphanGrace = TimeSpan.FromMinutes(10);

    public async Task<int> ReconcileAsync(CancellationToken cancellationToken = default)
    {
        var cleaned = 0;
        foreach (var c in await ReadAllConfigsAsync(cancellationToken).ConfigureAwait(false))
        {
            using var veLock = await _store.LockVeAsync(new VeId(c.Id), cancellationToken).ConfigureAwait(false);
            var paths = PathsOf(c.Id);
            var runtime = await ReadRuntimeAsync(paths, cancellationToken).ConfigureAwait(false);
            var stale = runtime is not null ? !IsAlive(runtime) : Directory.Exists(paths.RunDirectory);
            if (!stale)
                continue;
            await CleanUpAfterExitAsync(new VeId(c.Id), paths, cancellationToken).ConfigureAwait(false);
            cleaned++;
        }
        return cleaned + await RemoveOrphanRegistrationsAsync(OrphanGrace, cancellationToken).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------ start

    /// <summary>
    /// Starts a VM (or resumes a suspended one from its saved state). Its memory guarantee is admitted by the ledger
    /// first; a start that fails leaves no process, socket or reservation behind.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl start NAME</c>.</remarks>
    /// <exception cref="InvalidStateException">The VM is already running.</exception>
    /// <exception cref="InsufficientResourcesException">The host cannot guarantee the VM's memory.</exception>
    /// <exception cref="UnsupportedOnHostException">Hardware acceleration was required but does not work here.</exception>
    public Task<VmInfo> StartAsync(string nameOrId, CancellationToken cancellationToken = default)
        => WithVmAsync(nameOrId, async s =>
        {
            if (s.Runtime is not null)
                throw new InvalidStateException($"The VM '{s.Config.Name}' is already running.");
            await StartCoreAsync(s, paused: false, cancellationToken).ConfigureAwait(false);
            return ToInfo(s, await QueryStateAsync(s, cancellationToken).ConfigureAwait(false));
        }, cancellationToken);

    private async Task<bool> UseSoftwareAsync(VmAcceleration acceleration, CancellationToken ct)
    {
        if (acceleration == VmAcceleration.Software)
            return true;
        _capabilities ??= await _host.GetCapabilitiesAsync(null, ct).ConfigureAwait(false);
        if (_capabilities.Kvm.Usable)
            return false;
        if (acceleration == VmAcceleration.Hardware)
            throw new UnsupportedOnHostException($"Hardware virtualisation does not work on this host: {_capabilities.Kvm.Reason} Use software emulation (Acceleration = Auto or Software).");
        return true;
    }

    private static long Guarantee(VmConfig c, long memoryBytes) => memoryBytes * c.MemoryGuaranteePercent / 100;

    /// <summary>The host memory a VM costs besides its guarantee: 64 MiB plus 8 bytes per 4 KiB page of RAM.</summary>
    internal static long Overhead(long memoryBytes) => Core.Resources.MemoryMath.VmOverhead(memoryBytes);

    private async Task StartCoreAsync(VmSession s, bool paused, CancellationToken ct, bool migrationTarget = false, VmAcceleration? acceleration = null)
    {
        var c = s.Config;
        foreach (var d in c.Disks)
        {
            if (!File.Exists(s.Paths.DiskPath(d)))
                throw new InvalidStateException($"The VM '{c.Name}' cannot start: its disk {d.Name} ('{s.Paths.DiskPath(d)}') is missing.");
        }
        var software = await UseSoftwareAsync(acceleration ?? c.Acceleration, ct).ConfigureAwait(false);
        await _ledger.ReserveAsync(s.Id, VeKind.Vm, Guarantee(c, c.MemoryBytes), Overhead(c.MemoryBytes), ct).ConfigureAwait(false);
        var pid = 0;
        try
        {
            if (Directory.Exists(s.Paths.RunDirectory))
                Directory.Delete(s.Paths.RunDirectory, true);
            Directory.CreateDirectory(s.Paths.RunDirectory);
            string? incoming = c.SuspendedStateFile is { } f ? Path.Combine(s.Paths.PrivateDirectory, f) : null;
            string? tap = null;
            if (c.Network == VmNetworkMode.Bridged)
            {
                tap = await _bridge.CreateTapAsync(s.Id, ct).ConfigureAwait(false);
                // Recorded before the emulator runs, so that a failed start removes the tap too.
                await WriteRuntimeAsync(s.Paths, new VmRuntime { Pid = 0, ProcessStartTime = 0, StartedAt = DateTimeOffset.UtcNow, BaseMemoryBytes = c.MemoryBytes, TapDevice = tap }, ct).ConfigureAwait(false);
            }
            var hw = incoming is not null || migrationTarget ? c.SuspendedHardware : null;
            var args = QemuCommandLine.Build(c, s.Paths, new QemuLaunch
            {
                Software = software,
                IncomingStateFile = incoming,
                IncomingDeferred = migrationTarget,
                Paused = paused,
                TapDevice = tap,
                BaseMemoryBytes = hw?.BaseMemoryBytes,
                Dimms = hw?.Dimms ?? [],
                Cpus = hw is null ? null : hw.BootCpus > 0 ? hw.BootCpus : hw.Cpus,
                HotplugCpus = hw?.HotplugCpus ?? [],
            });
            _logger.LogDebug("Starting VM {Name}: {Args}", c.Name, string.Join(' ', args));
            await _host.ExecuteBufferedAsync(new Command(Emulator).WithArguments(args).WithTimeout(_options.StartTimeout), ct).ConfigureAwait(false);
            if (!File.Exists(s.Paths.PidFile))
                throw new InvalidStateException($"The VM '{c.Name}' exited right after it started{(incoming is not null ? " (its saved state could not be loaded; resume needs the hardware it was suspended with)" : "")}. Console log '{s.Paths.ConsoleLog}': {ConsoleTail(s.Paths)}");
            pid = int.Parse((await File.ReadAllTextAsync(s.Paths.PidFile, ct).ConfigureAwait(false)).Trim(), CultureInfo.InvariantCulture);
            var stat = ProcessTree.ReadStat(pid) ?? throw new InvalidStateException($"The VM '{c.Name}' exited right after it started. Console log '{s.Paths.ConsoleLog}': {ConsoleTail(s.Paths)}");
            var runtime = new VmRuntime
            {
                Pid = pid,
                ProcessStartTime = stat.StartTime,
                StartedAt = DateTimeOffset.UtcNow,
                BaseMemoryBytes = hw?.BaseMemoryBytes ?? c.MemoryBytes,
                Dimms = hw?.Dimms ?? [],
                TargetMemoryBytes = hw?.TargetMemoryBytes ?? c.MemoryBytes,
                Cpus = hw?.Cpus ?? c.Cpus,
                BootCpus = hw is null ? c.Cpus : hw.BootCpus > 0 ? hw.BootCpus : hw.Cpus,
                HotplugCpus = hw?.HotplugCpus ?? [],
                Software = software,
                TapDevice = tap,
            };
            runtime = runtime with { InCgroup = JoinCgroup(s.Id, pid, c.CpuLimitPercent) };
            var qmp = await ConnectAsync(s.Paths, ct, _options.StartTimeout).ConfigureAwait(false);
            await using (qmp.ConfigureAwait(false))
            {
                if (incoming is not null)
                {
                    await WaitForIncomingAsync(qmp, c.Name, ct).ConfigureAwait(false);
                    if (!paused)
                        await qmp.ExecuteAsync("cont", null, QmpTimeout, ct).ConfigureAwait(false);
                }
            }
            s.Runtime = runtime;
            await WriteRuntimeAsync(s.Paths, runtime, ct).ConfigureAwait(false);
            if (c.CpuMask is { } mask)
                await ApplyCpuMaskAsync(s, mask, ct).ConfigureAwait(false);
            if (incoming is not null)
            {
                s.Config = c with { SuspendedStateFile = null, SuspendedHardware = null };
                await WriteConfigAsync(s.Paths, s.Config, ct).ConfigureAwait(false);
                File.Delete(incoming);
            }
            _logger.LogDebug("VM {Name} started (pid {Pid})", c.Name, pid);
        }
        catch
        {
            s.Runtime = null;
            if (pid == 0 && File.Exists(s.Paths.PidFile)
                && int.TryParse(File.ReadAllText(s.Paths.PidFile).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var p))
                pid = p;
            if (pid > 0)
                await KillProcessAsync(pid, CancellationToken.None).ConfigureAwait(false);
            await CleanUpAfterExitAsync(s.Id, s.Paths, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The last lines of the VM's serial console, for error messages.</summary>
    private static string ConsoleTail(VmPaths paths)
    {
        try
        {
            var lines = File.ReadAllLines(paths.ConsoleLog);
            return lines.Length == 0 ? "(empty)" : string.Join(" | ", lines.TakeLast(5).Select(l => l.Trim()));
        }
        catch (IOException)
        {
            return "(none)";
        }
    }

    private static async Task WaitForIncomingAsync(QmpClient qmp, string name, CancellationToken ct)
    {
        var deadline = DateTimeOffset.UtcNow + TimeSpan.FromMinutes(5);
        while (true)
        {
            var status = (await qmp.ExecuteAsync("query-status", null, QmpTimeout, ct).ConfigureAwait(false))?["status"]?.GetValue<string>();
            if (status != "inmigrate")
            {
                var mig = await qmp.ExecuteAsync("query-migrate", null, QmpTimeout, ct).ConfigureAwait(false);
                var ms = mig?["status"]?.GetValue<string>();
                if (ms is "failed" or "cancelled")
                    throw new InvalidStateException($"The VM '{name}' could not be resumed from its saved state ({ms}).");
                return;
            }
            if (DateTimeOffset.UtcNow > deadline)
                throw new InvalidStateException($"The VM '{name}' did not finish loading its saved state within 5 minutes.");
            await Task.Delay(50, ct).ConfigureAwait(false);
        }
    }

    /// <summary>SIGKILLs a VM process and waits until it is gone.</summary>
    private static async Task KillProcessAsync(int pid, CancellationToken ct)
    {
        var stat = ProcessTree.ReadStat(pid);
        if (stat is null)
            return;
        var key = new ProcessTree.ProcessKey(pid, stat.Value.StartTime);
        Native.TrySignal(pid, Native.SIGKILL);
        for (var i = 0; i < 500 && ProcessTree.IsAlive(key); i++)
            await Task.Delay(10, ct).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------ stop, kill

    /// <summary>
    /// Stops a VM: asks the guest to power off through its guest tools when they answer, otherwise (and again when the
    /// guest tools' request goes unheeded) presses the ACPI power button; waits up to the timeout (default 60 s) and
    /// then kills it. Releases the VM's memory guarantee.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME [--kill]</c>.</remarks>
    public Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options = null, CancellationToken cancellationToken = default)
        => WithVmAsync(nameOrId, s => StopCoreAsync(s, options ?? new VeStopOptions(), cancellationToken), cancellationToken);

    private async Task<VeStopMethod> StopCoreAsync(VmSession s, VeStopOptions options, CancellationToken ct)
    {
        if (s.Runtime is not { } rt)
            return VeStopMethod.AlreadyStopped;
        var timeout = options.Timeout ?? VmDefaults.StopTimeout;
        if (timeout < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(options), "The stop timeout must not be negative.");
        var method = VeStopMethod.Killed;
        if (!options.Kill)
        {
            var deadline = DateTimeOffset.UtcNow + timeout;
            try
            {
                var state = await QueryStateAsync(s, ct).ConfigureAwait(false);
                if (state == VeState.Paused)
                    await QmpAsync(s, "cont", null, ct).ConfigureAwait(false);
                // A guest left frozen by a backup that died refuses guest-shutdown, and its own shutdown would hang
                // writing to the frozen file systems until it is killed: thaw it first (only when the marker says so).
                await ThawGuestIfFrozenAsync(s.Id, s.Config.Name, TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
                method = await RequestPowerOffAsync(s, ct).ConfigureAwait(false);
                var acpiAt = method == VeStopMethod.GuestTools ? DateTimeOffset.UtcNow + TimeSpan.FromTicks(Math.Min(timeout.Ticks / 2, TimeSpan.FromSeconds(15).Ticks)) : DateTimeOffset.MaxValue;
                while (IsAlive(rt) && DateTimeOffset.UtcNow < deadline)
                {
                    if (DateTimeOffset.UtcNow >= acpiAt)
                    {
                        acpiAt = DateTimeOffset.MaxValue;
                        try
                        {
                            await QmpAsync(s, "system_powerdown", null, ct, LocalTimeouts.MonitorQuickCommand).ConfigureAwait(false);
                            method = VeStopMethod.Acpi;
                        }
                        catch (Exception ex) when (ex is VirtuozzoException or TimeoutException) { }
                    }
                    await Task.Delay(50, ct).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is VirtuozzoException or TimeoutException)
            {
                _logger.LogDebug("VM {Name}: polite stop failed ({Error}); killing", s.Config.Name, ex.Message);
            }
            if (IsAlive(rt))
                method = VeStopMethod.Killed;
        }
        var killed = false;
        if (IsAlive(rt))
        {
            await KillProcessAsync(rt.Pid, CancellationToken.None).ConfigureAwait(false);
            killed = true;
        }
        await CleanUpAfterExitAsync(s.Id, s.Paths, CancellationToken.None).ConfigureAwait(false);
        s.Runtime = null;
        if (killed && s.Config.Disks.Count > 0)
        {
            // A killed emulator cannot store its change-tracking bitmaps: the next backup is full, and says why.
            foreach (var d in s.Config.Disks)
                s.Config = WithTrackingReset(s.Config, d.Name, "the VM was killed instead of shut down cleanly");
            await WriteConfigAsync(s.Paths, s.Config, CancellationToken.None).ConfigureAwait(false);
        }
        return method;
    }

    private async Task<VeStopMethod> RequestPowerOffAsync(VmSession s, CancellationToken ct)
    {
        try
        {
            // A busy channel (a long exec) is not waited for: the power button does the job.
            using var agentLock = await AgentLockAsync(s.Config.Id, ct, TimeSpan.FromMilliseconds(500)).ConfigureAwait(false);
            var agent = await GuestAgentClient.ConnectAsync(s.Paths.AgentSocket, TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
            await using (agent.ConfigureAwait(false))
            {
                await agent.ShutdownAsync(ct).ConfigureAwait(false);
                return VeStopMethod.GuestTools;
            }
        }
        catch (Exception ex) when (ex is GuestAgentUnavailableException or LockTimeoutException)
        {
            await QmpAsync(s, "system_powerdown", null, ct).ConfigureAwait(false);
            return VeStopMethod.Acpi;
        }
    }

    /// <summary>Kills a running VM at once (its guest gets no chance to shut down) and releases its memory guarantee.</summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME --kill</c>.</remarks>
    public async Task KillAsync(string nameOrId, CancellationToken cancellationToken = default)
        => await StopAsync(nameOrId, new VeStopOptions { Kill = true }, cancellationToken).ConfigureAwait(false);

    // ------------------------------------------------------------------ pause, resume, reset

    /// <summary>Pauses a running VM (its vCPUs stop; memory stays allocated).</summary>
    /// <remarks>The equivalent of <c>prlctl pause NAME</c>.</remarks>
    public Task PauseAsync(string nameOrId, CancellationToken cancellationToken = default)
        => WithVmAsync<bool>(nameOrId, async s =>
        {
            RequireRunning(s);
            await QmpAsync(s, "stop", null, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    /// <summary>Resumes a paused VM, or starts a suspended one from its saved state.</summary>
    /// <remarks>The equivalent of <c>prlctl resume NAME</c>.</remarks>
    public Task ResumeAsync(string nameOrId, CancellationToken cancellationToken = default)
        => WithVmAsync<bool>(nameOrId, async s =>
        {
            if (s.Runtime is null)
            {
                if (s.Config.SuspendedStateFile is null)
                    throw new InvalidStateException($"The VM '{s.Config.Name}' is neither paused nor suspended.");
                await StartCoreAsync(s, paused: false, cancellationToken).ConfigureAwait(false);
                return true;
            }
            await QmpAsync(s, "cont", null, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    /// <summary>Resets a running VM (a hardware reset: the guest reboots without shutting down).</summary>
    /// <remarks>The equivalent of <c>prlctl reset NAME</c>.</remarks>
    public Task ResetAsync(string nameOrId, CancellationToken cancellationToken = default)
        => WithVmAsync<bool>(nameOrId, async s =>
        {
            RequireRunning(s);
            await QmpAsync(s, "system_reset", null, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    private static void RequireRunning(VmSession s)
    {
        if (s.Runtime is null)
            throw new InvalidStateException($"The VM '{s.Config.Name}' is not running; start it first.");
    }

    private static void RequireStopped(VmSession s, string what)
    {
        if (s.Runtime is not null)
            throw new InvalidStateException($"Cannot {what} the VM '{s.Config.Name}' while it runs. Stop it first.");
    }

    // ------------------------------------------------------------------ delete, rename

    /// <summary>Deletes a stopped VM with its disks and saved state.</summary>
    /// <remarks>The equivalent of <c>prlctl delete NAME</c>.</remarks>
    /// <exception cref="InvalidStateException">The VM is running.</exception>
    public async Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        var identity = await _registry.FindAsync(nameOrId.Trim(), cancellationToken).ConfigureAwait(false);
        if (identity is null)
            return false;
        if (identity.Kind != VeKind.Vm)
            throw new NotFoundException($"'{nameOrId}' is a container, not a VM.");
        using var veLock = await _store.LockVeAsync(identity.VeId, cancellationToken).ConfigureAwait(false);
        var s = await OpenSessionAsync(identity.VeId.Value, cancellationToken).ConfigureAwait(false);
        if (s is null)
            return false; // another delete went first
        {
            RequireStopped(s, "delete");
            await EnsureNoCloneDependsOnAsync(s, cancellationToken).ConfigureAwait(false);
            await _registry.UnregisterAsync(s.Id, cancellationToken).ConfigureAwait(false);
            if (Directory.Exists(s.Paths.RunDirectory))
                Directory.Delete(s.Paths.RunDirectory, true);
            await _ledger.ReleaseAsync(s.Id, cancellationToken).ConfigureAwait(false);
            return true;
        }
    }

    /// <summary>Refuses to delete a VM whose disks serve as the base of a linked clone.</summary>
    private async Task EnsureNoCloneDependsOnAsync(VmSession s, CancellationToken ct)
    {
        var prefix = s.Paths.PrivateDirectory + Path.DirectorySeparatorChar;
        foreach (var other in await ReadAllConfigsAsync(ct).ConfigureAwait(false))
        {
            if (other.Id == s.Config.Id)
                continue;
            var paths = PathsOf(other.Id);
            foreach (var d in other.Disks)
            {
                var backing = await _disks.GetBackingFileAsync(paths.DiskPath(d), ct).ConfigureAwait(false);
                if (backing is not null && Path.GetFullPath(backing, paths.PrivateDirectory).StartsWith(prefix, StringComparison.Ordinal))
                    throw new InvalidStateException($"The VM '{s.Config.Name}' cannot be deleted: the linked clone '{other.Name}' uses its disk as a base. Delete the clone first.");
            }
        }
    }

    /// <summary>Renames a VM (running or not).</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --name NEW</c>.</remarks>
    /// <exception cref="AlreadyExistsException">The new name is taken.</exception>
    public Task<VmInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken = default)
    {
        _ = newName.Value; // an uninitialised VeName throws here
        return WithVmAsync(nameOrId, async s =>
        {
            await _registry.RenameAsync(s.Id, newName, cancellationToken).ConfigureAwait(false);
            s.Config = s.Config with { Name = newName.Value };
            await WriteConfigAsync(s.Paths, s.Config, cancellationToken).ConfigureAwait(false);
            return ToInfo(s, await QueryStateAsync(s, cancellationToken).ConfigureAwait(false));
        }, cancellationToken);
    }

    // ------------------------------------------------------------------ guest tools

    private async Task<GuestAgentClient> ConnectAgentAsync(VmSession s, TimeSpan timeout, CancellationToken ct)
    {
        RequireRunning(s);
        try
        {
            return await GuestAgentClient.ConnectAsync(s.Paths.AgentSocket, timeout, ct).ConfigureAwait(false);
        }
        catch (GuestAgentUnavailableException ex)
        {
            throw new InvalidStateException($"The guest tools of the VM '{s.Config.Name}' do not answer: {ex.Message} Install and start qemu-guest-agent in the guest.", ex);
        }
    }

    /// <summary>
    /// The lock of a VM's guest tools channel, which serves one client at a time. It is separate from the VM's lock so
    /// that a long exec does not block a stop, a pause or a listing of the same VM. Order: VM lock, then this one.
    /// </summary>
    private Task<FileLock> AgentLockAsync(Guid id, CancellationToken ct, TimeSpan? timeout = null)
        => FileLock.AcquireAsync(Path.Combine(_store.LocksDirectory, $"ve-{id}.agent.lock"), $"the guest tools channel of VM {id}", timeout ?? _store.LockTimeout, ct);

    private async Task<T> WithAgentAsync<T>(string nameOrId, TimeSpan connectTimeout, Func<VmSession, GuestAgentClient, Task<T>> action, CancellationToken ct)
    {
        var id = await ResolveAsync(nameOrId, ct).ConfigureAwait(false);
        VmSession s;
        using (await _store.LockVeAsync(new VeId(id), ct).ConfigureAwait(false))
        {
            s = await OpenSessionAsync(id, ct).ConfigureAwait(false)
                ?? throw new NotFoundException($"The VM '{nameOrId}' was deleted by another operation.");
            RequireRunning(s);
        }
        using var agentLock = await AgentLockAsync(id, ct).ConfigureAwait(false);
        var agent = await ConnectAgentAsync(s, connectTimeout, ct).ConfigureAwait(false);
        await using (agent.ConfigureAwait(false))
        {
            try
            {
                return await action(s, agent).ConfigureAwait(false);
            }
            catch (GuestAgentException ex)
            {
                throw new InvalidStateException($"The guest tools of the VM '{s.Config.Name}' refused: {ex.Description}", ex);
            }
            catch (GuestAgentUnavailableException ex)
            {
                throw new InvalidStateException($"The guest tools of the VM '{s.Config.Name}' stopped answering (the VM may have stopped): {ex.Message}", ex);
            }
        }
    }

    /// <summary>Waits until the guest tools in a running VM answer (the guest has booted far enough to be managed).</summary>
    /// <exception cref="TimeoutException">They did not answer within <paramref name="timeout"/>.</exception>
    public async Task WaitForGuestToolsAsync(string nameOrId, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        try
        {
            await WithAgentAsync(nameOrId, timeout, (_, agent) => Task.FromResult(true), cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidStateException ex) when (ex.InnerException is GuestAgentUnavailableException)
        {
            var paths = PathsOf(await ResolveAsync(nameOrId, cancellationToken).ConfigureAwait(false));
            throw new TimeoutException($"The guest tools of '{nameOrId}' did not answer within {timeout.TotalSeconds:0.#} s. Console log '{paths.ConsoleLog}': {ConsoleTail(paths)}", ex);
        }
    }

    /// <summary>Runs a program in a running guest through its guest tools and returns its exit code and output.</summary>
    /// <remarks>The equivalent of <c>prlctl exec NAME CMD</c>.</remarks>
    /// <exception cref="InvalidStateException">The VM is not running, or its guest tools do not answer.</exception>
    /// <exception cref="TimeoutException">The program ran longer than <see cref="VeExecOptions.Timeout"/>.</exception>
    public Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken = default)
    {
        var argv = VmShared.GuestArgv(options);
        return WithAgentAsync(nameOrId, AgentTimeout, (_, agent) => VmShared.ExecAsync(agent, argv, options, cancellationToken), cancellationToken);
    }

    /// <summary>How long a program in a guest may run when <see cref="VeExecOptions.Timeout"/> does not say.</summary>
    internal static readonly TimeSpan DefaultExecTimeout = VmShared.DefaultExecTimeout;

    /// <summary>Sets the password of a user in a running guest through its guest tools.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --userpasswd USER:PASSWORD</c>. The password is never logged.</remarks>
    public Task SetUserPasswordAsync(string nameOrId, string user, string password, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentException.ThrowIfNullOrEmpty(password);
        if (user.Contains(':', StringComparison.Ordinal) || user.Contains('\n', StringComparison.Ordinal) || password.Contains('\n', StringComparison.Ordinal))
            throw new ArgumentException("The user name must not contain ':' or a newline, nor the password a newline.");
        return WithAgentAsync(nameOrId, AgentTimeout, async (_, agent) =>
        {
            await agent.SetUserPasswordAsync(user, password, false, AgentTimeout, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    /// <summary>Reads the guest's network interfaces and addresses through its guest tools.</summary>
    public Task<IReadOnlyList<VmGuestInterface>> GetGuestNetworkAsync(string nameOrId, CancellationToken cancellationToken = default)
        => WithAgentAsync(nameOrId, AgentTimeout, async (_, agent) =>
        {
            var list = await agent.GetNetworkInterfacesAsync(AgentTimeout, cancellationToken).ConfigureAwait(false);
            return (IReadOnlyList<VmGuestInterface>)list
                .Select(i => new VmGuestInterface(i.Name, i.HardwareAddress, i.Addresses.Select(a => new VmGuestAddress(a.Address, a.Prefix, a.IsIPv6)).ToList()))
                .ToList();
        }, cancellationToken);
}
