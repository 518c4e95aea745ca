using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using HostingPanel;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;

namespace HostingPanel.Tests;

/// <summary>The panel in-process on a data root of its own under /tmp, with two customers; every VE is deleted afterwards.</summary>
public class PanelFactory : WebApplicationFactory<Program>, IAsyncLifetime
{
    public const string Password = "correct-horse-battery";

    public TempDirectory Root { get; } = new("vzsdk-panel");

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("Virtuozzo:DataRoot", Root.File("data"));
        builder.UseSetting("Virtuozzo:LockTimeout", "00:02:00");
        builder.UseSetting("Panel:StateDirectory", Root.File("panel"));
        ConfigurePanel(builder);
    }

    /// <summary>More settings for a panel with more configured (images, the test guest, the memory manager).</summary>
    protected virtual void ConfigurePanel(IWebHostBuilder builder)
    {
    }

    public virtual Task InitializeAsync()
    {
        var users = Services.GetRequiredService<UserStore>();
        users.Create("alice", Password, isAdmin: false);
        users.Create("bob", Password, isAdmin: false);
        users.Create("operator", Password, isAdmin: true);
        return Task.CompletedTask;
    }

    /// <summary>A client signed in as the user, with the anti-forgery header set (unless told not to).</summary>
    public async Task<HttpClient> SignInAsync(string user, bool withCsrf = true)
    {
        var client = CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true });
        var login = await client.GetStringAsync("/login");
        var token = ExtractToken(login);
        var res = await client.PostAsync("/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__RequestVerificationToken"] = token, ["username"] = user, ["password"] = Password,
        }));
        res.StatusCode.Should().Be(HttpStatusCode.Redirect, "the sign-in of {0} succeeds", user);
        if (withCsrf)
        {
            var csrf = await client.GetFromJsonAsync<JsonElement>("/api/csrf");
            client.DefaultRequestHeaders.Add("X-CSRF-TOKEN", csrf.GetProperty("token").GetString());
        }
        return client;
    }

    public static string ExtractToken(string html)
    {
        const string marker = "name=\"__RequestVerificationToken\" value=\"";
        var start = html.IndexOf(marker, StringComparison.Ordinal) + marker.Length;
        return WebUtility.HtmlDecode(html[start..html.IndexOf('"', start)]);
    }

    /// <summary>What the runtime itself has, independent of the panel.</summary>
    public async Task<IReadOnlyList<VeInfo>> RuntimeVesAsync()
        => await Services.GetRequiredService<VirtualEnvironmentClient>().ListAsync(all: true);

    async Task IAsyncLifetime.DisposeAsync()
    {
        try
        {
            // Containers and VMs alike, through the unified client.
            var ves = Services.GetRequiredService<VirtualEnvironmentClient>();
            foreach (var v in await ves.ListAsync(all: true))
            {
                if (v.IsRunning || v.State is VeState.Paused)
                    await ves.StopAsync(v.Id, new VeStopOptions { Kill = true });
                await ves.DeleteAsync(v.Id);
            }
        }
        catch (VirtuozzoException) { }
        await DisposeAsync();
        Root.Dispose();
    }

    public static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..8]}";
}

/// <summary>The panel tests touch cgroups, mounts and the bridge: one class at a time.</summary>
[CollectionDefinition("panel", DisableParallelization = true)]
public sealed class PanelCollection;
