using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;
using Virtuozzo.Sdk.Core;

namespace HostingPanel;

/// <summary>The panel's own settings (section <c>Panel</c> of appsettings.json).</summary>
public sealed class PanelOptions
{
    /// <summary>Where the panel keeps its accounts and the VE-to-tenant map.</summary>
    public string StateDirectory { get; set; } = "/var/lib/vzsdk-panel/panel";

    /// <summary>
    /// The administrator's VM images: every <c>*.qcow2</c> directly in this directory is offered to customers by file name.
    /// Null or missing: no images.
    /// </summary>
    public string? ImagesDirectory { get; set; }

    /// <summary>A directly booted kernel offered as the image <c>test-guest</c> (the SDK's test guest); null for none.</summary>
    public KernelBootOptions? TestGuest { get; set; }

    /// <summary>How the panel's VMs reach the network. Default <see cref="Virtuozzo.Sdk.Vm.VmNetworkMode.Bridged"/> (the bridge containers share).</summary>
    public Virtuozzo.Sdk.Vm.VmNetworkMode VmNetwork { get; set; } = Virtuozzo.Sdk.Vm.VmNetworkMode.Bridged;

    /// <summary>The memory manager, run inside the panel when enabled.</summary>
    public MemoryManagementOptions MemoryManagement { get; set; } = new();

    /// <summary>
    /// The hosts a customer may migrate a VE to, by name (section <c>Panel:MigrationDestinations</c>). Only the
    /// administrator configures them; a customer picks a name and never sends a host, key or path. Empty: no migration.
    /// </summary>
    public List<MigrationDestinationOptions> MigrationDestinations { get; set; } = [];
}

/// <summary>
/// One entry of <c>Panel:MigrationDestinations</c>: a second host reached over SSH, where the SDK's <c>vzsdk</c> tool is
/// installed (<see cref="Virtuozzo.Sdk.Migration.MigrationDestination.OverSsh"/>).
/// </summary>
public sealed class MigrationDestinationOptions
{
    /// <summary>What customers see and pick: letters, digits, '-' and '_', 2 to 32 characters, unique.</summary>
    public string? Name { get; set; }

    /// <summary>The SSH host (an IP address, or a name when <see cref="ListenAddress"/> is given).</summary>
    public string? Host { get; set; }

    /// <summary>The SSH port. Default 22.</summary>
    public int Port { get; set; } = 22;

    /// <summary>The account on the destination. Default root.</summary>
    public string User { get; set; } = "root";

    /// <summary>The private key the panel signs in with (batch mode: no password is ever asked).</summary>
    public string? IdentityFile { get; set; }

    /// <summary>The known-hosts file that holds the destination's host key (required: the key is always checked).</summary>
    public string? KnownHostsFile { get; set; }

    /// <summary>The destination runtime's data root, or null for the default of the tool there.</summary>
    public string? RemoteDataRoot { get; set; }

    /// <summary>The <c>vzsdk</c> program on the destination. Default <c>vzsdk</c> (on its PATH).</summary>
    public string RemoteVzsdk { get; set; } = "vzsdk";

    /// <summary>The destination's IP address for disks and memory, or null for <see cref="Host"/>.</summary>
    public string? ListenAddress { get; set; }

    /// <summary>The directory of SSH's multiplexing socket, or null for the SDK's default.</summary>
    public string? ControlDirectory { get; set; }
}

/// <summary>A kernel and initramfs booted directly (no disk image), as the SDK's test guest is.</summary>
public sealed class KernelBootOptions
{
    /// <summary>The kernel image.</summary>
    public string? KernelPath { get; set; }

    /// <summary>The initial RAM disk.</summary>
    public string? InitrdPath { get; set; }

    /// <summary>The kernel command line.</summary>
    public string CommandLine { get; set; } = "console=ttyS0 memhp_default_state=online panic=-1";
}

/// <summary>Section <c>Panel:MemoryManagement</c>: whether the panel runs the SDK's memory manager, and how.</summary>
public sealed class MemoryManagementOptions
{
    /// <summary>Run <see cref="Virtuozzo.Sdk.Memory.MemoryManager"/> in the panel. Default false (a host may run <c>vzsdk mem daemon</c> instead).</summary>
    public bool Enabled { get; set; }

    /// <summary>The policy it starts with (static, performance, density…). Default density.</summary>
    public string Policy { get; set; } = Virtuozzo.Sdk.Memory.MemoryPolicies.DefaultName;

    /// <summary>Let the manager drive the host's KSM. Default true.</summary>
    public bool ManageKsm { get; set; } = true;
}

/// <summary>An account: an administrator sees every VE, a customer only the VEs of its tenant.</summary>
public sealed record PanelUser(string Name, string PasswordHash, bool IsAdmin);

/// <summary>Accounts in a small JSON file; passwords are stored as PBKDF2-SHA256 hashes with a per-user salt.</summary>
public sealed class UserStore
{
    private const int Iterations = 210_000;
    private readonly string _path;
    private readonly Lock _gate = new();
    private Dictionary<string, PanelUser> _users;

    public UserStore(PanelOptions options)
    {
        Directory.CreateDirectory(options.StateDirectory);
        _path = Path.Combine(options.StateDirectory, "users.json");
        _users = File.Exists(_path)
            ? JsonSerializer.Deserialize<Dictionary<string, PanelUser>>(File.ReadAllText(_path)) ?? []
            : [];
    }

    public bool HasAdmin { get { lock (_gate) return _users.Values.Any(u => u.IsAdmin); } }

    /// <summary>Account names: letters, digits, '-' and '_', 2 to 32 characters.</summary>
    public static bool IsValidName(string? name)
        => name is { Length: >= 2 and <= 32 } && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    public void Create(string name, string password, bool isAdmin)
    {
        if (!IsValidName(name))
            throw new ArgumentException("An account name is 2-32 letters, digits, '-' or '_'.", nameof(name));
        if (password is not { Length: >= 8 })
            throw new ArgumentException("A password has at least 8 characters.", nameof(password));
        lock (_gate)
        {
            if (_users.ContainsKey(name))
                throw new ArgumentException($"The account '{name}' exists.", nameof(name));
            _users[name] = new PanelUser(name, Hash(password), isAdmin);
            Save();
        }
    }

    public PanelUser? Verify(string? name, string? password)
    {
        PanelUser? user;
        lock (_gate)
            _users.TryGetValue(name ?? "", out user);
        if (user is null || password is null)
        {
            Hash(password ?? ""); // the same work either way, so a missing account is not faster to answer
            return null;
        }
        return Check(password, user.PasswordHash) ? user : null;
    }

    private static string Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(password, salt, Iterations, HashAlgorithmName.SHA256, 32);
        return $"pbkdf2-sha256${Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    private static bool Check(string password, string stored)
    {
        var parts = stored.Split('$');
        if (parts.Length != 4 || !int.TryParse(parts[1], out var iterations))
            return false;
        var salt = Convert.FromBase64String(parts[2]);
        var expected = Convert.FromBase64String(parts[3]);
        var actual = Rfc2898DeriveBytes.Pbkdf2(password, salt, iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    private void Save()
    {
        var tmp = _path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(_users));
        File.SetUnixFileMode(tmp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(tmp, _path, overwrite: true);
    }
}

/// <summary>Which tenant owns each VE (a JSON file). A VE the panel did not create belongs to no tenant: only the administrator sees it.</summary>
public sealed class OwnershipStore
{
    private readonly string _path;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, string> _owners;
    private readonly string _migratedPath;
    private readonly Dictionary<string, MigratedVe> _migrated;

    public OwnershipStore(PanelOptions options)
    {
        Directory.CreateDirectory(options.StateDirectory);
        _path = Path.Combine(options.StateDirectory, "owners.json");
        _owners = File.Exists(_path)
            ? JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(_path)) ?? []
            : [];
        _migratedPath = Path.Combine(options.StateDirectory, "migrated.json");
        _migrated = File.Exists(_migratedPath)
            ? JsonSerializer.Deserialize<Dictionary<string, MigratedVe>>(File.ReadAllText(_migratedPath)) ?? []
            : [];
    }

    public string? OwnerOf(VeId id) { lock (_gate) return _owners.GetValueOrDefault(id.ToString()); }

    public void Assign(VeId id, string tenant) { lock (_gate) { _owners[id.ToString()] = tenant; Save(); } }

    public void Forget(VeId id) { lock (_gate) { if (_owners.Remove(id.ToString())) Save(); } }

    /// <summary>
    /// Records that the VE left this host for <paramref name="record"/>'s destination: it no longer belongs to any tenant
    /// here (every endpoint answers 404 for it, as for any VE this host does not have), and its tenant keeps the record
    /// of where it went and how (<see cref="MigratedFor"/>), in <c>migrated.json</c>.
    /// </summary>
    public void MarkMigrated(MigratedVe record)
    {
        ArgumentNullException.ThrowIfNull(record);
        lock (_gate)
        {
            _migrated[record.Id] = record;
            SaveMigrated();
            if (_owners.Remove(record.Id))
                Save();
        }
    }

    /// <summary>The VEs that migrated away from this host: the tenant's, or every tenant's for null.</summary>
    public IReadOnlyList<MigratedVe> MigratedFor(string? tenant)
    {
        lock (_gate)
            return [.. _migrated.Values.Where(m => tenant is null || m.Tenant == tenant).OrderByDescending(m => m.At)];
    }

    private void Save()
    {
        var tmp = _path + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(_owners));
        File.Move(tmp, _path, overwrite: true);
    }

    private void SaveMigrated()
    {
        var tmp = _migratedPath + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(_migrated));
        File.Move(tmp, _migratedPath, overwrite: true);
    }
}

/// <summary>A VE that migrated to another host: whose it was, where it went, and what the migration measured.</summary>
public sealed record MigratedVe(
    string Id, string Name, string Kind, string Tenant, string Destination, string Mode, string Reason,
    double DowntimeMilliseconds, double TotalMilliseconds, long DiskBytes, long MemoryBytes, bool TransferMeasured, DateTimeOffset At);

/// <summary>A long operation (backup, restore) that reports progress and can be cancelled from the page.</summary>
public sealed class PanelOperation : IProgress<OperationProgress>
{
    private readonly Action<PanelOperation> _changed;

    public PanelOperation(string tenant, string kind, VeId veId, Action<PanelOperation> changed)
    {
        Tenant = tenant; Kind = kind; VeId = veId; _changed = changed;
    }

    public string Id { get; } = Guid.NewGuid().ToString("N")[..12];
    public string Tenant { get; }
    public string Kind { get; }
    public VeId VeId { get; }
    public string Stage { get; private set; } = "queued";
    public long Completed { get; private set; }
    public long? Total { get; private set; }
    public string Status { get; private set; } = "running";
    public string? Result { get; private set; }
    public string? Error { get; private set; }

    /// <summary>For a failed operation, the HTTP status the same error gets from a synchronous endpoint (404, 400, 409, 501), or 500.</summary>
    public int? ErrorStatus { get; private set; }

    internal CancellationTokenSource Cancellation { get; } = new();

    public void Report(OperationProgress value)
    {
        (Stage, Completed, Total) = (value.Stage, value.Completed, value.Total);
        _changed(this);
    }

    internal void Finish(string status, string? result = null, string? error = null, int? errorStatus = null)
    {
        (Status, Result, Error, ErrorStatus) = (status, result, error, errorStatus);
        _changed(this);
    }

    public object ToDto() => new { Id, Kind, VeId = VeId.ToString(), Stage, Completed, Total, Status, Result, Error, ErrorStatus };
}

/// <summary>Running and finished operations, by id.</summary>
public sealed class OperationRegistry(EventHub hub)
{
    private readonly ConcurrentDictionary<string, PanelOperation> _ops = new();

    public PanelOperation Start(string tenant, string kind, VeId veId, Func<PanelOperation, CancellationToken, Task<string>> work)
    {
        var op = new PanelOperation(tenant, kind, veId, o => hub.Publish(new HubMessage("operation", o.Tenant, null, o.ToDto())));
        _ops[op.Id] = op;
        _ = Task.Run(async () =>
        {
            try
            {
                var result = await work(op, op.Cancellation.Token);
                op.Finish("succeeded", result);
            }
            catch (OperationCanceledException)
            {
                op.Finish("cancelled");
            }
            catch (Exception ex) when (ex is VirtuozzoException or ArgumentException or IOException)
            {
                op.Finish("failed", error: ex.Message, errorStatus: PanelApi.StatusFor(ex));
            }
            catch (Exception ex)
            {
                // Not an error the SDK documents: the operation still ends (failed, 500) rather than staying "running" forever.
                op.Finish("failed", error: ex.Message, errorStatus: 500);
            }
        });
        return op;
    }

    public PanelOperation? Get(string id) => _ops.GetValueOrDefault(id);
}
