using System.Diagnostics;
using HostingPanel;
using Microsoft.Playwright;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Testing;

namespace HostingPanel.Tests;

/// <summary>
/// The dashboard's Migrate button in Debian's chromium: the panel as a real process with the real second host
/// (<see cref="SecondHost"/>) configured as <c>host2</c>. The screenshot goes to artifacts/hosting-panel/migration.png.
/// </summary>
[Collection("panel")]
public sealed class PanelBrowserMigrationTests : IAsyncLifetime
{
    private const string Chromium = "/usr/bin/chromium";
    private readonly TempDirectory _root = new("vzpm"); // short: UNIX socket paths under the data root stay below 108 bytes
    private SecondHost? _host2;
    private Process? _server;
    private string _url = "";
    private readonly System.Text.StringBuilder _log = new();

    public async Task InitializeAsync()
    {
        if (Prerequisites.MissingReason(needsRoot: true, ["runc", "busybox", "sshd", "ssh", "nsenter", "unshare", Chromium]) is not null)
            return; // the test itself skips (or fails in CI)
        var users = new UserStore(new PanelOptions { StateDirectory = _root.File("panel") });
        users.Create("alice", PanelFactory.Password, isAdmin: false);
        // The panel's data root and state are hidden from the second host: disks travel over the network only.
        _host2 = await SecondHost.StartAsync(VzsdkTool.StartLine(), _root.Path);
        var ssh = _host2.Ssh;

        _url = $"http://127.0.0.1:{PanelBrowserTests.FreePort()}";
        var psi = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { typeof(Program).Assembly.Location, "--urls", _url, "--contentRoot", Path.Combine(PanelBrowserTests.RepoRoot(), "samples", "HostingPanel") },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["Virtuozzo__DataRoot"] = _root.File("data");
        psi.Environment["Virtuozzo__LockTimeout"] = "00:02:00";
        psi.Environment["Panel__StateDirectory"] = _root.File("panel");
        psi.Environment["Panel__MigrationDestinations__0__Name"] = "host2";
        psi.Environment["Panel__MigrationDestinations__0__Host"] = ssh.HostName;
        psi.Environment["Panel__MigrationDestinations__0__User"] = ssh.User;
        psi.Environment["Panel__MigrationDestinations__0__IdentityFile"] = ssh.IdentityFile;
        psi.Environment["Panel__MigrationDestinations__0__KnownHostsFile"] = ssh.KnownHostsFile;
        psi.Environment["Panel__MigrationDestinations__0__ControlDirectory"] = ssh.ControlDirectory;
        psi.Environment["Panel__MigrationDestinations__0__RemoteDataRoot"] = _host2.DataRoot;
        psi.Environment["Panel__MigrationDestinations__0__RemoteVzsdk"] = _host2.Vzsdk;
        _server = Process.Start(psi)!;
        _server.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _server.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
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
        try
        {
            foreach (var dataRoot in new[] { _root.File("data"), _host2?.DataRoot })
            {
                if (dataRoot is null || !Directory.Exists(dataRoot))
                    continue;
                var containers = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = dataRoot }));
                foreach (var c in await containers.ListAsync(all: true))
                {
                    if (c.IsRunning)
                        await containers.StopAsync(c.Id.ToString(), new VeStopOptions { Kill = true });
                    await containers.DeleteAsync(c.Id.ToString());
                }
            }
        }
        finally
        {
            if (_host2 is not null)
                await _host2.DisposeAsync();
            _root.Dispose();
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "sshd", "ssh", "nsenter", "unshare", Chromium, Root = true)]
    public async Task A_customer_moves_a_container_to_the_second_host_with_the_migrate_button_and_sees_where_it_went()
    {
        var shots = Path.Combine(PanelBrowserTests.RepoRoot(), "artifacts", "hosting-panel");
        Directory.CreateDirectory(shots);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
        var alice = await PanelBrowserTests.SignInAsync(browser, _url, "alice");
        var dialogs = new List<string>();
        alice.Dialog += (_, d) => { lock (dialogs) dialogs.Add(d.Message); d.AcceptAsync(); };

        var name = PanelFactory.UniqueName("mv");
        await alice.FillAsync("#create-name", name);
        await alice.FillAsync("#create-memory", "128M");
        await alice.ClickAsync("#create");
        var row = alice.Locator($"#ves tr[data-name='{name}']");
        await Assertions.Expect(row.Locator(".state")).ToHaveTextAsync("Stopped", new() { Timeout = 60_000 });
        await row.Locator(".act-start").ClickAsync();
        try { await Assertions.Expect(row.Locator(".state")).ToHaveTextAsync("Running", new() { Timeout = 60_000 }); }
        catch (PlaywrightException) { throw new InvalidOperationException("Not running; the page said: " + string.Join(" | ", dialogs) + "; the panel: " + _log); }
        var id = await row.GetAttributeAsync("data-id");

        // The VE's page offers the configured destination by name; Migrate runs it as an operation with progress.
        await row.Locator(".act-open").ClickAsync();
        await Assertions.Expect(alice.Locator("#migrate-row")).ToBeVisibleAsync();
        (await alice.Locator("#migrate-destination option").AllInnerTextsAsync()).Should().Equal("host2");
        await alice.ClickAsync("#migrate");
        await Assertions.Expect(alice.Locator("#op-kind")).ToHaveTextAsync("migration to host2", new() { Timeout = 15_000 });
        await Assertions.Expect(alice.Locator("#op")).ToHaveAttributeAsync("data-status", "succeeded", new() { Timeout = 180_000 });
        await Assertions.Expect(alice.Locator("#moved-last")).ToContainTextAsync($"{name} moved to host2: Offline");
        await Assertions.Expect(alice.Locator("#detail")).ToBeHiddenAsync();

        // Gone from this host's list, shown under "Moved to other hosts" with the mode and the downtime.
        await Assertions.Expect(row).ToHaveCountAsync(0, new() { Timeout = 15_000 });
        var moved = alice.Locator($"#migrated tr[data-id='{id}']");
        await Assertions.Expect(moved).ToHaveCountAsync(1, new() { Timeout = 15_000 });
        await Assertions.Expect(moved.Locator("td").Nth(0)).ToHaveTextAsync(name);
        await Assertions.Expect(moved.Locator("td").Nth(2)).ToHaveTextAsync("host2");
        await Assertions.Expect(moved.Locator("td").Nth(3)).ToHaveTextAsync("Offline");
        await Assertions.Expect(moved.Locator("td").Nth(4)).ToContainTextAsync(" ms");
        await alice.ScreenshotAsync(new() { Path = Path.Combine(shots, "migration.png"), FullPage = true });

        // After a reload too: the list comes from this host's runtime, the moved table from migrated.json.
        await alice.ReloadAsync();
        await Assertions.Expect(alice.Locator($"#migrated tr[data-id='{id}']")).ToHaveCountAsync(1, new() { Timeout = 15_000 });
        (await alice.Locator($"#ves tr[data-id='{id}']").CountAsync()).Should().Be(0);

        var there = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _host2!.DataRoot }));
        (await there.GetAsync(name)).State.Should().Be(VeState.Running, "it runs on the second host");
    }
}
