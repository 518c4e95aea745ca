using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Libvirt;

/// <summary>
/// Backups on the libvirt runtime, against a real libvirtd: a running VM through libvirt's push-mode backup job and
/// checkpoints (its ext4 frozen through the guest agent), a stopped one read by the SDK's engine with its checkpoint
/// recorded in libvirt, the chain carried across stops and starts, a snapshot switch forcing a full backup, and
/// restores in place and into a new domain. What is asserted is read from libvirt (<c>virsh</c>) and from the files.
/// </summary>
[Collection("libvirt")]
public sealed class LibvirtBackupTests(LibvirtFixture env)
{
    private static readonly TimeSpan Boot = TimeSpan.FromSeconds(120);

    private async Task ShAsync(string vm, string script)
    {
        var r = await env.Vms.ExecAsync(vm, new VeExecOptions { Command = ["/bin/sh", "-c", script], Timeout = TimeSpan.FromSeconds(30) });
        r.ExitCode.Should().Be(0, "'{0}' should succeed in the guest; stderr: {1}", script, r.StandardError);
    }

    private async Task<string> ToRawAsync(string qcow2)
    {
        var raw = Path.Combine(env.Root.Path, Guid.NewGuid().ToString("N") + ".raw");
        await TestGuest.RunAsync("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", qcow2, raw);
        return raw;
    }

    private static async Task<string> Ext4CatAsync(string raw, string file)
        => (await TestGuest.RunAsync("debugfs", "-R", "cat /" + file, raw)).Trim();

    private static async Task<string> Ext4FeaturesAsync(string raw)
        => (await TestGuest.RunAsync("dumpe2fs", "-h", raw)).Split('\n').First(l => l.StartsWith("Filesystem features:", StringComparison.Ordinal));

    private static async Task<List<string>> CheckpointsAsync(string vm)
    {
        var (code, output) = await LibvirtFixture.Virsh("checkpoint-list", vm, "--name");
        code.Should().Be(0, output);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
    }

    private static string CheckpointOf(string backupId) => "vzsdk-backup-" + backupId.Trim('{').Replace("}", "", StringComparison.Ordinal);

    [IntegrationFact("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "qemu-img", "debugfs", "dumpe2fs", "mkfs.ext4", Root = true)]
    public async Task A_libvirt_VM_is_backed_up_running_and_stopped_as_one_chain_and_restores_in_place_and_as_a_new_domain()
    {
        var data = await TestGuest.MakeExt4DiskAsync(env.Root.Path, "lvbk-data", 64, new Dictionary<string, string> { ["one.txt"] = "one\n" });
        // A CD image too: the backup names it and leaves it out (libvirt would otherwise pick a target file beside it).
        var isoDir = Directory.CreateDirectory(Path.Combine(env.Root.Path, "iso")).FullName;
        var iso = Path.Combine(isoDir, "tools.iso");
        await File.WriteAllBytesAsync(iso, new byte[1 << 20]);
        var vm = await env.Vms.CreateAsync(env.GuestVm("bk") with { Disks = [new VmDiskOptions { SourceImagePath = data }], CdromImagePath = iso });
        var name = vm.Name.Value;
        var backups = new BackupClient(env.Runtime);
        await env.Vms.StartAsync(name);
        await env.Vms.WaitForGuestToolsAsync(name, Boot);
        await ShAsync(name, "grep -q ' /mnt/data ext4 ' /proc/mounts && echo two > /mnt/data/two.txt && dd if=/dev/urandom of=/mnt/data/blob bs=1M count=4 2>/dev/null && sync");

        // Running: libvirt's backup job copies the point in time fixed while the agent froze the guest's ext4.
        var stages = new List<string>();
        var full = await backups.CreateAsync(name, progress: new Migration.SyncProgress<OperationProgress>(p => { lock (stages) stages.Add(p.Stage); }));
        full.Backup.Type.Should().Be(BackupType.Full);
        full.Consistency.Should().Contain("frozen through its guest tools");
        stages.Should().Contain("fixing the point in time").And.Contain("copying disk hdd0");
        (await CheckpointsAsync(name)).Should().Equal(CheckpointOf(full.Backup.Id));
        var fullRaw = await ToRawAsync(full.Backup.Disks[0].File);
        (await Ext4FeaturesAsync(fullRaw)).Should().NotContain("needs_recovery", "the point in time was taken while the guest's ext4 was frozen");
        (await Ext4CatAsync(fullRaw, "two.txt")).Should().Be("two");
        Directory.GetFiles(Path.GetDirectoryName(full.Backup.Disks[0].File)!).Select(Path.GetFileName).Should().BeEquivalentTo(["backup.json", "hdd0.qcow2"], "libvirt's scratch file is gone");

        full.Backup.Disks.Select(d => d.Name).Should().Equal("hdd0");
        Directory.GetFiles(isoDir).Should().Equal(iso);

        // Running incremental from libvirt's checkpoint: only what changed, and the older checkpoint goes.
        await ShAsync(name, "echo three > /mnt/data/three.txt && sync");
        var incr = await backups.CreateAsync(name);
        incr.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", incr.FullReasons));
        incr.Backup.ParentId.Should().Be(full.Backup.Id);
        full.Backup.SizeBytes.Should().BeGreaterThan(4L << 20, "the full backup holds the guest's 4 MiB of random data");
        incr.Backup.SizeBytes.Should().BeLessThan(full.Backup.SizeBytes / 4, "an incremental holds only the changed clusters");
        (await CheckpointsAsync(name)).Should().Equal(CheckpointOf(incr.Backup.Id));
        var incrRaw = await ToRawAsync(incr.Backup.Disks[0].File);
        (await Ext4CatAsync(incrRaw, "three.txt")).Should().Be("three");
        (await Ext4CatAsync(incrRaw, "two.txt")).Should().Be("two");
        (await Ext4CatAsync(fullRaw, "three.txt")).Should().NotBe("three");

        // Stopped: the engine reads the bitmap QEMU stored at the clean stop, and records the next checkpoint in libvirt.
        await env.Vms.StopAsync(name, new VeStopOptions { Timeout = TimeSpan.FromSeconds(60) });
        var stopped = await backups.CreateAsync(name);
        stopped.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", stopped.FullReasons));
        stopped.Consistency.Should().Contain("stopped");
        (await CheckpointsAsync(name)).Should().Equal(CheckpointOf(stopped.Backup.Id));

        // Started again, the recorded checkpoint is the base of the next running incremental.
        await env.Vms.StartAsync(name);
        await env.Vms.WaitForGuestToolsAsync(name, Boot);
        await ShAsync(name, "echo four > /mnt/data/four.txt && sync");
        var again = await backups.CreateAsync(name);
        again.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", again.FullReasons));
        again.Backup.ParentId.Should().Be(stopped.Backup.Id);
        (await Ext4CatAsync(await ToRawAsync(again.Backup.Disks[0].File), "four.txt")).Should().Be("four");

        // A snapshot switch rewrites the disk behind the tracking: the checkpoints go and the next backup is full.
        var snap = await env.Vms.CreateSnapshotAsync(name, "s1");
        await env.Vms.SwitchSnapshotAsync(name, snap.Id.ToString());
        (await CheckpointsAsync(name)).Should().BeEmpty();
        var afterSwitch = await backups.CreateAsync(name);
        afterSwitch.Backup.Type.Should().Be(BackupType.Full);
        afterSwitch.FullReasons.Should().ContainSingle().Which.Should().Contain("no change-tracking bitmap");
        await backups.Invoking(b => b.RestoreAsync(incr.Backup.Id)).Should().ThrowAsync<InvalidStateException>("restore refuses a running VM");

        // In place: the disk goes back to the incremental's point in time; libvirt forgets the snapshots and checkpoints.
        await env.Vms.StopAsync(name, new VeStopOptions { Timeout = TimeSpan.FromSeconds(60) });
        (await backups.RestoreAsync(incr.Backup.Id)).Should().Be(vm.Id);
        var inPlace = await ToRawAsync(vm.Disks[0].ImagePath);
        (await Ext4CatAsync(inPlace, "three.txt")).Should().Be("three");
        (await Ext4CatAsync(inPlace, "four.txt")).Should().NotBe("four");
        (await LibvirtFixture.Virsh("snapshot-list", name, "--name")).Output.Trim().Should().BeEmpty();
        (await CheckpointsAsync(name)).Should().BeEmpty();
        var next = await backups.CreateAsync(name);
        next.Backup.Type.Should().Be(BackupType.Full, "the restored disk carries no tracking");

        // A new domain: its own UUID, MAC and disk, defined in libvirt, booting with the backup's files.
        var restoredId = await backups.RestoreAsync(again.Backup.Id, new BackupRestoreOptions { NewName = new VeName(env.Prefix + "bk-r") });
        restoredId.Should().NotBe(vm.Id);
        var restored = await env.Vms.GetAsync(env.Prefix + "bk-r");
        restored.MacAddress.Should().NotBe(vm.MacAddress);
        restored.Disks.Should().ContainSingle().Which.ImagePath.Should().Contain(restoredId.ToString());
        (await LibvirtFixture.Virsh("domuuid", env.Prefix + "bk-r")).Output.Trim().Should().Be(restoredId.ToString());
        (await Ext4CatAsync(await ToRawAsync(restored.Disks[0].ImagePath), "four.txt")).Should().Be("four");
        await env.Vms.StartAsync(env.Prefix + "bk-r");
        await env.Vms.WaitForGuestToolsAsync(env.Prefix + "bk-r", Boot);
        var cat = await env.Vms.ExecAsync(env.Prefix + "bk-r", new VeExecOptions { Command = ["cat", "/mnt/data/four.txt"] });
        cat.StandardOutput.Trim().Should().Be("four");
        await env.Vms.KillAsync(env.Prefix + "bk-r");

        (await backups.VerifyAsync(name)).IsValid.Should().BeTrue();
        (await backups.ListAsync(name)).Should().HaveCount(6);
        (await env.Vms.DeleteAsync(env.Prefix + "bk-r")).Should().BeTrue();
        (await env.Vms.DeleteAsync(name)).Should().BeTrue();
    }
}

/// <summary><c>vzsdk --connect URI backup …</c>, killed while libvirt's job copies a running VM, and then whole.</summary>
[Collection("libvirt")]
public sealed class LibvirtBackupKillTests(LibvirtFixture env)
{
    [IntegrationFact("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "qemu-img", Root = true)]
    public async Task A_libvirt_backup_killed_at_any_point_leaves_the_VM_running_unfrozen_and_the_next_backup_whole()
    {
        var vm = await env.Vms.CreateAsync(env.GuestVm("bkk") with { Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(256) }] });
        var name = vm.Name.Value;
        var disk = vm.Disks[0].ImagePath;
        using (var image = Virtuozzo.Sdk.Storage.Qcow2.Qcow2Image.Open(disk))
        {
            var blob = new byte[4 << 20];
            var random = new Random(11);
            for (long off = 0; off < 192 << 20; off += blob.Length)
            {
                random.NextBytes(blob);
                image.Write(off, blob);
            }
            image.Flush();
        }
        var expected = Backup.DiskContent.Digest(disk); // the guest does not write to its disk (it is not a file system)
        await env.Vms.StartAsync(name);
        await env.Vms.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(120));
        string[] cli = ["--connect", LibvirtFixture.Uri, "--data-root", env.Root.Path, "backup"];
        foreach (var delay in new[] { 200, 400, 700, 1000, 1400 })
        {
            await Cli.VzsdkTool.RunAndKillAfterAsync(TimeSpan.FromMilliseconds(delay), [.. cli, "create", name, "--full"]);
            (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Running, "a killed backup leaves the VM running (kill after {0} ms)", delay);
        }

        // The next backup aborts what a killed one left running, thaws the guest if it was left frozen, and is whole.
        var create = await Cli.VzsdkTool.RunAsync([.. cli, "create", name, "--full", "--json"]);
        create.ExitCode.Should().Be(0, create.StandardError);
        var backups = new BackupClient(env.Runtime);
        var listed = await backups.ListAsync(name);
        listed.Count.Should().BeLessThan(6, "backups killed before they were published leave nothing listed");
        var full = listed.OrderBy(b => b.CreatedAt).Last();
        create.StandardOutput.Should().Contain(full.Id);
        var frozen = await env.Vms.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", "touch /tmp/writable && echo ok"] });
        frozen.StandardOutput.Trim().Should().Be("ok");
        (await LibvirtFixture.Virsh("checkpoint-list", name, "--name")).Output.Trim().Should().Be("vzsdk-backup-" + full.Id.Trim('{', '}'), "the checkpoints of killed backups are gone");
        Directory.GetFiles(Path.Combine(env.Root.Path, "backups"), ".push-*", SearchOption.AllDirectories).Should().BeEmpty();

        // Cancelled while libvirt's job copies: the job is aborted, its checkpoint deleted, nothing published.
        using (var cts = new CancellationTokenSource())
        {
            var copying = new TaskCompletionSource();
            var cancelled = backups.CreateAsync(name, new BackupCreateOptions { Full = true },
                new Migration.SyncProgress<OperationProgress>(p => { if (p.Stage.StartsWith("copying", StringComparison.Ordinal)) copying.TrySetResult(); }), cts.Token);
            await Task.WhenAny(copying.Task, cancelled);
            await cts.CancelAsync();
            await FluentActions.Awaiting(() => cancelled).Should().ThrowAsync<OperationCanceledException>();
        }
        (await backups.ListAsync(name)).Should().HaveCount(listed.Count, "a cancelled backup publishes nothing");
        (await LibvirtFixture.Virsh("checkpoint-list", name, "--name")).Output.Trim().Should().Be("vzsdk-backup-" + full.Id.Trim('{', '}'), "the cancelled backup's checkpoint is gone");
        (await LibvirtFixture.Virsh("domjobinfo", name)).Output.Should().Contain("None", "no job is left running");

        var incr = await backups.CreateAsync(name);
        incr.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", incr.FullReasons));
        incr.Backup.ParentId.Should().Be(full.Id);
        incr.Backup.SizeBytes.Should().BeLessThan(1 << 20, "nothing changed on the disk since the full backup");
        (await backups.VerifyAsync(name)).IsValid.Should().BeTrue();

        // QEMU killed outright (no chance to store its bitmaps): the next backup is full and says why.
        var pid = int.Parse(File.ReadAllText($"/run/libvirt/qemu/{name}.pid").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        System.Diagnostics.Process.GetProcessById(pid).Kill();
        for (var i = 0; i < 100 && (await env.Vms.GetAsync(name)).State != VeState.Stopped; i++)
            await Task.Delay(100);
        await env.Vms.StartAsync(name);
        var afterKill = await backups.CreateAsync(name);
        afterKill.Backup.Type.Should().Be(BackupType.Full);
        afterKill.FullReasons.Should().ContainSingle().Which.Should().ContainAny("inconsistent", "without closing its disks cleanly");
        await env.Vms.KillAsync(name);
        var restored = await backups.RestoreAsync(incr.Backup.Id, new BackupRestoreOptions { NewName = new VeName(env.Prefix + "bkk-r") });
        var restoredDisk = (await env.Vms.GetAsync(restored.ToString())).Disks[0].ImagePath;
        Backup.DiskContent.Digest(restoredDisk).Should().Be(expected);
        var verify = await Cli.VzsdkTool.RunAsync([.. cli, "verify", name]);
        verify.ExitCode.Should().Be(0, verify.StandardOutput + verify.StandardError);
        (await env.Vms.DeleteAsync(env.Prefix + "bkk-r")).Should().BeTrue();
        (await env.Vms.DeleteAsync(name)).Should().BeTrue();
    }
}
