using System.Net;
using System.Security.Claims;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

namespace HostingPanel;

/// <summary>The server-rendered pages: a login form and the dashboard shell (the dashboard's script talks to the JSON API).</summary>
public static class PanelPages
{
    public static void MapPanelPages(this WebApplication app)
    {
        var pages = app.MapGroup("").ExcludeFromDescription(); // the OpenAPI document describes the JSON API only
        pages.MapGet("/login", (HttpContext ctx, IAntiforgery af) => Html(LoginPage(af.GetAndStoreTokens(ctx).RequestToken!, null)));

        pages.MapPost("/login", async (HttpContext ctx, IAntiforgery af, UserStore users, ILoggerFactory logs) =>
        {
            if (!await af.IsRequestValidAsync(ctx))
                return Results.Problem("The login form has no valid anti-forgery token.", statusCode: 400, title: "CSRF check failed");
            var form = await ctx.Request.ReadFormAsync();
            var user = users.Verify(form["username"], form["password"]);
            if (user is null)
            {
                // The attempted name is logged, never the password.
                logs.CreateLogger("HostingPanel.Login").LogWarning("Failed login for {User}", form["username"].ToString());
                return Html(LoginPage(af.GetAndStoreTokens(ctx).RequestToken!, "Wrong name or password."), 401);
            }
            var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, user.Name), new Claim(Tenancy.AdminClaim, user.IsAdmin ? "true" : "false")],
                CookieAuthenticationDefaults.AuthenticationScheme);
            await ctx.SignInAsync(new ClaimsPrincipal(identity));
            return Results.Redirect("/");
        }).DisableAntiforgery();

        pages.MapPost("/logout", async (HttpContext ctx, IAntiforgery af) =>
        {
            if (!await af.IsRequestValidAsync(ctx))
                return Results.Problem("No valid anti-forgery token.", statusCode: 400);
            await ctx.SignOutAsync();
            return Results.Redirect("/login");
        }).DisableAntiforgery();

        pages.MapGet("/", (HttpContext ctx, IAntiforgery af, Tenancy t, IWebHostEnvironment env) =>
        {
            var page = File.ReadAllText(Path.Combine(env.WebRootPath, "dashboard.html"))
                .Replace("{{csrf}}", WebUtility.HtmlEncode(af.GetAndStoreTokens(ctx).RequestToken), StringComparison.Ordinal)
                .Replace("{{user}}", WebUtility.HtmlEncode(t.Name), StringComparison.Ordinal)
                .Replace("{{admin}}", t.IsAdmin ? "true" : "false", StringComparison.Ordinal);
            return Html(page);
        }).RequireAuthorization();
    }

    private static IResult Html(string body, int status = 200) => Results.Content(body, "text/html; charset=utf-8", statusCode: status);

    private static string LoginPage(string token, string? error) => $$"""
        <!doctype html><html><head><meta charset="utf-8"><title>Hosting panel — sign in</title><link rel="stylesheet" href="/panel.css"></head>
        <body><main class="login"><h1>Hosting panel</h1>
        {{(error is null ? "" : $"<p class=\"error\" id=\"login-error\">{WebUtility.HtmlEncode(error)}</p>")}}
        <form method="post" action="/login">
          <input type="hidden" name="__RequestVerificationToken" value="{{WebUtility.HtmlEncode(token)}}">
          <label>Name <input name="username" id="username" autocomplete="username" required></label>
          <label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
          <button type="submit" id="login">Sign in</button>
        </form></main></body></html>
        """;
}
