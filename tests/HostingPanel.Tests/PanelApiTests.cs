using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Virtuozzo.Sdk.Testing;

namespace HostingPanel.Tests;

[Collection("panel")]
public sealed class PanelApiTests(PanelFactory panel) : IClassFixture<PanelFactory>
{
    [Fact]
    public async Task An_anonymous_caller_gets_401_from_the_api_and_a_redirect_from_the_dashboard()
    {
        var client = panel.CreateClient(new() { AllowAutoRedirect = false });
        (await client.GetAsync("/api/ves")).StatusCode.Should().Be(HttpStatusCode.Unauthorized);
        (await client.PostAsync("/api/containers", JsonContent.Create(new { name = "x" }))).StatusCode.Should().Be(HttpStatusCode.Unauthorized);
        var page = await client.GetAsync("/");
        page.StatusCode.Should().Be(HttpStatusCode.Redirect);
        page.Headers.Location!.ToString().Should().Contain("/login");
    }

    [Fact]
    public async Task The_openapi_document_describes_the_json_api_and_not_the_pages()
    {
        var doc = await panel.CreateClient().GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var paths = doc.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        paths.Should().Contain(["/api/containers", "/api/ves/{id}/exec", "/api/ves/{id}/backups", "/api/backups/{backupId}/restore", "/api/events",
            "/api/images", "/api/vms", "/api/ves/{id}/resources", "/api/admin/memory/manager", "/api/admin/memory/policy",
            "/api/migration/destinations", "/api/ves/{id}/migrate", "/api/migrations"]);
        paths.Should().NotContain(["/login", "/"]);
    }

    [Fact]
    public async Task A_wrong_password_is_refused_and_the_store_holds_only_hashes()
    {
        var client = panel.CreateClient(new() { AllowAutoRedirect = false });
        var token = PanelFactory.ExtractToken(await client.GetStringAsync("/login"));
        var res = await client.PostAsync("/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__RequestVerificationToken"] = token, ["username"] = "alice", ["password"] = "not-the-password",
        }));
        res.StatusCode.Should().Be(HttpStatusCode.Unauthorized);
        (res.Headers.TryGetValues("Set-Cookie", out var cookies) ? cookies : []).Should().NotContain(c => c.StartsWith("panel.auth=", StringComparison.Ordinal));

        var store = await File.ReadAllTextAsync(panel.Root.File("panel/users.json"));
        store.Should().NotContain(PanelFactory.Password).And.Contain("pbkdf2-sha256$");
    }

    [Fact]
    public async Task A_login_without_the_anti_forgery_token_is_refused()
    {
        var client = panel.CreateClient(new() { AllowAutoRedirect = false });
        var res = await client.PostAsync("/login", new FormUrlEncodedContent(new Dictionary<string, string> { ["username"] = "alice", ["password"] = PanelFactory.Password }));
        res.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        res.Headers.Contains("Set-Cookie").Should().BeFalse("no session is issued");
    }

    [Fact]
    public async Task A_customer_cannot_reach_the_admin_endpoints()
    {
        var alice = await panel.SignInAsync("alice");
        (await alice.GetAsync("/api/admin/memory")).StatusCode.Should().Be(HttpStatusCode.Forbidden);
        (await alice.PostAsJsonAsync("/api/admin/users", new { name = "mallory", password = "12345678910" })).StatusCode.Should().Be(HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task The_administrator_reads_the_host_memory_account_and_creates_customers_who_can_sign_in()
    {
        var admin = await panel.SignInAsync("operator");
        var memory = await admin.GetFromJsonAsync<JsonElement>("/api/admin/memory");
        memory.GetProperty("capacityBytes").GetInt64().Should().BePositive();
        memory.GetProperty("availableBytes").GetInt64().Should().BeLessThanOrEqualTo(memory.GetProperty("capacityBytes").GetInt64());
        // This panel does not run the memory manager: its page says so, and changing the policy is a 409 problem.
        (await admin.GetFromJsonAsync<JsonElement>("/api/admin/memory/manager")).GetProperty("running").GetBoolean().Should().BeFalse();
        (await admin.PutAsJsonAsync("/api/admin/memory/policy", new { policy = "static" })).StatusCode.Should().Be(HttpStatusCode.Conflict);

        var bad = await admin.PostAsJsonAsync("/api/admin/users", new { name = "x y", password = "short" });
        bad.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        var name = "cust" + Guid.NewGuid().ToString("N")[..6];
        (await admin.PostAsJsonAsync("/api/admin/users", new { name, password = PanelFactory.Password })).StatusCode.Should().Be(HttpStatusCode.Created);
        var customer = await panel.SignInAsync(name);
        (await customer.GetFromJsonAsync<JsonElement[]>("/api/ves")).Should().BeEmpty();
        (await customer.GetAsync("/api/admin/memory")).StatusCode.Should().Be(HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task A_state_changing_request_without_the_csrf_token_is_refused_and_creates_nothing()
    {
        var alice = await panel.SignInAsync("alice", withCsrf: false);
        var name = PanelFactory.UniqueName("csrf");
        var res = await alice.PostAsJsonAsync("/api/containers", new { name });
        res.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        (await res.Content.ReadAsStringAsync()).Should().Contain("CSRF");

        alice.DefaultRequestHeaders.Add("X-CSRF-TOKEN", "forged");
        (await alice.PostAsJsonAsync("/api/containers", new { name })).StatusCode.Should().Be(HttpStatusCode.BadRequest);

        // A token issued to bob does not work in alice's session either.
        var bob = await panel.SignInAsync("bob");
        var bobToken = bob.DefaultRequestHeaders.GetValues("X-CSRF-TOKEN").Single();
        alice.DefaultRequestHeaders.Remove("X-CSRF-TOKEN");
        alice.DefaultRequestHeaders.Add("X-CSRF-TOKEN", bobToken);
        (await alice.PostAsJsonAsync("/api/containers", new { name })).StatusCode.Should().Be(HttpStatusCode.BadRequest);

        (await panel.RuntimeVesAsync()).Should().NotContain(v => v.Name.Value == name);
    }

    [Theory]
    [InlineData("bad name with spaces", "256M", 1, "name")]
    [InlineData("", "256M", 1, "name")]
    [InlineData("../etc", "256M", 1, "name")]
    [InlineData("ok-name", "lots", 1, "memory")]
    [InlineData("ok-name", "1K", 1, "memory")]
    [InlineData("ok-name", "1T", 1, "memory")]
    [InlineData("ok-name", "256M", 0, "cpus")]
    [InlineData("ok-name", "256M", 1000, "cpus")]
    public async Task Bad_input_is_a_problem_details_400_and_nothing_is_created(string name, string memory, int cpus, string field)
    {
        var alice = await panel.SignInAsync("alice");
        var before = (await panel.RuntimeVesAsync()).Count;
        var res = await alice.PostAsJsonAsync("/api/containers", new { name, memory, cpus });
        res.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        res.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
        var problem = await res.Content.ReadFromJsonAsync<JsonElement>();
        problem.GetProperty("errors").TryGetProperty(field, out _).Should().BeTrue("the problem names the field '{0}'", field);
        (await panel.RuntimeVesAsync()).Should().HaveCount(before);
        (await alice.GetFromJsonAsync<JsonElement[]>("/api/ves")).Should().BeEmpty();
    }

    [Fact]
    public async Task An_unparsable_json_body_is_a_400()
    {
        var alice = await panel.SignInAsync("alice");
        var res = await alice.PostAsync("/api/containers", new StringContent("{not json", System.Text.Encoding.UTF8, "application/json"));
        res.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        res.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
    }

    [Fact]
    public async Task Ids_that_are_not_ves_are_404_not_500()
    {
        var alice = await panel.SignInAsync("alice");
        (await alice.GetAsync("/api/ves/not-a-uuid")).StatusCode.Should().Be(HttpStatusCode.NotFound);
        (await alice.GetAsync($"/api/ves/{Guid.NewGuid()}")).StatusCode.Should().Be(HttpStatusCode.NotFound);
        (await alice.PostAsJsonAsync("/api/backups/nope/restore", new { })).StatusCode.Should().Be(HttpStatusCode.NotFound);
        (await alice.GetAsync("/api/operations/nope")).StatusCode.Should().Be(HttpStatusCode.NotFound);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_customer_gets_404_for_another_customers_container_on_every_endpoint_and_changes_nothing()
    {
        var alice = await panel.SignInAsync("alice");
        var bob = await panel.SignInAsync("bob");

        // alice: create, start, run a command, back up (waiting for the operation), and see it all.
        var name = PanelFactory.UniqueName("iso");
        var created = await alice.PostAsJsonAsync("/api/containers", new { name, memory = "128M", cpus = 1 });
        created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        (await alice.PostAsync($"/api/ves/{id}/start", null)).StatusCode.Should().Be(HttpStatusCode.OK);
        var exec = await (await alice.PostAsJsonAsync($"/api/ves/{id}/exec", new { command = "echo hello-from-$(hostname)" })).Content.ReadFromJsonAsync<JsonElement>();
        exec.GetProperty("standardOutput").GetString().Should().Contain("hello-from-");
        var op = await (await alice.PostAsJsonAsync($"/api/ves/{id}/backups", new { full = true })).Content.ReadFromJsonAsync<JsonElement>();
        var done = await WaitAsync(alice, op.GetProperty("id").GetString()!);
        done.GetProperty("status").GetString().Should().Be("succeeded", done.ToString());
        var backupId = done.GetProperty("result").GetString()!;
        (await alice.GetFromJsonAsync<JsonElement[]>($"/api/ves/{id}/backups")).Should().ContainSingle(b => b.GetProperty("id").GetString() == backupId);

        // bob: 404 everywhere, and the list is empty.
        (await bob.GetFromJsonAsync<JsonElement[]>("/api/ves")).Should().NotContain(v => v.GetProperty("id").GetString() == id);
        var attempts = new (string Method, string Url, object? Body)[]
        {
            ("GET", $"/api/ves/{id}", null),
            ("GET", $"/api/ves/{id}/usage", null),
            ("POST", $"/api/ves/{id}/stop", null),
            ("POST", $"/api/ves/{id}/start", null),
            ("POST", $"/api/ves/{id}/restart", null),
            ("PUT", $"/api/ves/{id}/resources", new { memory = "512M", cpus = 2 }),
            ("POST", $"/api/ves/{id}/exec", new { command = "touch /pwned" }),
            ("GET", $"/api/ves/{id}/backups", null),
            ("POST", $"/api/ves/{id}/backups", new { full = true }),
            ("POST", $"/api/backups/{backupId}/restore", new { newName = PanelFactory.UniqueName("steal") }),
            ("DELETE", $"/api/backups/{backupId}", null),
            ("GET", $"/api/operations/{op.GetProperty("id").GetString()}", null),
            ("POST", $"/api/operations/{op.GetProperty("id").GetString()}/cancel", null),
            ("DELETE", $"/api/ves/{id}", null),
        };
        foreach (var (method, url, body) in attempts)
        {
            var req = new HttpRequestMessage(new HttpMethod(method), url) { Content = body is null ? null : JsonContent.Create(body) };
            var res = await bob.SendAsync(req);
            res.StatusCode.Should().Be(HttpStatusCode.NotFound, "bob's {0} {1} must not reach alice's container", method, url);
        }

        // Nothing changed: still running, same resources, no second backup, no file made by bob's exec, no stolen VE.
        var after = await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}");
        after.GetProperty("state").GetString().Should().Be("Running");
        after.GetProperty("memoryBytes").GetInt64().Should().Be(128L << 20);
        (await alice.GetFromJsonAsync<JsonElement[]>($"/api/ves/{id}/backups")).Should().HaveCount(1);
        var check = await (await alice.PostAsJsonAsync($"/api/ves/{id}/exec", new { command = "test -e /pwned && echo yes || echo no" })).Content.ReadFromJsonAsync<JsonElement>();
        check.GetProperty("standardOutput").GetString()!.Trim().Should().Be("no");
        (await panel.RuntimeVesAsync()).Should().NotContain(v => v.Name.Value.StartsWith("steal-", StringComparison.Ordinal));

        // Bad input on her own container is a 400 too, and changes nothing.
        var badSet = await alice.PutAsJsonAsync($"/api/ves/{id}/resources", new { memory = "1T", cpus = 1 });
        badSet.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        badSet.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
        (await alice.PostAsJsonAsync($"/api/ves/{id}/exec", new { command = "" })).StatusCode.Should().Be(HttpStatusCode.BadRequest);
        (await alice.PostAsJsonAsync($"/api/backups/{backupId}/restore", new { newName = "no spaces allowed" })).StatusCode.Should().Be(HttpStatusCode.BadRequest);
        (await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}")).GetProperty("memoryBytes").GetInt64().Should().Be(128L << 20);

        // The administrator sees every tenant's VE.
        var admin = await panel.SignInAsync("operator");
        (await admin.GetFromJsonAsync<JsonElement[]>("/api/ves")).Should().Contain(v => v.GetProperty("id").GetString() == id);

        // alice's own actions work: change resources, restore in place (the panel stops it first), delete.
        var set = await alice.PutAsJsonAsync($"/api/ves/{id}/resources", new { memory = "192M", cpus = 1 });
        set.StatusCode.Should().Be(HttpStatusCode.OK, await set.Content.ReadAsStringAsync());
        (await set.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("memoryBytes").GetInt64().Should().Be(192L << 20);
        // An incremental backup joins the chain after the full one; restoring it restores the chain.
        await alice.PostAsJsonAsync($"/api/ves/{id}/exec", new { command = "echo v2 > /data.txt" });
        var incrOp = await (await alice.PostAsJsonAsync($"/api/ves/{id}/backups", new { full = false })).Content.ReadFromJsonAsync<JsonElement>();
        var incr = await WaitAsync(alice, incrOp.GetProperty("id").GetString()!);
        incr.GetProperty("status").GetString().Should().Be("succeeded", incr.ToString());
        var chain = await alice.GetFromJsonAsync<JsonElement[]>($"/api/ves/{id}/backups");
        chain.Should().HaveCount(2);
        var child = chain!.Single(b => b.GetProperty("id").GetString() == incr.GetProperty("result").GetString());
        child.GetProperty("type").GetString().Should().Be("Incremental");
        child.GetProperty("parentId").GetString().Should().Be(backupId);

        await alice.PostAsJsonAsync($"/api/ves/{id}/exec", new { command = "echo v3 > /data.txt" }); // after the backup: the restore undoes it
        var restore = await (await alice.PostAsJsonAsync($"/api/backups/{child.GetProperty("id").GetString()}/restore", new { })).Content.ReadFromJsonAsync<JsonElement>();
        var restored = await WaitAsync(alice, restore.GetProperty("id").GetString()!);
        restored.GetProperty("status").GetString().Should().Be("succeeded", restored.ToString());
        (await alice.PostAsync($"/api/ves/{id}/start", null)).StatusCode.Should().Be(HttpStatusCode.OK);
        var data = await (await alice.PostAsJsonAsync($"/api/ves/{id}/exec", new { command = "cat /data.txt" })).Content.ReadFromJsonAsync<JsonElement>();
        data.GetProperty("standardOutput").GetString()!.Trim().Should().Be("v2", "the restore brought back the incremental's contents");
        (await alice.DeleteAsync($"/api/backups/{backupId}")).StatusCode.Should().Be(HttpStatusCode.OK);
        (await alice.GetFromJsonAsync<JsonElement[]>($"/api/ves/{id}/backups")).Should().BeEmpty();
        (await alice.DeleteAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.OK);
        (await panel.RuntimeVesAsync()).Should().NotContain(v => v.Id.ToString() == id);
    }

    internal static async Task<JsonElement> WaitAsync(HttpClient client, string opId)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (true)
        {
            var op = await client.GetFromJsonAsync<JsonElement>($"/api/operations/{opId}");
            if (op.GetProperty("status").GetString() != "running" || DateTime.UtcNow > deadline)
                return op;
            await Task.Delay(250);
        }
    }
}
