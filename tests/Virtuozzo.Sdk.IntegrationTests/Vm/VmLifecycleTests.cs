using System.Diagnostics;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Vm;

/// <summary>Lifecycle tests that need a VM of their own (each test boots and stops its guest).</summary>
public sealed class VmLifecycleTests : IAsyncLifetime
{
    private readonly VmTestEnvironment _env = new();

    public Task InitializeAsync() => _env.InitializeAsync();

    public Task DisposeAsync() => _env.DisposeAsync();

    private VirtualMachineClient Client => _env.Client;

    private string RunDir(VmInfo vm) => Path.Combine(_env.Root.Path, "run", vm.Id.ToString());

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_vm_boots_to_its_guest_tools_and_a_polite_stop_powers_it_off_through_them()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("polite"));
        vm.State.Should().Be(VeState.Stopped);
        vm.MemoryGuaranteePercent.Should().Be(80);
        var sw = Stopwatch.StartNew();
        await Client.StartAsync("polite");
        await Client.WaitForGuestToolsAsync("polite", TimeSpan.FromSeconds(60));
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(60));

        var method = await Client.StopAsync("polite", new VeStopOptions { Timeout = TimeSpan.FromSeconds(30) });
        method.Should().Be(VeStopMethod.GuestTools);
        var after = await Client.GetAsync("polite");
        after.State.Should().Be(VeState.Stopped);
        after.ProcessId.Should().BeNull();
        Directory.Exists(RunDir(vm)).Should().BeFalse();
        (await Client.Ledger.GetSnapshotAsync()).Reservations.Should().BeEmpty();
        (await Client.StopAsync("polite")).Should().Be(VeStopMethod.AlreadyStopped);
    }

    [IntegrationFact("qemu-system-x86_64", "mkfs.ext4")]
    public async Task A_guest_left_frozen_by_a_dead_backup_is_thawed_and_shut_down_through_its_guest_tools_not_killed()
    {
        var data = await TestGuest.MakeExt4DiskAsync(_env.Root.Path, "data", 64, new Dictionary<string, string> { ["one.txt"] = "one\n" });
        var vm = await Client.CreateAsync(_env.GuestVm("leftfrozen") with { Disks = [new VmDiskOptions { SourceImagePath = data }] });
        await Client.StartAsync("leftfrozen");
        await Client.WaitForGuestToolsAsync("leftfrozen", TimeSpan.FromSeconds(60));
        await _env.ShAsync("leftfrozen", "grep -q ' /mnt/data ext4 ' /proc/mounts");

        // What a backup killed between its freeze and its thaw leaves: its marker, and the guest's file systems frozen.
        File.WriteAllText(Path.Combine(RunDir(vm), "frozen-by-backup"), DateTimeOffset.UtcNow.ToString("O"));
        await using (var agent = await GuestAgentClient.ConnectAsync(Path.Combine(RunDir(vm), "ga"), TimeSpan.FromSeconds(10), default))
        {
            (await agent.FreezeFileSystemsAsync(TimeSpan.FromSeconds(30), default)).Should().BeGreaterThanOrEqualTo(1);
            (await agent.AreFileSystemsFrozenAsync(TimeSpan.FromSeconds(10), default)).Should().BeTrue();
        }

        var method = await Client.StopAsync("leftfrozen", new VeStopOptions { Timeout = TimeSpan.FromSeconds(30) });
        method.Should().Be(VeStopMethod.GuestTools, "the stop thawed the guest, whose tools then shut it down cleanly");
        (await Client.GetAsync("leftfrozen")).State.Should().Be(VeState.Stopped);
        (await ((Virtuozzo.Sdk.Vm.Runtime.Local.LocalVmDriver)Client.DriverForTests).GetBackupViewAsync(vm.Id, default))!.TrackingResets.Should().BeEmpty("a clean shutdown keeps change tracking; a kill would have reset it");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task Settings_changed_while_stopped_are_persisted_and_used_by_the_next_start()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("tuned"));
        var set = await Client.SetAsync("tuned", new VmSetOptions { MemorySize = ByteSize.FromMiB(768), Cpus = 2, MemoryGuaranteePercent = 50 });
        (set.MemorySize, set.Cpus, set.MemoryGuaranteePercent).Should().Be((ByteSize.FromMiB(768), 2, 50));
        var reread = await new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(_env.SdkOptions)).GetAsync("tuned");
        (reread.MemorySize, reread.Cpus, reread.MemoryGuaranteePercent).Should().Be((ByteSize.FromMiB(768), 2, 50));

        await Client.StartAsync("tuned");
        await Client.WaitForGuestToolsAsync("tuned", TimeSpan.FromSeconds(60));
        (await _env.ShAsync("tuned", "grep -c ^processor /proc/cpuinfo")).Trim().Should().Be("2");
        VmTestEnvironment.MemTotalKiB(await _env.ShAsync("tuned", "cat /proc/meminfo")).Should().BeInRange(600 * 1024, 768 * 1024);
        (await Client.Ledger.GetSnapshotAsync()).Reservations.Single(r => r.VeId == vm.Id).GuaranteeBytes.Should().Be(384 * ByteSize.MiB);
        await ((Func<Task>)(() => Client.SetAsync("tuned", new VmSetOptions { MemorySize = ByteSize.FromMiB(1024) })))
            .Should().ThrowAsync<InvalidStateException>().WithMessage("*memory hotplug is off*");
        (await Client.Ledger.GetSnapshotAsync()).Reservations.Single(r => r.VeId == vm.Id).GuaranteeBytes.Should().Be(384 * ByteSize.MiB, "a refused change leaves the reservation alone");
        (await Client.GetAsync("tuned")).MemorySize.Should().Be(ByteSize.FromMiB(768));
        await Client.KillAsync("tuned");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_listing_during_a_long_stop_reports_the_vm_busy_instead_of_waiting()
    {
        await Client.CreateAsync(_env.GuestVm("slow", deaf: true));
        await Client.StartAsync("slow");
        await Client.WaitForGuestToolsAsync("slow", TimeSpan.FromSeconds(60));
        var stop = Client.StopAsync("slow", new VeStopOptions { Timeout = TimeSpan.FromSeconds(5) });
        await Task.Delay(1000);
        var sw = Stopwatch.StartNew();
        var listed = (await new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(_env.SdkOptions)).ListAsync()).Single();
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(2));
        listed.State.Should().Be(VeState.Busy);
        (await stop).Should().Be(VeStopMethod.Killed);
        (await Client.GetAsync("slow")).State.Should().Be(VeState.Stopped);
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_memory_increase_the_ledger_cannot_guarantee_is_refused_and_plugs_nothing()
    {
        var total = long.Parse(System.Text.RegularExpressions.Regex.Match(File.ReadAllText("/proc/meminfo"), @"MemTotal:\s+(\d+) kB").Groups[1].Value) * 1024;
        var small = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions
        {
            DataRoot = _env.Root.Path,
            HostMemoryReserve = ByteSize.FromBytes(total - 2 * ByteSize.GiB), // 2 GiB left for guarantees
        }));
        var vm = await small.CreateAsync(_env.GuestVm("tight") with { MemorySize = ByteSize.FromGiB(1), MemoryHotplug = true });
        await small.StartAsync("tight");
        await small.WaitForGuestToolsAsync("tight", TimeSpan.FromSeconds(60));
        var before = VmTestEnvironment.MemTotalKiB(await _env.ShAsync("tight", "cat /proc/meminfo"));
        var raise = () => small.SetAsync("tight", new VmSetOptions { MemorySize = ByteSize.FromGiB(3) });
        await raise.Should().ThrowAsync<InsufficientResourcesException>();
        await Task.Delay(500);
        VmTestEnvironment.MemTotalKiB(await _env.ShAsync("tight", "cat /proc/meminfo")).Should().Be(before);
        var info = await small.GetAsync("tight");
        info.MemorySize.Should().Be(ByteSize.FromGiB(1));
        (await small.Ledger.GetSnapshotAsync()).Reservations.Single(r => r.VeId == vm.Id).GuaranteeBytes.Should().Be(ByteSize.GiB * 80 / 100);
        await small.KillAsync("tight");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_long_exec_does_not_block_pausing_or_stopping_the_vm()
    {
        await Client.CreateAsync(_env.GuestVm("longexec"));
        await Client.StartAsync("longexec");
        await Client.WaitForGuestToolsAsync("longexec", TimeSpan.FromSeconds(60));
        var exec = Client.ExecAsync("longexec", new VeExecOptions { Command = ["/bin/sleep", "30"], Timeout = TimeSpan.FromSeconds(60) });
        await Task.Delay(1000);
        var sw = Stopwatch.StartNew();
        await Client.PauseAsync("longexec");
        await Client.ResumeAsync("longexec");
        var method = await Client.StopAsync("longexec", new VeStopOptions { Timeout = TimeSpan.FromSeconds(20) });
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(15));
        method.Should().Be(VeStopMethod.Acpi, "the guest tools channel was busy with the exec, so the power button was pressed");
        await exec.Awaiting(e => e).Should().ThrowAsync<InvalidStateException>().WithMessage("*stopped answering*");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task Reset_reboots_the_guest()
    {
        await Client.CreateAsync(_env.GuestVm("rebooter"));
        await Client.StartAsync("rebooter");
        await Client.WaitForGuestToolsAsync("rebooter", TimeSpan.FromSeconds(60));
        await Task.Delay(3000);
        var before = double.Parse((await _env.ShAsync("rebooter", "cut -d' ' -f1 /proc/uptime")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        var pid = (await Client.GetAsync("rebooter")).ProcessId;
        await Client.ResetAsync("rebooter");
        await Task.Delay(500);
        await Client.WaitForGuestToolsAsync("rebooter", TimeSpan.FromSeconds(60));
        var after = double.Parse((await _env.ShAsync("rebooter", "cut -d' ' -f1 /proc/uptime")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        after.Should().BeLessThan(before, "the guest booted again");
        (await Client.GetAsync("rebooter")).ProcessId.Should().Be(pid, "a reset keeps the same emulator process");
        await Client.KillAsync("rebooter");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task Without_guest_tools_answering_a_stop_presses_the_acpi_power_button()
    {
        await Client.CreateAsync(_env.GuestVm("acpi"));
        await Client.StartAsync("acpi");
        await Client.WaitForGuestToolsAsync("acpi", TimeSpan.FromSeconds(60));
        // The agent goes away for good: init's respawn finds a script that only sleeps.
        await _env.ShAsync("acpi", "printf '#!/bin/sh\\nexec sleep 3600\\n' > /sbin/qga-run; (sleep 1; killall qemu-ga) </dev/null >/dev/null 2>&1 &");
        await Task.Delay(2000);
        var method = await Client.StopAsync("acpi", new VeStopOptions { Timeout = TimeSpan.FromSeconds(30) });
        method.Should().Be(VeStopMethod.Acpi);
        (await Client.GetAsync("acpi")).State.Should().Be(VeState.Stopped);
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_guest_that_ignores_the_guest_tools_and_acpi_is_killed_after_the_timeout()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("deaf", deaf: true));
        await Client.StartAsync("deaf");
        await Client.WaitForGuestToolsAsync("deaf", TimeSpan.FromSeconds(60));
        var sw = Stopwatch.StartNew();
        var method = await Client.StopAsync("deaf", new VeStopOptions { Timeout = TimeSpan.FromSeconds(3) });
        method.Should().Be(VeStopMethod.Killed);
        sw.Elapsed.Should().BeGreaterThanOrEqualTo(TimeSpan.FromSeconds(3)).And.BeLessThan(TimeSpan.FromSeconds(20));
        (await Client.GetAsync("deaf")).State.Should().Be(VeState.Stopped);
        Directory.Exists(RunDir(vm)).Should().BeFalse();
        (await Client.Ledger.GetSnapshotAsync()).Reservations.Should().BeEmpty();
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_vm_whose_process_dies_is_reported_stopped_and_its_guarantee_released()
    {
        await Client.CreateAsync(_env.GuestVm("dies"));
        var running = await Client.StartAsync("dies");
        running.State.Should().Be(VeState.Running);
        (await Client.Ledger.GetSnapshotAsync()).Reservations.Should().ContainSingle();
        using (var p = Process.GetProcessById(running.ProcessId!.Value))
        {
            p.Kill();
            await p.WaitForExitAsync();
        }
        var info = await Client.GetAsync("dies");
        info.State.Should().Be(VeState.Stopped);
        info.ProcessId.Should().BeNull();
        (await Client.Ledger.GetSnapshotAsync()).Reservations.Should().BeEmpty();
        var again = await Client.StartAsync("dies");
        again.State.Should().Be(VeState.Running);
        await Client.KillAsync("dies");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task Reconcile_in_a_new_client_releases_what_a_dead_vm_left_behind()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("crashed"));
        var running = await Client.StartAsync("crashed");
        await Client.CreateAsync(_env.GuestVm("healthy"));
        await Client.StartAsync("healthy");
        using (var p = Process.GetProcessById(running.ProcessId!.Value))
        {
            p.Kill();
            await p.WaitForExitAsync();
        }
        var fresh = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(_env.SdkOptions));
        (await fresh.ReconcileAsync()).Should().Be(1);
        Directory.Exists(RunDir(vm)).Should().BeFalse();
        (await fresh.Ledger.GetSnapshotAsync()).Reservations.Should().ContainSingle().Which.VeId.Should().NotBe(vm.Id);
        (await fresh.GetAsync("healthy")).State.Should().Be(VeState.Running);
        (await fresh.ReconcileAsync()).Should().Be(0);
        await fresh.KillAsync("healthy");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_start_that_fails_leaves_no_process_socket_or_reservation_behind()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("broken") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(16) }] });
        await File.WriteAllTextAsync(vm.Disks[0].ImagePath, "this is not a disk image");
        var start = () => Client.StartAsync("broken");
        (await start.Should().ThrowAsync<CommandFailedException>()).Which.StandardErrorTail.Should().NotBeEmpty();
        Directory.Exists(RunDir(vm)).Should().BeFalse();
        (await Client.Ledger.GetSnapshotAsync()).Reservations.Should().BeEmpty();
        Process.GetProcessesByName("qemu-system-x86_64").Where(p => !p.HasExited)
            .Should().NotContain(p => File.ReadAllText($"/proc/{p.Id}/cmdline").Contains(vm.Id.ToString()));
        (await Client.GetAsync("broken")).State.Should().Be(VeState.Stopped);
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_start_the_ledger_cannot_admit_is_refused_before_anything_runs()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("huge") with { MemorySize = ByteSize.FromGiB(64 * 1024), MemoryGuaranteePercent = 100 });
        var start = () => Client.StartAsync("huge");
        await start.Should().ThrowAsync<InsufficientResourcesException>();
        Directory.Exists(RunDir(vm)).Should().BeFalse();
        (await Client.GetAsync("huge")).State.Should().Be(VeState.Stopped);
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task Starting_a_running_vm_and_deleting_a_running_vm_are_refused()
    {
        await Client.CreateAsync(_env.GuestVm("busy"));
        await Client.StartAsync("busy");
        await ((Func<Task>)(() => Client.StartAsync("busy"))).Should().ThrowAsync<InvalidStateException>();
        await ((Func<Task>)(() => Client.DeleteAsync("busy"))).Should().ThrowAsync<InvalidStateException>();
        await Client.KillAsync("busy");
        await Client.DeleteAsync("busy");
        await ((Func<Task>)(() => Client.GetAsync("busy"))).Should().ThrowAsync<NotFoundException>();
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task Names_are_unique_rename_keeps_the_uuid_and_lookups_work_by_name_and_uuid()
    {
        var a = await Client.CreateAsync(_env.GuestVm("alpha"));
        await Client.CreateAsync(_env.GuestVm("beta"));
        await ((Func<Task>)(() => Client.CreateAsync(_env.GuestVm("alpha")))).Should().ThrowAsync<AlreadyExistsException>();
        await ((Func<Task>)(() => Client.RenameAsync("alpha", new VeName("beta")))).Should().ThrowAsync<AlreadyExistsException>();
        await ((Func<Task>)(() => Client.CreateAsync(_env.GuestVm(Guid.NewGuid().ToString())))).Should().ThrowAsync<ArgumentException>();

        var renamed = await Client.RenameAsync("alpha", new VeName("gamma"));
        renamed.Id.Should().Be(a.Id);
        (await Client.GetAsync(a.Id.ToString())).Name.Value.Should().Be("gamma");
        (await Client.GetAsync(a.Id.ToBracedString())).Name.Value.Should().Be("gamma");
        (await Client.ListAsync()).Select(v => v.Name.Value).Should().Equal("beta", "gamma");
        await ((Func<Task>)(() => Client.GetAsync("alpha"))).Should().ThrowAsync<NotFoundException>();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Switching_to_a_snapshot_restores_the_disk_content_it_had()
    {
        var disk = await TestGuest.MakeExt4DiskAsync(_env.Root.Path, "snap", 32, new Dictionary<string, string> { ["state.txt"] = "original\n" });
        await Client.CreateAsync(_env.GuestVm("snappy") with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        await Client.StartAsync("snappy");
        await Client.WaitForGuestToolsAsync("snappy", TimeSpan.FromSeconds(60));
        (await _env.ShAsync("snappy", "cat /mnt/data/state.txt")).Should().Be("original\n");

        var snap = await Client.CreateSnapshotAsync("snappy", "before-change", "first");
        snap.IncludesMemory.Should().BeTrue();
        await _env.ShAsync("snappy", "echo changed > /mnt/data/state.txt; sync");
        var second = await Client.CreateSnapshotAsync("snappy", "after-change");
        second.ParentId.Should().Be(snap.Id);

        await Client.SwitchSnapshotAsync("snappy", "before-change");
        await Client.WaitForGuestToolsAsync("snappy", TimeSpan.FromSeconds(30));
        (await _env.ShAsync("snappy", "cat /mnt/data/state.txt")).Should().Be("original\n");
        var list = await Client.ListSnapshotsAsync("snappy");
        list.Should().HaveCount(2);
        list.Single(s => s.IsCurrent).Id.Should().Be(snap.Id);

        // Offline: stop, switch to the later snapshot (memory included: the VM resumes), see its content.
        await Client.KillAsync("snappy");
        await Client.SwitchSnapshotAsync("snappy", second.Id.ToString());
        (await Client.GetAsync("snappy")).State.Should().Be(VeState.Running);
        await Client.WaitForGuestToolsAsync("snappy", TimeSpan.FromSeconds(30));
        (await _env.ShAsync("snappy", "cat /mnt/data/state.txt")).Should().Be("changed\n");

        await Client.DeleteSnapshotAsync("snappy", "before-change");
        var left = await Client.ListSnapshotsAsync("snappy");
        left.Should().ContainSingle().Which.ParentId.Should().BeNull();
        var img = (await Client.GetAsync("snappy")).Disks[0].ImagePath;
        await Client.KillAsync("snappy");
        (await TestGuest.RunAsync("qemu-img", "snapshot", "-l", img)).Should().NotContain("vzsdk-" + snap.Id.ToString("N"));
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task A_snapshot_of_a_stopped_vm_holds_only_its_disks_and_switching_to_it_reverts_them()
    {
        var disk = await TestGuest.MakeExt4DiskAsync(_env.Root.Path, "cold", 32, new Dictionary<string, string> { ["state.txt"] = "cold\n" });
        await Client.CreateAsync(_env.GuestVm("cold") with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        var snap = await Client.CreateSnapshotAsync("cold", "pristine");
        snap.IncludesMemory.Should().BeFalse();
        (await Client.GetAsync("cold")).State.Should().Be(VeState.Stopped, "snapshotting a stopped VM leaves it stopped");

        await Client.StartAsync("cold");
        await Client.WaitForGuestToolsAsync("cold", TimeSpan.FromSeconds(60));
        await _env.ShAsync("cold", "echo warm > /mnt/data/state.txt; sync");
        await ((Func<Task>)(() => Client.SwitchSnapshotAsync("cold", "pristine"))).Should().ThrowAsync<InvalidStateException>().WithMessage("*holds no memory*");
        await Client.StopAsync("cold", new VeStopOptions { Timeout = TimeSpan.FromSeconds(20) });

        await Client.SwitchSnapshotAsync("cold", "pristine");
        (await Client.GetAsync("cold")).State.Should().Be(VeState.Stopped);
        await Client.StartAsync("cold");
        await Client.WaitForGuestToolsAsync("cold", TimeSpan.FromSeconds(60));
        (await _env.ShAsync("cold", "cat /mnt/data/state.txt")).Should().Be("cold\n");
        await Client.KillAsync("cold");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_running_vms_disk_is_locked_against_a_second_writer()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("locked") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(64) }] });
        await Client.StartAsync("locked");
        var open = async () => await (await Storage.Qcow2.Qcow2Image.OpenAsync(vm.Disks[0].ImagePath)).DisposeAsync();
        await open.Should().ThrowAsync<Storage.Qcow2.Qcow2LockedException>();
        await Client.KillAsync("locked");
        await open.Should().NotThrowAsync("the lock goes with the emulator");
    }

    [IntegrationTheory("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_clone_boots_independently_of_its_source(bool linked)
    {
        var disk = await TestGuest.MakeExt4DiskAsync(_env.Root.Path, "src", 32, new Dictionary<string, string> { ["who.txt"] = "source\n" });
        var source = await Client.CreateAsync(_env.GuestVm("source") with { Disks = [new VmDiskOptions { SourceImagePath = disk }] });
        var clone = await Client.CloneAsync("source", new VmCloneOptions { Name = new VeName("copy"), Linked = linked });
        clone.Id.Should().NotBe(source.Id);
        clone.MacAddress.Should().NotBe(source.MacAddress);

        await Client.StartAsync("source");
        await Client.StartAsync("copy");
        await Client.WaitForGuestToolsAsync("copy", TimeSpan.FromSeconds(60));
        await Client.WaitForGuestToolsAsync("source", TimeSpan.FromSeconds(60));
        await _env.ShAsync("copy", "echo clone > /mnt/data/who.txt; sync");
        (await _env.ShAsync("source", "cat /mnt/data/who.txt")).Should().Be("source\n");
        (await _env.ShAsync("copy", "cat /mnt/data/who.txt")).Should().Be("clone\n");
        await Client.KillAsync("copy");
        await Client.KillAsync("source");
        (await TestGuest.RunAsync("qemu-img", "check", clone.Disks[0].ImagePath)).Should().Contain("No errors");
        if (linked)
        {
            await ((Func<Task>)(() => Client.DeleteAsync("source"))).Should().ThrowAsync<InvalidStateException>().WithMessage("*linked clone 'copy'*");
            await Client.DeleteAsync("copy");
        }
        await Client.DeleteAsync("source");
        (await Client.ListAsync()).Select(v => v.Name.Value).Should().Equal(linked ? [] : ["copy"]);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img")]
    public async Task Created_disks_are_valid_qcow2_images_and_grow_offline()
    {
        var vm = await Client.CreateAsync(_env.GuestVm("disks") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(100) }] });
        var img = vm.Disks[0].ImagePath;
        (await TestGuest.RunAsync("qemu-img", "check", img)).Should().Contain("No errors");
        (await TestGuest.RunAsync("qemu-img", "info", "--output=json", img)).Should().Contain("\"virtual-size\": 104857600");
        await Client.ResizeDiskAsync("disks", "hdd0", ByteSize.FromMiB(300));
        (await TestGuest.RunAsync("qemu-img", "info", "--output=json", img)).Should().Contain("\"virtual-size\": 314572800");
        await ((Func<Task>)(() => Client.ResizeDiskAsync("disks", "hdd0", ByteSize.FromMiB(200)))).Should().ThrowAsync<ArgumentOutOfRangeException>();
        var added = await Client.AddDiskAsync("disks", new VmDiskOptions { Size = ByteSize.FromGiB(2) });
        added.Name.Should().Be("hdd1");
        (await TestGuest.RunAsync("qemu-img", "check", added.ImagePath)).Should().Contain("No errors");
        await Client.RemoveDiskAsync("disks", "hdd1");
        File.Exists(added.ImagePath).Should().BeFalse();
        (await Client.GetAsync("disks")).Disks.Should().ContainSingle();
    }
}

/// <summary>Host integration: the bridge containers share, and the VE's cgroup.</summary>
public sealed class VmHostIntegrationTests : IAsyncLifetime
{
    private readonly VmTestEnvironment _env = new();

    public Task InitializeAsync() => _env.InitializeAsync();

    public Task DisposeAsync() => _env.DisposeAsync();

    [IntegrationFact("qemu-system-x86_64", "ip", Root = true)]
    public async Task A_bridged_vm_gets_a_tap_on_vzbr0_and_reaches_the_host_address_through_it()
    {
        var vm = await _env.Client.CreateAsync(_env.GuestVm("bridged") with { Network = VmNetworkMode.Bridged });
        await _env.Client.StartAsync("bridged");
        var tap = "vz" + vm.Id.ToString()[..8] + "t";
        File.Exists($"/sys/class/net/{tap}/master/uevent").Should().BeTrue();
        Path.GetFileName(new DirectoryInfo($"/sys/class/net/{tap}/master").ResolveLinkTarget(true)!.FullName).Should().Be("vzbr0");
        await _env.Client.WaitForGuestToolsAsync("bridged", TimeSpan.FromSeconds(60));
        var ping = await _env.Client.ExecAsync("bridged", new VeExecOptions
        {
            Command = ["ip addr add 10.209.0.250/24 dev eth0 && ping -c 1 -W 3 10.209.0.1"],
            Shell = true,
            Timeout = TimeSpan.FromSeconds(20),
        });
        ping.ExitCode.Should().Be(0, ping.StandardOutput + ping.StandardError);
        await _env.Client.StopAsync("bridged", new VeStopOptions { Timeout = TimeSpan.FromSeconds(20) });
        Directory.Exists($"/sys/class/net/{tap}").Should().BeFalse("the tap goes with the VM");
    }

    [IntegrationFact("qemu-system-x86_64", Root = true)]
    public async Task A_cpu_limit_puts_the_vm_process_under_the_sdk_cgroup_with_a_quota_and_changes_live()
    {
        var vm = await _env.Client.CreateAsync(_env.GuestVm("limited") with { CpuLimitPercent = 50 });
        var running = await _env.Client.StartAsync("limited");
        var parent = Virtuozzo.Sdk.Core.Runtime.Local.CgroupManager.ParentFor(_env.SdkOptions.DataRoot);
        var cg = $"/sys/fs/cgroup/cpu,cpuacct/{parent}/{vm.Id}/ve";
        if (!Directory.Exists(cg))
            cg = $"/sys/fs/cgroup/cpu/{parent}/{vm.Id}/ve";
        (await File.ReadAllTextAsync(Path.Combine(cg, "cgroup.procs"))).Split('\n').Should().Contain(running.ProcessId!.Value.ToString());
        (await File.ReadAllTextAsync(Path.Combine(cg, "cpu.cfs_quota_us"))).Trim().Should().Be("50000");
        await _env.Client.SetAsync("limited", new VmSetOptions { CpuLimitPercent = 150 });
        (await File.ReadAllTextAsync(Path.Combine(cg, "cpu.cfs_quota_us"))).Trim().Should().Be("150000");
        (await _env.Client.GetAsync("limited")).CpuLimitPercent.Should().Be(150);
        await _env.Client.KillAsync("limited");
        Directory.Exists(cg).Should().BeFalse("the cgroup goes with the VM");
    }

    [IntegrationFact("qemu-system-x86_64", "ip", Root = true)]
    public async Task A_bridged_start_that_fails_removes_its_tap_and_cgroup()
    {
        var vm = await _env.Client.CreateAsync(_env.GuestVm("badtap") with { Network = VmNetworkMode.Bridged, CpuLimitPercent = 50, Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(16) }] });
        await File.WriteAllTextAsync(vm.Disks[0].ImagePath, "garbage");
        await ((Func<Task>)(() => _env.Client.StartAsync("badtap"))).Should().ThrowAsync<CommandFailedException>();
        Directory.Exists("/sys/class/net/vz" + vm.Id.ToString()[..8] + "t").Should().BeFalse();
        Directory.Exists($"/sys/fs/cgroup/cpu/{Virtuozzo.Sdk.Core.Runtime.Local.CgroupManager.ParentFor(_env.SdkOptions.DataRoot)}/{vm.Id}").Should().BeFalse();
        Directory.Exists(Path.Combine(_env.Root.Path, "run", vm.Id.ToString())).Should().BeFalse();
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task A_cpu_mask_pins_every_vcpu_thread()
    {
        await _env.Client.CreateAsync(_env.GuestVm("pinned") with { Cpus = 2, CpuMask = "0" });
        var running = await _env.Client.StartAsync("pinned");
        var threads = Directory.GetDirectories($"/proc/{running.ProcessId}/task")
            .Where(t => File.ReadAllText(Path.Combine(t, "comm")).StartsWith("CPU ", StringComparison.Ordinal)).ToList();
        threads.Should().HaveCount(2);
        foreach (var t in threads)
            File.ReadAllLines(Path.Combine(t, "status")).Single(l => l.StartsWith("Cpus_allowed_list:")).Should().EndWith("\t0");
        await _env.Client.SetAsync("pinned", new VmSetOptions { CpuMask = "1" });
        foreach (var t in threads)
            File.ReadAllLines(Path.Combine(t, "status")).Single(l => l.StartsWith("Cpus_allowed_list:")).Should().EndWith("\t1");
        await _env.Client.KillAsync("pinned");
    }
}
