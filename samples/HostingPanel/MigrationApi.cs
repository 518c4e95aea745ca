using System.Globalization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Migration;

namespace HostingPanel;

/// <summary>A configured migration destination: the name customers pick and the SDK's destination it stands for.</summary>
public sealed record PanelDestination(string Name, MigrationDestination Destination);

/// <summary>
/// The administrator's migration destinations (<c>Panel:MigrationDestinations</c>), each built once, at start, into
/// <see cref="MigrationDestination.OverSsh"/>. A customer names a destination; the name is looked up here, so no host,
/// key or path from a request ever reaches SSH.
/// </summary>
public sealed class MigrationCatalog
{
    private readonly Dictionary<string, PanelDestination> _destinations = new(StringComparer.Ordinal);

    /// <summary>Builds every configured destination.</summary>
    /// <exception cref="InvalidOperationException">An entry is invalid (no name, a duplicate name, bad SSH settings): the panel does not start.</exception>
    public MigrationCatalog(PanelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        for (var i = 0; i < options.MigrationDestinations.Count; i++)
        {
            var d = options.MigrationDestinations[i];
            var where = $"Panel:MigrationDestinations:{i} ('{d.Name}')";
            if (!UserStore.IsValidName(d.Name))
                throw new InvalidOperationException($"{where}: a destination's Name is 2-32 letters, digits, '-' or '_'.");
            if (_destinations.ContainsKey(d.Name!))
                throw new InvalidOperationException($"{where}: the name is used twice.");
            if (string.IsNullOrWhiteSpace(d.Host))
                throw new InvalidOperationException($"{where}: Host is required.");
            try
            {
                var ssh = new SshHostOptions
                {
                    HostName = d.Host,
                    Port = d.Port,
                    User = d.User,
                    IdentityFile = d.IdentityFile,
                    KnownHostsFile = d.KnownHostsFile ?? "",
                    ControlDirectory = d.ControlDirectory,
                };
                _destinations[d.Name!] = new PanelDestination(d.Name!, MigrationDestination.OverSsh(ssh, d.RemoteDataRoot, d.RemoteVzsdk, d.ListenAddress));
            }
            catch (ArgumentException ex)
            {
                throw new InvalidOperationException($"{where}: {ex.Message}", ex);
            }
        }
    }

    /// <summary>The names customers may pick, in configuration order.</summary>
    public IReadOnlyList<string> Names => [.. _destinations.Keys];

    /// <summary>The destination of that exact name, or null (for anything not configured).</summary>
    public PanelDestination? Find(string? name)
        => name is { Length: > 0 and <= 64 } && _destinations.TryGetValue(name, out var d) ? d : null;
}

/// <summary>Migration in the JSON API: the destinations on offer, migrating a VE, and where the tenant's VEs went.</summary>
public static class PanelMigrationApi
{
    public sealed record MigrateRequest(string? Destination, string? Mode);

    public static void MapPanelMigrationApi(this WebApplication app)
    {
        var api = app.MapGroup("/api").RequireAuthorization().AddEndpointFilter(PanelApi.CsrfFilter).WithTags("panel");

        api.MapGet("/migration/destinations", (MigrationCatalog catalog) => catalog.Names.Select(n => new { Name = n }));

        // The VEs that left this host, with where they went and what the migration measured.
        api.MapGet("/migrations", (Tenancy t, OwnershipStore owners) => owners.MigratedFor(t.IsAdmin ? null : t.Name));

        #region Snippet:PanelMigrate
        api.MapPost("/ves/{id}/migrate", (string id, MigrateRequest req, Tenancy t, MigrationCatalog catalog, OwnershipStore owners, OperationRegistry ops, IServiceProvider sp) =>
        {
            // The caller's VE first (404 for anyone else's), then the destination: a name from the administrator's list.
            if (!t.TryResolve(id, out var veId))
                return PanelApi.NotFound();
            var errors = new Dictionary<string, string[]>();
            var destination = catalog.Find(req.Destination);
            if (destination is null)
                errors["destination"] = [$"'{req.Destination}' is not one of the migration destinations (GET /api/migration/destinations lists them)."];
            MigrationMode mode = MigrationMode.Auto;
            if (req.Mode is { } m && !(Enum.TryParse(m, ignoreCase: true, out mode) && Enum.IsDefined(mode)))
                errors["mode"] = ["The mode is Auto, Online or Offline."];
            if (errors.Count > 0)
                return Results.ValidationProblem(errors);

            // A runtime that cannot migrate (libvirt) refuses when the client is made: a 501 problem, and nothing starts.
            MigrationClient migration;
            try { migration = sp.GetRequiredService<MigrationClient>(); }
            catch (UnsupportedOnHostException ex) { return Results.Problem(ex.Message, statusCode: 501); }

            var tenant = owners.OwnerOf(veId) ?? t.Name; // the administrator may move a customer's VE: the record stays the customer's
            var op = ops.Start(t.Name, $"migration to {destination!.Name}", veId, async (progress, ct) =>
            {
                // The SDK's MigrationProgress (phase, bytes sent and left) becomes the operation's progress, so the page
                // shows it like a backup's; the operation's token is what Cancel trips (the VE then stays here, running).
                var relay = new MigrationRelay(progress);
                var result = await migration.MigrateAsync(veId, destination.Destination, new MigrationOptions { Mode = mode }, relay, ct);
                // It runs on the other host now and is gone from this one: the tenant keeps the record of where it went.
                owners.MarkMigrated(new MigratedVe(
                    result.Id.ToString(), result.Name.Value, result.Kind.ToString(), tenant, destination.Name, result.Mode.ToString(), result.Reason,
                    result.Downtime.TotalMilliseconds, result.TotalTime.TotalMilliseconds, result.DiskBytes, result.MemoryBytes, result.TransferMeasured,
                    DateTimeOffset.UtcNow));
                return Describe(result, destination.Name);
            });
            return Results.Accepted($"/api/operations/{op.Id}", op.ToDto());
        });
        #endregion
    }

    /// <summary>One line for the page: what moved where, how, why, and what it cost (the page may no longer know the VE's name).</summary>
    internal static string Describe(MigrationResult r, string destination)
    {
        var ci = CultureInfo.InvariantCulture;
        var measured = r.TransferMeasured
            ? string.Create(ci, $"downtime {r.Downtime.TotalMilliseconds:0} ms, disk {ByteSize.FromBytes(r.DiskBytes).ToHumanString()}, memory {ByteSize.FromBytes(r.MemoryBytes).ToHumanString()}")
            : "downtime and bytes not reported by this runtime";
        return string.Create(ci, $"{r.Name} moved to {destination}: {r.Mode} ({r.Reason}); {measured}; {r.TotalTime.TotalSeconds:0.0} s in all");
    }

    /// <summary>Relays each migration report, in order, as the operation's progress (the phase and the bytes of that phase).</summary>
    private sealed class MigrationRelay(IProgress<OperationProgress> operation) : IProgress<MigrationProgress>
    {
        public void Report(MigrationProgress value)
            => operation.Report(new OperationProgress(Stage(value.Phase), value.BytesTransferred, value.BytesTransferred + value.BytesRemaining));

        private static string Stage(MigrationPhase phase) => phase switch
        {
            MigrationPhase.Preparing => "preparing the destination",
            MigrationPhase.CopyingDisks => "copying disks",
            MigrationPhase.CopyingMemory => "copying memory",
            MigrationPhase.PostCopy => "post-copy",
            MigrationPhase.Switching => "switching over",
            MigrationPhase.CleaningUp => "cleaning up",
            _ => phase.ToString(),
        };
    }
}
