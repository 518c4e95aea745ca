using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Testing;

namespace HostingPanel.Tests;

/// <summary>
/// The panel with an images directory (a small empty image, plus a non-image file and a subdirectory it must not offer)
/// and the SDK's test guest configured as the direct-kernel-boot image; VMs on user-mode networking.
/// </summary>
public sealed class VmPanelFactory : PanelFactory
{
    public string ImagesDirectory => Root.File("images");

    public TestGuest? Guest { get; private set; }

    /// <summary>Why the test guest is missing (its builder failed), for the test's message.</summary>
    public string? GuestError { get; private set; }

    public override async Task InitializeAsync()
    {
        Directory.CreateDirectory(Path.Combine(ImagesDirectory, "sub"));
        using (Qcow2Image.Create(Path.Combine(ImagesDirectory, "tiny.qcow2"), new Qcow2CreateOptions { Size = 64L << 20 }))
        {
        }
        using (Qcow2Image.Create(Path.Combine(ImagesDirectory, "sub", "hidden.qcow2"), new Qcow2CreateOptions { Size = 64L << 20 }))
        {
        }
        await File.WriteAllTextAsync(Path.Combine(ImagesDirectory, "notes.txt"), "not an image");
        if (Prerequisites.MissingReason(false, TestGuest.BuilderTools) is null)
        {
            try { Guest = await TestGuest.GetAsync(); }
            catch (InvalidOperationException ex) { GuestError = ex.Message; }
            catch (FileNotFoundException ex) { GuestError = ex.Message; }
        }
        else
        {
            GuestError = Prerequisites.MissingReason(false, TestGuest.BuilderTools);
        }
        await base.InitializeAsync();
    }

    protected override void ConfigurePanel(IWebHostBuilder builder)
    {
        builder.UseSetting("Panel:ImagesDirectory", ImagesDirectory);
        builder.UseSetting("Panel:VmNetwork", "User");
        if (Guest is not null)
        {
            builder.UseSetting("Panel:TestGuest:KernelPath", Guest.KernelPath);
            builder.UseSetting("Panel:TestGuest:InitrdPath", Guest.InitrdPath);
            builder.UseSetting("Panel:TestGuest:CommandLine", TestGuest.CommandLine);
        }
    }

    /// <summary>An image of <paramref name="size"/> bytes of random data (incompressible: a backup of it takes a while).</summary>
    public void AddRandomImage(string name, long size)
    {
        using var image = Qcow2Image.Create(Path.Combine(ImagesDirectory, name), new Qcow2CreateOptions { Size = size });
        var buffer = new byte[4 << 20];
        for (long offset = 0; offset < size; offset += buffer.Length)
        {
            RandomNumberGenerator.Fill(buffer);
            image.Write(offset, buffer);
        }
        image.Flush();
    }
}

[Collection("panel")]
public sealed class PanelVmTests(VmPanelFactory panel) : IClassFixture<VmPanelFactory>
{
    [Fact]
    public async Task The_images_on_offer_are_the_qcow2_files_of_the_images_directory_and_the_configured_test_guest()
    {
        var alice = await panel.SignInAsync("alice");
        var images = await alice.GetFromJsonAsync<JsonElement[]>("/api/images");
        var names = images!.Select(i => i.GetProperty("name").GetString()).ToList();
        names.Should().Contain("tiny.qcow2").And.NotContain(["notes.txt", "hidden.qcow2", "sub/hidden.qcow2"]);
        images!.Single(i => i.GetProperty("name").GetString() == "tiny.qcow2").GetProperty("kind").GetString().Should().Be("disk");
        if (panel.Guest is not null)
            names.Should().Contain("test-guest");
    }

    [Theory]
    [InlineData("vm-ok", "../images/tiny.qcow2", "512M", 1, "image")]
    [InlineData("vm-ok", "/etc/passwd", "512M", 1, "image")]
    [InlineData("vm-ok", "sub/hidden.qcow2", "512M", 1, "image")]
    [InlineData("vm-ok", "notes.txt", "512M", 1, "image")]
    [InlineData("vm-ok", "missing.qcow2", "512M", 1, "image")]
    [InlineData("vm-ok", "", "512M", 1, "image")]
    [InlineData("bad name", "tiny.qcow2", "512M", 1, "name")]
    [InlineData("vm-ok", "tiny.qcow2", "1T", 1, "memory")]
    [InlineData("vm-ok", "tiny.qcow2", "lots", 1, "memory")]
    [InlineData("vm-ok", "tiny.qcow2", "512M", 0, "cpus")]
    public async Task Bad_vm_input_is_a_problem_details_400_and_nothing_is_created(string name, string image, string memory, int cpus, string field)
    {
        var alice = await panel.SignInAsync("alice");
        var before = (await panel.RuntimeVesAsync()).Count;
        var res = await alice.PostAsJsonAsync("/api/vms", new { name, image, memory, cpus });
        res.StatusCode.Should().Be(HttpStatusCode.BadRequest, await res.Content.ReadAsStringAsync());
        res.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
        var problem = await res.Content.ReadFromJsonAsync<JsonElement>();
        problem.GetProperty("errors").TryGetProperty(field, out _).Should().BeTrue("the problem names the field '{0}': {1}", field, problem);
        (await panel.RuntimeVesAsync()).Should().HaveCount(before);
    }

    [Fact]
    public async Task An_absolute_path_into_the_images_directory_is_refused_too()
    {
        var alice = await panel.SignInAsync("alice");
        var res = await alice.PostAsJsonAsync("/api/vms", new { name = PanelFactory.UniqueName("abs"), image = Path.Combine(panel.ImagesDirectory, "tiny.qcow2") });
        res.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        (await panel.RuntimeVesAsync()).Should().NotContain(v => v.Name.Value.StartsWith("abs-", StringComparison.Ordinal));
    }

    [IntegrationFact("qemu-system-x86_64", Root = true)]
    public async Task A_customer_creates_a_vm_from_an_image_changes_its_memory_and_cpus_and_another_customer_gets_404_everywhere()
    {
        var alice = await panel.SignInAsync("alice");
        var bob = await panel.SignInAsync("bob");
        var name = PanelFactory.UniqueName("vm");
        var created = await alice.PostAsJsonAsync("/api/vms", new { name, image = "tiny.qcow2", memory = "512M", cpus = 1 });
        created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        var vm = await created.Content.ReadFromJsonAsync<JsonElement>();
        var id = vm.GetProperty("id").GetString()!;
        vm.GetProperty("kind").GetString().Should().Be("Vm");
        vm.GetProperty("image").GetString().Should().Be("tiny.qcow2");
        vm.GetProperty("disks").EnumerateArray().Should().ContainSingle().Which.GetProperty("sizeBytes").GetInt64().Should().Be(64L << 20, "the disk is a copy of the image");
        (await alice.GetFromJsonAsync<JsonElement[]>("/api/ves")).Should().ContainSingle(v => v.GetProperty("id").GetString() == id);

        // bob: 404 on every endpoint that names the VM, and it is not in his list.
        (await bob.GetFromJsonAsync<JsonElement[]>("/api/ves")).Should().NotContain(v => v.GetProperty("id").GetString() == id);
        var attempts = new (string Method, string Url, object? Body)[]
        {
            ("GET", $"/api/ves/{id}", null),
            ("GET", $"/api/ves/{id}/usage", null),
            ("POST", $"/api/ves/{id}/start", null),
            ("PUT", $"/api/ves/{id}/resources", new { memory = "1G", cpus = 2 }),
            ("POST", $"/api/ves/{id}/exec", new { command = "true" }),
            ("GET", $"/api/ves/{id}/backups", null),
            ("POST", $"/api/ves/{id}/backups", new { full = true }),
            ("DELETE", $"/api/ves/{id}", null),
        };
        foreach (var (method, url, body) in attempts)
        {
            var res = await bob.SendAsync(new HttpRequestMessage(new HttpMethod(method), url) { Content = body is null ? null : JsonContent.Create(body) });
            res.StatusCode.Should().Be(HttpStatusCode.NotFound, "bob's {0} {1} must not reach alice's VM", method, url);
        }
        var unchanged = await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}");
        unchanged.GetProperty("memoryBytes").GetInt64().Should().Be(512L << 20);
        unchanged.GetProperty("state").GetString().Should().Be("Stopped");
        (await alice.GetFromJsonAsync<JsonElement[]>($"/api/ves/{id}/backups")).Should().BeEmpty();

        // Bad resources are a 400 that changes nothing; good ones go through VirtualMachineClient.SetAsync.
        var bad = await alice.PutAsJsonAsync($"/api/ves/{id}/resources", new { memory = "1T" });
        bad.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        bad.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
        (await alice.PutAsJsonAsync($"/api/ves/{id}/resources", new { })).StatusCode.Should().Be(HttpStatusCode.BadRequest);
        var set = await alice.PutAsJsonAsync($"/api/ves/{id}/resources", new { memory = "768M", cpus = 2 });
        set.StatusCode.Should().Be(HttpStatusCode.OK, await set.Content.ReadAsStringAsync());
        var after = await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}");
        after.GetProperty("memoryBytes").GetInt64().Should().Be(768L << 20);
        after.GetProperty("cpus").GetInt32().Should().Be(2);

        (await alice.DeleteAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.OK);
        (await panel.RuntimeVesAsync()).Should().NotContain(v => v.Id.ToString() == id);
    }

    [IntegrationFact("qemu-system-x86_64", "apt-get", "dpkg", "cpio", "busybox", Root = true)]
    public async Task The_test_guest_boots_from_the_panel_and_a_live_change_the_vm_cannot_make_is_a_409_problem_that_changes_nothing()
    {
        panel.Guest.Should().NotBeNull("the test guest is built by tests/guest/build-guest.sh: {0}", panel.GuestError);
        var alice = await panel.SignInAsync("alice");
        var name = PanelFactory.UniqueName("guest");
        var created = await alice.PostAsJsonAsync("/api/vms", new { name, image = "test-guest", memory = "512M", cpus = 1 });
        created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        var started = await alice.PostAsync($"/api/ves/{id}/start", null);
        started.StatusCode.Should().Be(HttpStatusCode.OK, await started.Content.ReadAsStringAsync());
        (await started.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("state").GetString().Should().Be("Running");

        // Memory hotplug is off for the panel's VMs: growing a running VM is the SDK's InvalidStateException, a 409 problem.
        var grow = await alice.PutAsJsonAsync($"/api/ves/{id}/resources", new { memory = "1G" });
        grow.StatusCode.Should().Be(HttpStatusCode.Conflict, await grow.Content.ReadAsStringAsync());
        grow.Content.Headers.ContentType!.MediaType.Should().Be("application/problem+json");
        (await grow.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("detail").GetString().Should().NotBeNullOrEmpty();
        var vm = await alice.GetFromJsonAsync<JsonElement>($"/api/ves/{id}");
        vm.GetProperty("memoryBytes").GetInt64().Should().Be(512L << 20);
        vm.GetProperty("state").GetString().Should().Be("Running");

        // The guest really runs: the exec box reaches it through its guest tools once they are up.
        (await ExecUntilAsync(alice, id, "echo up", o => o.Trim() == "up")).Trim().Should().Be("up");

        // A vCPU is hotplugged live (the VM may reach the host's CPU count) and the guest sees it.
        var cpus = await alice.PutAsJsonAsync($"/api/ves/{id}/resources", new { cpus = 2 });
        cpus.StatusCode.Should().Be(HttpStatusCode.OK, await cpus.Content.ReadAsStringAsync());
        (await cpus.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("cpus").GetInt32().Should().Be(2);
        (await ExecUntilAsync(alice, id, "grep -c ^processor /proc/cpuinfo", o => o.Trim() == "2")).Trim().Should().Be("2");

        (await alice.DeleteAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.OK);
        (await panel.RuntimeVesAsync()).Should().NotContain(v => v.Id.ToString() == id);
    }

    /// <summary>Runs the command through the exec endpoint until its output satisfies <paramref name="done"/> (60 s at most); returns the last output.</summary>
    private static async Task<string> ExecUntilAsync(HttpClient client, string id, string command, Func<string, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            var res = await client.PostAsJsonAsync($"/api/ves/{id}/exec", new { command });
            last = await res.Content.ReadAsStringAsync();
            if (res.IsSuccessStatusCode)
            {
                last = (await res.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("standardOutput").GetString() ?? "";
                if (done(last))
                    return last;
            }
            await Task.Delay(500);
        }
        return last;
    }

    [IntegrationFact("qemu-system-x86_64", Root = true)]
    public async Task Cancelling_a_running_backup_from_the_api_ends_it_cancelled_with_nothing_half_made_left()
    {
        // 1 GiB of random data: a full backup compresses all of it, which takes seconds, not milliseconds.
        panel.AddRandomImage("random-1g.qcow2", 1L << 30);
        var alice = await panel.SignInAsync("alice");
        var created = await alice.PostAsJsonAsync("/api/vms", new { name = PanelFactory.UniqueName("big"), image = "random-1g.qcow2", memory = "256M" });
        created.StatusCode.Should().Be(HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;

        var op = await (await alice.PostAsJsonAsync($"/api/ves/{id}/backups", new { full = true })).Content.ReadFromJsonAsync<JsonElement>();
        var opId = op.GetProperty("id").GetString()!;
        // Cancel once the copy has visibly started (progress reported), as a user watching the bar would.
        JsonElement state;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        do
        {
            state = await alice.GetFromJsonAsync<JsonElement>($"/api/operations/{opId}");
            if (state.GetProperty("completed").GetInt64() > 0 || state.GetProperty("status").GetString() != "running")
                break;
            await Task.Delay(20);
        }
        while (DateTime.UtcNow < deadline);
        state.GetProperty("status").GetString().Should().Be("running", "the backup must still be running when cancelled: {0}", state);
        (await alice.PostAsync($"/api/operations/{opId}/cancel", null)).StatusCode.Should().Be(HttpStatusCode.Accepted);

        var done = await PanelApiTests.WaitAsync(alice, opId);
        done.GetProperty("status").GetString().Should().Be("cancelled", done.ToString());
        done.GetProperty("completed").GetInt64().Should().BeLessThan(1L << 30, "it stopped before the end");
        (await alice.GetFromJsonAsync<JsonElement[]>($"/api/ves/{id}/backups")).Should().BeEmpty("a cancelled backup is not listed");
        var veBackups = Path.Combine(panel.Services.GetRequiredService<BackupClient>().Location, id);
        (Directory.Exists(veBackups) ? Directory.EnumerateFileSystemEntries(veBackups).Where(e => Path.GetFileName(e) != "sequence.json") : [])
            .Should().BeEmpty("no staging directory or partial backup file is left in {0}", veBackups);

        // The VE was not left locked or damaged: the same backup, not cancelled, completes.
        var again = await (await alice.PostAsJsonAsync($"/api/ves/{id}/backups", new { full = true })).Content.ReadFromJsonAsync<JsonElement>();
        var whole = await PanelApiTests.WaitAsync(alice, again.GetProperty("id").GetString()!);
        whole.GetProperty("status").GetString().Should().Be("succeeded", whole.ToString());
        (await alice.GetFromJsonAsync<JsonElement[]>($"/api/ves/{id}/backups")).Should().ContainSingle();
        (await alice.DeleteAsync($"/api/ves/{id}")).StatusCode.Should().Be(HttpStatusCode.OK);
    }
}
