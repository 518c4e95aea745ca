using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Containers;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Backup;

[Collection("containers")]
public class BackupTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Containers => fx.Client;

    private BackupClient Backups => new(VirtuozzoRuntime.CreateLocal(fx.Options));

    private async Task<string> NewContainerAsync(string prefix)
    {
        var name = ContainerFixture.UniqueName(prefix);
        await Containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        return name;
    }

    private async Task WriteAsync(string name, string file, string content)
    {
        var r = await Containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", $"echo {content} > /root/{file} && sync"] });
        r.ExitCode.Should().Be(0, r.StandardError);
    }

    private async Task<string> ReadAsync(string name, string file)
        => (await Containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", $"cat /root/{file} 2>/dev/null || echo MISSING"] })).StandardOutput.Trim();


    private string DiskOf(VeId id) => Path.Combine(fx.Root.Path, "private", id.ToString(), "root.qcow2");

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Stopped_backups_chain_incrementally_and_each_restores_its_own_point_in_time()
    {
        var name = await NewContainerAsync("bks");
        var id = (await Containers.GetAsync(name)).Id;
        await Containers.StartAsync(name);
        await WriteAsync(name, "a", "first");
        await Containers.StopAsync(name);
        var digestA = DiskContent.Digest(DiskOf(id));
        var full = await Backups.CreateAsync(name);
        full.Backup.Type.Should().Be(BackupType.Full);
        full.Backup.Id.Should().MatchRegex(@"^\{[0-9a-f-]{36}\}$");
        full.FullReasons.Should().ContainSingle().Which.Should().Contain("first backup");

        await Containers.StartAsync(name);
        await WriteAsync(name, "b", "second");
        await Containers.StopAsync(name);
        var digestB = DiskContent.Digest(DiskOf(id));
        var incr = await Backups.CreateAsync(name);
        incr.Backup.Type.Should().Be(BackupType.Incremental);
        incr.Backup.ParentId.Should().Be(full.Backup.Id);
        incr.Backup.Id.Should().Be(full.Backup.Id + ".1");
        incr.FullReasons.Should().BeEmpty();
        incr.Backup.SizeBytes.Should().BeLessThan(full.Backup.SizeBytes, "an incremental holds only what changed");

        var restoredA = await Backups.RestoreAsync(full.Backup.Id, new BackupRestoreOptions { NewName = new VeName(name + "-ra") });
        var restoredB = await Backups.RestoreAsync(incr.Backup.Id, new BackupRestoreOptions { NewName = new VeName(name + "-rb") });
        DiskContent.Digest(DiskOf(restoredA)).Should().Be(digestA);
        DiskContent.Digest(DiskOf(restoredB)).Should().Be(digestB);
        await Containers.StartAsync(name + "-rb");
        (await ReadAsync(name + "-rb", "a")).Should().Be("first");
        (await ReadAsync(name + "-rb", "b")).Should().Be("second");
        await Containers.StartAsync(name + "-ra");
        (await ReadAsync(name + "-ra", "b")).Should().Be("MISSING", "data written after a backup is absent from its restore");
        (await Backups.VerifyAsync(name)).IsValid.Should().BeTrue();
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "fsfreeze", Root = true)]
    public async Task A_running_container_is_backed_up_twice_the_first_deleted_and_the_second_restored_into_a_new_container()
    {
        var name = await NewContainerAsync("bkr");
        await Containers.StartAsync(name);
        await WriteAsync(name, "a", "one");
        var first = await Backups.CreateAsync(name);
        first.Consistency.Should().StartWith("running: frozen");
        await WriteAsync(name, "b", "two");
        var second = await Backups.CreateAsync(name);
        second.Backup.Type.Should().Be(BackupType.Incremental, string.Join("; ", second.FullReasons));
        await WriteAsync(name, "c", "three"); // after the second backup: must not be restored

        (await Backups.DeleteAsync(first.Backup.Id)).Should().Equal(first.Backup.Id);
        var remaining = await Backups.ListAsync(name);
        remaining.Should().ContainSingle().Which.Should().Match<BackupInfo>(b => b.Id == second.Backup.Id && b.Type == BackupType.Full && b.ParentId == null,
            "deleting the full makes its child a standalone full, with its id unchanged");

        var restored = await Backups.RestoreAsync(second.Backup.Id, new BackupRestoreOptions { NewName = new VeName(name + "-r") });
        await Containers.StartAsync(restored.ToString());
        (await ReadAsync(name + "-r", "a")).Should().Be("one");
        (await ReadAsync(name + "-r", "b")).Should().Be("two");
        (await ReadAsync(name + "-r", "c")).Should().Be("MISSING");
        (await Backups.VerifyAsync(second.Backup.Id)).IsValid.Should().BeTrue();
        await Backups.Invoking(b => b.RestoreAsync(second.Backup.Id)).Should().ThrowAsync<InvalidStateException>("restore refuses a running target");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Deleting_a_middle_backup_keeps_every_other_backup_restoring_exactly_its_point_in_time()
    {
        var name = await NewContainerAsync("bkm");
        var id = (await Containers.GetAsync(name)).Id;
        var digests = new List<string>();
        var ids = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            await Containers.StartAsync(name);
            await WriteAsync(name, $"f{i}", $"v{i}");
            await Containers.StopAsync(name);
            digests.Add(DiskContent.Digest(DiskOf(id)));
            ids.Add((await Backups.CreateAsync(name, new BackupCreateOptions { Compression = i % 2 == 0 ? BackupCompression.Zstd : BackupCompression.Zlib })).Backup.Id);
        }
        await Backups.DeleteAsync(ids[1]);
        await Backups.DeleteAsync(ids[2]);
        var list = await Backups.ListAsync(name);
        list.Select(b => b.Id).Should().Equal(ids[0], ids[3]);
        list[1].ParentId.Should().Be(ids[0]);
        foreach (var i in new[] { 0, 3 })
        {
            var r = await Backups.RestoreAsync(ids[i], new BackupRestoreOptions { NewName = new VeName($"{name}-r{i}") });
            DiskContent.Digest(DiskOf(r)).Should().Be(digests[i], $"backup {i} restores exactly its own point in time");
        }
        (await Backups.VerifyAsync(name)).IsValid.Should().BeTrue();
        var next = await Backups.CreateAsync(name);
        next.Backup.Id.Should().Be(ids[0].Split('.')[0] + ".4", "numbers are never reused");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_flipped_byte_is_caught_by_verify_with_its_dependents()
    {
        var name = await NewContainerAsync("bkv");
        var full = await Backups.CreateAsync(name, new BackupCreateOptions { Compression = BackupCompression.None });
        await Containers.StartAsync(name);
        await WriteAsync(name, "x", "y");
        await Containers.StopAsync(name);
        var incr = await Backups.CreateAsync(name);
        var file = full.Backup.Disks[0].File;
        long hostOffset;
        using (var image = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true }))
            hostOffset = image.GetAllocationMap().First(e => e.Kind == Qcow2ExtentKind.Data && e.Offset is not null).Offset!.Value + 100;
        await using (var fs = new FileStream(file, FileMode.Open, FileAccess.ReadWrite))
        {
            fs.Position = hostOffset;
            var b = fs.ReadByte();
            fs.Position = hostOffset;
            fs.WriteByte((byte)(b ^ 0x01));
        }
        var result = await Backups.VerifyAsync(name);
        result.IsValid.Should().BeFalse();
        result.Damaged.Keys.Should().Equal(full.Backup.Id);
        result.Damaged[full.Backup.Id].Should().Contain("digest");
        result.Affected.Should().Equal(incr.Backup.Id);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task An_unclean_stop_and_a_resize_each_force_the_next_backup_full_and_say_why()
    {
        var name = await NewContainerAsync("bku");
        var id = (await Containers.GetAsync(name)).Id;
        await Containers.StartAsync(name);
        await Backups.CreateAsync(name); // running: the daemon holds the bitmap
        // Crash: the disk daemon dies without closing the image, so its bitmap stays marked in use.
        var pid = int.Parse(File.ReadAllText(Path.Combine(fx.Root.Path, "run", id.ToString(), "qsd.pid")).Trim());
        System.Diagnostics.Process.GetProcessById(pid).Kill();
        await Containers.StopAsync(name, new VeStopOptions { Kill = true });
        var afterCrash = await Backups.CreateAsync(name);
        afterCrash.Backup.Type.Should().Be(BackupType.Full);
        afterCrash.FullReasons.Should().ContainSingle().Which.Should().Match(r => r.Contains("inconsistent") || r.Contains("no change-tracking bitmap"));

        (await Backups.CreateAsync(name)).Backup.Type.Should().Be(BackupType.Incremental, "tracking resumed after the full backup");
        await Containers.SetAsync(name, new ContainerSetOptions { DiskSpace = ByteSize.Parse("192M") });
        var afterResize = await Backups.CreateAsync(name);
        afterResize.Backup.Type.Should().Be(BackupType.Full);
        afterResize.FullReasons.Should().ContainSingle().Which.Should().Contain("resized");
    }
}
