using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Memory;

namespace HostingPanel;

/// <summary>The administrator's memory page: the memory manager's policy, each VE's protection and target, and KSM.</summary>
public static class PanelMemoryApi
{
    public sealed record PolicyRequest(string? Policy);

    public static void MapPanelMemoryApi(this WebApplication app)
    {
        var admin = app.MapGroup("/api/admin").RequireAuthorization("admin").AddEndpointFilter(PanelApi.CsrfFilter).WithTags("panel");

        admin.MapGet("/memory/manager", async (IServiceProvider sp, VirtuozzoRuntime runtime, OwnershipStore owners, CancellationToken ct) =>
        {
            try { return await ReadAsync(sp, runtime, owners, ct); }
            catch (Exception ex) when (ex is VirtuozzoException or IOException or UnauthorizedAccessException)
            {
                return Results.Problem($"The host's memory state could not be read: {ex.Message}", statusCode: 503);
            }
        });

        admin.MapPut("/memory/policy", async (PolicyRequest req, IServiceProvider sp, CancellationToken ct) =>
        {
            if (req.Policy is null || !MemoryPolicies.Names.Contains(req.Policy, StringComparer.Ordinal))
                return Results.ValidationProblem(new Dictionary<string, string[]> { ["policy"] = [$"One of {string.Join(", ", MemoryPolicies.Names)}."] });
            if (sp.GetService<MemoryManager>() is not { } manager)
                return Results.Problem("The memory manager does not run in this panel (Panel:MemoryManagement:Enabled).", statusCode: 409);
            await manager.SetPolicyAsync(req.Policy, ct);
            return Results.Ok(new { Policy = await manager.GetPolicyNameAsync(ct) });
        });
    }

    #region Snippet:PanelMemoryManager
    // The manager runs in the panel when Panel:MemoryManagement:Enabled is set (AddMemoryManagement in Program.cs).
    // Without it the page says so, and still shows KSM as the kernel reports it (read only).
    private static async Task<IResult> ReadAsync(IServiceProvider sp, VirtuozzoRuntime runtime, OwnershipStore owners, CancellationToken ct)
    {
        var manager = sp.GetService<MemoryManager>();
        var ksmController = manager?.Ksm ?? new KsmController(Path.Combine(runtime.Options.DataRoot, "memory", "ksm"));
        var ksm = ksmController.IsAvailable ? await ksmController.GetStatusAsync(ct) : null;
        var ksmDto = ksm is null ? null : new
        {
            Mode = ksm.Mode.ToString(), ksm.Running, ksm.PagesToScan, ksm.SleepMilliseconds, ksm.PagesShared, ksm.PagesSharing, ksm.SavedBytes, ksm.FullScans,
            Managed = manager?.Ksm is not null,
        };
        if (manager is null)
            return Results.Ok(new { Running = false, Ksm = ksmDto });
        var s = await manager.GetStatusAsync(TimeSpan.FromMilliseconds(500), ct);
        return Results.Ok(new
        {
            Running = true, s.Policy, s.TotalBytes, s.ReserveBytes, s.AvailableBytes, s.GuaranteedBytes, s.FreeBytes,
            Ves = s.Ves.Select(v => new
            {
                Id = v.Id.ToString(), v.Name, Kind = v.Kind.ToString(), Tenant = owners.OwnerOf(v.Id), v.Active,
                ProtectedBytes = v.GuaranteeBytes, v.TargetBytes, v.LimitBytes, v.UsageBytes, v.StallMicroseconds,
            }),
            Ksm = ksmDto,
        });
    }
    #endregion
}
