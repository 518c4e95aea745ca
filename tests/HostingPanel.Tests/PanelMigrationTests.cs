using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Testing;

namespace HostingPanel.Tests;

/// <summary>A panel with one configured destination (a documentation address no test ever reaches): the API's checks, no second host.</summary>
public sealed class DestinationPanelFactory : PanelFactory
{
    public const string Destination = "dc2";
    public const string DestinationHost = "192.0.2.10";

    protected override void ConfigurePanel(IWebHostBuilder builder)
    {
        builder.UseSetting("Panel:MigrationDestinations:0:Name", Destination);
        builder.UseSetting("Panel:MigrationDestinations:0:Host", DestinationHost);
        builder.UseSetting("Panel:MigrationDestinations:0:IdentityFile", Root.File("id_ed25519"));
        builder.UseSetting("Panel:MigrationDestinations:0:KnownHostsFile", Root.File("known_hosts"));
        builder.UseSetting("Panel:MigrationDestinations:0:RemoteDataRoot", "/var/lib/vzsdk-dc2");
    }
}

[Collection("panel")]
public sealed class PanelMigrationTests(DestinationPanelFactory panel) : IClassFixture<DestinationPanelFactory>
{
    [Fact]
    public async Task A_customer_sees_the_destination_names_and_none_of_their_ssh_details()
    {
        var alice = await panel.SignInAsync("alice");
        var body = await alice.GetStringAsync("/api/migration/destinations");
        JsonSerializer.Deserialize<JsonElement[]>(body)!.Select(d => d.GetProperty("name").GetString()).Should().Equal(DestinationPanelFactory.Destination);
        body.Should().NotContain(DestinationPanelFactory.DestinationHost).And.NotContain("id_ed25519").And.NotContain("known_hosts").And.NotContain("vzsdk-dc2");
        (await alice.GetFromJsonAsync<JsonElement[]>("/api/migrations")).Should().BeEmpty();
    }

    [Fact]
    public async Task Migrating_a_ve_that_is_not_the_callers_is_404_whatever_the_destination_and_needs_a_session_and_the_csrf_token()
    {
        var alice = await panel.SignInAsync("alice");
        foreach (var id in new[] { "not-a-uuid", Guid.NewGuid().ToString() })
        {
            (await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = DestinationPanelFactory.Destination })).StatusCode.Should().Be(HttpStatusCode.NotFound);
            (await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = "nowhere" })).StatusCode.Should().Be(HttpStatusCode.NotFound,
                "who may act on the VE is checked before the request's fields, so a 400 cannot tell that a VE exists");
        }
        var anonymous = panel.CreateClient(new() { AllowAutoRedirect = false });
        (await anonymous.PostAsJsonAsync($"/api/ves/{Guid.NewGuid()}/migrate", new { destination = DestinationPanelFactory.Destination })).StatusCode.Should().Be(HttpStatusCode.Unauthorized);
        var noCsrf = await panel.SignInAsync("alice", withCsrf: false);
        (await noCsrf.PostAsJsonAsync($"/api/ves/{Guid.NewGuid()}/migrate", new { destination = DestinationPanelFactory.Destination })).StatusCode.Should().Be(HttpStatusCode.BadRequest);
    }

    [Theory]
    [InlineData(null, null, "Host")]
    [InlineData("x", "10.0.0.2", "Name")]
    [InlineData("has space", "10.0.0.2", "Name")]
    [InlineData("dc2", "host2.example", "IP address")]
    [InlineData("dc2", "-oProxyCommand=evil", "host name")]
    public void A_misconfigured_destination_stops_the_panel_at_start_naming_the_entry(string? name, string? host, string expected)
    {
        var options = new PanelOptions
        {
            MigrationDestinations = [new MigrationDestinationOptions { Name = name ?? "dc2", Host = host, KnownHostsFile = "/etc/panel/known_hosts" }],
        };
        var build = () => new MigrationCatalog(options);
        build.Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("Panel:MigrationDestinations:0").And.Contain(expected);
    }

    [Fact]
    public void Destination_names_are_unique_and_need_a_known_hosts_file()
    {
        var twice = new PanelOptions
        {
            MigrationDestinations =
            [
                new MigrationDestinationOptions { Name = "dc2", Host = "10.0.0.2", KnownHostsFile = "/k" },
                new MigrationDestinationOptions { Name = "dc2", Host = "10.0.0.3", KnownHostsFile = "/k" },
            ],
        };
        ((Func<MigrationCatalog>)(() => new MigrationCatalog(twice))).Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("used twice");
        var noKnownHosts = new PanelOptions { MigrationDestinations = [new MigrationDestinationOptions { Name = "dc2", Host = "10.0.0.2" }] };
        ((Func<MigrationCatalog>)(() => new MigrationCatalog(noKnownHosts))).Should().Throw<InvalidOperationException>().Which.Message.Should().Contain("known-hosts");

        var good = new MigrationCatalog(new PanelOptions { MigrationDestinations = [new MigrationDestinationOptions { Name = "dc2", Host = "10.0.0.2", KnownHostsFile = "/k" }] });
        good.Find("dc2").Should().NotBeNull();
        foreach (var bad in new[] { null, "", "DC2", "10.0.0.2", "root@10.0.0.2", "ssh://10.0.0.2", "../dc2", "dc2 " })
            good.Find(bad).Should().BeNull("'{0}' is not a configured name", bad);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_bad_destination_or_mode_is_a_problem_details_400_another_customer_gets_404_and_nothing_moves()
    {
        var alice = await panel.SignInAsync("alice");
        var bob = await panel.SignInAsync("bob");
        var name = PanelFactory.UniqueName("mig");
        var created = await alice.PostAsJsonAsync("/api/containers", new { name, memory = "128M", cpus = 1 });
        created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        (await alice.PostAsync($"/api/ves/{id}/start", null)).StatusCode.Should().Be(HttpStatusCode.OK);

        // Host details in place of a name, a name in another case, a path, nothing: all 400s naming the field.
        foreach (var destination in new[] { "nowhere", "DC2", DestinationPanelFactory.DestinationHost, "root@192.0.2.10", "ssh://root@192.0.2.10", "../dc2", "" })
        {
            var res = await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination });
            res.StatusCode.Should().Be(HttpStatusCode.BadRequest, "'{0}' is not a configured destination", destination);
            res.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
            (await res.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors").TryGetProperty("destination", out _).Should().BeTrue();
        }
        var noDestination = await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { });
        noDestination.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        var badMode = await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = DestinationPanelFactory.Destination, mode = "teleport" });
        badMode.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        (await badMode.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("errors").TryGetProperty("mode", out _).Should().BeTrue();

        // bob, with a destination that exists: 404, as for a VE that does not exist.
        var stolen = await bob.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = DestinationPanelFactory.Destination });
        stolen.StatusCode.Should().Be(HttpStatusCode.NotFound);

        // Nothing moved, nothing started: still alice's, still running here, no migration recorded.
        var after = await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}");
        after.GetProperty("state").GetString().Should().Be("Running");
        (await panel.RuntimeVesAsync()).Should().Contain(v => v.Id.ToString() == id);
        (await alice.GetFromJsonAsync<JsonElement[]>("/api/migrations")).Should().BeEmpty();
        (await bob.GetFromJsonAsync<JsonElement[]>("/api/migrations")).Should().BeEmpty();

        (await alice.DeleteAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.OK);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "ssh", Root = true)]
    public async Task A_migration_to_a_destination_that_cannot_be_reached_fails_with_its_status_and_leaves_the_ve_running_here()
    {
        var alice = await panel.SignInAsync("alice");
        var name = PanelFactory.UniqueName("unreach");
        var created = await alice.PostAsJsonAsync("/api/containers", new { name, memory = "128M", cpus = 1 });
        created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        (await alice.PostAsync($"/api/ves/{id}/start", null)).StatusCode.Should().Be(HttpStatusCode.OK);

        // dc2 is a documentation address with no key and no known host: SSH cannot get there.
        var started = await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = DestinationPanelFactory.Destination });
        started.StatusCode.Should().Be(HttpStatusCode.Accepted, await started.Content.ReadAsStringAsync());
        var op = await PanelApiTests.WaitAsync(alice, (await started.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!);
        op.GetProperty("status").GetString().Should().Be("failed", op.ToString());
        op.GetProperty("error").GetString().Should().NotBeNullOrWhiteSpace();
        op.GetProperty("errorStatus").GetInt32().Should().BeOneOf([400, 404, 409, 500, 501], "a failed operation carries the status its error maps to");

        (await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}")).GetProperty("state").GetString().Should().Be("Running");
        (await alice.GetFromJsonAsync<JsonElement[]>("/api/migrations")).Should().BeEmpty();
        (await File.ReadAllTextAsync(panel.Root.File("panel/owners.json"))).Should().Contain(id, "it is still alice's");
        (await alice.DeleteAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.OK);
    }
}

/// <summary>The panel with the real second host (<see cref="SecondHost"/>) configured as its destination <c>host2</c>.</summary>
public sealed class SecondHostPanelFactory : PanelFactory
{
    public const string Destination = "host2";

    /// <summary>Set before the panel starts (the second host hides this panel's <see cref="PanelFactory.Root"/>, so it is made first).</summary>
    public SecondHost? Host2 { get; set; }

    protected override void ConfigurePanel(IWebHostBuilder builder)
    {
        var host2 = Host2 ?? throw new InvalidOperationException("Start the second host before the panel.");
        var ssh = host2.Ssh;
        builder.UseSetting("Panel:MigrationDestinations:0:Name", Destination);
        builder.UseSetting("Panel:MigrationDestinations:0:Host", ssh.HostName);
        builder.UseSetting("Panel:MigrationDestinations:0:User", ssh.User);
        builder.UseSetting("Panel:MigrationDestinations:0:IdentityFile", ssh.IdentityFile);
        builder.UseSetting("Panel:MigrationDestinations:0:KnownHostsFile", ssh.KnownHostsFile);
        builder.UseSetting("Panel:MigrationDestinations:0:ControlDirectory", ssh.ControlDirectory);
        builder.UseSetting("Panel:MigrationDestinations:0:RemoteDataRoot", host2.DataRoot);
        builder.UseSetting("Panel:MigrationDestinations:0:RemoteVzsdk", host2.Vzsdk);
    }
}

[Collection("panel")]
public sealed class PanelSecondHostMigrationTests
{
    private static readonly string[] Stages = ["preparing the destination", "copying disks", "copying memory", "post-copy", "switching over", "cleaning up"];

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "sshd", "ssh", "nsenter", "unshare", Root = true)]
    public async Task A_cancelled_migration_leaves_the_container_here_and_a_finished_one_moves_it_to_the_second_host_and_out_of_this_panel()
    {
        // The panel's root (its data root and state) is hidden from the second host: nothing passes through files.
        SecondHostPanelFactory? panel = null;
        SecondHost? host2 = null;
        var there = (ContainerClient?)null;
        var name = PanelFactory.UniqueName("pmig");
        try
        {
            panel = new SecondHostPanelFactory();
            host2 = await SecondHost.StartAsync(VzsdkTool.StartLine(), panel.Root.Path);
            panel.Host2 = host2;
            await panel.InitializeAsync();

            var alice = await panel.SignInAsync("alice");
            var bob = await panel.SignInAsync("bob");
            (await alice.GetFromJsonAsync<JsonElement[]>("/api/migration/destinations"))!.Select(d => d.GetProperty("name").GetString()).Should().Equal(SecondHostPanelFactory.Destination);

            var created = await alice.PostAsJsonAsync("/api/containers", new { name, memory = "128M", cpus = 1 });
            created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
            var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
            (await alice.PostAsync($"/api/ves/{id}/start", null)).StatusCode.Should().Be(HttpStatusCode.OK);
            // 64 MiB of random data, so that copying the disk takes a moment.
            var write = await (await alice.PostAsJsonAsync($"/api/ves/{id}/exec", new { command = "dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null && echo written-here > /kept && sync && echo ok" })).Content.ReadFromJsonAsync<JsonElement>();
            write.GetProperty("standardOutput").GetString()!.Trim().Should().Be("ok");

            // bob cannot move it, even to a destination that exists.
            (await bob.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = SecondHostPanelFactory.Destination })).StatusCode.Should().Be(HttpStatusCode.NotFound);

            // Cancelled as soon as its progress shows (before the switch-over): the container stays here, running, and
            // the second host keeps nothing.
            var first = await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = SecondHostPanelFactory.Destination });
            first.StatusCode.Should().Be(HttpStatusCode.Accepted, await first.Content.ReadAsStringAsync());
            var firstId = (await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
            string stageAtCancel;
            while (true)
            {
                var o = await alice.GetFromJsonAsync<JsonElement>($"/api/operations/{firstId}");
                stageAtCancel = o.GetProperty("stage").GetString()!;
                o.GetProperty("status").GetString().Should().Be("running", "the migration is cancelled while it runs: {0}", o);
                if (stageAtCancel != "queued")
                    break;
                await Task.Delay(20);
            }
            stageAtCancel.Should().BeOneOf(["preparing the destination", "copying disks"], "the cancel comes before the switch-over");
            (await alice.PostAsync($"/api/operations/{firstId}/cancel", null)).StatusCode.Should().Be(HttpStatusCode.Accepted);
            var cancelled = await PanelApiTests.WaitAsync(alice, firstId);
            cancelled.GetProperty("status").GetString().Should().Be("cancelled", cancelled.ToString());
            (await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}")).GetProperty("state").GetString().Should().Be("Running");
            (await alice.GetFromJsonAsync<JsonElement[]>("/api/migrations")).Should().BeEmpty();
            there = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = host2.DataRoot }));
            (await there.ListAsync(all: true)).Should().BeEmpty("a cancelled migration leaves nothing on the destination");

            var started = await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = SecondHostPanelFactory.Destination });
            started.StatusCode.Should().Be(HttpStatusCode.Accepted, await started.Content.ReadAsStringAsync());
            var opId = (await started.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
            (await bob.GetAsync($"/api/operations/{opId}")).StatusCode.Should().Be(HttpStatusCode.NotFound);

            // Watch the operation: the SDK's MigrationProgress arrives as the operation's stage and bytes.
            var seen = new List<string>();
            JsonElement op;
            var deadline = DateTime.UtcNow.AddMinutes(4);
            while (true)
            {
                op = await alice.GetFromJsonAsync<JsonElement>($"/api/operations/{opId}");
                var stage = op.GetProperty("stage").GetString()!;
                if (seen.LastOrDefault() != stage)
                    seen.Add(stage);
                if (op.GetProperty("status").GetString() != "running" || DateTime.UtcNow > deadline)
                    break;
                await Task.Delay(50);
            }
            op.GetProperty("status").GetString().Should().Be("succeeded", op.ToString());
            seen.Where(s => s != "queued").Should().NotBeEmpty("progress was reported").And.OnlyContain(s => Stages.Contains(s), "each stage is a migration phase");
            // The default container is unprivileged: CRIU cannot restore its user namespace, so Auto moves it by a restart.
            op.GetProperty("result").GetString().Should().Contain($"{name} moved to host2").And.Contain("Offline").And.Contain("downtime");

            // This host: gone from the runtime and from every tenant's list; its endpoints are 404s like any VE not here.
            (await panel.RuntimeVesAsync()).Should().NotContain(v => v.Id.ToString() == id);
            (await alice.GetFromJsonAsync<JsonElement[]>("/api/ves")).Should().NotContain(v => v.GetProperty("id").GetString() == id);
            (await alice.GetAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.NotFound);
            (await alice.PostAsJsonAsync($"/api/ves/{id}/migrate", new { destination = SecondHostPanelFactory.Destination })).StatusCode.Should().Be(HttpStatusCode.NotFound);

            // alice keeps the record of where it went and what the move cost; bob sees none of it; the administrator sees it.
            var moved = (await alice.GetFromJsonAsync<JsonElement[]>("/api/migrations"))!.Should().ContainSingle().Subject;
            moved.GetProperty("id").GetString().Should().Be(id);
            moved.GetProperty("name").GetString().Should().Be(name);
            moved.GetProperty("destination").GetString().Should().Be(SecondHostPanelFactory.Destination);
            moved.GetProperty("mode").GetString().Should().Be("Offline");
            moved.GetProperty("reason").GetString().Should().Contain("user namespace");
            moved.GetProperty("downtimeMilliseconds").GetDouble().Should().BePositive();
            moved.GetProperty("diskBytes").GetInt64().Should().BePositive("the disk was copied over the network");
            (await bob.GetFromJsonAsync<JsonElement[]>("/api/migrations")).Should().BeEmpty();
            var admin = await panel.SignInAsync("operator");
            (await admin.GetFromJsonAsync<JsonElement[]>("/api/migrations")).Should().Contain(m => m.GetProperty("id").GetString() == id);
            (await File.ReadAllTextAsync(panel.Root.File("panel/owners.json"))).Should().NotContain(id, "the VE belongs to no tenant here any more");

            // The second host: the container runs there, with the file written before the move.
            var arrived = await there.GetAsync(name);
            arrived.Id.ToString().Should().Be(id, "it keeps its UUID");
            arrived.State.Should().Be(VeState.Running);
            var kept = await there.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "cat /kept"] });
            kept.StandardOutput.Trim().Should().Be("written-here");
            var listed = await host2.RunAsync(host2.Vzsdk, "ct", "list", "-a", "--json");
            listed.StandardOutput.Should().Contain(name, "the second host's own tool lists it");
        }
        finally
        {
            if (there is not null)
            {
                try
                {
                    await there.StopAsync(name, new VeStopOptions { Kill = true });
                    await there.DeleteAsync(name);
                }
                catch (VirtuozzoException) { }
            }
            if (panel is not null)
                await ((IAsyncLifetime)panel).DisposeAsync();
            if (host2 is not null)
                await host2.DisposeAsync();
        }
    }
}
