using System.Text.Json;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.IntegrationTests.Containers;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Backup;

[Collection("containers")]
public class BackupCrashAndCliTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Containers => fx.Client;

    private BackupClient Backups => new(VirtuozzoRuntime.CreateLocal(fx.Options));

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "qemu-img", Root = true)]
    public async Task A_delete_killed_at_any_point_leaves_every_remaining_backup_restorable_and_clean()
    {
        var name = ContainerFixture.UniqueName("bkk");
        await Containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("256M") } });
        var ids = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            await Containers.StartAsync(name);
            var w = await Containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", $"head -c 12000000 /dev/urandom > /root/blob{i} && sync"] });
            w.ExitCode.Should().Be(0, w.StandardError);
            await Containers.StopAsync(name);
            ids.Add((await Backups.CreateAsync(name, new BackupCreateOptions { Compression = BackupCompression.None })).Backup.Id);
        }
        var host = new LocalHost();
        var delays = new[] { 250, 400, 550, 700, 900 };
        for (var round = 0; round < delays.Length; round++)
        {
            var victim = (await Backups.ListAsync(name)).Select(b => b.Id).Skip(1).First(); // a middle backup with a child
            await VzsdkTool.RunAndKillAfterAsync(TimeSpan.FromMilliseconds(delays[round]), "--data-root", fx.Root.Path, "backup", "delete", victim);

            foreach (var b in await Backups.ListAsync(name))
            {
                var check = await host.ExecuteBufferedAsync(new Command("qemu-img").WithArguments("check", "-U", b.Disks[0].File).WithValidation(CommandResultValidation.None));
                check.ExitCode.Should().BeOneOf([0, 3], $"backup {b.Id} has no corruption after a kill at {delays[round]} ms: {check.StandardOutput}");
                var restored = await Backups.RestoreAsync(b.Id, new BackupRestoreOptions { NewName = new VeName($"{name}-k{round}-{Guid.NewGuid().ToString("N")[..6]}") });
                (await Containers.DeleteAsync(restored.ToString())).Should().BeTrue();
            }
        }
        // The next operation finishes any interrupted delete; afterwards the chain verifies.
        await Backups.CreateAsync(name);
        File.Exists(Path.Combine(fx.Root.Path, "backups", (await Containers.GetAsync(name)).Id.ToString(), "pending-delete.json")).Should().BeFalse();
        (await Backups.VerifyAsync(name)).IsValid.Should().BeTrue();
        var final = await Backups.RestoreAsync((await Backups.ListAsync(name)).Last().Id, new BackupRestoreOptions { NewName = new VeName(name + "-final") });
        await Containers.StartAsync(final.ToString());
        var ls = await Containers.ExecAsync(final.ToString(), new VeExecOptions { Command = ["ls", "/root"] });
        ls.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Should().BeEquivalentTo(Enumerable.Range(0, 6).Select(i => $"blob{i}"));
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task The_container_writes_without_an_error_while_backups_of_it_are_killed()
    {
        var name = ContainerFixture.UniqueName("bkw");
        await Containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("1G") } });
        await Containers.StartAsync(name);
        var fill = await Containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "head -c 400000000 /dev/urandom > /root/blob && sync"] });
        fill.ExitCode.Should().Be(0, fill.StandardError); // enough data that the backups are killed while they copy
        // The container rewrites files with fsync and counts its successes and failures.
        for (var writer = 0; writer < 2; writer++)
        {
            var start = await Containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "(while :; do if dd if=/dev/urandom of=/root/w$((RANDOM % 8)) bs=64k count=16 conv=fsync 2>/dev/null; then echo >> /root/ok; else echo >> /root/failed; fi; done) </dev/null >/dev/null 2>&1 &"] });
            start.ExitCode.Should().Be(0, start.StandardError);
        }
        foreach (var delay in new[] { 500, 700, 900, 1100, 1300, 1500, 1800, 2100 })
        {
            await VzsdkTool.RunAndKillAfterAsync(TimeSpan.FromMilliseconds(delay), "--data-root", fx.Root.Path, "backup", "create", name, "--full");
            (await Containers.GetAsync(name)).State.Should().Be(VeState.Running, "a killed backup leaves the container running (kill after {0} ms)", delay);
        }
        await Backups.CreateAsync(name, new BackupCreateOptions { Full = true });
        (await Backups.VerifyAsync(name)).IsValid.Should().BeTrue();
        var counts = await Containers.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", "wc -l < /root/ok; cat /root/failed 2>/dev/null | wc -l; touch /root/still-writable && echo yes"] });
        var lines = counts.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(x => x.Trim()).ToArray();
        int.Parse(lines[0], System.Globalization.CultureInfo.InvariantCulture).Should().BeGreaterThan(20, "the container kept writing through the backups");
        (lines[1], lines.ElementAtOrDefault(2)).Should().Be(("0", "yes"), "no write failed and the file system stayed writable, whatever the killed backups left behind; stderr: {0}", counts.StandardError);
        Directory.GetFiles(Path.Combine(fx.Root.Path, "private", (await Containers.GetAsync(name)).Id.ToString()), ".backup-fleece-*", SearchOption.AllDirectories).Should().BeEmpty("the last backup took down what the killed ones left");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task The_backup_verbs_follow_the_cli_contract()
    {
        var root = fx.Root.Path;
        var name = ContainerFixture.UniqueName("bkc");
        (await VzsdkTool.RunAsync("--data-root", root, "ct", "create", name, "--diskspace", "128M")).ExitCode.Should().Be(0);
        var first = await VzsdkTool.RunAsync("--data-root", root, "backup", "create", name);
        first.ExitCode.Should().Be(0, first.StandardError);
        var firstId = first.StandardOutput.Trim().Split('\n')[^1];
        firstId.Should().MatchRegex(@"^\{[0-9a-f-]{36}\}$", "the new backup id is the last line");
        var second = await VzsdkTool.RunAsync("--data-root", root, "backup", "create", name, "--compression", "zlib");
        var secondId = second.StandardOutput.Trim().Split('\n')[^1];
        secondId.Should().Be(firstId + ".1");

        var list = await VzsdkTool.RunAsync("--data-root", root, "backup", "list", name, "--json");
        using (var doc = JsonDocument.Parse(list.StandardOutput))
        {
            doc.RootElement.GetArrayLength().Should().Be(2);
            var row = doc.RootElement[1];
            foreach (var key in new[] { "id", "type", "parent", "ve_uuid", "ve_name", "created", "size", "disks" })
                row.TryGetProperty(key, out _).Should().BeTrue($"list rows carry '{key}'");
            row.GetProperty("type").GetString().Should().Be("incremental");
            row.GetProperty("parent").GetString().Should().Be(firstId);
            row.GetProperty("created").GetString().Should().EndWith("Z");
        }
        (await VzsdkTool.RunAsync("--data-root", root, "backup", "verify", name)).ExitCode.Should().Be(0);
        (await VzsdkTool.RunAsync("--data-root", root, "backup", "create", name, "--compression", "lzma")).ExitCode.Should().Be(2);
        (await VzsdkTool.RunAsync("--data-root", root, "backup", "delete", "{00000000-0000-0000-0000-000000000001}")).ExitCode.Should().Be(1);
        (await VzsdkTool.RunAsync("--data-root", root, "backup", "prune", name)).ExitCode.Should().Be(2, "a policy that keeps nothing is refused");
        var restore = await VzsdkTool.RunAsync("--data-root", root, "backup", "restore", secondId, "--name", name + "-r");
        restore.ExitCode.Should().Be(0, restore.StandardError);
        VeId.TryParse(restore.StandardOutput.Trim().Split('\n')[^1], out _).Should().BeTrue();
        var prune = await VzsdkTool.RunAsync("--data-root", root, "backup", "prune", name, "--keep-last", "1");
        prune.ExitCode.Should().Be(0, prune.StandardError);
        prune.StandardOutput.Should().Contain(firstId);
        var after = await Backups.ListAsync(name);
        after.Should().ContainSingle().Which.Id.Should().Be(secondId);
        (await VzsdkTool.RunAsync("--data-root", root, "backup", "delete", secondId)).ExitCode.Should().Be(0);
        (await Backups.ListAsync(name)).Should().BeEmpty();
    }
}
