using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Virtuozzo.Sdk.Testing;

namespace HostingPanel.Tests;

/// <summary>
/// The panel with the memory manager running inside it (static policy). KSM is not managed here: the test host is
/// shared, and a test must not switch its KSM on or off; the page still reads KSM's state from the kernel.
/// </summary>
public sealed class MemoryPanelFactory : PanelFactory
{
    protected override void ConfigurePanel(IWebHostBuilder builder)
    {
        builder.UseSetting("Panel:MemoryManagement:Enabled", "true");
        builder.UseSetting("Panel:MemoryManagement:Policy", "static");
        builder.UseSetting("Panel:MemoryManagement:ManageKsm", "false");
    }
}

[Collection("panel")]
public sealed class PanelMemoryTests(MemoryPanelFactory panel) : IClassFixture<MemoryPanelFactory>
{
    [Fact]
    public async Task A_customer_cannot_read_the_memory_manager_or_change_its_policy()
    {
        var alice = await panel.SignInAsync("alice");
        (await alice.GetAsync("/api/admin/memory/manager")).StatusCode.Should().Be(HttpStatusCode.Forbidden);
        (await alice.PutAsJsonAsync("/api/admin/memory/policy", new { policy = "performance" })).StatusCode.Should().Be(HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task A_bad_policy_is_a_problem_details_400_and_the_policy_stays()
    {
        var admin = await panel.SignInAsync("operator");
        var before = (await admin.GetFromJsonAsync<JsonElement>("/api/admin/memory/manager")).GetProperty("policy").GetString();
        foreach (var bad in new object[] { new { policy = "turbo" }, new { policy = "" }, new { } })
        {
            var res = await admin.PutAsJsonAsync("/api/admin/memory/policy", bad);
            res.StatusCode.Should().Be(HttpStatusCode.BadRequest);
            res.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
        }
        (await admin.GetFromJsonAsync<JsonElement>("/api/admin/memory/manager")).GetProperty("policy").GetString().Should().Be(before);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task The_administrator_sees_the_managers_policy_each_running_ves_protection_and_target_with_its_tenant_and_ksm()
    {
        var admin = await panel.SignInAsync("operator");
        var alice = await panel.SignInAsync("alice");
        var name = PanelFactory.UniqueName("mem");
        var created = await alice.PostAsJsonAsync("/api/containers", new { name, memory = "128M", cpus = 1 });
        created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        (await alice.PostAsync($"/api/ves/{id}/start", null)).StatusCode.Should().Be(HttpStatusCode.OK);

        var m = await admin.GetFromJsonAsync<JsonElement>("/api/admin/memory/manager");
        m.GetProperty("running").GetBoolean().Should().BeTrue();
        m.GetProperty("policy").GetString().Should().Be("static");
        m.GetProperty("totalBytes").GetInt64().Should().BePositive();
        m.GetProperty("reserveBytes").GetInt64().Should().Be(512L << 20, "the manager keeps the reserve the SDK's ledger keeps (Virtuozzo:HostMemoryReserve)");
        m.GetProperty("availableBytes").GetInt64().Should().BeLessThanOrEqualTo(m.GetProperty("totalBytes").GetInt64());
        var ve = m.GetProperty("ves").EnumerateArray().Should().ContainSingle(v => v.GetProperty("id").GetString() == id, m.ToString()).Which;
        ve.GetProperty("name").GetString().Should().Be(name);
        ve.GetProperty("kind").GetString().Should().Be("Container");
        ve.GetProperty("tenant").GetString().Should().Be("alice");
        ve.GetProperty("limitBytes").GetInt64().Should().Be(128L << 20);
        ve.GetProperty("protectedBytes").GetInt64().Should().Be(0, "a container's default guarantee is 0 %");
        ve.GetProperty("usageBytes").GetInt64().Should().BePositive();
        if (File.Exists("/sys/kernel/mm/ksm/run"))
        {
            var ksm = m.GetProperty("ksm");
            ksm.GetProperty("managed").GetBoolean().Should().BeFalse();
            ksm.GetProperty("running").GetBoolean().Should().Be(File.ReadAllText("/sys/kernel/mm/ksm/run").Trim() == "1");
        }

        var set = await admin.PutAsJsonAsync("/api/admin/memory/policy", new { policy = "performance" });
        set.StatusCode.Should().Be(HttpStatusCode.OK, await set.Content.ReadAsStringAsync());
        (await admin.GetFromJsonAsync<JsonElement>("/api/admin/memory/manager")).GetProperty("policy").GetString().Should().Be("performance");
        (await admin.PutAsJsonAsync("/api/admin/memory/policy", new { policy = "static" })).StatusCode.Should().Be(HttpStatusCode.OK);

        (await alice.DeleteAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.OK);
        (await admin.GetFromJsonAsync<JsonElement>("/api/admin/memory/manager")).GetProperty("ves").EnumerateArray()
            .Should().NotContain(v => v.GetProperty("id").GetString() == id);
    }
}
