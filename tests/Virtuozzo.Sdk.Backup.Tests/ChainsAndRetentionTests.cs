using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Backup.Tests;

public class ChainsAndRetentionTests
{
    private static readonly VeId Ve = VeId.New();

    private static BackupInfo Backup(string id, string? parent, DateTimeOffset created, string name = "ct1")
        => new(id, parent is null ? BackupType.Full : BackupType.Incremental, parent, Ve, name, created, [], "0.1.0");

    private static DateTimeOffset At(int month, int day, int hour = 12) => new(2026, month, day, hour, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Backups_are_grouped_into_chains_each_starting_at_its_full_backup_and_following_parents()
    {
        var backups = new[]
        {
            Backup("{a}", null, At(1, 1)),
            Backup("{a}.1", "{a}", At(1, 2)),
            Backup("{b}", null, At(1, 3)),
            Backup("{a}.2", "{a}.1", At(1, 4)),
            Backup("{b}.1", "{b}", At(1, 5), name: "ct1-renamed"),
        };

        var chains = BackupRepository.Chains(backups);

        chains.Select(c => c.Backups.Select(b => b.Id)).Should().BeEquivalentTo(
            new[] { new[] { "{a}", "{a}.1", "{a}.2" }, new[] { "{b}", "{b}.1" } }, o => o.WithStrictOrdering());
        chains[1].VeName.Should().Be("ct1-renamed", "a chain is named as its newest backup names the VE");
    }

    [Fact]
    public void An_incremental_whose_parent_is_not_listed_starts_a_chain_of_its_own()
    {
        var backups = new[] { Backup("{a}.3", "{a}.2", At(1, 2)), Backup("{a}.4", "{a}.3", At(1, 3)) };

        var chains = BackupRepository.Chains(backups);

        chains.Should().ContainSingle().Which.Backups.Select(b => b.Id).Should().Equal("{a}.3", "{a}.4");
    }

    [Fact]
    public void Chains_are_listed_oldest_first_by_their_full_backup()
    {
        var backups = new[] { Backup("{new}", null, At(2, 1)), Backup("{old}", null, At(1, 1)), Backup("{old}.1", "{old}", At(3, 1)) };

        BackupRepository.Chains(backups).Select(c => c.Backups[0].Id).Should().Equal("{old}", "{new}");
    }

    [Fact]
    public void The_dependents_of_a_backup_are_everything_after_it_in_its_chain_nearest_first()
    {
        var backups = new (string, string?)[] { ("{a}", null), ("{a}.1", "{a}"), ("{a}.2", "{a}.1"), ("{a}.3", "{a}.2"), ("{b}", null), ("{b}.1", "{b}") };

        BackupRepository.Dependents(backups, ["{a}.1"]).Should().Equal("{a}.2", "{a}.3");
        BackupRepository.Dependents(backups, ["{a}.3"]).Should().BeEmpty();
        BackupRepository.Dependents(backups, ["{b}", "{a}.2"]).Should().Equal("{b}.1", "{a}.3");
    }

    [Fact]
    public void Dependents_that_are_not_followed_are_neither_counted_nor_looked_past()
    {
        var backups = new (string, string?)[] { ("{a}", null), ("{a}.1", "{a}"), ("{a}.2", "{a}.1"), ("{a}.3", "{a}.2") };

        BackupRepository.Dependents(backups, ["{a}"], id => id != "{a}.2").Should().Equal("{a}.1");
    }

    [Fact]
    public void Dependents_of_metadata_that_loops_are_each_listed_once()
    {
        var backups = new (string, string?)[] { ("{a}.1", "{a}.2"), ("{a}.2", "{a}.1") };

        BackupRepository.Dependents(backups, ["{a}.1"]).Should().Equal("{a}.2");
    }

    [Fact]
    public void Keep_last_keeps_the_newest_backups_whatever_their_order_in_the_list()
    {
        var backups = new[] { Backup("{c}", null, At(1, 3)), Backup("{a}", null, At(1, 1)), Backup("{d}", null, At(1, 4)), Backup("{b}", null, At(1, 2)) };

        BackupRepository.Retained(backups, new BackupRetention { KeepLast = 2 }).Should().BeEquivalentTo("{c}", "{d}");
    }

    [Fact]
    public void Keep_daily_keeps_the_newest_backup_of_each_of_the_last_days_that_have_one()
    {
        var backups = new[]
        {
            Backup("{1-morning}", null, At(1, 1, 8)), Backup("{1-evening}", null, At(1, 1, 20)),
            Backup("{3-morning}", null, At(1, 3, 8)), Backup("{3-evening}", null, At(1, 3, 20)),
            Backup("{5}", null, At(1, 5)),
        };

        BackupRepository.Retained(backups, new BackupRetention { KeepDaily = 2 }).Should().BeEquivalentTo("{5}", "{3-evening}");
    }

    [Fact]
    public void Keep_weekly_groups_by_iso_week()
    {
        // 2026-01-04 is a Sunday (ISO week 1), 2026-01-05 a Monday (week 2), 2026-01-11 a Sunday (week 2).
        var backups = new[] { Backup("{sun-w1}", null, At(1, 4)), Backup("{mon-w2}", null, At(1, 5)), Backup("{sun-w2}", null, At(1, 11)), Backup("{thu-w1}", null, At(1, 1)) };

        BackupRepository.Retained(backups, new BackupRetention { KeepWeekly = 2 }).Should().BeEquivalentTo("{sun-w2}", "{sun-w1}");
    }

    [Fact]
    public void Keep_monthly_keeps_the_newest_backup_of_each_of_the_last_months_in_utc()
    {
        var backups = new[]
        {
            Backup("{jan}", null, At(1, 31)),
            // 1 February 00:30 at UTC+2 is still 31 January in UTC
            Backup("{jan-late}", null, new DateTimeOffset(2026, 2, 1, 0, 30, 0, TimeSpan.FromHours(2))),
            Backup("{feb}", null, At(2, 10)),
            Backup("{mar}", null, At(3, 1)),
        };

        BackupRepository.Retained(backups, new BackupRetention { KeepMonthly = 3 }).Should().BeEquivalentTo("{mar}", "{feb}", "{jan-late}");
    }

    [Fact]
    public void A_backup_kept_by_any_rule_is_kept()
    {
        var backups = new[] { Backup("{m1}", null, At(1, 10)), Backup("{m2}", null, At(2, 10)), Backup("{d1}", null, At(3, 1, 8)), Backup("{d2}", null, At(3, 1, 9)) };

        BackupRepository.Retained(backups, new BackupRetention { KeepLast = 1, KeepMonthly = 3 }).Should().BeEquivalentTo("{d2}", "{m2}", "{m1}");
    }

    [Fact]
    public void Retention_does_not_keep_the_parents_of_kept_incrementals_because_deleting_them_merges_them_into_their_children()
    {
        var backups = new[] { Backup("{a}", null, At(1, 1)), Backup("{a}.1", "{a}", At(1, 2)), Backup("{a}.2", "{a}.1", At(1, 3)) };

        BackupRepository.Retained(backups, new BackupRetention { KeepLast = 1 }).Should().BeEquivalentTo("{a}.2");
    }

    [Fact]
    public async Task Pruning_merges_what_a_kept_incremental_depends_on_so_that_it_keeps_all_its_data()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1, [1] = 1 }, new() { [1] = 2, [2] = 2 }, new() { [2] = 3, [3] = 3 });
        var expected = location.ReadTags(chain[2].Id);

        var deleted = await location.Client().PruneAsync(location.Ve.ToString(), new BackupRetention { KeepLast = 1 });

        deleted.Should().BeEquivalentTo(chain[0].Id, chain[1].Id);
        var remaining = await location.Client().ListAsync(location.Ve.ToString());
        remaining.Should().ContainSingle().Which.Should().Match<BackupInfo>(b => b.Id == chain[2].Id && b.ParentId == null && b.Type == BackupType.Full);
        location.ReadTags(chain[2].Id).Should().Equal(expected);
        expected[..4].Should().Equal(1, 2, 3, 3);
        (await location.Client().VerifyAsync(location.Ve.ToString())).IsValid.Should().BeTrue();
    }

    [Fact]
    public async Task Pruning_refuses_a_policy_that_keeps_nothing_and_deletes_nothing()
    {
        using var location = new BackupLocation();
        var full = await location.AddAsync(null, new() { [0] = 1 });

        await location.Invoking(l => l.Client().PruneAsync(l.Ve.ToString(), new BackupRetention())).Should().ThrowAsync<ArgumentException>();
        (await location.Client().ListAsync(location.Ve.ToString())).Select(b => b.Id).Should().Equal(full.Id);
    }
}
