using System.Text.RegularExpressions;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Backup.Tests;

public class BackupRepositoryTests
{
    private static readonly Dictionary<int, byte> Nothing = [];

    [Fact]
    public void A_new_chain_id_is_a_braced_uuid()
    {
        var id = BackupRepository.NewChainId();

        id.Should().MatchRegex("^\\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\}$");
        BackupRepository.NewChainId().Should().NotBe(id);
    }

    [Fact]
    public async Task Incrementals_are_numbered_after_their_chain_one_by_one()
    {
        using var location = new BackupLocation();
        var full = BackupRepository.NewChainId();

        var first = await location.Repository.NextIncrementalIdAsync(location.Ve, full, CancellationToken.None);
        var second = await location.Repository.NextIncrementalIdAsync(location.Ve, first, CancellationToken.None);
        var third = await location.Repository.NextIncrementalIdAsync(location.Ve, second, CancellationToken.None);

        new[] { first, second, third }.Should().Equal(full + ".1", full + ".2", full + ".3");
    }

    [Fact]
    public async Task Each_chain_has_its_own_numbers()
    {
        using var location = new BackupLocation();
        var a = BackupRepository.NewChainId();
        var b = BackupRepository.NewChainId();

        await location.Repository.NextIncrementalIdAsync(location.Ve, a, CancellationToken.None);
        await location.Repository.NextIncrementalIdAsync(location.Ve, a + ".1", CancellationToken.None);

        (await location.Repository.NextIncrementalIdAsync(location.Ve, b, CancellationToken.None)).Should().Be(b + ".1");
    }

    [Fact]
    public async Task An_id_is_never_handed_out_again_after_its_backup_is_deleted()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 }, new() { [2] = 3 });
        var newest = chain[^1].Id;
        newest.Should().Be(chain[0].Id + ".2");

        await location.Repository.DeleteAsync(location.Ve, chain[^1], withDependents: false, null, CancellationToken.None);
        await location.Repository.DeleteAsync(location.Ve, chain[1], withDependents: false, null, CancellationToken.None);

        var next = await location.AddAsync(chain[0].Id, Nothing);
        next.Id.Should().Be(chain[0].Id + ".3");
    }

    [Fact]
    public async Task Listing_returns_a_ves_backups_oldest_first_and_ignores_what_is_not_a_backup()
    {
        using var location = new BackupLocation();
        var older = await location.AddAsync(null, new() { [0] = 1 }, new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var newer = await location.AddAsync(null, new() { [0] = 2 }, new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var veDir = location.Repository.VeDir(location.Ve);
        Directory.CreateDirectory(Path.Combine(veDir, ".staging-0123"));
        Directory.CreateDirectory(Path.Combine(veDir, "{not-yet-published}")); // no backup.json
        Directory.CreateDirectory(Path.Combine(location.Repository.Location, "not-a-ve"));

        var list = await location.Repository.ListVeAsync(location.Ve, CancellationToken.None);

        list.Select(m => m.Id).Should().Equal(newer.Id, older.Id);
        location.Repository.ListVes().Should().Equal(location.Ve);
        (await location.Repository.ListVeAsync(VeId.New(), CancellationToken.None)).Should().BeEmpty();
    }

    [Fact]
    public async Task A_backup_is_found_by_id_in_whichever_ve_directory_holds_it()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 });

        var (ve, meta) = await location.Repository.FindAsync(chain[1].Id, CancellationToken.None);

        ve.Should().Be(location.Ve);
        meta.Should().BeEquivalentTo(chain[1]);
        await location.Invoking(l => l.Repository.FindAsync(chain[0].Id + ".9", CancellationToken.None)).Should().ThrowAsync<NotFoundException>();
    }

    [Theory]
    [InlineData("")]
    [InlineData("../etc")]
    [InlineData("{a}/b")]
    public async Task A_backup_id_that_could_leave_the_location_is_refused(string id)
    {
        using var location = new BackupLocation();

        await location.Invoking(l => l.Repository.FindAsync(id, CancellationToken.None)).Should().ThrowAsync<ArgumentException>();
    }

    [Fact]
    public async Task Deleting_a_middle_backup_merges_its_data_into_its_child_which_then_depends_on_its_parent()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1, [1] = 1 }, new() { [1] = 2, [2] = 2 }, new() { [2] = 3 });
        var before = location.ReadTags(chain[2].Id);

        var deleted = await location.Repository.DeleteAsync(location.Ve, chain[1], withDependents: false, null, CancellationToken.None);

        deleted.Should().Equal(chain[1].Id);
        Directory.Exists(location.Repository.BackupDir(location.Ve, chain[1].Id)).Should().BeFalse();
        var child = (await location.Repository.ListVeAsync(location.Ve, CancellationToken.None)).Single(m => m.Id == chain[2].Id);
        child.Parent.Should().Be(chain[0].Id);
        child.Type.Should().Be(BackupType.Incremental);
        location.ReadTags(chain[2].Id).Should().Equal(before);
        before[..3].Should().Equal(1, 2, 3);
        child.Disks[0].Digest.Should().Be(BackupLocation.Digest(location.DiskFile(chain[2].Id)), "the metadata records the merged file's digest");
    }

    [Fact]
    public async Task Deleting_a_full_backup_makes_its_child_a_standalone_full()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1, [1] = 1 }, new() { [1] = 2 });

        await location.Repository.DeleteAsync(location.Ve, chain[0], withDependents: false, null, CancellationToken.None);

        var child = (await location.Repository.ListVeAsync(location.Ve, CancellationToken.None)).Single();
        child.Parent.Should().BeNull();
        child.Type.Should().Be(BackupType.Full);
        location.ReadTags(child.Id)[..3].Should().Equal(1, 2, 0);
    }

    [Fact]
    public async Task Deleting_with_dependents_removes_the_backup_and_everything_after_it_in_its_chain_only()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 }, new() { [2] = 3 });
        var other = await location.AddAsync(null, new() { [0] = 9 });

        var deleted = await location.Repository.DeleteAsync(location.Ve, chain[1], withDependents: true, null, CancellationToken.None);

        deleted.Should().Equal(chain[2].Id, chain[1].Id);
        (await location.Repository.ListVeAsync(location.Ve, CancellationToken.None)).Select(m => m.Id).Should().Equal(chain[0].Id, other.Id);
    }

    [Fact]
    public async Task A_delete_journal_left_by_a_killed_delete_is_completed_by_the_next_recovery()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1, [1] = 1 }, new() { [1] = 2, [2] = 2 }, new() { [2] = 3 });
        var expected = location.ReadTags(chain[2].Id);
        // The killed process had written its journal and merged part of the target into the child.
        await location.Store.WriteDocumentAsync(Path.Combine(location.Repository.VeDir(location.Ve), "pending-delete.json"),
            new PendingDelete(1, chain[1].Id, chain[2].Id, chain[0].Id), BackupJson.Default.PendingDelete, CancellationToken.None);
        using (var child = Storage.Qcow2.Qcow2Image.Open(location.DiskFile(chain[2].Id), new Storage.Qcow2.Qcow2OpenOptions { NoBacking = true }))
        {
            child.Write(BackupLocation.Cluster, BackupLocation.Data(2));
            child.Flush();
        }

        await location.Repository.RecoverAsync(location.Ve, CancellationToken.None);

        File.Exists(Path.Combine(location.Repository.VeDir(location.Ve), "pending-delete.json")).Should().BeFalse();
        var remaining = await location.Repository.ListVeAsync(location.Ve, CancellationToken.None);
        remaining.Select(m => m.Id).Should().Equal(chain[0].Id, chain[2].Id);
        remaining[1].Parent.Should().Be(chain[0].Id);
        location.ReadTags(chain[2].Id).Should().Equal(expected);
        remaining[1].Disks[0].Digest.Should().Be(BackupLocation.Digest(location.DiskFile(chain[2].Id)));
    }

    [Fact]
    public async Task A_delete_journal_is_completed_by_the_next_delete_through_the_client()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 }, new() { [2] = 3 }, new() { [3] = 4 });
        await location.Store.WriteDocumentAsync(Path.Combine(location.Repository.VeDir(location.Ve), "pending-delete.json"),
            new PendingDelete(1, chain[1].Id, chain[2].Id, chain[0].Id), BackupJson.Default.PendingDelete, CancellationToken.None);

        await location.Client().DeleteAsync(chain[3].Id);

        var remaining = await location.Client().ListAsync(location.Ve.ToString());
        remaining.Select(b => b.Id).Should().Equal(chain[0].Id, chain[2].Id);
        remaining[1].ParentId.Should().Be(chain[0].Id);
        location.ReadTags(chain[2].Id)[..4].Should().Equal(1, 2, 3, 0);
    }

    [Fact]
    public async Task Recovery_removes_staging_and_half_deleted_directories()
    {
        using var location = new BackupLocation();
        var full = await location.AddAsync(null, new() { [0] = 1 });
        var veDir = location.Repository.VeDir(location.Ve);
        Directory.CreateDirectory(Path.Combine(veDir, ".staging-abc"));
        Directory.CreateDirectory(Path.Combine(veDir, ".deleting-def"));

        await location.Repository.RecoverAsync(location.Ve, CancellationToken.None);

        Directory.GetDirectories(veDir).Select(Path.GetFileName).Should().Equal(full.Id);
    }

    [Fact]
    public async Task Recovery_removes_temp_files_whose_writer_is_gone_and_keeps_those_of_live_writers()
    {
        using var location = new BackupLocation();
        var full = await location.AddAsync(null, new() { [0] = 1 });
        var veDir = location.Repository.VeDir(location.Ve);
        // int.MaxValue is above any pid_max: no process has it.
        var dead = new[]
        {
            Path.Combine(veDir, $".sequence.json.vzsdk-tmp-{int.MaxValue}-{Guid.NewGuid():N}"),
            Path.Combine(veDir, $".pending-delete.json.vzsdk-tmp-{int.MaxValue}-{Guid.NewGuid():N}"),
            Path.Combine(location.Repository.BackupDir(location.Ve, full.Id), $".backup.json.vzsdk-tmp-{int.MaxValue}-{Guid.NewGuid():N}"),
        };
        var live = Path.Combine(veDir, $".sequence.json.vzsdk-tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        foreach (var f in dead.Append(live))
            await File.WriteAllTextAsync(f, "{");

        await location.Repository.RecoverAsync(location.Ve, CancellationToken.None);

        dead.Where(File.Exists).Should().BeEmpty();
        File.Exists(live).Should().BeTrue();
    }

    [Fact]
    public async Task The_next_delete_of_a_ves_backup_removes_a_sequence_temp_file_left_by_a_killed_backup()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 });
        var leftover = Path.Combine(location.Repository.VeDir(location.Ve), $".sequence.json.vzsdk-tmp-{int.MaxValue}-{Guid.NewGuid():N}");
        await File.WriteAllTextAsync(leftover, "{\"format_version\": 1, \"last_n");

        await location.Client().DeleteAsync(chain[1].Id);

        File.Exists(leftover).Should().BeFalse();
        Directory.GetFiles(location.Repository.VeDir(location.Ve), "*", new EnumerationOptions { AttributesToSkip = 0 })
            .Select(Path.GetFileName).Where(n => Regex.IsMatch(n!, "vzsdk-tmp")).Should().BeEmpty();
    }
}
