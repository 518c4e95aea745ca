using Virtuozzo.Sdk.Core.Hosts;

namespace Virtuozzo.Sdk.Core;

/// <summary>Options of the SDK, bound when it is registered with <see cref="VirtuozzoSdkServiceCollectionExtensions.AddVirtuozzoSdk(Microsoft.Extensions.DependencyInjection.IServiceCollection, Action{VirtuozzoSdkOptions}?)"/>.</summary>
public sealed class VirtuozzoSdkOptions
{
    /// <summary>The default data root of the local runtime.</summary>
    public const string DefaultDataRoot = "/var/lib/vzsdk";

    /// <summary>The local runtime's data root: VE configs and disks, run state, backups, templates, locks. Default <c>/var/lib/vzsdk</c>.</summary>
    public string DataRoot { get; set; } = DefaultDataRoot;

    /// <summary>
    /// Memory kept back for the host itself, not available to VE guarantees. Null (the default) reserves
    /// 4 % of RAM, at least 128 MiB and at most 320 MiB, as Virtuozzo's memory manager did.
    /// </summary>
    public ByteSize? HostMemoryReserve { get; set; }

    /// <summary>
    /// Caps the memory available to VE guarantees (run a host as if it were smaller, e.g. to overcommit a test host);
    /// null (the default) for no cap. The runtime's <see cref="Resources.ResourceLedger"/> admits a start or a change only
    /// while Σ mem_min fits <c>min(RAM − reserve, budget)</c>. A memory manager's budget
    /// (<c>MemoryManagerOptions.Budget</c>, <c>vzsdk mem daemon --budget</c>) is recorded in the ledger and caps it too.
    /// </summary>
    public ByteSize? HostMemoryBudget { get; set; }

    /// <summary>How long an operation waits for a VE's lock or the host lock before failing with <see cref="LockTimeoutException"/>. Default 30 s.</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The host bridge containers and VMs attach to. Default <c>vzbr0</c>.</summary>
    public string BridgeName { get; set; } = "vzbr0";

    /// <summary>The host's address on the bridge, with the subnet's prefix; VEs use it as their gateway. Default <c>10.209.0.1/24</c>.</summary>
    public string BridgeAddress { get; set; } = "10.209.0.1/24";

    /// <summary>Masquerade the bridge's subnet so that VEs reach other networks through the host. Default off (no NAT).</summary>
    public bool BridgeNat { get; set; }

    /// <summary>
    /// A remote host to manage over SSH; null (the default) for this machine. The local runtime refuses a remote host
    /// (<see cref="UnsupportedOnHostException"/>); the Virtuozzo runtime will manage nodes through it.
    /// </summary>
    public SshHostOptions? RemoteHost { get; set; }

    /// <summary>Which runtime does the work. Default <see cref="RuntimeKind.Local"/>; chosen on the builder with <c>UseLocalRuntime()</c> or <c>UseVirtuozzoRuntime(host)</c>.</summary>
    public RuntimeKind Runtime { get; set; } = RuntimeKind.Local;

    /// <summary>Settings of the local runtime (the programs it runs).</summary>
    public LocalRuntimeOptions Local { get; set; } = new();

    /// <summary>The host memory reserve for a host with <paramref name="totalMemoryBytes"/> of RAM.</summary>
    public long GetHostMemoryReserve(long totalMemoryBytes)
        => HostMemoryReserve?.Bytes ?? Math.Clamp(totalMemoryBytes / 25, 128 * ByteSize.MiB, 320 * ByteSize.MiB);

    /// <summary>
    /// The memory available to VE guarantees on a host with <paramref name="totalMemoryBytes"/> of RAM: RAM minus
    /// <see cref="GetHostMemoryReserve(long)"/>, capped by <see cref="HostMemoryBudget"/> when one is set.
    /// </summary>
    public long GetGuaranteeCapacity(long totalMemoryBytes)
    {
        var capacity = Math.Max(0, totalMemoryBytes - GetHostMemoryReserve(totalMemoryBytes));
        return HostMemoryBudget is { } budget ? Math.Min(capacity, Math.Max(0, budget.Bytes)) : capacity;
    }

    /// <summary>The configuration section these options were bound from ("" for none or a root), to name keys in errors.</summary>
    internal string ConfigurationPath { get; set; } = string.Empty;

    /// <summary>Values that could not be bound from configuration, each naming its key.</summary>
    internal IReadOnlyList<string> ConfigurationErrors { get; set; } = [];

    /// <summary>
    /// Returns the problems with these options (empty when valid). Options bound from configuration name each key with
    /// its full path (<c>Virtuozzo:HostMemoryReserve: '512Q' is not a size…</c>).
    /// </summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>(ConfigurationErrors);
        var prefix = ConfigurationPath.Length == 0 ? string.Empty : ConfigurationPath + ":";
        if (string.IsNullOrWhiteSpace(DataRoot))
            errors.Add(prefix + "DataRoot must be set.");
        else if (!Path.IsPathRooted(DataRoot))
            errors.Add(prefix + $"DataRoot must be an absolute path (got '{DataRoot}').");
        if (string.IsNullOrWhiteSpace(BridgeName) || BridgeName.Length > 15 || !BridgeName.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
            errors.Add(prefix + $"BridgeName must be a network interface name of at most 15 letters, digits, '_', '-' or '.' (got '{BridgeName}').");
        try { Virtuozzo.Sdk.Core.Runtime.Local.HostBridge.ValidateAddress(BridgeAddress); }
        catch (ArgumentException ex) { errors.Add(prefix + "BridgeAddress: " + ex.Message); }
        if (HostMemoryBudget is { Bytes: <= 0 } budget)
            errors.Add(prefix + $"HostMemoryBudget must be positive (got {budget.Bytes} bytes).");
        if (LockTimeout <= TimeSpan.Zero)
            errors.Add(prefix + "LockTimeout must be positive.");
        if (RemoteHost is not null)
        {
            try { RemoteHost.Validate(); }
            catch (ArgumentException ex) { errors.Add(prefix + "RemoteHost: " + ex.Message); }
        }
        return errors;
    }
}

/// <summary>Settings of the local runtime.</summary>
public sealed class LocalRuntimeOptions
{
    /// <summary>The program that runs VMs; null (the default) looks up <c>qemu-system-x86_64</c> on PATH.</summary>
    public string? EmulatorPath { get; set; }

    /// <summary>
    /// The CRIU program used to checkpoint, restore and migrate containers; null (the default) uses <c>$VZSDK_CRIU</c>,
    /// then <c>/opt/vzsdk/criu/criu</c> (where <c>./build.sh</c> installs CRIU 4), then <c>criu</c> on PATH. It is
    /// probed on first use (<c>criu check</c>, and a test dump that tells whether hardware breakpoints work here).
    /// </summary>
    public string? CriuPath { get; set; }
}
