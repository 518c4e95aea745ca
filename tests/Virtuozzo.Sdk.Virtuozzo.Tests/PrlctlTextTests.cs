using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>prlctl's plain-text outputs (reference §3.7, §3.8): success lines, snapshot-list, backup-list.</summary>
public class PrlctlTextTests
{
    private const string A = "{a1b2c3d4-0000-4000-8000-000000000001}";
    private const string B = "{a1b2c3d4-0000-4000-8000-000000000002}";
    private const string C = "{a1b2c3d4-0000-4000-8000-000000000003}";

    [Theory]
    [InlineData("The snapshot with id " + A + " has been successfully created.")]
    [InlineData("Creating the snapshot...\nThe snapshot with ID " + A + " has been successfully created.\n")]
    public void The_new_snapshot_id_is_read_from_the_success_line_in_either_case(string output)
        => PrlctlText.ParseCreatedSnapshotId(output).Should().Be(Guid.Parse(A));

    [Fact]
    public void A_missing_success_line_is_a_typed_error()
        => ((Action)(() => PrlctlText.ParseCreatedSnapshotId("Creating the snapshot..."))).Should().Throw<VirtuozzoException>();

    [Theory]
    [InlineData("The CT has been successfully backed up with backup id " + A + ".", A)]
    [InlineData("...\nThe VM has been successfully backed up with backup id " + A + ".2.\n", A + ".2")]
    public void The_backup_id_is_read_as_stored_full_or_incremental(string output, string id)
        => PrlctlText.ParseCreatedBackupId(output).Should().Be(id);

    // printf("%38s %c%38s\n", parent, current ? '*' : ' ', id), after the header.
    [Fact]
    public void Snapshot_list_rows_read_with_parents_and_the_current_mark()
    {
        var output = "PARENT_SNAPSHOT_ID                      SNAPSHOT_ID\n"
            + string.Format(System.Globalization.CultureInfo.InvariantCulture, "{0,38} {1}{2,38}\n", "", ' ', A)
            + string.Format(System.Globalization.CultureInfo.InvariantCulture, "{0,38} {1}{2,38}\n", A, ' ', B)
            + string.Format(System.Globalization.CultureInfo.InvariantCulture, "{0,38} {1}{2,38}\n", B, '*', C);
        PrlctlText.ParseSnapshotList(output).Should().Equal(
            new PrlctlSnapshotRow(Guid.Parse(A), null, false),
            new PrlctlSnapshotRow(Guid.Parse(B), Guid.Parse(A), false),
            new PrlctlSnapshotRow(Guid.Parse(C), Guid.Parse(B), true));
    }

    [Fact]
    public void A_current_root_snapshot_reads_as_current_without_parent()
        => PrlctlText.ParseSnapshotList(new string(' ', 38) + " *" + A + "\n").Should().Equal(new PrlctlSnapshotRow(Guid.Parse(A), null, true));

    [Fact]
    public void An_empty_snapshot_list_has_no_rows()
        => PrlctlText.ParseSnapshotList("PARENT_SNAPSHOT_ID                      SNAPSHOT_ID\n").Should().BeEmpty();

    [Fact]
    public void A_snapshot_list_line_that_is_not_a_row_is_a_typed_error()
        => ((Action)(() => PrlctlText.ParseSnapshotList("garbage line\n"))).Should().Throw<VirtuozzoException>().WithMessage("*garbage line*");

    [Fact]
    public void Snapshot_details_read_their_fields()
    {
        var d = PrlctlText.ParseSnapshotDetails($"ID: {A}\nName: before-upgrade\nDate: 2024-03-01 10:20:30\nCurrent: yes\nState: poweron\nDescription: kernel 5.x\n");
        d.Id.Should().Be(Guid.Parse(A));
        d.Name.Should().Be("before-upgrade");
        d.IsCurrent.Should().BeTrue();
        d.State.Should().Be("poweron");
        d.Description.Should().Be("kernel 5.x");
        d.CreatedAt!.Value.DateTime.Should().Be(new DateTime(2024, 3, 1, 10, 20, 30));
    }

    [Fact]
    public void Snapshot_details_without_Current_are_not_current()
        => PrlctlText.ParseSnapshotDetails($"ID: {A}\nName: x\n").IsCurrent.Should().BeFalse();

    // "%38s %-38s %-20s %-20s %4s %10s" = ID Backup_ID Node Date Type Size; the date is the node's local time.
    [Fact]
    public void Backup_list_rows_read_with_full_and_incremental_ids()
    {
        var ve = "{ccefa40c-5c72-4e17-94c7-d68034a1c1a5}";
        string Row(string bid, string type, long size) => string.Format(System.Globalization.CultureInfo.InvariantCulture,
            "{0,38} {1,-38} {2,-20} {3,-20} {4,4} {5,10}\n", ve, bid, "node1.example.com", "03/01/2024 10:20:30", type, size);
        var output = string.Format(System.Globalization.CultureInfo.InvariantCulture, "{0,38} {1,-38} {2,-20} {3,-20} {4,4} {5,10}\n", "ID", "Backup_ID", "Node", "Date", "Type", "Size")
            + Row(A, "f", 1073741824) + Row(A + ".1", "i", 52428800);
        var rows = PrlctlText.ParseBackupList(output);
        rows.Should().HaveCount(2);
        rows[0].Should().Be(new PrlctlBackupRow(Guid.Parse(ve), A, "node1.example.com", new DateTime(2024, 3, 1, 10, 20, 30), 'f', 1073741824));
        rows[1].BackupId.Should().Be(A + ".1");
        rows[1].Type.Should().Be('i');
    }
}
