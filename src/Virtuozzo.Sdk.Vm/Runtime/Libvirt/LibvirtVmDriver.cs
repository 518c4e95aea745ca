using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Vm.Internal;
using static Virtuozzo.Sdk.Core.Runtime.Libvirt.LibvirtNative;

namespace Virtuozzo.Sdk.Vm.Runtime.Libvirt;

/// <summary>
/// VMs as libvirt domains. libvirt keeps each VM's definition (the domain XML, generated from the same validated model the
/// local runtime runs) and its state; the SDK reads both back after every change, so a VM changed with <c>virsh</c> is
/// seen as it is. On a local URI the VM's QCOW2 disks are made by the SDK's engine under the data root
/// (<c>private/&lt;uuid&gt;/</c>). Guest tools go through libvirt's agent API, memory hotplug through DIMM devices and the
/// balloon, snapshots through libvirt's internal snapshots. Operations on one VM are serialised by the VE's lock in the
/// data root, as on the local runtime.
/// </summary>
internal sealed partial class LibvirtVmDriver : IVmDriver
{
    private static readonly TimeSpan AgentTimeout = TimeSpan.FromSeconds(10);

    private readonly LibvirtConnection _conn;
    private readonly VirtuozzoRuntime _runtime;
    private readonly StateStore _store;
    private readonly IDiskImages _disks = new Qcow2DiskImages();
    private readonly ILogger _logger;
    private bool? _software;
    private Core.Hosts.HostCapabilities? _capabilities;

    public LibvirtVmDriver(VirtuozzoRuntime runtime)
    {
        _runtime = runtime;
        _conn = runtime.RequireLibvirt();
        _store = runtime.Store;
        _logger = runtime.CreateLogger<LibvirtVmDriver>();
    }

    public VeKind Kind => VeKind.Vm;

    private string Where => _conn.Uri;

    private UnsupportedOnHostException Unsupported(string feature, string? instead = null)
        => new($"{feature} is not supported by the libvirt runtime ({Where}){(instead is null ? "." : "; " + instead)}");

    // ------------------------------------------------------------------ reading

    private sealed record Snapshot(LibvirtDomainSummary Summary, DomainModel Model);

    private async Task<LibvirtDomain> OpenAsync(string nameOrId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        var dom = await _conn.FindDomainAsync(nameOrId, ct).ConfigureAwait(false)
            ?? throw new NotFoundException($"There is no VM '{nameOrId}' on {Where}.");
        var s = await dom.SummarizeAsync(ct).ConfigureAwait(false);
        if (s.Kind != VeKind.Vm)
        {
            dom.Dispose();
            throw new NotFoundException($"'{nameOrId}' on {Where} is a container, not a VM.");
        }
        return dom;
    }

    private static async Task<Snapshot> ReadAsync(LibvirtDomain dom, CancellationToken ct, bool inactive = false)
    {
        var summary = await dom.SummarizeAsync(ct).ConfigureAwait(false);
        var xml = await dom.GetXmlAsync(inactive, ct).ConfigureAwait(false);
        return new Snapshot(summary, DomainXml.Parse(xml));
    }

    internal static VeState StateOf(LibvirtDomainSummary s) => s.VeState;

    private async Task<VmInfo> ToInfoAsync(Snapshot s, CancellationToken ct)
    {
        var m = s.Model;
        var disks = new List<VmDiskInfo>();
        foreach (var d in m.Disks)
            disks.Add(new VmDiskInfo(d.Name, d.Path, ByteSize.FromBytes(await SizeOfAsync(d.Path, ct).ConfigureAwait(false))));
        var running = s.Summary.State is LibvirtDomainState.Running or LibvirtDomainState.Blocked or LibvirtDomainState.Paused;
        return new VmInfo
        {
            Id = new VeId(m.Id),
            Name = new VeName(m.Name),
            Kind = VeKind.Vm,
            State = StateOf(s.Summary),
            Cpus = m.Cpus,
            CpuLimitPercent = m.CpuLimitPercent,
            CpuMask = m.CpuMask,
            // A running VM's size is the balloon's target (what the last change asked for); a stopped one's, its configuration.
            MemorySize = ByteSize.FromBytes(running ? m.CurrentMemoryBytes : m.MemoryBytes),
            MemoryGuaranteePercent = m.MemoryGuaranteePercent,
            DiskSize = ByteSize.FromBytes(disks.Sum(d => d.Size.Bytes)),
            CreatedAt = m.CreatedAt,
            MaxCpus = m.MaxCpus,
            MemoryHotplug = m.MaxMemoryBytes is not null,
            MaxMemory = ByteSize.FromBytes(m.MaxMemoryBytes ?? m.MemoryBytes),
            Disks = disks,
            CdromImagePath = m.CdromImagePath,
            Network = m.Network,
            MacAddress = m.MacAddress,
            KernelPath = m.KernelPath,
        };
    }

    /// <summary>Disks' virtual sizes by path, valid while the file's length and modification time stay the same (a resize rewrites the header).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long Length, DateTime Modified, long Size)> _sizes = new(StringComparer.Ordinal);

    private async Task<long> SizeOfAsync(string path, CancellationToken ct)
    {
        if (!_conn.IsLocal)
            return 0;
        var file = new FileInfo(path);
        if (!file.Exists)
            return 0;
        if (_sizes.TryGetValue(path, out var known) && known.Length == file.Length && known.Modified == file.LastWriteTimeUtc)
            return known.Size;
        try
        {
            var size = await _disks.GetVirtualSizeAsync(path, ct).ConfigureAwait(false);
            _sizes[path] = (file.Length, file.LastWriteTimeUtc, size);
            return size;
        }
        catch (InvalidStateException)
        {
            return new FileInfo(path).Length; // not QCOW2 (a raw disk defined outside the SDK)
        }
    }

    private async Task<VmInfo> InfoAsync(LibvirtDomain dom, CancellationToken ct) => await ToInfoAsync(await ReadAsync(dom, ct).ConfigureAwait(false), ct).ConfigureAwait(false);

    private async Task<T> WithVmAsync<T>(string nameOrId, Func<LibvirtDomain, Snapshot, Task<T>> action, CancellationToken ct)
    {
        using var dom = await OpenAsync(nameOrId, ct).ConfigureAwait(false);
        var s = await ReadAsync(dom, ct).ConfigureAwait(false);
        using var veLock = await _store.LockVeAsync(new VeId(s.Model.Id), ct).ConfigureAwait(false);
        s = await ReadAsync(dom, ct).ConfigureAwait(false); // as it is now that the lock is held
        return await action(dom, s).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<VmInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var list = new List<VmInfo>();
        var handles = await _conn.ListDomainHandlesAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var dom in handles)
            {
                try
                {
                    var s = await ReadAsync(dom, cancellationToken).ConfigureAwait(false);
                    if (s.Summary.Kind == VeKind.Vm)
                        list.Add(await ToInfoAsync(s, cancellationToken).ConfigureAwait(false));
                }
                catch (NotFoundException)
                {
                    // undefined between the listing and the read
                }
            }
        }
        finally
        {
            foreach (var dom in handles)
                dom.Dispose();
        }
        return list.OrderBy(v => v.Name.Value, StringComparer.Ordinal).ToList();
    }

    public async Task<VmInfo> GetAsync(string nameOrId, CancellationToken cancellationToken)
    {
        using var dom = await OpenAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        return await InfoAsync(dom, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>libvirt reconciles its own domains: nothing to do.</summary>
    public Task<int> ReconcileAsync(CancellationToken cancellationToken) => Task.FromResult(0);

    // ------------------------------------------------------------------ create

    private async Task<bool> SoftwareAsync(VmAcceleration acceleration, CancellationToken ct)
    {
        if (acceleration == VmAcceleration.Software)
            return true;
        if (_conn.IsLocal)
        {
            // On this machine the host's probe boots a tiny guest: /dev/kvm can exist and still hang.
            var caps = _capabilities ??= await _runtime.Host.GetCapabilitiesAsync(null, ct).ConfigureAwait(false);
            if (caps.Kvm.Usable)
                return false;
            if (acceleration == VmAcceleration.Hardware)
                throw new UnsupportedOnHostException($"Hardware virtualisation does not work on this host: {caps.Kvm.Reason} Use software emulation (Acceleration = Auto or Software).");
            return true;
        }
        _software ??= !(await _conn.GetCapabilitiesAsync(ct).ConfigureAwait(false)).Contains("<domain type='kvm'", StringComparison.Ordinal);
        if (_software.Value && acceleration == VmAcceleration.Hardware)
            throw new UnsupportedOnHostException($"The libvirt host {Where} offers no KVM domains. Use software emulation (Acceleration = Auto or Software).");
        return _software.Value;
    }

    private void RequireLocal(string what)
    {
        if (!_conn.IsLocal)
            throw Unsupported(what + " on a remote libvirt host", "the SDK makes QCOW2 disks on this machine only; define the VM with its disks on that host (virsh define) and drive it from here.");
    }

    public async Task<VmInfo> CreateAsync(VmCreateOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        var hostMemory = HostProber.ParseMemTotal(File.ReadAllText("/proc/meminfo"));
        var config = VmConfigRules.FromCreateOptions(options, Guid.NewGuid(), DateTimeOffset.UtcNow, Environment.ProcessorCount, hostMemory);
        RequireLocal("Creating a VM");
        if (await _conn.FindDomainAsync(config.Name, cancellationToken).ConfigureAwait(false) is { } existing)
        {
            existing.Dispose();
            throw new AlreadyExistsException($"A domain named {config.Name} already exists on {Where}.");
        }
        var software = await SoftwareAsync(options.Acceleration, cancellationToken).ConfigureAwait(false);
        var id = new VeId(config.Id);
        var dir = _store.PrivatePath(id);
        Directory.CreateDirectory(dir);
        using var veLock = await _store.LockVeAsync(id, cancellationToken).ConfigureAwait(false);
        try
        {
            var disks = new List<VmDiskConfig>();
            for (var i = 0; i < options.Disks.Count; i++)
                disks.Add(await MakeDiskAsync(dir, $"hdd{i}", options.Disks[i], cancellationToken).ConfigureAwait(false));
            config = config with { Disks = disks };
            if (config.Network == VmNetworkMode.Bridged)
                await _runtime.Bridge.EnsureAsync(cancellationToken).ConfigureAwait(false);
            var xml = DomainXml.Build(config, PlacementOf(dir, software));
            using var dom = await _conn.DefineAsync(xml, $"Defining the VM {config.Name}", cancellationToken).ConfigureAwait(false);
            _logger.LogDebug("Defined VM {Name} ({Id}) on {Uri}", config.Name, config.Id, Where);
            return await InfoAsync(dom, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            TryDeleteDirectory(dir);
            throw;
        }
    }

    private DomainXml.Placement PlacementOf(string dir, bool software)
        => new(d => Path.Combine(dir, d.File), Path.Combine(dir, "console.log"), _runtime.Options.BridgeName, software, RunAsRoot: _conn.IsLocal);

    private Task<VmDiskConfig> MakeDiskAsync(string dir, string name, VmDiskOptions d, CancellationToken ct)
        => VmShared.MakeDiskAsync(_disks, dir, name, d, ct);

    private void TryDeleteDirectory(string dir)
    {
        try
        {
            if (Directory.Exists(dir))
                Directory.Delete(dir, true);
        }
        catch (IOException ex)
        {
            _logger.LogWarning("Could not remove {Dir}: {Error}", dir, ex.Message);
        }
    }

    /// <summary>True when <paramref name="path"/> lies in the SDK's own directory for the VM (so deleting the VM deletes it).</summary>
    private bool IsOurs(Guid id, string path)
        => _conn.IsLocal && Path.GetFullPath(path).StartsWith(Path.GetFullPath(_store.PrivatePath(new VeId(id))) + "/", StringComparison.Ordinal);

    // ------------------------------------------------------------------ lifecycle

    private static bool IsActive(Snapshot s) => s.Summary.IsActive;

    public Task<VmInfo> StartAsync(string nameOrId, CancellationToken cancellationToken)
        => WithVmAsync(nameOrId, async (dom, s) =>
        {
            if (IsActive(s))
                throw new InvalidStateException($"The VM {s.Model.Name} is {StateOf(s.Summary).ToString().ToLowerInvariant()}; only a stopped or suspended VM starts.");
            foreach (var d in s.Model.Disks)
            {
                if (_conn.IsLocal && !File.Exists(d.Path))
                    throw new InvalidStateException($"The VM '{s.Model.Name}' cannot start: its disk {d.Name} ('{d.Path}') is missing.");
            }
            if (s.Model.Network == VmNetworkMode.Bridged && _conn.IsLocal)
                await _runtime.Bridge.EnsureAsync(cancellationToken).ConfigureAwait(false);
            // A domain with a managed-save image resumes from it (the suspend-to-disk of SuspendAsync).
            await dom.CallAsync(virDomainCreate, $"Starting the VM {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            return await InfoAsync(dom, cancellationToken).ConfigureAwait(false);
        }, cancellationToken);

    public Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken)
    {
        options ??= new VeStopOptions();
        options.Validate();
        return WithVmAsync(nameOrId, async (dom, s) =>
        {
            if (!IsActive(s))
            {
                if (s.Summary.HasManagedSave)
                    await dom.CallAsync(d => virDomainManagedSaveRemove(d, 0), $"Discarding the saved state of {s.Model.Name}", cancellationToken).ConfigureAwait(false);
                return VeStopMethod.AlreadyStopped;
            }
            if (options.Kill)
            {
                await DestroyAsync(dom, s.Model.Name, cancellationToken).ConfigureAwait(false);
                return VeStopMethod.Killed;
            }
            // A paused guest cannot hear a power-off request: it runs again first.
            if (s.Summary.State == LibvirtDomainState.Paused)
                await dom.CallAsync(virDomainResume, $"Resuming the VM {s.Model.Name} to stop it", cancellationToken).ConfigureAwait(false);
            var timeout = options.Timeout ?? VeStopOptions.DefaultVmTimeout;
            var deadline = DateTimeOffset.UtcNow + timeout;
            // The guest tools first (a clean power-off that needs no ACPI support), then the power button.
            var method = VeStopMethod.GuestTools;
            if (await dom.RunAsync(d => virDomainShutdownFlags(d, ShutdownGuestAgent), cancellationToken).ConfigureAwait(false) < 0)
            {
                method = VeStopMethod.Acpi;
                await dom.CallAsync(d => virDomainShutdownFlags(d, ShutdownAcpiPowerButton), $"Asking the VM {s.Model.Name} to power off", cancellationToken).ConfigureAwait(false);
            }
            var acpiSent = method == VeStopMethod.Acpi;
            while (DateTimeOffset.UtcNow < deadline)
            {
                if ((await dom.SummarizeAsync(cancellationToken).ConfigureAwait(false)).State == LibvirtDomainState.Shutoff)
                    return method;
                if (!acpiSent && DateTimeOffset.UtcNow > deadline - timeout / 2)
                {
                    // The agent took the request but the guest is still up: press the power button too.
                    acpiSent = await dom.RunAsync(d => virDomainShutdownFlags(d, ShutdownAcpiPowerButton), cancellationToken).ConfigureAwait(false) >= 0;
                    if (acpiSent)
                        method = VeStopMethod.Acpi;
                }
                await Task.Delay(200, cancellationToken).ConfigureAwait(false);
            }
            _logger.LogDebug("VM {Name} did not power off within {Timeout}; destroying it", s.Model.Name, timeout);
            await DestroyAsync(dom, s.Model.Name, cancellationToken).ConfigureAwait(false);
            return VeStopMethod.Killed;
        }, cancellationToken);
    }

    private static async Task DestroyAsync(LibvirtDomain dom, string name, CancellationToken ct)
    {
        if (await dom.RunAsync(virDomainDestroy, ct).ConfigureAwait(false) < 0
            && (await dom.SummarizeAsync(ct).ConfigureAwait(false)).State != LibvirtDomainState.Shutoff)
            await dom.CallAsync(virDomainDestroy, $"Killing the VM {name}", ct).ConfigureAwait(false);
    }

    public Task KillAsync(string nameOrId, CancellationToken cancellationToken)
        => WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            if (IsActive(s))
                await DestroyAsync(dom, s.Model.Name, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    public Task PauseAsync(string nameOrId, CancellationToken cancellationToken)
        => WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            RequireRunning(s, "paused");
            await dom.CallAsync(virDomainSuspend, $"Pausing the VM {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    public Task ResumeAsync(string nameOrId, CancellationToken cancellationToken)
        => WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            switch (StateOf(s.Summary))
            {
                case VeState.Paused:
                    await dom.CallAsync(virDomainResume, $"Resuming the VM {s.Model.Name}", cancellationToken).ConfigureAwait(false);
                    break;
                case VeState.Suspended:
                    await dom.CallAsync(virDomainCreate, $"Resuming the VM {s.Model.Name} from its saved state", cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    throw new InvalidStateException($"The VM {s.Model.Name} is {StateOf(s.Summary).ToString().ToLowerInvariant()}; only a paused or suspended VM resumes.");
            }
            return true;
        }, cancellationToken);

    public Task ResetAsync(string nameOrId, CancellationToken cancellationToken)
        => WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            RequireRunning(s, "reset");
            await dom.CallAsync(d => virDomainReset(d, 0), $"Resetting the VM {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    /// <summary>Saves the VM's memory to disk and stops it (libvirt's managed save); the next start resumes it.</summary>
    public Task SuspendAsync(string nameOrId, CancellationToken cancellationToken)
        => WithVmAsync<bool>(nameOrId, async (dom, s) =>
        {
            if (StateOf(s.Summary) is not (VeState.Running or VeState.Paused))
                throw new InvalidStateException($"The VM {s.Model.Name} is {StateOf(s.Summary).ToString().ToLowerInvariant()}; only a running or paused VM is suspended.");
            await dom.CallAsync(d => virDomainManagedSave(d, 0), $"Suspending the VM {s.Model.Name} to disk", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    private static void RequireRunning(Snapshot s, string what)
    {
        if (StateOf(s.Summary) != VeState.Running)
            throw new InvalidStateException($"The VM {s.Model.Name} is {StateOf(s.Summary).ToString().ToLowerInvariant()}; only a running VM is {what}.");
    }

    private static void RequireStopped(Snapshot s, string what)
    {
        if (StateOf(s.Summary) != VeState.Stopped)
            throw new InvalidStateException($"The VM {s.Model.Name} is {StateOf(s.Summary).ToString().ToLowerInvariant()}; stop it before {what}.");
    }

    public async Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        using var probe = await _conn.FindDomainAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (probe is null || (await probe.SummarizeAsync(cancellationToken).ConfigureAwait(false)).Kind != VeKind.Vm)
            return false;
        return await WithVmAsync(nameOrId, async (dom, s) =>
        {
            if (StateOf(s.Summary) is not (VeState.Stopped or VeState.Suspended))
                throw new InvalidStateException($"The VM {s.Model.Name} is {StateOf(s.Summary).ToString().ToLowerInvariant()}; stop it before deleting it.");
            await dom.CallAsync(d => virDomainUndefineFlags(d, UndefineManagedSave | UndefineSnapshotsMetadata | UndefineNvram | UndefineCheckpointsMetadata),
                $"Undefining the VM {s.Model.Name}", cancellationToken).ConfigureAwait(false);
            // Only what the SDK made is removed: disks of a domain defined elsewhere stay where they are.
            if (_conn.IsLocal && s.Model.MadeBySdk)
                TryDeleteDirectory(_store.PrivatePath(new VeId(s.Model.Id)));
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    public Task<VmInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken)
        => WithVmAsync(nameOrId, async (dom, s) =>
        {
            if (s.Model.Name == newName.Value)
                return await ToInfoAsync(s, cancellationToken).ConfigureAwait(false);
            RequireStopped(s, "renaming it (libvirt renames only inactive domains)");
            if (await _conn.FindDomainAsync(newName.Value, cancellationToken).ConfigureAwait(false) is { } taken)
            {
                taken.Dispose();
                throw new AlreadyExistsException($"A domain named {newName} already exists on {Where}.");
            }
            await dom.CallAsync(d => virDomainRename(d, newName.Value, 0), $"Renaming the VM {s.Model.Name} to {newName}", cancellationToken).ConfigureAwait(false);
            return await InfoAsync(dom, cancellationToken).ConfigureAwait(false);
        }, cancellationToken);

    // ------------------------------------------------------------------ guest tools

    /// <summary>The guest agent through libvirt (<c>virDomainQemuAgentCommand</c>): libvirt owns the channel's socket.</summary>
    private sealed class AgentChannel(LibvirtDomain dom) : IGuestAgentChannel
    {
        public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments, TimeSpan timeout, CancellationToken cancellationToken)
        {
            var request = new JsonObject { ["execute"] = command };
            if (arguments is not null)
                request["arguments"] = arguments.DeepClone();
            string reply;
            try
            {
                reply = await dom.AgentCommandAsync(request.ToJsonString(), Math.Max(1, (int)Math.Ceiling(timeout.TotalSeconds)), cancellationToken).ConfigureAwait(false);
            }
            catch (InvalidStateException ex) when (ex.Data["libvirt.code"] is LibvirtErrors.AgentUnresponsive or LibvirtErrors.AgentUnsynced)
            {
                throw new GuestAgentUnavailableException(ex.Message, ex);
            }
            catch (VirtuozzoException ex) when (ex.Data["libvirt.code"] is LibvirtErrors.InternalError && ex.Message.Contains("guest agent", StringComparison.OrdinalIgnoreCase))
            {
                // libvirt reports the agent's own error replies as an internal error carrying the agent's text.
                throw new GuestAgentException(command, "GenericError", ex.Message);
            }
            var msg = JsonNode.Parse(reply) as JsonObject ?? throw new GuestAgentException(command, "GenericError", "the reply is not a JSON object");
            if (msg["error"] is JsonObject error)
                throw new GuestAgentException(command, error["class"]?.GetValue<string>() ?? "GenericError", error["desc"]?.GetValue<string>() ?? "unknown error");
            return msg["return"];
        }
    }

    private Task<T> WithAgentAsync<T>(string nameOrId, Func<Snapshot, IGuestAgentChannel, Task<T>> action, CancellationToken ct)
        => WithVmAsync(nameOrId, async (dom, s) =>
        {
            RequireRunning(s, "reached through its guest tools");
            try
            {
                return await action(s, new AgentChannel(dom)).ConfigureAwait(false);
            }
            catch (GuestAgentUnavailableException ex)
            {
                throw new InvalidStateException($"The guest tools of {s.Model.Name} do not answer: {ex.Message}", ex);
            }
        }, ct);

    public async Task WaitForGuestToolsAsync(string nameOrId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (timeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be positive.");
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (true)
        {
            try
            {
                await WithAgentAsync(nameOrId, async (_, agent) => await agent.ExecuteAsync("guest-ping", null, TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (InvalidStateException ex) when (ex.InnerException is GuestAgentUnavailableException && DateTimeOffset.UtcNow < deadline)
            {
            }
            catch (InvalidStateException ex) when (ex.InnerException is GuestAgentUnavailableException)
            {
                throw new TimeoutException($"The guest tools of '{nameOrId}' did not answer within {timeout.TotalSeconds:0.#} s.", ex);
            }
            await Task.Delay(500, cancellationToken).ConfigureAwait(false);
        }
    }

    public Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken)
    {
        var argv = VmShared.GuestArgv(options);
        return WithAgentAsync(nameOrId, (_, agent) => VmShared.ExecAsync(agent, argv, options, cancellationToken), cancellationToken);
    }

    public Task SetUserPasswordAsync(string nameOrId, string user, string password, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentException.ThrowIfNullOrEmpty(password);
        if (user.Contains(':', StringComparison.Ordinal) || user.Contains('\n', StringComparison.Ordinal) || password.Contains('\n', StringComparison.Ordinal))
            throw new ArgumentException("The user name must not contain ':' or a newline, nor the password a newline.");
        return WithAgentAsync(nameOrId, async (_, agent) =>
        {
            await agent.SetUserPasswordAsync(user, password, false, AgentTimeout, cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    public Task<IReadOnlyList<VmGuestInterface>> GetGuestNetworkAsync(string nameOrId, CancellationToken cancellationToken)
        => WithAgentAsync(nameOrId, async (_, agent) =>
        {
            var list = await agent.GetNetworkInterfacesAsync(AgentTimeout, cancellationToken).ConfigureAwait(false);
            return (IReadOnlyList<VmGuestInterface>)list
                .Select(i => new VmGuestInterface(i.Name, i.HardwareAddress, i.Addresses.Select(a => new VmGuestAddress(a.Address, a.Prefix, a.IsIPv6)).ToList()))
                .ToList();
        }, cancellationToken);
}
