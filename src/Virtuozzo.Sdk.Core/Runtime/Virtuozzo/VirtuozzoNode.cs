using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>
/// A Virtuozzo node seen through its tools: runs prlctl/vzctl on the chosen host (local or SSH) with argument vectors,
/// maps failures through <see cref="PrlctlErrors"/>, reads JSON through <see cref="PrlctlJson"/> gated by the prlctl
/// version it asks for once, and answers the runtime's inventory from <c>prlctl list -a -j</c>.
/// </summary>
internal sealed class VirtuozzoNode(IVirtuozzoHost host, ILogger? logger = null) : IVeInventory
{
    private readonly SemaphoreSlim _versionGate = new(1, 1);
    private readonly SemaphoreSlim _zoneGate = new(1, 1);
    private NodeTimeZone? _zone;
    private PrlctlVersion? _version;
    private bool _versionKnown;

    public IVirtuozzoHost Host { get; } = host ?? throw new ArgumentNullException(nameof(host));

    /// <summary>Chooses the UUID of a new VE (passed to <c>prlctl create --uuid</c>); tests replaying a recorded session fix it.</summary>
    internal Func<VeId> NewId { get; set; } = VeId.New;

    /// <summary>Runs a command; a non-zero exit is mapped to the SDK's exceptions unless <paramref name="allowFailure"/>.</summary>
    public async Task<BufferedCommandResult> RunAsync(PrlctlCommand command, CancellationToken cancellationToken, bool allowFailure = false, Command? template = null)
    {
        var cmd = (template ?? new Command(command.Program))
            .WithArguments(command.Arguments)
            .WithValidation(CommandResultValidation.None);
        if (command.Secrets.Length > 0)
            cmd = cmd.WithSecrets([.. command.Secrets]);
        logger?.LogDebug("Running {Command} on {Host}", command.ToString(), Host.Name);
        var result = await Host.ExecuteBufferedAsync(cmd, cancellationToken).ConfigureAwait(false);
        if (result.ExitCode != 0 && !allowFailure)
            throw PrlctlErrors.Map(command.ToString(), result.ExitCode, result.StandardOutput, result.StandardError, Host.Name);
        return result;
    }

    /// <summary>prlctl's version (asked once); null when its output names none.</summary>
    public async Task<PrlctlVersion?> GetVersionAsync(CancellationToken cancellationToken)
    {
        if (_versionKnown)
            return _version;
        await _versionGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_versionKnown)
            {
                var r = await RunAsync(Prlctl.Version(), cancellationToken).ConfigureAwait(false);
                _version = PrlctlVersion.TryParse(r.StandardOutput + "\n" + r.StandardError);
                _versionKnown = true;
            }
            return _version;
        }
        finally
        {
            _versionGate.Release();
        }
    }

    /// <summary>
    /// The node's local time zone (asked once): <c>readlink /etc/localtime</c>, else <c>date +%z</c>, else UTC. prlctl's
    /// <c>backup-list</c> prints its dates in it.
    /// </summary>
    public async Task<NodeTimeZone> GetTimeZoneAsync(CancellationToken cancellationToken)
    {
        if (_zone is { } known)
            return known;
        await _zoneGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_zone is null)
            {
                var link = await RunAsync(new PrlctlCommand("readlink", ["/etc/localtime"]), cancellationToken, allowFailure: true).ConfigureAwait(false);
                var zone = link.ExitCode == 0 ? NodeTimeZone.FromLocaltimeLink(link.StandardOutput) : null;
                if (zone is null)
                {
                    var date = await RunAsync(new PrlctlCommand("date", ["+%z"]), cancellationToken, allowFailure: true).ConfigureAwait(false);
                    zone = date.ExitCode == 0 ? NodeTimeZone.FromDateOffset(date.StandardOutput) : null;
                }
                _zone = zone ?? NodeTimeZone.Utc;
                logger?.LogDebug("The time zone of {Host}: {Zone}", Host.Name, _zone.Source);
            }
            return _zone;
        }
        finally
        {
            _zoneGate.Release();
        }
    }

    /// <summary>Runs a command that prints JSON and reads it as a list of objects, tolerating prlctl's version's quirks.</summary>
    public async Task<IReadOnlyList<System.Text.Json.Nodes.JsonObject>> RunJsonAsync(PrlctlCommand command, CancellationToken cancellationToken)
    {
        var version = await GetVersionAsync(cancellationToken).ConfigureAwait(false);
        var r = await RunAsync(command, cancellationToken).ConfigureAwait(false);
        return PrlctlJson.ParseObjects(r.StandardOutput, version);
    }

    /// <summary>One VE's full configuration (<c>list -i -f -j</c>); null when the node has no such VE.</summary>
    public async Task<PrlctlVeConfig?> FindConfigAsync(string nameOrId, CancellationToken cancellationToken)
    {
        IReadOnlyList<System.Text.Json.Nodes.JsonObject> items;
        try
        {
            items = await RunJsonAsync(Prlctl.Info(nameOrId), cancellationToken).ConfigureAwait(false);
        }
        catch (NotFoundException)
        {
            return null;
        }
        return items.Count == 0 ? null : PrlctlVeConfig.Parse(items[0]);
    }

    /// <summary>One VE's full configuration, of the given kind.</summary>
    /// <exception cref="NotFoundException">No VE of that kind has this name or UUID.</exception>
    public async Task<PrlctlVeConfig> GetConfigAsync(string nameOrId, VeKind kind, CancellationToken cancellationToken)
    {
        var config = await FindConfigAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (config is null || config.Kind != kind)
            throw new NotFoundException($"No {(kind == VeKind.Container ? "container" : "VM")} named '{nameOrId}' exists on {Host.Name}.");
        return config;
    }

    /// <summary>Every VE of a kind with its full configuration (<c>list -a -i -f -j --vmtype</c>), skipping names the SDK cannot represent.</summary>
    public async Task<IReadOnlyList<PrlctlVeConfig>> ListConfigsAsync(VeKind kind, CancellationToken cancellationToken)
    {
        var items = await RunJsonAsync(Prlctl.InfoAll(kind), cancellationToken).ConfigureAwait(false);
        return items.Select(PrlctlVeConfig.Parse)
            .Where(c => c.Kind == kind && Representable(c.Name))
            .OrderBy(c => c.Name, StringComparer.Ordinal)
            .ToList();
    }

    public async Task<IReadOnlyList<VeIdentity>> ListAsync(CancellationToken cancellationToken, VeKind? kind = null)
    {
        var rows = await RunJsonAsync(Prlctl.ListAll(kind), cancellationToken).ConfigureAwait(false);
        var list = new List<VeIdentity>();
        foreach (var row in rows)
        {
            var uuid = row["uuid"]?.GetValue<string>();
            var name = row["name"]?.GetValue<string>();
            var type = row["type"]?.GetValue<string>();
            if (uuid is null || name is null || !Guid.TryParse(uuid.Trim('{', '}'), out var guid) || !Representable(name))
                continue;
            var k = type switch { "CT" => VeKind.Container, "VM" => VeKind.Vm, _ => (VeKind?)null };
            if (k is null || (kind is not null && k != kind))
                continue;
            list.Add(new VeIdentity(1, new VeId(guid).ToString(), name, k.Value, DateTimeOffset.MinValue));
        }
        return list.OrderBy(v => v.Name, StringComparer.Ordinal).ToList();
    }

    public async Task<VeIdentity?> FindAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var all = await ListAsync(cancellationToken).ConfigureAwait(false);
        if (VeId.TryParse(nameOrId, out var id))
            return all.FirstOrDefault(v => v.Id == id.ToString());
        return all.FirstOrDefault(v => v.Name == nameOrId);
    }

    /// <summary>The path the reference gives for prl_disk_tool (package prl-disk-tool).</summary>
    internal const string PrlDiskToolPath = "/usr/sbin/prl_disk_tool";

    /// <summary>
    /// What the node is and what the runtime can do there: the host's facts (kernel, cgroups, CPUs,
    /// memory, read without the local runtime's KVM/CRIU probes), the product release, the node's tools and the features
    /// probed from them.
    /// </summary>
    /// <remarks>
    /// Commands: <c>prlctl --version</c>, <c>vzctl --version</c>, <c>cat /etc/virtuozzo-release</c> (else
    /// <c>/etc/vzlinux-release</c>), <c>test -x /usr/sbin/prl_disk_tool</c> (prl_disk_tool has no documented version
    /// option), <c>test -c /dev/kvm</c>, <c>criu --version</c> and, unless probes are skipped, <c>criu check</c>.
    /// </remarks>
    public async Task<HostCapabilities> GetCapabilitiesAsync(CapabilityProbeOptions options, CancellationToken cancellationToken)
    {
        var basics = await Host.GetCapabilitiesAsync(options with { SkipProbes = true }, cancellationToken).ConfigureAwait(false);
        var version = await GetVersionAsync(cancellationToken).ConfigureAwait(false);
        var vz = await RunAsync(Prlctl.VzctlVersion(), cancellationToken, allowFailure: true).ConfigureAwait(false);
        var vzVersion = vz.ExitCode == 0 ? PrlctlVersion.TryParse(vz.StandardOutput + vz.StandardError)?.ToString() ?? "unknown" : null;
        var release = await RunAsync(new PrlctlCommand("cat", ["/etc/virtuozzo-release"]), cancellationToken, allowFailure: true).ConfigureAwait(false);
        if (release.ExitCode != 0)
            release = await RunAsync(new PrlctlCommand("cat", ["/etc/vzlinux-release"]), cancellationToken, allowFailure: true).ConfigureAwait(false);
        var product = release.ExitCode == 0 && release.StandardOutput.Split('\n')[0].Trim() is { Length: > 0 } line ? line : null;
        var diskTool = (await RunAsync(new PrlctlCommand("test", ["-x", PrlDiskToolPath]), cancellationToken, allowFailure: true).ConfigureAwait(false)).ExitCode == 0;
        var kvmDevice = (await RunAsync(new PrlctlCommand("test", ["-c", "/dev/kvm"]), cancellationToken, allowFailure: true).ConfigureAwait(false)).ExitCode == 0;
        var criuRun = await RunAsync(new PrlctlCommand("criu", ["--version"]), cancellationToken, allowFailure: true).ConfigureAwait(false);
        var criuVersion = criuRun.ExitCode == 0 ? Internal.HostProber.ParseVersion(criuRun.StandardOutput + "\n" + criuRun.StandardError) ?? "unknown" : null;

        var kvm = kvmDevice
            ? new FeatureStatus(true, "/dev/kvm exists; the node's dispatcher (prl-disp-service) runs VMs through its own QEMU/KVM")
            : new FeatureStatus(false, "/dev/kvm does not exist on the node (no hardware virtualisation or the kvm module is not loaded)");
        var criu = criuVersion is null ? new FeatureStatus(false, "criu is not installed on the node")
            : options.SkipProbes ? new FeatureStatus(false, "not probed")
            : await Internal.HostProber.CriuStatusAsync(Host, cancellationToken).ConfigureAwait(false);
        var tools = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["prlctl"] = version?.ToString() ?? "unknown",
            ["vzctl"] = vzVersion,
            ["prl_disk_tool"] = diskTool ? "unknown" : null,
            ["criu"] = criuVersion,
        };
        var features = new Dictionary<string, FeatureStatus>(StringComparer.Ordinal)
        {
            ["containers"] = new(true, "prlctl --vmtype ct"),
            ["vms"] = kvmDevice ? new(true, "prlctl --vmtype vm") : new(false, "/dev/kvm does not exist on the node"),
            ["snapshots"] = new(true, "prlctl snapshot"),
            ["backups"] = new(true, "prlctl backup (stored by the node's backup server)"),
            ["live_migration"] = criuVersion is not null
                ? new(true, "prlctl migrate (a running container through the node's CRIU)")
                : new(true, "prlctl migrate for VMs; running containers cannot migrate live without criu on the node"),
            ["memory_guarantees"] = new(true, "prlctl set --memguarantee (admitted by VCMMD)"),
            ["memory_hotplug"] = kvmDevice ? new(true, "prlctl set --mem-hotplug (VMs)") : new(false, "no VMs without /dev/kvm"),
            ["disk_compaction"] = (diskTool, vzVersion is not null) switch
            {
                (true, true) => new(true, "prl_disk_tool compact (VMs), vzctl compact (containers)"),
                (true, false) => new(true, "prl_disk_tool compact (VMs); vzctl is missing, so containers' disks cannot be compacted"),
                (false, true) => new(true, $"vzctl compact (containers); {PrlDiskToolPath} is missing, so VMs' disks cannot be compacted"),
                _ => new(false, $"neither {PrlDiskToolPath} nor vzctl is installed"),
            },
            ["json_escaping"] = version is { EscapesJson: true }
                ? new(true, $"prlctl {version} escapes JSON strings")
                : new(false, version is null ? "prlctl printed no version; JSON is read with the legacy repair when strict reading fails"
                    : $"prlctl {version} predates 7.0.190 and does not escape JSON strings; the SDK repairs them"),
            ["usage_statistics"] = new(false, "not mapped by the Virtuozzo runtime yet"),
            ["os_template_import"] = new(false, "templates are managed by the node's own tools (vzpkg)"),
        };
        return basics with { Runtime = RuntimeKind.Virtuozzo, Product = product, Tools = tools, Kvm = kvm, Criu = criu, Features = features };
    }

    private static bool Representable(string name) => VeName.Validate(name) is null;
}
