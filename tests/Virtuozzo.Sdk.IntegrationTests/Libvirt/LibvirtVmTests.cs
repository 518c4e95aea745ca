using System.Text.RegularExpressions;
using System.Xml.Linq;
using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Vm;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Libvirt;

/// <summary>
/// The VM suite's core flows through the libvirt runtime against a real libvirtd (qemu:///system, TCG): what the SDK
/// makes is what <c>virsh</c> shows, and what <c>virsh</c> changes is what the SDK sees.
/// </summary>
[Collection("libvirt")]
public sealed class LibvirtVmTests(LibvirtFixture env)
{
    private static readonly TimeSpan Boot = TimeSpan.FromSeconds(120);

    private async Task<string> ShAsync(string vm, string script)
    {
        var r = await env.Vms.ExecAsync(vm, new VeExecOptions { Command = ["/bin/sh", "-c", script], Timeout = TimeSpan.FromSeconds(30) });
        r.ExitCode.Should().Be(0, "'{0}' should succeed in the guest; stderr: {1}", script, r.StandardError);
        return r.StandardOutput;
    }

    [IntegrationFact("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", Root = true)]
    public async Task A_VM_made_by_the_SDK_runs_under_libvirt_with_guest_tools_memory_hotplug_snapshots_and_suspend()
    {
        var created = await env.Vms.CreateAsync(env.GuestVm("main", hotplug: true));
        var name = created.Name.Value;
        created.State.Should().Be(VeState.Stopped);
        created.Disks.Should().ContainSingle().Which.Size.Should().Be(ByteSize.FromMiB(64));

        // libvirt holds the definition the SDK generated.
        var (code, xml) = await LibvirtFixture.Virsh("dumpxml", name);
        code.Should().Be(0, xml);
        var domain = XDocument.Parse(xml).Root!;
        domain.Element("uuid")!.Value.Should().Be(created.Id.ToString());
        domain.Element("memory")!.Value.Should().Be((1024 * 1024).ToString());
        domain.Element("maxMemory")!.Value.Should().Be((2 * 1024 * 1024).ToString());
        domain.Element("devices")!.Elements("disk").Single().Element("source")!.Attribute("file")!.Value.Should().Be(created.Disks[0].ImagePath);
        (await LibvirtFixture.Virsh("domstate", name)).Output.Trim().Should().Be("shut off");

        var started = await env.Vms.StartAsync(name);
        started.State.Should().Be(VeState.Running);
        (await LibvirtFixture.Virsh("domstate", name)).Output.Trim().Should().Be("running");
        await env.Vms.WaitForGuestToolsAsync(name, Boot);
        (await ShAsync(name, "echo hello from $(uname -s)")).Trim().Should().Be("hello from Linux");
        var failing = await env.Vms.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", "echo oops >&2; exit 7"] });
        failing.ExitCode.Should().Be(7);
        failing.StandardError.Trim().Should().Be("oops");

        // Memory hotplug: a DIMM through libvirt, seen by the guest's kernel.
        var before = VmTestEnvironment.MemTotalKiB(await ShAsync(name, "cat /proc/meminfo"));
        var grown = await env.Vms.SetAsync(name, new VmSetOptions { MemorySize = ByteSize.FromMiB(1280) });
        grown.MemorySize.Should().Be(ByteSize.FromMiB(1280));
        var liveXml = XDocument.Parse((await LibvirtFixture.Virsh("dumpxml", name)).Output).Root!;
        liveXml.Element("devices")!.Elements("memory").Should().ContainSingle(m => (string?)m.Attribute("model") == "dimm");
        long after = 0;
        for (var i = 0; i < 60 && after < before + 200 * 1024; i++)
        {
            after = VmTestEnvironment.MemTotalKiB(await ShAsync(name, "cat /proc/meminfo"));
            if (after < before + 200 * 1024)
                await Task.Delay(500);
        }
        after.Should().BeGreaterThan(before + 200 * 1024, "the 256 MiB DIMM should be online in the guest");

        // Usage from virConnectGetAllDomainStats.
        var usage = await new VirtualEnvironmentClient(env.Runtime).GetUsageAsync(name);
        usage.CpuTime.Should().BePositive();
        usage.MemoryUsedBytes.Should().BePositive();
        usage.DiskSizeBytes.Should().Be(64L * 1024 * 1024);

        // A snapshot with memory; switching back undoes what came after it.
        await ShAsync(name, "echo before > /marker");
        var snap = await env.Vms.CreateSnapshotAsync(name, "base", "before the change");
        snap.IncludesMemory.Should().BeTrue();
        (await LibvirtFixture.Virsh("snapshot-list", name, "--name")).Output.Should().Contain("base");
        await ShAsync(name, "echo after > /marker");
        await env.Vms.SwitchSnapshotAsync(name, snap.Id.ToString());
        (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Running);
        (await ShAsync(name, "cat /marker")).Trim().Should().Be("before");
        (await env.Vms.ListSnapshotsAsync(name)).Should().ContainSingle(s => s.Name == "base" && s.IsCurrent);
        await env.Vms.DeleteSnapshotAsync(name, "base");
        (await env.Vms.ListSnapshotsAsync(name)).Should().BeEmpty();

        // Suspend to disk (libvirt's managed save) keeps the guest's memory across a stop.
        await env.Vms.SuspendAsync(name);
        (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Suspended);
        (await LibvirtFixture.Virsh("domstate", name)).Output.Trim().Should().Be("shut off");
        await env.Vms.ResumeAsync(name);
        (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Running);
        (await ShAsync(name, "cat /marker")).Trim().Should().Be("before");

        // A clean stop through the guest tools, then delete: libvirt forgets the domain and the disks go.
        var method = await env.Vms.StopAsync(name, new VeStopOptions { Timeout = TimeSpan.FromSeconds(60) });
        method.Should().BeOneOf(VeStopMethod.GuestTools, VeStopMethod.Acpi);
        (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Stopped);
        var diskPath = created.Disks[0].ImagePath;
        (await env.Vms.DeleteAsync(name)).Should().BeTrue();
        (await LibvirtFixture.Virsh("list", "--all", "--name")).Output.Should().NotContain(name);
        File.Exists(diskPath).Should().BeFalse();
        (await env.Vms.DeleteAsync(name)).Should().BeFalse();
    }

    [IntegrationFact("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", Root = true)]
    public async Task What_virsh_changes_the_SDK_sees_and_the_watch_hears_libvirts_events_at_once()
    {
        var vm = await env.Vms.CreateAsync(env.GuestVm("seen") with { Disks = [] });
        var name = vm.Name.Value;
        var all = new VirtualEnvironmentClient(env.Runtime);
        (await all.ListAsync()).Should().Contain(v => v.Id == vm.Id && v.Kind == VeKind.Vm);

        // A watch that would poll only every 10 minutes still reports the start at once: libvirt's lifecycle event wakes it.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await using var events = all.WatchAsync(new VeWatchOptions { Interval = TimeSpan.FromMinutes(10) }, cts.Token).GetAsyncEnumerator(cts.Token);
        var next = events.MoveNextAsync().AsTask();
        await Task.Delay(500);
        (await LibvirtFixture.Virsh("start", name)).ExitCode.Should().Be(0);
        var started = DateTimeOffset.UtcNow;
        (await next).Should().BeTrue();
        events.Current.Id.Should().Be(vm.Id);
        events.Current.State.Should().Be(VeState.Running);
        (DateTimeOffset.UtcNow - started).Should().BeLessThan(TimeSpan.FromSeconds(60), "the event, not the 10-minute poll, should wake the watch");
        (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Running);

        (await LibvirtFixture.Virsh("destroy", name)).ExitCode.Should().Be(0);
        (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Stopped);

        // Renamed and re-configured by virsh: the SDK reads libvirt's definition, not a copy of its own.
        var renamed = env.Prefix + "renamed";
        (await LibvirtFixture.Virsh("domrename", name, renamed)).ExitCode.Should().Be(0);
        (await LibvirtFixture.Virsh("setvcpus", renamed, "2", "--config")).ExitCode.Should().Be(0);
        var seen = await env.Vms.GetAsync(vm.Id.ToString());
        seen.Name.Value.Should().Be(renamed);
        seen.Cpus.Should().Be(2);
        await FluentActions.Awaiting(() => env.Vms.GetAsync(name)).Should().ThrowAsync<NotFoundException>();

        // And what the SDK changes, virsh shows.
        await env.Vms.SetAsync(renamed, new VmSetOptions { MemorySize = ByteSize.FromMiB(640), Cpus = 1, CpuLimitPercent = 50, MemoryGuaranteePercent = 30 });
        var x = XDocument.Parse((await LibvirtFixture.Virsh("dumpxml", "--inactive", renamed)).Output).Root!;
        x.Element("memory")!.Value.Should().Be((640 * 1024).ToString());
        x.Element("vcpu")!.Attribute("current")!.Value.Should().Be("1");
        x.Element("cputune")!.Element("global_quota")!.Value.Should().Be("50000");
        var info = await env.Vms.GetAsync(renamed);
        (info.MemorySize, info.Cpus, info.CpuLimitPercent, info.MemoryGuaranteePercent).Should().Be((ByteSize.FromMiB(640), (int?)1, (int?)50, 30));
        var hotplug = await env.Vms.SetAsync(renamed, new VmSetOptions { MemoryHotplug = true, MemorySize = ByteSize.FromGiB(1) });
        (hotplug.MemoryHotplug, hotplug.MemorySize).Should().Be((true, ByteSize.FromGiB(1)));
        x = XDocument.Parse((await LibvirtFixture.Virsh("dumpxml", "--inactive", renamed)).Output).Root!;
        x.Element("maxMemory")!.Attribute("slots").Should().NotBeNull();
        x.Element("cpu")!.Element("numa")!.Element("cell")!.Attribute("memory")!.Value.Should().Be((1024 * 1024).ToString());
        (await env.Vms.SetAsync(renamed, new VmSetOptions { MemoryHotplug = false })).MemoryHotplug.Should().BeFalse();
        (await env.Vms.DeleteAsync(renamed)).Should().BeTrue();
    }

    [IntegrationFact("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", Root = true)]
    public async Task Clones_errors_and_refusals_are_the_SDKs_own()
    {
        var vm = await env.Vms.CreateAsync(env.GuestVm("orig"));
        await FluentActions.Awaiting(() => env.Vms.CreateAsync(env.GuestVm("orig"))).Should().ThrowAsync<AlreadyExistsException>();
        await FluentActions.Awaiting(() => env.Vms.GetAsync(env.Prefix + "absent")).Should().ThrowAsync<NotFoundException>();
        await FluentActions.Awaiting(() => env.Vms.PauseAsync(vm.Name.Value)).Should().ThrowAsync<InvalidStateException>();
        await FluentActions.Awaiting(() => env.Vms.ExecAsync(vm.Name.Value, new VeExecOptions { Command = ["true"] })).Should().ThrowAsync<InvalidStateException>();

        var linked = await env.Vms.CloneAsync(vm.Name.Value, new VmCloneOptions { Name = new VeName(env.Prefix + "linked"), Linked = true });
        linked.Id.Should().NotBe(vm.Id);
        linked.Disks.Should().ContainSingle().Which.ImagePath.Should().NotBe(vm.Disks[0].ImagePath);
        linked.MacAddress.Should().NotBe(vm.MacAddress);
        (await LibvirtFixture.Virsh("list", "--all", "--name")).Output.Should().Contain(linked.Name.Value);
        var info = await LibvirtFixture.Run("qemu-img", "info", "-U", linked.Disks[0].ImagePath);
        info.Output.Should().Contain(vm.Disks[0].ImagePath, "a linked clone's disk is an overlay on the original's");

        var added = await env.Vms.AddDiskAsync(linked.Name.Value, new VmDiskOptions { Size = ByteSize.FromMiB(32) });
        added.Name.Should().Be("hdd1");
        (await LibvirtFixture.Virsh("domblklist", linked.Name.Value)).Output.Should().Contain("vdb").And.Contain(added.ImagePath);
        var resized = await env.Vms.ResizeDiskAsync(linked.Name.Value, "hdd1", ByteSize.FromMiB(48));
        resized.Size.Should().Be(ByteSize.FromMiB(48));
        await env.Vms.RemoveDiskAsync(linked.Name.Value, "hdd1");
        File.Exists(added.ImagePath).Should().BeFalse();

        // Containers: libvirt's QEMU driver runs none, and says so by name.
        FluentActions.Invoking(() => new ContainerClient(env.Runtime)).Should().Throw<UnsupportedOnHostException>().WithMessage("*libvirt*");
        // What this runtime does not do yet is refused by name, before anything is touched.
        FluentActions.Invoking(() => new Virtuozzo.Sdk.Memory.MemoryManager(env.Runtime)).Should().Throw<UnsupportedOnHostException>().WithMessage("*libvirt*");
        await FluentActions.Awaiting(() => env.Vms.CompactDiskAsync(vm.Name.Value, "hdd0")).Should().ThrowAsync<UnsupportedOnHostException>();
        var caps = await env.Runtime.GetHostCapabilitiesAsync();
        caps.Runtime.Should().Be(RuntimeKind.Libvirt);
        caps.Product.Should().StartWith("libvirt 9.");
        caps.Features["vms"].Usable.Should().BeTrue();
        caps.Features["containers"].Usable.Should().BeFalse();
        caps.Features["backups"].Usable.Should().BeTrue();

        (await env.Vms.DeleteAsync(linked.Name.Value)).Should().BeTrue();
        (await env.Vms.DeleteAsync(vm.Name.Value)).Should().BeTrue();
    }

    [IntegrationFact("libvirtd", "virtlogd", "virsh", Root = true)]
    public async Task The_dependency_injection_root_builds_the_libvirt_runtime_and_leaves_containers_out()
    {
        using var root = new TempDirectory("vzsdk-libvirt-di");
        var services = new ServiceCollection();
        services.AddVirtuozzoSdk(o => o.DataRoot = root.Path).UseLibvirtRuntime(LibvirtFixture.Uri).AddContainers().AddVirtualMachines();
        await using var sp = services.BuildServiceProvider();
        var runtime = sp.GetRequiredService<VirtuozzoRuntime>();
        runtime.Kind.Should().Be(RuntimeKind.Libvirt);
        var all = await sp.GetRequiredService<VirtualEnvironmentClient>().ListAsync();
        all.Where(v => v.Kind != VeKind.Vm).Should().BeEmpty();
        var (_, names) = await LibvirtFixture.Virsh("list", "--all", "--name");
        all.Select(v => v.Name.Value).Should().BeEquivalentTo(names.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        FluentActions.Invoking(() => sp.GetRequiredService<ContainerClient>()).Should().Throw<UnsupportedOnHostException>();

        FluentActions.Invoking(() => VirtuozzoRuntime.CreateLibvirt("not a uri")).Should().Throw<ArgumentException>();
        FluentActions.Invoking(() => VirtuozzoRuntime.CreateLibvirt("test+unix:///nowhere/at/all")).Should().Throw<HostConnectionException>();
    }
}

/// <summary>The getting-started sample, unchanged, on the libvirt runtime (<c>VZSDK_NODE=qemu:///system</c>).</summary>
[Collection("libvirt")]
public sealed class GettingStartedOnLibvirtTests(LibvirtFixture env)
{
    [IntegrationFact("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", Root = true)]
    public async Task The_getting_started_program_lists_libvirts_domains_as_VEs()
    {
        var vm = await env.Vms.CreateAsync(env.GuestVm("gs") with { Disks = [] });
        try
        {
            var testDir = AppContext.BaseDirectory.TrimEnd('/');
            var repo = Path.GetFullPath(Path.Combine(testDir, "../../../../.."));
            var sample = Path.Combine(repo, "samples", "GettingStarted", "bin", Path.GetFileName(Path.GetDirectoryName(testDir)!), Path.GetFileName(testDir), "GettingStarted.dll");
            File.Exists(sample).Should().BeTrue("the sample is built with the solution ({0})", sample);
            using var data = new TempDirectory("vzsdk-gs-libvirt");
            var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add(sample);
            start.ArgumentList.Add(data.Path);
            start.Environment["VZSDK_NODE"] = LibvirtFixture.Uri;
            using var process = System.Diagnostics.Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await process.WaitForExitAsync(timeout.Token);
            process.ExitCode.Should().Be(0, "the sample runs; stderr: {0}", await stderr);
            var lines = (await stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            lines.Should().Contain($"  Vm {vm.Name} Stopped");
        }
        finally
        {
            await env.Vms.DeleteAsync(vm.Id.ToString());
        }
    }
}

/// <summary><c>vzsdk --connect URI</c>: every verb on a libvirt daemon's VMs.</summary>
[Collection("libvirt")]
public sealed class VzsdkOnLibvirtTests(LibvirtFixture env)
{
    [IntegrationFact("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", Root = true)]
    public async Task Vzsdk_connect_lists_and_drives_libvirts_VMs()
    {
        var vm = await env.Vms.CreateAsync(env.GuestVm("cli") with { Disks = [] });
        try
        {
            var list = await Cli.VzsdkTool.RunAsync("--connect", LibvirtFixture.Uri, "--data-root", env.Root.Path, "list", "-a", "--json");
            list.ExitCode.Should().Be(0, list.StandardError);
            var ves = System.Text.Json.JsonDocument.Parse(list.StandardOutput).RootElement;
            ves.EnumerateArray().Should().Contain(v => v.GetProperty("name").GetString() == vm.Name.Value);

            var start = await Cli.VzsdkTool.RunAsync("--connect", LibvirtFixture.Uri, "--data-root", env.Root.Path, "start", vm.Name.Value);
            start.ExitCode.Should().Be(0, start.StandardError);
            (await LibvirtFixture.Virsh("domstate", vm.Name.Value)).Output.Trim().Should().Be("running");
            var stop = await Cli.VzsdkTool.RunAsync("--connect", LibvirtFixture.Uri, "--data-root", env.Root.Path, "stop", vm.Name.Value, "--kill");
            stop.ExitCode.Should().Be(0, stop.StandardError);
            (await LibvirtFixture.Virsh("domstate", vm.Name.Value)).Output.Trim().Should().Be("shut off");

            var bad = await Cli.VzsdkTool.RunAsync("--connect", "no-scheme-here", "list", "-a");
            bad.ExitCode.Should().Be(2, "a malformed URI is a usage error");
            var both = await Cli.VzsdkTool.RunAsync("--connect", LibvirtFixture.Uri, "--host", "local", "list", "-a");
            both.ExitCode.Should().Be(2, "--host and --connect together are a usage error");
        }
        finally
        {
            await env.Vms.DeleteAsync(vm.Id.ToString());
        }
    }
}
