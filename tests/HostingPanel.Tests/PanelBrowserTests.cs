using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using HostingPanel;
using Microsoft.Playwright;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Testing;

namespace HostingPanel.Tests;

/// <summary>
/// The panel as a real process on a loopback port, driven by Debian's chromium through Playwright (no browser download):
/// the customer's whole day — create, start, see the state change live, run a command, back up with progress, restore,
/// delete — and another customer who sees none of it. Screenshots go to artifacts/hosting-panel/.
/// </summary>
[Collection("panel")]
public sealed class PanelBrowserTests : IAsyncLifetime
{
    private const string Chromium = "/usr/bin/chromium";
    private readonly TempDirectory _root = new("vzsdk-panel-ui");
    private Process? _server;
    private string _url = "";
    private readonly string _shots = Path.Combine(RepoRoot(), "artifacts", "hosting-panel");

    public async Task InitializeAsync()
    {
        if (Prerequisites.MissingReason(needsRoot: true, ["runc", "busybox", Chromium]) is not null)
            return; // the test itself skips (or fails in CI)
        var users = new UserStore(new PanelOptions { StateDirectory = _root.File("panel") });
        users.Create("alice", PanelFactory.Password, isAdmin: false);
        users.Create("bob", PanelFactory.Password, isAdmin: false);
        users.Create("operator", PanelFactory.Password, isAdmin: true);
        Directory.CreateDirectory(_root.File("images"));
        using (Virtuozzo.Sdk.Storage.Qcow2.Qcow2Image.Create(_root.File("images/tiny.qcow2"), new() { Size = 64L << 20 }))
        {
        }

        var port = FreePort();
        _url = $"http://127.0.0.1:{port}";
        var psi = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { typeof(Program).Assembly.Location, "--urls", _url, "--contentRoot", Path.Combine(RepoRoot(), "samples", "HostingPanel") },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["Virtuozzo__DataRoot"] = _root.File("data");
        psi.Environment["Virtuozzo__LockTimeout"] = "00:02:00";
        psi.Environment["Panel__StateDirectory"] = _root.File("panel");
        psi.Environment["Panel__ImagesDirectory"] = _root.File("images");
        psi.Environment["Panel__VmNetwork"] = "User";
        // The memory manager runs in this panel; KSM stays unmanaged (the test host is shared).
        psi.Environment["Panel__MemoryManagement__Enabled"] = "true";
        psi.Environment["Panel__MemoryManagement__Policy"] = "static";
        psi.Environment["Panel__MemoryManagement__ManageKsm"] = "false";
        _server = Process.Start(psi)!;
        _server.OutputDataReceived += (_, _) => { };
        _server.ErrorDataReceived += (_, _) => { };
        _server.BeginOutputReadLine();
        _server.BeginErrorReadLine();
        using var http = new HttpClient();
        for (var i = 0; i < 120; i++)
        {
            try { if ((await http.GetAsync(_url + "/login")).IsSuccessStatusCode) return; }
            catch (HttpRequestException) { }
            await Task.Delay(250);
        }
        throw new InvalidOperationException("The panel did not start listening within 30 s.");
    }

    public async Task DisposeAsync()
    {
        if (_server is { HasExited: false })
        {
            _server.Kill(entireProcessTree: true);
            await _server.WaitForExitAsync();
        }
        _server?.Dispose();
        if (Directory.Exists(_root.File("data")))
        {
            var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _root.File("data") });
            _ = new ContainerClient(runtime);
            _ = new Virtuozzo.Sdk.Vm.VirtualMachineClient(runtime);
            var ves = new VirtualEnvironmentClient(runtime);
            foreach (var v in await ves.ListAsync(all: true))
            {
                if (v.IsRunning)
                    await ves.StopAsync(v.Id, new VeStopOptions { Kill = true });
                await ves.DeleteAsync(v.Id);
            }
        }
        _root.Dispose();
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Chromium, Root = true)]
    public async Task A_customer_runs_a_container_from_the_browser_and_another_customer_sees_none_of_it()
    {
        Directory.CreateDirectory(_shots);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
        var alice = await SignInAsync(browser, "alice");
        alice.Dialog += (_, d) => d.AcceptAsync();

        // Create from the busybox template, then start: the row appears and turns Running.
        var name = PanelFactory.UniqueName("web");
        await alice.FillAsync("#create-name", name);
        await alice.FillAsync("#create-memory", "128M");
        await alice.ClickAsync("#create");
        var row = alice.Locator($"#ves tr[data-name='{name}']");
        await Assertions.Expect(row.Locator(".state")).ToHaveTextAsync("Stopped", new() { Timeout = 60_000 });
        await row.Locator(".act-start").ClickAsync();
        await Assertions.Expect(row.Locator(".state")).ToHaveTextAsync("Running", new() { Timeout = 60_000 });

        // Live: stop it behind the page's back (the SDK directly); the page learns it from the event stream, no reload.
        var id = await row.GetAttributeAsync("data-id");
        var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _root.File("data"), LockTimeout = TimeSpan.FromMinutes(2) });
        _ = new ContainerClient(runtime); // enables containers on this runtime
        var ves = new VirtualEnvironmentClient(runtime);
        var navigations = 0;
        alice.FrameNavigated += (_, _) => navigations++;
        // WatchAsync compares snapshots taken a second apart: a start and a stop inside one interval are no change at all,
        // so let the watcher see the start before stopping behind the page's back.
        await Task.Delay(VirtualEnvironmentClient.DefaultWatchInterval * 2.5);
        await ves.StopAsync(id!);
        await Assertions.Expect(row.Locator(".state")).ToHaveTextAsync("Stopped", new() { Timeout = 15_000 });
        await Task.Delay(VirtualEnvironmentClient.DefaultWatchInterval * 2.5);
        await ves.StartAsync(id!);
        await Assertions.Expect(row.Locator(".state")).ToHaveTextAsync("Running", new() { Timeout = 15_000 });
        navigations.Should().Be(0, "the state changed without a reload");
        // Usage is pushed too: the memory in use appears in the row while it runs.
        await Assertions.Expect(row.Locator("td").Nth(5)).Not.ToBeEmptyAsync(new() { Timeout = 15_000 });
        await alice.ScreenshotAsync(new() { Path = Path.Combine(_shots, "dashboard.png"), FullPage = true });

        // A command in the exec box.
        await row.Locator(".act-open").ClickAsync();
        await alice.FillAsync("#exec-command", "echo hello from $(hostname); uname -s");
        await alice.ClickAsync("#exec-run");
        await Assertions.Expect(alice.Locator("#exec-output")).ToContainTextAsync("hello from", new() { Timeout = 30_000 });
        await Assertions.Expect(alice.Locator("#exec-output")).ToContainTextAsync("[exit 0]");

        // A full backup: progress is shown, then the backup is in the chain.
        await alice.ClickAsync("#backup-full");
        await Assertions.Expect(alice.Locator("#op")).ToBeVisibleAsync();
        await Assertions.Expect(alice.Locator("#op-kind")).ToHaveTextAsync("full backup");
        await Assertions.Expect(alice.Locator("#op")).ToHaveAttributeAsync("data-status", "succeeded", new() { Timeout = 120_000 });
        (await alice.InnerTextAsync("#op-stage")).Should().NotBeNullOrWhiteSpace("the SDK's progress stages reach the page");
        await Assertions.Expect(alice.Locator("#backups tr")).ToHaveCountAsync(1, new() { Timeout = 15_000 });
        await alice.ScreenshotAsync(new() { Path = Path.Combine(_shots, "backup.png"), FullPage = true });

        // Another customer sees none of it.
        var bob = await SignInAsync(browser, "bob");
        await Assertions.Expect(bob.Locator("#who")).ToHaveTextAsync("bob");
        await bob.WaitForTimeoutAsync(1500); // the list and a few events have arrived
        (await bob.Locator("#ves tr").CountAsync()).Should().Be(0);
        (await bob.ContentAsync()).Should().NotContain(name);
        await bob.ScreenshotAsync(new() { Path = Path.Combine(_shots, "other-customer.png"), FullPage = true });

        // The administrator's memory page: the manager's policy and alice's running container with its tenant.
        var admin = await SignInAsync(browser, "operator");
        await Assertions.Expect(admin.Locator("#mm-summary")).ToContainTextAsync("policy static", new() { Timeout = 15_000 });
        var memRow = admin.Locator($"#mm-ves tr[data-id='{id}']");
        await Assertions.Expect(memRow.Locator("td").Nth(2)).ToHaveTextAsync("alice");
        await Assertions.Expect(memRow.Locator("td").Nth(5)).ToHaveTextAsync("128.0M");
        await admin.ScreenshotAsync(new() { Path = Path.Combine(_shots, "memory.png"), FullPage = true });

        // A VM from an image on offer (picked by name from the administrator's list), then its memory changed.
        var vmName = PanelFactory.UniqueName("vm");
        await Assertions.Expect(alice.Locator("#vm-image option[value='tiny.qcow2']")).ToHaveCountAsync(1);
        await alice.FillAsync("#vm-name", vmName);
        await alice.SelectOptionAsync("#vm-image", "tiny.qcow2");
        await alice.ClickAsync("#vm-create");
        var vmRow = alice.Locator($"#ves tr[data-name='{vmName}']");
        await Assertions.Expect(vmRow.Locator("td").Nth(1)).ToHaveTextAsync("Vm", new() { Timeout = 60_000 });
        await vmRow.Locator(".act-open").ClickAsync();
        await Assertions.Expect(alice.Locator("#detail-kind")).ToHaveTextAsync("VM");
        await alice.FillAsync("#set-memory", "768M");
        await alice.ClickAsync("#set");
        await Assertions.Expect(vmRow.Locator("td").Nth(4)).ToHaveTextAsync("768 MiB", new() { Timeout = 15_000 });
        await vmRow.Locator(".act-delete").ClickAsync();
        await Assertions.Expect(vmRow).ToHaveCountAsync(0, new() { Timeout = 60_000 });
        await row.Locator(".act-open").ClickAsync();

        // Restore in place (the panel stops it first), then delete.
        await alice.Locator("#backups tr .restore").ClickAsync();
        await Assertions.Expect(alice.Locator("#op-kind")).ToHaveTextAsync("restore");
        await Assertions.Expect(alice.Locator("#op")).ToHaveAttributeAsync("data-status", "succeeded", new() { Timeout = 120_000 });
        await Assertions.Expect(row.Locator(".state")).ToHaveTextAsync("Stopped", new() { Timeout = 15_000 });
        await row.Locator(".act-delete").ClickAsync();
        await Assertions.Expect(row).ToHaveCountAsync(0, new() { Timeout = 60_000 });
        (await ves.ListAsync()).Should().NotContain(v => v.Name.Value == name);
    }

    private Task<IPage> SignInAsync(IBrowser browser, string user) => SignInAsync(browser, _url, user);

    internal static async Task<IPage> SignInAsync(IBrowser browser, string url, string user)
    {
        var context = await browser.NewContextAsync(new() { ViewportSize = new() { Width = 1200, Height = 800 } });
        var page = await context.NewPageAsync();
        await page.GotoAsync(url + "/");
        await page.FillAsync("#username", user);
        await page.FillAsync("#password", PanelFactory.Password);
        await page.ClickAsync("#login");
        await Assertions.Expect(page.Locator("#who")).ToHaveTextAsync(user);
        await Assertions.Expect(page.Locator("#live")).ToHaveTextAsync("live", new() { Timeout = 15_000 });
        return page;
    }

    internal static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    internal static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Virtuozzo.Sdk.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("The repository root (Virtuozzo.Sdk.sln) was not found.");
    }
}
