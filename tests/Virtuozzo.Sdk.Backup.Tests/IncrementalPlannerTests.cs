using Virtuozzo.Sdk.Backup.Internal;

namespace Virtuozzo.Sdk.Backup.Tests;

public class IncrementalPlannerTests
{
    private const string LastId = "{7d3c1a52-0c49-4d0e-a5a4-8e2b1f3c9a10}.2";
    private const long Size = 10L << 30;
    private static readonly string Bitmap = "vzsdk-backup:" + LastId;
    private static readonly HashSet<string> NothingMissing = [];

    private static BackupMetadata Last(params (string Name, long Size, string? Backing)[] disks) => new()
    {
        Id = LastId,
        Type = BackupType.Incremental,
        Parent = "{7d3c1a52-0c49-4d0e-a5a4-8e2b1f3c9a10}.1",
        VeUuid = "{11111111-2222-3333-4444-555555555555}",
        VeName = "vm1",
        VeKind = "vm",
        Created = DateTimeOffset.UnixEpoch,
        Disks = disks.Select(d => new BackupDiskMetadata(d.Name, d.Name + ".qcow2", "/images/" + d.Name, d.Size, 1000, "digest", d.Backing)).ToList(),
        SdkVersion = "0.1.0",
    };

    private static BackupMetadata TwoDisks => Last(("hdd0", Size, null), ("hdd1", Size, "/base.qcow2|100|5"));

    private static PlannedDisk Disk(string name, long size = Size, string? backing = null, TrackingState? state = TrackingState.Good, string? bitmap = null, string? reset = null)
        => new(name, size, backing, state is { } s ? new Dictionary<string, TrackingState> { [bitmap ?? Bitmap] = s } : [], reset);

    private static PlannedDisk[] MatchingDisks => [Disk("hdd0"), Disk("hdd1", backing: "/base.qcow2|100|5")];

    [Fact]
    public void The_first_backup_of_a_ve_is_full_and_says_so()
    {
        var plan = IncrementalPlanner.Plan(full: false, "container", last: null, [Disk("root")], NothingMissing);

        plan.IsIncremental.Should().BeFalse();
        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal("all disks: this is the first backup of the container");
    }

    [Fact]
    public void An_incremental_is_planned_when_every_disk_bitmap_matches_the_last_backup()
    {
        var plan = IncrementalPlanner.Plan(full: false, "VM", TwoDisks, MatchingDisks, NothingMissing);

        plan.IsIncremental.Should().BeTrue();
        plan.Parent.Should().Be(LastId);
        plan.FullReasons.Should().BeEmpty();
    }

    [Fact]
    public void A_full_backup_asked_for_is_full_even_when_an_incremental_is_possible()
    {
        var plan = IncrementalPlanner.Plan(full: true, "VM", TwoDisks, MatchingDisks, NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal("all disks: a full backup was asked for (--full)");
    }

    [Fact]
    public void A_disk_without_a_bitmap_for_the_last_backup_makes_the_backup_full_and_is_named()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0", state: null), Disk("hdd1", backing: "/base.qcow2|100|5")], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().ContainSingle().Which.Should().StartWith($"hdd0: the disk has no change-tracking bitmap for backup {LastId} (the VM stopped");
    }

    [Fact]
    public void A_bitmap_for_an_older_backup_does_not_count_as_tracking_since_the_last_one()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0", bitmap: "vzsdk-backup:{7d3c1a52-0c49-4d0e-a5a4-8e2b1f3c9a10}.1"), Disk("hdd1", backing: "/base.qcow2|100|5")], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().ContainSingle().Which.Should().StartWith("hdd0: the disk has no change-tracking bitmap");
    }

    [Theory]
    [InlineData(nameof(TrackingState.Inconsistent), "hdd1: the change-tracking bitmap for backup " + LastId + " is inconsistent (the VM was not stopped cleanly)")]
    [InlineData(nameof(TrackingState.Disabled), "hdd1: change tracking for backup " + LastId + " was disabled")]
    public void A_bitmap_that_cannot_be_trusted_makes_the_backup_full_with_its_reason(string stateName, string reason)
    {
        var state = Enum.Parse<TrackingState>(stateName);
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0"), Disk("hdd1", backing: "/base.qcow2|100|5", state: state)], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal(reason);
    }

    [Fact]
    public void A_resized_disk_makes_the_backup_full_although_its_bitmap_is_good()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0", size: Size * 2), Disk("hdd1", backing: "/base.qcow2|100|5")], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal($"hdd0: the disk was resized since backup {LastId}");
    }

    [Theory]
    [InlineData(null)]
    [InlineData("/base.qcow2|100|6")]
    [InlineData("/other-base.qcow2|100|5")]
    public void A_change_in_the_files_below_a_disk_makes_the_backup_full(string? backingNow)
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0"), Disk("hdd1", backing: backingNow)], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal($"hdd1: the files below the disk changed since backup {LastId} (a rebase, or a commit or write into its base)");
    }

    [Fact]
    public void An_added_disk_makes_the_backup_full_and_is_named()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [.. MatchingDisks, Disk("hdd2", state: null)], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal($"hdd2: the disk was added since backup {LastId}");
    }

    [Fact]
    public void A_removed_disk_makes_the_backup_full_and_is_named()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0")], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal($"hdd1: the disk was removed since backup {LastId}");
    }

    [Fact]
    public void A_tracking_reset_recorded_by_the_ve_makes_the_backup_full_with_its_cause()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0", reset: "the VM was reverted to snapshot s1"), Disk("hdd1", backing: "/base.qcow2|100|5")], NothingMissing);

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal($"hdd0: the VM was reverted to snapshot s1 since backup {LastId}");
    }

    [Fact]
    public void A_missing_file_in_the_last_backup_makes_the_backup_full()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, MatchingDisks, new HashSet<string> { "hdd1" });

        plan.Parent.Should().BeNull();
        plan.FullReasons.Should().Equal($"hdd1: the file of backup {LastId} is missing");
    }

    [Fact]
    public void Every_disk_that_prevents_an_incremental_gets_its_own_line()
    {
        var plan = IncrementalPlanner.Plan(false, "VM", TwoDisks, [Disk("hdd0", state: TrackingState.Disabled), Disk("hdd1", backing: "/base.qcow2|100|5", state: TrackingState.Inconsistent)], NothingMissing);

        plan.FullReasons.Should().HaveCount(2);
        plan.FullReasons[0].Should().StartWith("hdd0: ");
        plan.FullReasons[1].Should().StartWith("hdd1: ");
    }
}
