using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.IntegrationTests.Vm;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Backup;

/// <summary>Backups of real VMs: stopped (read by the library, every disk) and running (QMP transaction, guest frozen through its agent).</summary>
public sealed class VmBackupTests : IAsyncLifetime
{
    private readonly VmTestEnvironment _env = new();

    public Task InitializeAsync() => _env.InitializeAsync();

    public Task DisposeAsync() => _env.DisposeAsync();

    private VirtualMachineClient Vms => _env.Client;

    private BackupClient Backups => new(VirtuozzoRuntime.CreateLocal(_env.SdkOptions));

    /// <summary>Writes <paramref name="length"/> bytes of random data at the start of a stopped VM's disk.</summary>
    private static void FillRandom(string disk, long length)
    {
        using var image = Qcow2Image.Open(disk);
        var blob = new byte[4 << 20];
        var random = new Random(6);
        for (long off = 0; off < length; off += blob.Length)
        {
            random.NextBytes(blob);
            image.Write(off, blob);
        }
        image.Flush();
    }

    /// <summary>For failure messages: the emulator's run state, its disks' I/O status and its block jobs.</summary>
    private async Task<string> EmulatorReportAsync(VeId id)
    {
        try
        {
            await using var qmp = await QmpClient.ConnectAsync(Path.Combine(_env.Root.Path, "run", id.ToString(), "qmp"), TimeSpan.FromSeconds(10), default);
            var status = await qmp.ExecuteAsync("query-status", null, TimeSpan.FromSeconds(10), default);
            var block = await qmp.ExecuteAsync("query-block", null, TimeSpan.FromSeconds(10), default);
            var jobs = await qmp.ExecuteAsync("query-jobs", null, TimeSpan.FromSeconds(10), default);
            var io = string.Join(", ", block!.AsArray().Select(b => $"{b!["device"]}: {b["io-status"]}"));
            var console = Path.Combine(_env.Root.Path, "private", id.ToString(), "console.log");
            var tail = File.Exists(console) ? string.Join(" | ", File.ReadLines(console).TakeLast(20)) : "(no console log)";
            return $"status {status?.ToJsonString()}; io-status {io}; jobs {jobs?.ToJsonString()}; guest console: {tail}";
        }
        catch (Exception ex)
        {
            return "(no report: " + ex.Message + ")";
        }
    }

    private string DiskOf(VeId id, string disk) => Path.Combine(_env.Root.Path, "private", id.ToString(), disk + ".qcow2");

    /// <summary>Writes a filled range into a stopped VM's disk through the library (which sets the bits of enabled bitmaps).</summary>
    private static void Fill(string disk, long offset, byte value, int length = 256 * 1024)
    {
        using var image = Qcow2Image.Open(disk);
        var data = new byte[length];
        Array.Fill(data, value);
        image.Write(offset, data);
        image.Flush();
    }


    private (string, string) Digests(VeId id) => (DiskContent.Digest(DiskOf(id, "hdd0")), DiskContent.Digest(DiskOf(id, "hdd1")));

    private async Task<string> ToRawAsync(string qcow2)
    {
        var raw = Path.Combine(_env.Root.Path, Guid.NewGuid().ToString("N") + ".raw");
        await TestGuest.RunAsync("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", qcow2, raw);
        return raw;
    }

    private static async Task<string> Ext4FeaturesAsync(string raw)
        => (await TestGuest.RunAsync("dumpe2fs", "-h", raw)).Split('\n').First(l => l.StartsWith("Filesystem features:", StringComparison.Ordinal));

    private static async Task<string> Ext4CatAsync(string raw, string file)
        => (await TestGuest.RunAsync("debugfs", "-R", "cat /" + file, raw)).Trim();

    [IntegrationFact("qemu-system-x86_64", "qemu-img")]
    public async Task Stopped_vm_backups_cover_every_disk_chain_incrementally_and_each_restores_its_own_point_in_time_after_a_middle_delete()
    {
        var vm = await Vms.CreateAsync(_env.GuestVm("bk1") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(64) }, new VmDiskOptions { Size = ByteSize.FromMiB(32) }] });
        var id = vm.Id;
        Fill(DiskOf(id, "hdd0"), 0, 0xA1);
        Fill(DiskOf(id, "hdd1"), 1 << 20, 0xB1);
        var d1 = Digests(id);
        var full = await Backups.CreateAsync("bk1");
        full.Backup.Type.Should().Be(BackupType.Full);
        full.Backup.Disks.Select(d => d.Name).Should().Equal("hdd0", "hdd1");
        full.Consistency.Should().Contain("stopped");
        full.FullReasons.Should().ContainSingle().Which.Should().Contain("first backup of the VM");

        Fill(DiskOf(id, "hdd0"), 8 << 20, 0xA2);
        var d2 = Digests(id);
        var second = await Backups.CreateAsync("bk1");
        second.Backup.Type.Should().Be(BackupType.Incremental);
        second.Backup.ParentId.Should().Be(full.Backup.Id);

        Fill(DiskOf(id, "hdd1"), 4 << 20, 0xB3);
        var d3 = Digests(id);
        var third = await Backups.CreateAsync("bk1");
        third.Backup.Type.Should().Be(BackupType.Incremental);
        third.Backup.ParentId.Should().Be(second.Backup.Id);
        third.Backup.SizeBytes.Should().BeLessThan(full.Backup.SizeBytes, "an incremental holds only what changed");
        d2.Should().NotBe(d1);
        d3.Should().NotBe(d2);

        (await Backups.DeleteAsync(second.Backup.Id)).Should().Equal(second.Backup.Id);
        var list = await Backups.ListAsync("bk1");
        list.Select(b => b.Id).Should().Equal(full.Backup.Id, third.Backup.Id);
        list[1].ParentId.Should().Be(full.Backup.Id, "the child of a deleted middle backup depends on its grandparent");
        var chains = await Backups.ListChainsAsync("bk1");
        chains.Should().ContainSingle().Which.Backups.Select(b => b.Id).Should().Equal(full.Backup.Id, third.Backup.Id);
        (await Backups.VerifyAsync("bk1")).IsValid.Should().BeTrue();
        foreach (var file in list.SelectMany(b => b.Disks).Select(d => d.File))
            await TestGuest.RunAsync("qemu-img", "check", file);

        var ra = await Backups.RestoreAsync(full.Backup.Id, new BackupRestoreOptions { NewName = new VeName("bk1-a") });
        var rc = await Backups.RestoreAsync(third.Backup.Id, new BackupRestoreOptions { NewName = new VeName("bk1-c") });
        Digests(ra).Should().Be(d1);
        Digests(rc).Should().Be(d3);
        var restored = await Vms.GetAsync("bk1-c");
        restored.Id.Should().NotBe(id);
        restored.Disks.Should().HaveCount(2);

        // In place: the VM goes back to the first backup, and its next backup is full because the disks were restored.
        (await Backups.RestoreAsync(full.Backup.Id)).Should().Be(id);
        Digests(id).Should().Be(d1);
        var after = await Backups.CreateAsync("bk1");
        after.Backup.Type.Should().Be(BackupType.Full);
        (await Backups.ListChainsAsync("bk1")).Select(c => c.Backups[0].Id).Should().Equal([full.Backup.Id, after.Backup.Id], "a full backup starts a new chain");
        after.FullReasons.Should().HaveCount(2).And.OnlyContain(r => r.Contains("restored from backup " + full.Backup.Id));
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img")]
    public async Task A_snapshot_switch_a_resize_and_a_killed_vm_each_force_the_next_backup_full_and_say_why()
    {
        var vm = await Vms.CreateAsync(_env.GuestVm("bk2") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(64) }] });
        var disk = DiskOf(vm.Id, "hdd0");
        Fill(disk, 0, 0x11);
        await Vms.CreateSnapshotAsync("bk2", "s1");
        var b1 = await Backups.CreateAsync("bk2");
        b1.Backup.Type.Should().Be(BackupType.Full);
        Fill(disk, 2 << 20, 0x22);
        await Vms.CreateSnapshotAsync("bk2", "s2"); // the emulator that takes it closes the disk cleanly: tracking survives
        var b2 = await Backups.CreateAsync("bk2");
        b2.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", b2.FullReasons));

        await Vms.SwitchSnapshotAsync("bk2", "s1");
        var b3 = await Backups.CreateAsync("bk2");
        b3.Backup.Type.Should().Be(BackupType.Full);
        b3.FullReasons.Should().ContainSingle().Which.Should().Contain("hdd0").And.Contain("snapshot 's1'");

        await Vms.ResizeDiskAsync("bk2", "hdd0", ByteSize.FromMiB(96));
        var b4 = await Backups.CreateAsync("bk2");
        b4.Backup.Type.Should().Be(BackupType.Full);
        b4.FullReasons.Should().ContainSingle().Which.Should().Contain("resized");

        Fill(disk, 90 << 20, 0x33);
        var b5 = await Backups.CreateAsync("bk2");
        b5.Backup.Type.Should().Be(BackupType.Incremental, "tracking restarts with the full backup after a reset");

        await Vms.StartAsync("bk2");
        await Vms.KillAsync("bk2");
        var b6 = await Backups.CreateAsync("bk2");
        b6.Backup.Type.Should().Be(BackupType.Full);
        b6.FullReasons.Should().ContainSingle().Which.Should().Contain("killed");
        (await Backups.VerifyAsync("bk2")).IsValid.Should().BeTrue();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "dumpe2fs", "debugfs")]
    public async Task A_running_vm_is_backed_up_with_its_ext4_frozen_and_thawed_through_the_guest_tools()
    {
        var data = await TestGuest.MakeExt4DiskAsync(_env.Root.Path, "data", 64, new Dictionary<string, string> { ["one.txt"] = "one\n" });
        var vm = await Vms.CreateAsync(_env.GuestVm("bk3") with { Disks = [new VmDiskOptions { SourceImagePath = data }] });
        await Vms.StartAsync("bk3");
        await Vms.WaitForGuestToolsAsync("bk3", TimeSpan.FromSeconds(60));
        await _env.ShAsync("bk3", "grep -q ' /mnt/data ext4 ' /proc/mounts && echo two > /mnt/data/two.txt && sync");

        // A mounted, unfrozen ext4 carries needs_recovery on disk; a frozen one has its journal flushed and the flag cleared.
        var liveRaw = await ToRawAsync(DiskOf(vm.Id, "hdd0"));
        (await Ext4FeaturesAsync(liveRaw)).Should().Contain("needs_recovery");

        var full = await Backups.CreateAsync("bk3");
        full.Backup.Type.Should().Be(BackupType.Full);
        full.Consistency.Should().Contain("frozen through its guest tools");
        var fullRaw = await ToRawAsync(full.Backup.Disks[0].File);
        (await Ext4FeaturesAsync(fullRaw)).Should().NotContain("needs_recovery", "the point in time was taken while the guest's ext4 was frozen");
        (await Ext4CatAsync(fullRaw, "two.txt")).Should().Be("two");

        // Thawed again: the agent says so, and the guest writes.
        await using (var agent = await GuestAgentClient.ConnectAsync(Path.Combine(_env.Root.Path, "run", vm.Id.ToString(), "ga"), TimeSpan.FromSeconds(10), default))
            (await agent.AreFileSystemsFrozenAsync(TimeSpan.FromSeconds(10), default)).Should().BeFalse();
        await _env.ShAsync("bk3", "echo three > /mnt/data/three.txt && sync");

        var incr = await Backups.CreateAsync("bk3");
        incr.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", incr.FullReasons));
        incr.Consistency.Should().Contain("frozen through its guest tools");
        var incrRaw = await ToRawAsync(incr.Backup.Disks[0].File);
        (await Ext4CatAsync(incrRaw, "three.txt")).Should().Be("three");
        (await Ext4CatAsync(fullRaw, "three.txt")).Should().NotBe("three");

        await Backups.Invoking(b => b.RestoreAsync(full.Backup.Id)).Should().ThrowAsync<InvalidStateException>("restore refuses a running target");

        // A clean stop (through the guest tools) lets the emulator store the bitmaps: the chain goes on.
        await Vms.StopAsync("bk3");
        var afterStop = await Backups.CreateAsync("bk3");
        afterStop.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", afterStop.FullReasons));
        afterStop.Backup.ParentId.Should().Be(incr.Backup.Id);

        var restored = await Backups.RestoreAsync(afterStop.Backup.Id, new BackupRestoreOptions { NewName = new VeName("bk3-r") });
        var restoredRaw = await ToRawAsync(DiskOf(restored, "hdd0"));
        (await Ext4CatAsync(restoredRaw, "three.txt")).Should().Be("three");
        (await Backups.VerifyAsync("bk3")).IsValid.Should().BeTrue();
    }

    [IntegrationFact("qemu-img")]
    public async Task A_vm_backup_delete_killed_at_any_point_leaves_every_remaining_backup_restoring_its_own_point_in_time()
    {
        var vm = await Vms.CreateAsync(_env.GuestVm("bk4") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(96) }, new VmDiskOptions { Size = ByteSize.FromMiB(96) }] });
        var expected = new Dictionary<string, (string, string)>();
        var random = new Random(4);
        for (var i = 0; i < 6; i++)
        {
            foreach (var disk in new[] { "hdd0", "hdd1" })
            {
                using var image = Qcow2Image.Open(DiskOf(vm.Id, disk));
                var blob = new byte[12 << 20];
                random.NextBytes(blob);
                image.Write((long)i * (14 << 20), blob);
                image.Flush();
            }
            var backup = await Backups.CreateAsync("bk4", new BackupCreateOptions { Compression = BackupCompression.None });
            expected[backup.Backup.Id] = Digests(vm.Id);
        }
        var delays = new[] { 250, 400, 550, 700, 900 };
        for (var round = 0; round < delays.Length; round++)
        {
            var victim = (await Backups.ListAsync("bk4")).Select(b => b.Id).Skip(1).First(); // a middle backup with a child
            await VzsdkTool.RunAndKillAfterAsync(TimeSpan.FromMilliseconds(delays[round]), "--data-root", _env.Root.Path, "backup", "delete", victim);

            foreach (var b in await Backups.ListAsync("bk4"))
            {
                foreach (var d in b.Disks)
                {
                    var check = await new Sdk.Core.Hosts.LocalHost().ExecuteBufferedAsync(new Sdk.Core.Processes.Command("qemu-img").WithArguments("check", "-U", d.File).WithValidation(Sdk.Core.Processes.CommandResultValidation.None));
                    check.ExitCode.Should().BeOneOf([0, 3], $"backup {b.Id} disk {d.Name} has no corruption after a kill at {delays[round]} ms: {check.StandardOutput}");
                }
                var restored = await Backups.RestoreAsync(b.Id, new BackupRestoreOptions { NewName = new VeName($"bk4-k{round}-{Guid.NewGuid().ToString("N")[..6]}") });
                Digests(restored).Should().Be(expected[b.Id], $"backup {b.Id} restores to its own point in time after a kill at {delays[round]} ms");
                await Vms.DeleteAsync(restored.ToString());
            }
        }
        // The next operation finishes any interrupted delete; afterwards the chain verifies.
        await Backups.CreateAsync("bk4");
        File.Exists(Path.Combine(_env.Root.Path, "backups", vm.Id.ToString(), "pending-delete.json")).Should().BeFalse();
        (await Backups.VerifyAsync("bk4")).IsValid.Should().BeTrue();
        (await Backups.ListAsync("bk4")).Should().HaveCountGreaterThanOrEqualTo(2);
    }

    [IntegrationFact("qemu-img")]
    public async Task A_linked_clone_is_backed_up_through_its_base_and_a_commit_into_the_base_forces_its_next_backup_full()
    {
        var source = await Vms.CreateAsync(_env.GuestVm("bk5") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(64) }] });
        Fill(DiskOf(source.Id, "hdd0"), 0, 0x51);
        var clone = await Vms.CloneAsync("bk5", new VmCloneOptions { Name = new VeName("bk5-c"), Linked = true });
        var disk = DiskOf(clone.Id, "hdd0");
        Fill(disk, 1 << 20, 0x52);
        var full = await Backups.CreateAsync("bk5-c");
        full.Backup.Type.Should().Be(BackupType.Full);
        Fill(disk, 2 << 20, 0x53);
        var incr = await Backups.CreateAsync("bk5-c");
        incr.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", incr.FullReasons));
        var expected = DiskContent.Digest(disk);

        // The source writes and commits into the shared base: the clone's view changes with no write to its own disk.
        Fill(DiskOf(source.Id, "hdd0"), 3 << 20, 0x54);
        await TestGuest.RunAsync("qemu-img", "commit", DiskOf(source.Id, "hdd0"));
        DiskContent.Digest(disk).Should().NotBe(expected, "the clone sees its base's new data");
        var after = await Backups.CreateAsync("bk5-c");
        after.Backup.Type.Should().Be(BackupType.Full, "an incremental would miss the base's change");
        after.FullReasons.Should().ContainSingle().Which.Should().Contain("below the disk");

        var before = await Backups.RestoreAsync(incr.Backup.Id, new BackupRestoreOptions { NewName = new VeName("bk5-r1") });
        DiskContent.Digest(DiskOf(before, "hdd0")).Should().Be(expected, "a backup of a linked clone holds its base's data too");
        var now = await Backups.RestoreAsync(after.Backup.Id, new BackupRestoreOptions { NewName = new VeName("bk5-r2") });
        DiskContent.Digest(DiskOf(now, "hdd0")).Should().Be(DiskContent.Digest(disk));
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img")]
    public async Task A_running_vm_backup_killed_at_any_point_leaves_the_vm_running_and_the_next_backup_whole()
    {
        // hdd0: ext4, mounted by the guest (so backups freeze it); hdd1: 192 MiB of random data the guest never touches.
        var data = await TestGuest.MakeExt4DiskAsync(_env.Root.Path, "fs", 64, new Dictionary<string, string> { ["a.txt"] = "a\n" });
        var vm = await Vms.CreateAsync(_env.GuestVm("bk6") with { Disks = [new VmDiskOptions { SourceImagePath = data }, new VmDiskOptions { Size = ByteSize.FromMiB(256) }] });
        var disk = DiskOf(vm.Id, "hdd1");
        FillRandom(disk, 192 << 20);
        await Vms.StartAsync("bk6");
        await Vms.WaitForGuestToolsAsync("bk6", TimeSpan.FromSeconds(60));
        foreach (var delay in new[] { 300, 500, 600, 700, 800, 900, 1000, 1200, 1500 })
        {
            await VzsdkTool.RunAndKillAfterAsync(TimeSpan.FromMilliseconds(delay), "--data-root", _env.Root.Path, "backup", "create", "bk6", "--full");
            var state = (await Vms.GetAsync("bk6")).State;
            state.Should().Be(VeState.Running, "a killed backup leaves the VM running (kill after {0} ms); the emulator reports {1}", delay, state == VeState.Running ? "" : await EmulatorReportAsync(vm.Id));
        }
        var expected = DiskContent.Digest(disk); // the guest does not write to this disk
        var backup = await Backups.CreateAsync("bk6", new BackupCreateOptions { Full = true });
        backup.Consistency.Should().Contain("frozen through its guest tools", "the guest tools answer after nine killed backups; {0}", await EmulatorReportAsync(vm.Id));
        await using (var agent = await GuestAgentClient.ConnectAsync(Path.Combine(_env.Root.Path, "run", vm.Id.ToString(), "ga"), TimeSpan.FromSeconds(10), default))
            (await agent.AreFileSystemsFrozenAsync(TimeSpan.FromSeconds(10), default)).Should().BeFalse();
        var incr = await Backups.CreateAsync("bk6");
        incr.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", incr.FullReasons));
        (await Backups.VerifyAsync("bk6")).IsValid.Should().BeTrue();
        var restored = await Backups.RestoreAsync(incr.Backup.Id, new BackupRestoreOptions { NewName = new VeName("bk6-r") });
        DiskContent.Digest(DiskOf(restored, "hdd1")).Should().Be(expected);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img")]
    public async Task The_guest_writes_without_an_error_while_backups_of_its_running_vm_are_killed()
    {
        var vm = await Vms.CreateAsync(_env.GuestVm("bk7") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(256) }] });
        FillRandom(DiskOf(vm.Id, "hdd0"), 192 << 20); // enough data that the backups are killed while they copy
        await Vms.StartAsync("bk7");
        await Vms.WaitForGuestToolsAsync("bk7", TimeSpan.FromSeconds(60));
        // The guest overwrites random 64 KiB blocks of the disk, bypassing its cache, and counts its successes and failures.
        for (var writer = 0; writer < 4; writer++)
            await _env.ShAsync("bk7", "(while :; do if dd if=/dev/urandom of=/dev/vda bs=64k count=1 seek=$((RANDOM % 4096)) oflag=direct conv=notrunc 2>/dev/null; then echo >> /tmp/ok; else echo >> /tmp/failed; fi; done) </dev/null >/dev/null 2>&1 &");
        foreach (var delay in new[] { 600, 750, 900, 1050, 1200, 1400, 1600, 1800, 2100, 2500 })
        {
            await VzsdkTool.RunAndKillAfterAsync(TimeSpan.FromMilliseconds(delay), "--data-root", _env.Root.Path, "backup", "create", "bk7", "--full");
            var state = (await Vms.GetAsync("bk7")).State;
            state.Should().Be(VeState.Running, "a killed backup leaves the VM running (kill after {0} ms); the emulator reports {1}", delay, state == VeState.Running ? "" : await EmulatorReportAsync(vm.Id));
        }
        var backup = await Backups.CreateAsync("bk7", new BackupCreateOptions { Full = true });
        (await Backups.VerifyAsync("bk7")).IsValid.Should().BeTrue();
        var counts = await Vms.ExecAsync("bk7", new VeExecOptions { Command = ["wc -l < /tmp/ok; cat /tmp/failed 2>/dev/null | wc -l; dmesg | grep -c 'I/O error'"], Shell = true });
        var n = counts.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(x => int.Parse(x.Trim(), System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        n[0].Should().BeGreaterThan(20, "the guest kept writing through the backups");
        (n[1], n[2]).Should().Be((0, 0), "no guest write failed, and the guest's kernel logged no I/O error, whatever the killed backups left behind");
        Directory.GetFiles(Path.Combine(_env.Root.Path, "private", vm.Id.ToString()), ".backup-fleece-*").Should().BeEmpty("the last backup took down what the killed ones left");
        backup.Backup.Disks.Should().ContainSingle();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img")]
    public async Task A_running_vm_without_guest_tools_is_backed_up_crash_consistent_across_its_disks_and_keeps_running()
    {
        var vm = await Vms.CreateAsync(_env.GuestVm("bk8", deaf: true) with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(64) }, new VmDiskOptions { Size = ByteSize.FromMiB(64) }] });
        FillRandom(DiskOf(vm.Id, "hdd0"), 8 << 20);
        FillRandom(DiskOf(vm.Id, "hdd1"), 4 << 20);
        var expected = (DiskContent.Digest(DiskOf(vm.Id, "hdd0")), DiskContent.Digest(DiskOf(vm.Id, "hdd1")));
        await Vms.StartAsync("bk8");
        var full = await Backups.CreateAsync("bk8", new BackupCreateOptions { GuestToolsTimeout = TimeSpan.FromSeconds(1) });
        full.Consistency.Should().Contain("crash-consistent");
        (await Vms.GetAsync("bk8")).State.Should().Be(VeState.Running, "the VM paused for the cut across its two disks runs again");
        File.Exists(Path.Combine(_env.Root.Path, "run", vm.Id.ToString(), "paused-by-backup")).Should().BeFalse();
        var incr = await Backups.CreateAsync("bk8", new BackupCreateOptions { GuestToolsTimeout = TimeSpan.FromSeconds(1) });
        incr.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", incr.FullReasons));
        (await Backups.VerifyAsync("bk8")).IsValid.Should().BeTrue();
        var restored = await Backups.RestoreAsync(incr.Backup.Id, new BackupRestoreOptions { NewName = new VeName("bk8-r") });
        (DiskContent.Digest(DiskOf(restored, "hdd0")), DiskContent.Digest(DiskOf(restored, "hdd1"))).Should().Be(expected, "the deaf guest does not write to its disks");
    }
}
