using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using HostingPanel;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Memory;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Vm;

var builder = WebApplication.CreateBuilder(args);

var panelOptions = builder.Configuration.GetSection("Panel").Get<PanelOptions>() ?? new PanelOptions();
builder.Services.AddSingleton(panelOptions);

#region Snippet:PanelRegistration
// The SDK, bound from the "Virtuozzo" section of appsettings.json; the local runtime unless the section says otherwise.
var sdk = builder.Services.AddVirtuozzoSdk(builder.Configuration.GetSection("Virtuozzo"))
    .AddContainers()
    .AddVirtualMachines()
    .AddBackup()
    .AddMigration();   // MigrationClient, for the destinations the administrator configures (Panel:MigrationDestinations)
// The memory manager (policies, per-VE targets and protection, KSM) runs inside the panel when Panel:MemoryManagement says so.
if (panelOptions.MemoryManagement is { Enabled: true } memory)
{
    // The manager keeps the same reserve for the host as the SDK's ledger (Virtuozzo:HostMemoryReserve) when one is set.
    var reserve = builder.Configuration.GetSection("Virtuozzo").Get<VirtuozzoSdkOptions>()?.HostMemoryReserve;
    sdk.AddMemoryManagement(o =>
    {
        o.Policy = memory.Policy;
        o.ManageKsm = memory.ManageKsm;
        if (reserve is { } r)
            o.Reserve = new HostMemoryReserve(0, r.Bytes, r.Bytes);
    });
}
builder.Services.AddHostedService<VeWatcher>();   // the SDK's event stream, fanned out to browsers
#endregion

builder.Services.AddSingleton<ImageCatalog>();
builder.Services.AddSingleton<MigrationCatalog>();
builder.Services.AddSingleton<UserStore>();
builder.Services.AddSingleton<OwnershipStore>();
builder.Services.AddSingleton<EventHub>();
builder.Services.AddSingleton<OperationRegistry>();
builder.Services.AddScoped<Tenancy>();
builder.Services.AddHttpContextAccessor();
builder.Services.AddHostedService<UsageSampler>();

builder.Services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme)
    .AddCookie(o =>
    {
        o.Cookie.Name = "panel.auth";
        o.Cookie.HttpOnly = true;
        o.Cookie.SameSite = SameSiteMode.Strict;
        o.LoginPath = "/login";
        o.SlidingExpiration = true;
        o.ExpireTimeSpan = TimeSpan.FromHours(8);
        // The API answers 401/403, not a redirect to the login page.
        o.Events.OnRedirectToLogin = ctx => Redirect(ctx, StatusCodes.Status401Unauthorized);
        o.Events.OnRedirectToAccessDenied = ctx => Redirect(ctx, StatusCodes.Status403Forbidden);
    });
builder.Services.AddAuthorizationBuilder()
    .AddPolicy("admin", p => p.RequireClaim(Tenancy.AdminClaim, "true"));
builder.Services.AddAntiforgery(o => { o.HeaderName = "X-CSRF-TOKEN"; o.Cookie.Name = "panel.csrf"; o.Cookie.SameSite = SameSiteMode.Strict; });
builder.Services.AddProblemDetails();
// A body that does not parse is the caller's mistake: a 400 problem, in Development too (where it would otherwise throw).
builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = false);
builder.Services.AddOpenApi();

var app = builder.Build();

// A migration destination that is misconfigured stops the panel here, at start, not at a customer's first migration.
app.Services.GetRequiredService<MigrationCatalog>();

// The first run creates the administrator and prints its generated password once, to the console only (never to a log).
var users = app.Services.GetRequiredService<UserStore>();
if (!users.HasAdmin)
{
    var password = Convert.ToBase64String(RandomNumberGenerator.GetBytes(18));
    users.Create("admin", password, isAdmin: true);
    Console.WriteLine($"Hosting panel: created the account 'admin' with the password {password} (shown once; it is stored hashed).");
}

app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseDefaultFiles(new DefaultFilesOptions { DefaultFileNames = [] });
app.UseStaticFiles();
app.UseAuthentication();
app.UseAuthorization();
app.MapOpenApi();

app.MapPanelPages();
app.MapPanelApi();
app.MapPanelVmApi();
app.MapPanelMemoryApi();
app.MapPanelMigrationApi();

app.Run();

static Task Redirect(RedirectContext<CookieAuthenticationOptions> ctx, int status)
{
    if (ctx.Request.Path.StartsWithSegments("/api"))
    {
        ctx.Response.StatusCode = status;
        return Task.CompletedTask;
    }
    ctx.Response.Redirect(ctx.RedirectUri);
    return Task.CompletedTask;
}

/// <summary>The entry point, visible to the tests' WebApplicationFactory.</summary>
public partial class Program;
