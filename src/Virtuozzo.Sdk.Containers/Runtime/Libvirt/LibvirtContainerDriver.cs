using System.Globalization;
using System.Xml.Linq;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;
using Virtuozzo.Sdk.Core.State;
using static Virtuozzo.Sdk.Core.Runtime.Libvirt.LibvirtNative;

namespace Virtuozzo.Sdk.Containers.Runtime.Libvirt;

/// <summary>
/// Containers as the <c>exe</c> domains of libvirt's <c>vz</c> driver (<c>vz+ssh://root@node/system</c>): what that driver
/// exposes, mapped to the container verbs — list, state, start, stop (shutdown, then destroy after the timeout), suspend
/// and resume (managed save, which the node implements as its checkpoint), pause, memory, snapshots, rename, delete,
/// passwords and usage. What the driver does not expose (creating from a template, exec, clone, CPU limits, disk
/// resize, mount, templates) is refused by name, pointing to the Virtuozzo runtime (<c>prlctl</c> over SSH), which has
/// all of it. libvirt's built-in test driver (<c>test:///default</c>) takes the same path in the SDK's tests.
/// </summary>
internal sealed class LibvirtContainerDriver : IContainerDriver
{
    private readonly LibvirtConnection _conn;
    private readonly StateStore _store;
    private readonly ILogger _logger;

    public LibvirtContainerDriver(VirtuozzoRuntime runtime)
    {
        _conn = runtime.RequireLibvirt();
        if (!_conn.HasContainers)
            throw new UnsupportedOnHostException(
                $"Containers are not supported by the libvirt runtime ({_conn.Uri}): libvirt's QEMU driver runs VMs only, and its LXC driver is not what Virtuozzo uses. " +
                "Manage containers with the local runtime (runc), the Virtuozzo runtime (prlctl), or libvirt's vz driver (vz+ssh://root@node/system).");
        _store = runtime.Store;
        _logger = runtime.CreateLogger<LibvirtContainerDriver>();
    }

    public VeKind Kind => VeKind.Container;

    private UnsupportedOnHostException Unsupported(string feature)
        => new($"{feature} is not exposed by libvirt's vz driver ({_conn.Uri}); use the Virtuozzo runtime (UseVirtuozzoRuntime, vzsdk --host), which drives prlctl on the node.");

    // ------------------------------------------------------------------ reading

    /// <summary>What the SDK reads from an <c>exe</c> domain's XML.</summary>
    internal sealed record ContainerXml(Guid Id, string Name, long MemoryBytes, long MaxMemoryBytes, int Cpus, string? RootImage, IReadOnlyList<string> IpAddresses);

    /// <summary>Parses an <c>exe</c> domain's XML (the vz driver's: memory, vCPUs, the root file system's image, the interfaces' addresses).</summary>
    internal static ContainerXml ParseXml(string xml)
    {
        var d = XDocument.Parse(xml).Root ?? throw new InvalidStateException("libvirt returned an empty domain XML.");
        static long KiB(XElement? e) => LibvirtDomainSummary.Bytes(e) ?? 0;
        var devices = d.Element("devices");
        var root = devices?.Elements("filesystem").FirstOrDefault(f => (string?)f.Element("target")?.Attribute("dir") == "/");
        var addresses = devices?.Elements("interface").SelectMany(i => i.Elements("ip"))
            .Select(ip => (string?)ip.Attribute("address") is { } a ? (string?)ip.Attribute("prefix") is { } p ? a + "/" + p : a : null)
            .OfType<string>().ToList() ?? [];
        var memory = KiB(d.Element("memory"));
        return new ContainerXml(
            Guid.Parse(d.Element("uuid")?.Value ?? throw new InvalidStateException("The domain XML has no UUID.")),
            d.Element("name")?.Value ?? throw new InvalidStateException("The domain XML has no name."),
            d.Element("currentMemory") is { } current ? KiB(current) : memory,
            memory,
            int.TryParse(d.Element("vcpu")?.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 1,
            (string?)root?.Element("source")?.Attribute("file"),
            addresses);
    }

    internal static VeState StateOf(LibvirtDomainSummary s) => s.VeState;

    private static bool IsActive(LibvirtDomainSummary s) => s.IsActive;

    private sealed record Snapshot(LibvirtDomainSummary Summary, ContainerXml Xml);

    private static async Task<Snapshot> ReadAsync(LibvirtDomain dom, CancellationToken ct)
        => new(await dom.SummarizeAsync(ct).ConfigureAwait(false), ParseXml(await dom.GetXmlAsync(inactive: false, ct).ConfigureAwait(false)));

    private static ContainerInfo ToInfo(Snapshot s, bool autostart)
    {
        var x = s.Xml;
        var memory = ByteSize.FromBytes(x.MemoryBytes);
        return new ContainerInfo
        {
            Id = new VeId(x.Id),
            Name = new VeName(x.Name),
            Kind = VeKind.Container,
            State = StateOf(s.Summary),
            Cpus = x.Cpus,
            MemorySize = memory,
            IpAddresses = x.IpAddresses,
            Autostart = autostart,
            Template = string.Empty, // the vz driver's XML does not say which template a container came from
            Resources = new ContainerResources { MemorySize = memory, Cpus = x.Cpus },
        };
    }

    private async Task<ContainerInfo> InfoAsync(LibvirtDomain dom, CancellationToken ct)
    {
        var s = await ReadAsync(dom, ct).ConfigureAwait(false);
        var autostart = await dom.RunAsync(d => virDomainGetAutostart(d, out var a) >= 0 && a != 0, ct).ConfigureAwait(false);
        return ToInfo(s, autostart);
    }

    private async Task<LibvirtDomain> OpenAsync(string nameOrId, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        var dom = await _conn.FindDomainAsync(nameOrId.Trim(), ct).ConfigureAwait(false)
            ?? throw new NotFoundException($"There is no container '{nameOrId}' on {_conn.Uri}.");
        if ((await dom.SummarizeAsync(ct).ConfigureAwait(false)).Kind != VeKind.Container)
        {
            dom.Dispose();
            throw new NotFoundException($"'{nameOrId}' on {_conn.Uri} is a VM, not a container.");
        }
        return dom;
    }

    /// <summary>Runs <paramref name="action"/> on the container under its lock (shared with every process on the data root).</summary>
    private async Task<T> WithContainerAsync<T>(string nameOrId, Func<LibvirtDomain, Snapshot, Task<T>> action, CancellationToken ct)
    {
        using var dom = await OpenAsync(nameOrId, ct).ConfigureAwait(false);
        var s = await ReadAsync(dom, ct).ConfigureAwait(false);
        using var veLock = await _store.LockVeAsync(new VeId(s.Xml.Id), ct).ConfigureAwait(false);
        return await action(dom, await ReadAsync(dom, ct).ConfigureAwait(false)).ConfigureAwait(false);
    }

    private Task<ContainerInfo> ThenInfoAsync(string nameOrId, Func<LibvirtDomain, Snapshot, Task> action, CancellationToken ct)
        => WithContainerAsync(nameOrId, async (dom, s) =>
        {
            await action(dom, s).ConfigureAwait(false);
            return await InfoAsync(dom, ct).ConfigureAwait(false);
        }, ct);

    private static InvalidStateException WrongState(Snapshot s, string allowed)
        => new($"The container {s.Xml.Name} is {StateOf(s.Summary).ToString().ToLowerInvariant()}; {allowed}.");

    public async Task<IReadOnlyList<ContainerInfo>> ListAsync(bool all, CancellationToken cancellationToken)
    {
        var list = new List<ContainerInfo>();
        var handles = await _conn.ListDomainHandlesAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var dom in handles)
            {
                try
                {
                    if ((await dom.SummarizeAsync(cancellationToken).ConfigureAwait(false)).Kind == VeKind.Container)
                        list.Add(await InfoAsync(dom, cancellationToken).ConfigureAwait(false));
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
        return list.Where(c => all || c.IsRunning).OrderBy(c => c.Name.Value, StringComparer.Ordinal).ToList();
    }

    public async Task<ContainerInfo> GetAsync(string nameOrId, CancellationToken cancellationToken)
    {
        using var dom = await OpenAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        return await InfoAsync(dom, cancellationToken).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------ lifecycle

    public Task<ContainerInfo> StartAsync(string nameOrId, CancellationToken cancellationToken)
        => ThenInfoAsync(nameOrId, (dom, s) =>
        {
            if (IsActive(s.Summary))
                throw WrongState(s, "only a stopped or suspended container starts");
            return dom.CallAsync(virDomainCreate, $"Starting the container {s.Xml.Name}", cancellationToken);
        }, cancellationToken);

    public Task<VeStopMethod> StopAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken)
    {
        options ??= new VeStopOptions();
        options.Validate();
        return WithContainerAsync(nameOrId, (dom, s) => StopCoreAsync(dom, s, options, cancellationToken), cancellationToken);
    }

    private async Task<VeStopMethod> StopCoreAsync(LibvirtDomain dom, Snapshot s, VeStopOptions options, CancellationToken ct)
    {
        if (!IsActive(s.Summary))
        {
            if (s.Summary.HasManagedSave)
                await dom.CallAsync(d => virDomainManagedSaveRemove(d, 0), $"Discarding the saved state of {s.Xml.Name}", ct).ConfigureAwait(false);
            return VeStopMethod.AlreadyStopped;
        }
        if (!options.Kill)
        {
            if (s.Summary.State == LibvirtDomainState.Paused)
                await dom.CallAsync(virDomainResume, $"Resuming the container {s.Xml.Name} to stop it", ct).ConfigureAwait(false);
            // The container's init is asked to stop (the node's own shutdown), then it is killed after the timeout.
            await dom.CallAsync(d => virDomainShutdownFlags(d, 0), $"Stopping the container {s.Xml.Name}", ct).ConfigureAwait(false);
            var deadline = DateTimeOffset.UtcNow + (options.Timeout ?? VeStopOptions.DefaultContainerTimeout);
            while (DateTimeOffset.UtcNow < deadline)
            {
                if (!IsActive(await dom.SummarizeAsync(ct).ConfigureAwait(false)))
                    return VeStopMethod.Signal;
                await Task.Delay(200, ct).ConfigureAwait(false);
            }
            _logger.LogDebug("Container {Name} did not stop in time; destroying it", s.Xml.Name);
        }
        if (await dom.RunAsync(virDomainDestroy, ct).ConfigureAwait(false) < 0 && IsActive(await dom.SummarizeAsync(ct).ConfigureAwait(false)))
            await dom.CallAsync(virDomainDestroy, $"Killing the container {s.Xml.Name}", ct).ConfigureAwait(false);
        return VeStopMethod.Killed;
    }

    public async Task<ContainerInfo> RestartAsync(string nameOrId, VeStopOptions? options, CancellationToken cancellationToken)
    {
        await StopAsync(nameOrId, options, cancellationToken).ConfigureAwait(false);
        return await StartAsync(nameOrId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The node's suspend: libvirt's managed save, which the vz driver implements as the container's checkpoint to disk.</summary>
    public Task<ContainerInfo> SuspendAsync(string nameOrId, CancellationToken cancellationToken)
        => ThenInfoAsync(nameOrId, (dom, s) =>
        {
            if (StateOf(s.Summary) is not (VeState.Running or VeState.Paused))
                throw WrongState(s, "only a running container is suspended");
            return dom.CallAsync(d => virDomainManagedSave(d, 0), $"Suspending the container {s.Xml.Name}", cancellationToken);
        }, cancellationToken);

    public Task<ContainerInfo> SuspendToDiskAsync(string nameOrId, CancellationToken cancellationToken) => SuspendAsync(nameOrId, cancellationToken);

    public Task<ContainerInfo> ResumeAsync(string nameOrId, CancellationToken cancellationToken)
        => ThenInfoAsync(nameOrId, (dom, s) => StateOf(s.Summary) switch
        {
            VeState.Paused => dom.CallAsync(virDomainResume, $"Resuming the container {s.Xml.Name}", cancellationToken),
            VeState.Suspended => dom.CallAsync(virDomainCreate, $"Resuming the container {s.Xml.Name} from its saved state", cancellationToken),
            _ => throw WrongState(s, "only a paused or suspended container resumes"),
        }, cancellationToken);

    public Task<CheckpointSupport> GetCheckpointSupportAsync(CancellationToken cancellationToken)
        => Task.FromResult(new CheckpointSupport(true, null, null, true, true, false,
            "The node checkpoints its containers itself (libvirt's managed save over the vz driver)."));

    public async Task<bool> DeleteAsync(string nameOrId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrId);
        using (var probe = await _conn.FindDomainAsync(nameOrId.Trim(), cancellationToken).ConfigureAwait(false))
        {
            if (probe is null || (await probe.SummarizeAsync(cancellationToken).ConfigureAwait(false)).Kind != VeKind.Container)
                return false;
        }
        return await WithContainerAsync(nameOrId, async (dom, s) =>
        {
            if (IsActive(s.Summary))
                throw WrongState(s, "stop it before deleting it");
            await dom.CallAsync(d => virDomainUndefineFlags(d, UndefineManagedSave | UndefineSnapshotsMetadata),
                $"Deleting the container {s.Xml.Name}", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    public Task<ContainerInfo> RenameAsync(string nameOrId, VeName newName, CancellationToken cancellationToken)
        => ThenInfoAsync(nameOrId, async (dom, s) =>
        {
            if (s.Xml.Name == newName.Value)
                return;
            if (IsActive(s.Summary))
                throw WrongState(s, "stop it before renaming it (libvirt renames only inactive domains)");
            if (await _conn.FindDomainAsync(newName.Value, cancellationToken).ConfigureAwait(false) is { } taken)
            {
                taken.Dispose();
                throw new AlreadyExistsException($"A VE named {newName} already exists on {_conn.Uri}.");
            }
            await dom.CallAsync(d => virDomainRename(d, newName.Value, 0), $"Renaming the container {s.Xml.Name} to {newName}", cancellationToken).ConfigureAwait(false);
        }, cancellationToken);

    // ------------------------------------------------------------------ settings

    /// <summary>Memory only: the vz driver sets a container's memory (<c>virDomainSetMemoryFlags</c>); everything else is the Virtuozzo runtime's.</summary>
    public Task<ContainerInfo> SetAsync(string nameOrId, ContainerSetOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options with { MemorySize = null } != new ContainerSetOptions())
            throw Unsupported("Changing a container's settings other than its memory");
        return ThenInfoAsync(nameOrId, async (dom, s) =>
        {
            if (options.MemorySize is not { } size)
                return;
            if (size.Bytes < 64L << 20)
                throw new ArgumentOutOfRangeException(nameof(options), size, "A container needs at least 64 MiB of memory.");
            var kib = (nuint)(size.Bytes / 1024);
            var active = IsActive(s.Summary);
            if (size.Bytes > s.Xml.MaxMemoryBytes)
            {
                if (active)
                    throw WrongState(s, $"stop it to raise its memory above its maximum of {ByteSize.FromBytes(s.Xml.MaxMemoryBytes).ToHumanString()}");
                await dom.CallAsync(d => virDomainSetMemoryFlags(d, kib, AffectConfig | MemoryMaximum), $"Raising the memory maximum of {s.Xml.Name}", cancellationToken).ConfigureAwait(false);
            }
            // Live, then in the definition (some drivers take the two flags only one at a time).
            if (active)
                await dom.CallAsync(d => virDomainSetMemoryFlags(d, kib, AffectLive), $"Setting the memory of {s.Xml.Name}", cancellationToken).ConfigureAwait(false);
            await dom.CallAsync(d => virDomainSetMemoryFlags(d, kib, AffectConfig), $"Setting the memory of {s.Xml.Name} in its definition", cancellationToken).ConfigureAwait(false);
        }, cancellationToken);
    }

    public Task SetUserPasswordAsync(string nameOrId, string user, string password, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(user);
        ArgumentException.ThrowIfNullOrEmpty(password);
        if (user.Contains(':', StringComparison.Ordinal) || user.Contains('\n', StringComparison.Ordinal) || password.Contains('\n', StringComparison.Ordinal))
            throw new ArgumentException("The user name must not contain ':' or a newline, nor the password a newline.");
        return WithContainerAsync(nameOrId, async (dom, s) =>
        {
            await dom.CallAsync(d => virDomainSetUserPassword(d, user, password, 0), $"Setting the password of {user} in {s.Xml.Name}", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    // ------------------------------------------------------------------ snapshots

    public Task<ContainerSnapshotInfo> CreateSnapshotAsync(string nameOrId, string snapshotName, string? description, CancellationToken cancellationToken)
    {
        LibvirtSnapshots.ValidateName(snapshotName);
        return WithContainerAsync(nameOrId, async (dom, s) =>
            ToRecord(await LibvirtSnapshots.CreateAsync(dom, s.Xml.Id, "The container " + s.Xml.Name, snapshotName, description, cancellationToken).ConfigureAwait(false)), cancellationToken);
    }

    public async Task<IReadOnlyList<ContainerSnapshotInfo>> ListSnapshotsAsync(string nameOrId, CancellationToken cancellationToken)
    {
        using var dom = await OpenAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        var s = await ReadAsync(dom, cancellationToken).ConfigureAwait(false);
        return (await LibvirtSnapshots.ListAsync(dom, s.Xml.Id, cancellationToken).ConfigureAwait(false)).Select(ToRecord).ToList();
    }

    public Task SwitchSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => WithContainerAsync(nameOrId, async (dom, s) =>
        {
            var snap = await LibvirtSnapshots.FindAsync(dom, s.Xml.Id, "The container " + s.Xml.Name, snapshotIdOrName, cancellationToken).ConfigureAwait(false);
            await LibvirtSnapshots.OnAsync(dom, snap.Name, p => virDomainRevertToSnapshot(p, SnapshotRevertForce),
                $"Switching {s.Xml.Name} to the snapshot '{snap.Name}'", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    public Task DeleteSnapshotAsync(string nameOrId, string snapshotIdOrName, CancellationToken cancellationToken)
        => WithContainerAsync(nameOrId, async (dom, s) =>
        {
            var snap = await LibvirtSnapshots.FindAsync(dom, s.Xml.Id, "The container " + s.Xml.Name, snapshotIdOrName, cancellationToken).ConfigureAwait(false);
            await LibvirtSnapshots.OnAsync(dom, snap.Name, p => virDomainSnapshotDelete(p, 0), $"Deleting the snapshot '{snap.Name}' of {s.Xml.Name}", cancellationToken).ConfigureAwait(false);
            return true;
        }, cancellationToken);

    private static ContainerSnapshotInfo ToRecord(LibvirtSnapshot x) => new(x.Id, x.Name, x.Description, x.CreatedAt, x.ParentId, x.IncludesMemory, x.IsCurrent);

    // ------------------------------------------------------------------ not exposed by the vz driver

    public Task<ContainerInfo> CreateAsync(ContainerCreateOptions options, CancellationToken cancellationToken)
        => Task.FromException<ContainerInfo>(Unsupported("Creating a container from an OS template"));

    public Task<VeExecResult> ExecAsync(string nameOrId, VeExecOptions options, CancellationToken cancellationToken)
        => Task.FromException<VeExecResult>(Unsupported("Running a command in a container"));

    public Task CompactDiskAsync(string nameOrId, CancellationToken cancellationToken) => Task.FromException(Unsupported("Compacting a container's disk"));

    public Task<ContainerInfo> CloneAsync(string nameOrId, VeName newName, CancellationToken cancellationToken)
        => Task.FromException<ContainerInfo>(Unsupported("Cloning a container"));

    public Task<string> MountAsync(string nameOrId, CancellationToken cancellationToken) => Task.FromException<string>(Unsupported("Mounting a container"));

    public Task UnmountAsync(string nameOrId, CancellationToken cancellationToken) => Task.FromException(Unsupported("Unmounting a container"));

    public Task<IReadOnlyList<ContainerTemplate>> ListTemplatesAsync(CancellationToken cancellationToken)
        => Task.FromException<IReadOnlyList<ContainerTemplate>>(Unsupported("Listing OS templates"));

    public Task<ContainerTemplate> ImportTemplateAsync(ContainerTemplateImportOptions options, CancellationToken cancellationToken)
        => Task.FromException<ContainerTemplate>(Unsupported("Importing an OS template"));

    /// <summary>The node starts its autostart containers itself: nothing to do.</summary>
    public Task<IReadOnlyList<ContainerInfo>> StartAutostartAsync(CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<ContainerInfo>>([]);

    /// <summary>libvirt and the node reconcile their own state: nothing to do.</summary>
    public Task<int> ReconcileAsync(CancellationToken cancellationToken) => Task.FromResult(0);

    // ------------------------------------------------------------------ the verbs every VE has

    async Task<IReadOnlyList<VeInfo>> IVeDriver.ListVesAsync(CancellationToken cancellationToken) => await ListAsync(true, cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.GetVeAsync(VeId id, CancellationToken cancellationToken) => await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.StartVeAsync(VeId id, CancellationToken cancellationToken) => await StartAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    Task<VeStopMethod> IVeDriver.StopVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken) => StopAsync(id.ToString(), options, cancellationToken);

    async Task<VeInfo> IVeDriver.RestartVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken) => await RestartAsync(id.ToString(), options, cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.SuspendVeAsync(VeId id, CancellationToken cancellationToken) => await SuspendAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> IVeDriver.ResumeVeAsync(VeId id, CancellationToken cancellationToken) => await ResumeAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<bool> IVeDriver.DeleteVeAsync(VeId id, CancellationToken cancellationToken)
    {
        try
        {
            await StopAsync(id.ToString(), new VeStopOptions(), cancellationToken).ConfigureAwait(false);
        }
        catch (NotFoundException)
        {
            return false;
        }
        return await DeleteAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    async Task<VeInfo> IVeDriver.RenameVeAsync(VeId id, VeName newName, CancellationToken cancellationToken) => await RenameAsync(id.ToString(), newName, cancellationToken).ConfigureAwait(false);

    Task<VeExecResult> IVeDriver.ExecVeAsync(VeId id, VeExecOptions options, CancellationToken cancellationToken) => ExecAsync(id.ToString(), options, cancellationToken);

    /// <summary>Usage from the domain's statistics: CPU time, memory, block and interface counters.</summary>
    async Task<VeUsage> IVeDriver.GetVeUsageAsync(VeId id, CancellationToken cancellationToken)
    {
        using var dom = await OpenAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        var info = await InfoAsync(dom, cancellationToken).ConfigureAwait(false);
        var f = (await dom.GetStatsAsync(cancellationToken).ConfigureAwait(false))?.Fields ?? new Dictionary<string, object>();
        return UsageOf(info, f, DateTimeOffset.UtcNow);
    }

    /// <summary>Maps libvirt's statistics fields to the SDK's usage record.</summary>
    internal static VeUsage UsageOf(ContainerInfo info, IReadOnlyDictionary<string, object> f, DateTimeOffset now)
    {
        long Sum(string prefix, string suffix) => f.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal) && kv.Key.EndsWith(suffix, StringComparison.Ordinal) && kv.Value is long)
            .Sum(kv => (long)kv.Value);
        long? Get(string key) => f.TryGetValue(key, out var v) && v is long l ? l : null;
        var used = (Get("balloon.rss") ?? Get("balloon.current")) * 1024;
        var capacity = Sum("block.", ".capacity");
        return new VeUsage(info.Id, VeKind.Container, info.State, TimeSpan.FromTicks((Get("cpu.time") ?? 0) / 100),
            info.IsRunning ? used : null, Sum("block.", ".allocation"), capacity > 0 ? capacity : info.DiskSize.Bytes,
            Sum("net.", ".rx.bytes"), Sum("net.", ".tx.bytes"), now);
    }
}
