using System.Security.Claims;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Http.HttpResults;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Vm;

namespace HostingPanel;

/// <summary>Who is asking, and which VEs they may see.</summary>
public sealed class Tenancy(IHttpContextAccessor accessor, OwnershipStore owners)
{
    public const string AdminClaim = "panel:admin";

    private ClaimsPrincipal User => accessor.HttpContext?.User ?? new ClaimsPrincipal();

    public string Name => User.Identity?.Name ?? throw new InvalidOperationException("No user.");

    public bool IsAdmin => User.HasClaim(AdminClaim, "true");

    #region Snippet:PanelAuthorization
    /// <summary>
    /// True when the caller may see and act on the VE: its own tenant's VEs, or any VE for the administrator.
    /// Every endpoint that names a VE asks this first, and answers 404 when it says no, so a customer cannot
    /// even learn that another tenant's VE exists.
    /// </summary>
    public bool CanAccess(VeId id) => IsAdmin || owners.OwnerOf(id) == Name;
    #endregion

    public bool TryResolve(string id, out VeId veId) => VeId.TryParse(id, out veId) && CanAccess(veId);
}

/// <summary>The JSON API: the same authorization as the pages, CSRF-checked on every state-changing request.</summary>
public static class PanelApi
{
    public sealed record CreateContainerRequest(string? Name, string? Template, string? Memory, int? Cpus);
    public sealed record ResourcesRequest(string? Memory, int? Cpus);
    public sealed record ExecRequest(string? Command);
    public sealed record BackupRequest(bool Full);
    public sealed record RestoreRequest(string? NewName);
    public sealed record CreateUserRequest(string? Name, string? Password);

    private static readonly ByteSize MinMemory = ByteSize.FromMiB(64);
    private static readonly ByteSize MaxMemory = ByteSize.FromGiB(16);

    public static void MapPanelApi(this WebApplication app)
    {
        app.Services.GetRequiredService<IServiceProvider>();
        var api = app.MapGroup("/api").RequireAuthorization().AddEndpointFilter(CsrfFilter).WithTags("panel");

        api.MapGet("/csrf", (IAntiforgery af, HttpContext ctx) => new { token = af.GetAndStoreTokens(ctx).RequestToken });

        api.MapGet("/ves", async (Tenancy t, VirtualEnvironmentClient ves, CancellationToken ct) =>
            (await ves.ListAsync(all: true, ct)).Where(v => t.CanAccess(v.Id)).Select(ToDto));

        api.MapGet("/ves/{id}", async (string id, Tenancy t, VirtualEnvironmentClient ves, CancellationToken ct) =>
            !t.TryResolve(id, out var veId) ? NotFound() : Results.Ok(ToDto(await ves.GetAsync(veId, ct))));

        api.MapGet("/ves/{id}/usage", async (string id, Tenancy t, VirtualEnvironmentClient ves, CancellationToken ct) =>
            !t.TryResolve(id, out var veId) ? NotFound() : Results.Ok(await ves.GetUsageAsync(veId, ct)));

        #region Snippet:PanelCreateContainer
        api.MapPost("/containers", async (CreateContainerRequest req, Tenancy t, ContainerClient containers, OwnershipStore owners, CancellationToken ct) =>
        {
            // Validate everything before anything is created; a bad field is a problem-details 400.
            var errors = new Dictionary<string, string[]>();
            if (VeName.Validate(req.Name) is { } nameError)
                errors["name"] = [nameError];
            var memory = ParseMemory(req.Memory ?? "256M", errors);
            if (req.Cpus is < 1 or > 64)
                errors["cpus"] = ["CPUs must be between 1 and 64."];
            if (req.Template is { } tpl && !UserStore.IsValidName(tpl))
                errors["template"] = ["Not a template name."];
            if (errors.Count > 0)
                return Results.ValidationProblem(errors);

            var ct1 = await containers.CreateAsync(new ContainerCreateOptions
            {
                Name = new VeName(req.Name!),
                Template = req.Template ?? ContainerClient.BusyboxTemplate,
                Resources = new ContainerResources { MemorySize = memory, Cpus = req.Cpus },
            }, ct);
            owners.Assign(ct1.Id, t.Name);
            return Results.Created($"/api/ves/{ct1.Id}", ToDto(ct1));
        });
        #endregion

        api.MapPost("/ves/{id}/start", (string id, Tenancy t, VirtualEnvironmentClient ves, CancellationToken ct) =>
            Act(t, id, async veId => ToDto(await ves.StartAsync(veId, ct))));
        api.MapPost("/ves/{id}/stop", (string id, Tenancy t, VirtualEnvironmentClient ves, CancellationToken ct) =>
            Act(t, id, async veId => { await ves.StopAsync(veId, null, ct); return ToDto(await ves.GetAsync(veId, ct)); }));
        api.MapPost("/ves/{id}/restart", (string id, Tenancy t, VirtualEnvironmentClient ves, CancellationToken ct) =>
            Act(t, id, async veId => ToDto(await ves.RestartAsync(veId, null, ct))));
        api.MapDelete("/ves/{id}", (string id, Tenancy t, VirtualEnvironmentClient ves, OwnershipStore owners, CancellationToken ct) =>
            Act(t, id, async veId =>
            {
                var info = await ves.GetAsync(veId, ct);
                if (info.IsRunning)
                    await ves.StopAsync(veId, new VeStopOptions { Kill = true }, ct);
                await ves.DeleteAsync(veId, ct);
                owners.Forget(veId);
                return (object)new { deleted = veId.ToString() };
            }));

        #region Snippet:PanelResources
        // Memory and CPUs, live where the VE allows: a container's cgroups; a VM's balloon, DIMM and CPU hotplug.
        // What the SDK refuses (a VM without memory hotplug cannot grow while it runs; the host cannot guarantee the
        // memory) comes back as a typed exception, which Guard answers as a problem (409, 400, 404).
        api.MapPut("/ves/{id}/resources", async (string id, ResourcesRequest req, Tenancy t, VirtualEnvironmentClient ves, ContainerClient containers, VirtualMachineClient vms, CancellationToken ct) =>
        {
            if (!t.TryResolve(id, out var veId))
                return NotFound();
            var errors = new Dictionary<string, string[]>();
            ByteSize? memory = req.Memory is null ? null : ParseMemory(req.Memory, errors);
            if (req.Cpus is < 1 or > 64)
                errors["cpus"] = ["CPUs must be between 1 and 64."];
            if (req.Memory is null && req.Cpus is null)
                errors["memory"] = ["Give the memory, the CPUs or both."];
            if (errors.Count > 0)
                return Results.ValidationProblem(errors);
            return await Guard(async () =>
            {
                var info = await ves.GetAsync(veId, ct);
                return info.Kind == VeKind.Vm
                    ? ToDto(await vms.SetAsync(veId, new VmSetOptions { MemorySize = memory, Cpus = req.Cpus }, ct))
                    : ToDto(await containers.SetAsync(veId, new ContainerSetOptions { MemorySize = memory, Cpus = req.Cpus }, ct));
            });
        });
        #endregion

        api.MapPost("/ves/{id}/exec", async (string id, ExecRequest req, Tenancy t, VirtualEnvironmentClient ves, CancellationToken ct) =>
        {
            if (!t.TryResolve(id, out var veId))
                return NotFound();
            if (string.IsNullOrWhiteSpace(req.Command) || req.Command.Length > 4096)
                return Results.ValidationProblem(new Dictionary<string, string[]> { ["command"] = ["A command of 1 to 4096 characters."] });
            return await Guard(async () =>
            {
                var r = await ves.ExecAsync(veId, new VeExecOptions { Command = [req.Command], Shell = true, Timeout = TimeSpan.FromSeconds(30) }, ct);
                return new { r.ExitCode, r.StandardOutput, r.StandardError };
            });
        });

        // Backups: the chain of a VE, create (full or incremental), restore and delete any.
        api.MapGet("/ves/{id}/backups", async (string id, Tenancy t, BackupClient backups, CancellationToken ct) =>
            !t.TryResolve(id, out var veId) ? NotFound() : Results.Ok((await backups.ListAsync(veId, ct)).Select(ToDto)));

        #region Snippet:PanelBackupProgress
        api.MapPost("/ves/{id}/backups", (string id, BackupRequest req, Tenancy t, BackupClient backups, OperationRegistry ops) =>
        {
            if (!t.TryResolve(id, out var veId))
                return NotFound();
            // The operation is the IProgress<OperationProgress>: each report goes to the tenant's browsers as an event,
            // and its CancellationTokenSource is what the page's Cancel button trips.
            var op = ops.Start(t.Name, req.Full ? "full backup" : "incremental backup", veId, async (progress, ct) =>
                (await backups.CreateAsync(veId, new BackupCreateOptions { Full = req.Full }, progress, ct)).Backup.Id);
            return Results.Accepted($"/api/operations/{op.Id}", op.ToDto());
        });
        #endregion

        api.MapPost("/backups/{backupId}/restore", async (string backupId, RestoreRequest? req, Tenancy t, BackupClient backups, VirtualEnvironmentClient ves, OwnershipStore owners, OperationRegistry ops, CancellationToken ct) =>
        {
            if (await FindBackupAsync(backupId, t, backups, ct) is not { } backup)
                return NotFound();
            VeName? newName = null;
            if (req?.NewName is { Length: > 0 } n)
            {
                if (VeName.Validate(n) is { } err)
                    return Results.ValidationProblem(new Dictionary<string, string[]> { ["newName"] = [err] });
                newName = new VeName(n);
            }
            var tenant = owners.OwnerOf(backup.VeId) ?? t.Name;
            var op = ops.Start(t.Name, "restore", backup.VeId, async (progress, token) =>
            {
                if (newName is null && (await ves.GetAsync(backup.VeId, token)).IsRunning)
                    await ves.StopAsync(backup.VeId, null, token);
                var restored = await backups.RestoreAsync(backup.Id, new BackupRestoreOptions { NewName = newName }, progress, token);
                owners.Assign(restored, tenant);
                return restored.ToString();
            });
            return Results.Accepted($"/api/operations/{op.Id}", op.ToDto());
        });

        api.MapDelete("/backups/{backupId}", async (string backupId, Tenancy t, BackupClient backups, CancellationToken ct) =>
        {
            if (await FindBackupAsync(backupId, t, backups, ct) is not { } backup)
                return NotFound();
            return await Guard(async () => (object)new { deleted = await backups.DeleteAsync(backup.Id, withDependents: true, ct) });
        });

        api.MapGet("/operations/{opId}", (string opId, Tenancy t, OperationRegistry ops) =>
            ops.Get(opId) is { } op && (t.IsAdmin || op.Tenant == t.Name) ? Results.Ok(op.ToDto()) : NotFound());
        api.MapPost("/operations/{opId}/cancel", async (string opId, Tenancy t, OperationRegistry ops) =>
        {
            if (ops.Get(opId) is not { } op || !(t.IsAdmin || op.Tenant == t.Name))
                return NotFound();
            await op.Cancellation.CancelAsync();
            return Results.Accepted($"/api/operations/{op.Id}", op.ToDto());
        });

        #region Snippet:PanelEvents
        // Server-sent events: the SDK's VE events (only the caller's VEs) and the caller's operations' progress.
        api.MapGet("/events", async (HttpContext ctx, Tenancy t, EventHub hub, CancellationToken ct) =>
        {
            ctx.Response.Headers.ContentType = "text/event-stream";
            ctx.Response.Headers.CacheControl = "no-cache";
            var (subscription, reader) = hub.Subscribe();
            try
            {
                await ctx.Response.WriteAsync(": connected\n\n", ct);
                await ctx.Response.Body.FlushAsync(ct);
                await foreach (var m in reader.ReadAllAsync(ct))
                {
                    var visible = m.VeId is { } veId ? t.CanAccess(veId) : t.IsAdmin || m.Tenant == t.Name;
                    if (!visible)
                        continue;
                    await ctx.Response.WriteAsync($"event: {m.Type}\ndata: {System.Text.Json.JsonSerializer.Serialize(m.Data, Json)}\n\n", ct);
                    await ctx.Response.Body.FlushAsync(ct);
                }
            }
            catch (OperationCanceledException) { }
            finally { hub.Unsubscribe(subscription); }
        });
        #endregion

        // The administrator: accounts and the host's memory account.
        var admin = api.MapGroup("/admin").RequireAuthorization("admin");
        admin.MapPost("/users", (CreateUserRequest req, UserStore users) =>
        {
            try { users.Create(req.Name ?? "", req.Password ?? "", isAdmin: false); }
            catch (ArgumentException ex) { return Results.ValidationProblem(new Dictionary<string, string[]> { [ex.ParamName ?? "name"] = [ex.Message.Split(" (Parameter")[0]] }); }
            return Results.Created($"/api/admin/users/{req.Name}", new { name = req.Name });
        });
        admin.MapGet("/memory", async (ResourceLedger ledger, CancellationToken ct) =>
        {
            var s = await ledger.GetSnapshotAsync(ct);
            return new
            {
                s.CapacityBytes, s.ReservedBytes, s.AvailableBytes,
                Reservations = s.Reservations.Select(r => new { VeId = r.VeId.ToString(), r.Kind, r.GuaranteeBytes, r.OverheadBytes }),
            };
        });
    }

    internal static readonly System.Text.Json.JsonSerializerOptions Json = new(System.Text.Json.JsonSerializerDefaults.Web)
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
    };

    internal static async ValueTask<object?> CsrfFilter(EndpointFilterInvocationContext ctx, EndpointFilterDelegate next)
    {
        var http = ctx.HttpContext;
        if (!HttpMethods.IsGet(http.Request.Method) && !HttpMethods.IsHead(http.Request.Method))
        {
            var af = http.RequestServices.GetRequiredService<IAntiforgery>();
            if (!await af.IsRequestValidAsync(http))
                return Results.Problem("The request has no valid anti-forgery token (header X-CSRF-TOKEN from GET /api/csrf).", statusCode: 400, title: "CSRF check failed");
        }
        return await next(ctx);
    }

    internal static IResult NotFound() => Results.Problem("No such VE, backup or operation.", statusCode: 404);

    internal static ByteSize ParseMemory(string text, Dictionary<string, string[]> errors)
    {
        if (!ByteSize.TryParse(text, SizeUnit.Mebibytes, out var size))
            errors["memory"] = [$"'{text}' is not a size (for example 256M or 1G)."];
        else if (size < MinMemory || size > MaxMemory)
            errors["memory"] = [$"Memory must be between {MinMemory.ToHumanString()} and {MaxMemory.ToHumanString()}."];
        return size;
    }

    private static async Task<BackupInfo?> FindBackupAsync(string backupId, Tenancy t, BackupClient backups, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(backupId) || backupId.Length > 128)
            return null;
        var backup = (await backups.ListAsync(default, ct)).FirstOrDefault(b => b.Id == backupId);
        return backup is not null && t.CanAccess(backup.VeId) ? backup : null;
    }

    private static Task<IResult> Act(Tenancy t, string id, Func<VeId, Task<object>> action)
        => t.TryResolve(id, out var veId) ? Guard(() => action(veId)) : Task.FromResult(NotFound());

    /// <summary>Runs an SDK call and maps its typed errors to problem details: not found 404, bad argument 400, state and resources 409, unsupported 501.</summary>
    internal static async Task<IResult> Guard<T>(Func<Task<T>> action, Func<T, IResult>? result = null)
    {
        try { var value = await action(); return result is null ? Results.Ok(value) : result(value); }
        catch (Exception ex) when (StatusFor(ex) is { } status and not 500) { return Results.Problem(ex.Message, statusCode: status); }
    }

    /// <summary>
    /// The one table from the SDK's typed errors to HTTP statuses, for endpoints (<see cref="Guard"/>) and for failed
    /// operations alike: not found 404, bad argument 400, state, resources and name clashes 409, unsupported 501, else 500.
    /// </summary>
    internal static int StatusFor(Exception ex) => ex switch
    {
        NotFoundException => 404,
        ArgumentException => 400,
        InsufficientResourcesException or InvalidStateException or AlreadyExistsException => 409,
        UnsupportedOnHostException => 501,
        _ => 500,
    };

    internal static object ToDto(VeInfo v) => new
    {
        Id = v.Id.ToString(), Name = v.Name.Value, Kind = v.Kind.ToString(), State = v.State.ToString(), v.Cpus,
        Memory = v.MemorySize.ToHumanString(), MemoryBytes = v.MemorySize.Bytes, Disk = v.DiskSize.ToHumanString(),
    };

    internal static object ToDto(BackupInfo b) => new
    {
        b.Id, Type = b.Type.ToString(), b.ParentId, VeId = b.VeId.ToString(), b.VeName, b.CreatedAt, b.SizeBytes,
    };
}
