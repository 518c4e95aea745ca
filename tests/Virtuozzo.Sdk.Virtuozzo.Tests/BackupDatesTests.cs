using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Testing;
using static Virtuozzo.Sdk.Virtuozzo.Tests.PrlctlFixtures;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// <c>prlctl backup-list</c>'s <c>Date</c> column is the node's LOCAL time, <c>MM/DD/YYYY HH:MM:SS</c> without an offset
/// (/work/shared/reference/virtuozzo-cli-and-sdk.md §3.8: <c>convert_time</c> converts the dispatcher's UTC
/// <c>YYYY-MM-DD HH:MM:SS</c>; row format <c>"%38s %-38s %-20s %-20s %4s %10s"</c>, <c>PrlBackup.cpp:944</c>). The
/// runtime reads it in the node's zone: the target of <c>/etc/localtime</c>, else <c>date +%z</c>, else UTC. The rows
/// are RECONSTRUCTED from that format; the zone answers are SYNTHETIC.
/// </summary>
public class BackupDatesTests
{
    private const string U = "ccefa40c-5c72-4e17-94c7-d68034a1c1a5";
    private const string Bk = "{b1b2c3d4-0000-4000-8000-000000000009}";
    private static readonly string[] Inventory = ["prlctl", "list", "-a", "-j", "-o", "uuid,status,type,name"];

    private static string List(params (string Id, string Type, string Date)[] rows)
        => $"{"ID",38} {"Backup_ID",-38} {"Node",-20} {"Date",-20} {"Type",4} {"Size",10}\n"
            + string.Concat(rows.Select(r => $"{"{" + U + "}",38} {r.Id,-38} {"node1",-20} {r.Date,-20} {r.Type,4} {1000,10}\n"));

    private static RecordedSessionHost Node(string backupList) => new RecordedSessionHost()
        .Always(["prlctl", "--version"], "prlctl version 7.0.253\n")
        .Expect(["prlctl", "backup-list"], backupList)
        .Expect(Inventory, Rows(Row(U, "stopped", "CT", "web1")));

    private static async Task<IReadOnlyList<BackupInfo>> ListAsync(RecordedSessionHost node)
        => await new BackupClient(VirtuozzoRuntime.CreateVirtuozzo(node)).ListAsync();

    [Fact]
    public async Task Dates_are_read_in_the_nodes_zone_with_its_daylight_saving_time()
    {
        var node = Node(List((Bk, "f", "03/01/2024 10:20:30"), (Bk + ".1", "i", "07/01/2024 10:20:30")))
            .Expect(["readlink", "/etc/localtime"], "../usr/share/zoneinfo/Europe/Berlin\n");
        var backups = await ListAsync(node);
        backups.Select(b => b.CreatedAt).Should().Equal(
            new DateTimeOffset(2024, 3, 1, 9, 20, 30, TimeSpan.Zero),   // CET, UTC+1
            new DateTimeOffset(2024, 7, 1, 8, 20, 30, TimeSpan.Zero));  // CEST, UTC+2
        node.VerifyAllReplayed();
    }

    [Fact]
    public async Task A_node_whose_localtime_is_not_a_link_is_read_at_the_offset_date_prints()
    {
        var node = Node(List((Bk, "f", "03/01/2024 10:20:30")))
            .Expect(["readlink", "/etc/localtime"], "", "", 1)
            .Expect(["date", "+%z"], "-0500\n");
        (await ListAsync(node)).Single().CreatedAt.Should().Be(new DateTimeOffset(2024, 3, 1, 15, 20, 30, TimeSpan.Zero));
        node.VerifyAllReplayed();
    }

    [Fact]
    public async Task A_node_that_names_no_zone_is_read_as_UTC()
    {
        var node = Node(List((Bk, "f", "03/01/2024 10:20:30")))
            .Expect(["readlink", "/etc/localtime"], "/etc/some-unknown-file\n")
            .Expect(["date", "+%z"], "garbage\n");
        (await ListAsync(node)).Single().CreatedAt.Should().Be(new DateTimeOffset(2024, 3, 1, 10, 20, 30, TimeSpan.Zero));
    }

    [Fact]
    public async Task The_zone_is_asked_once_per_node_and_not_at_all_for_an_empty_list()
    {
        var node = new RecordedSessionHost()
            .Always(["prlctl", "--version"], "prlctl version 7.0.253\n")
            .Always(["prlctl", "backup-list"], List((Bk, "f", "03/01/2024 10:20:30")))
            .Always(Inventory, Rows(Row(U, "stopped", "CT", "web1")))
            .Expect(["readlink", "/etc/localtime"], "/usr/share/zoneinfo/UTC\n");
        var client = new BackupClient(VirtuozzoRuntime.CreateVirtuozzo(node));
        await client.ListAsync();
        await client.ListAsync();
        node.Commands.Count(c => c[0] == "readlink").Should().Be(1);

        var empty = new RecordedSessionHost()
            .Always(["prlctl", "--version"], "prlctl version 7.0.253\n")
            .Expect(["prlctl", "backup-list"], List())
            .Expect(Inventory, EmptyList);
        (await new BackupClient(VirtuozzoRuntime.CreateVirtuozzo(empty)).ListAsync()).Should().BeEmpty();
        empty.Commands.Should().NotContain(c => c[0] == "readlink");
    }

    [Theory]
    [InlineData("../usr/share/zoneinfo/Europe/Berlin", "Europe/Berlin")]
    [InlineData("/usr/share/zoneinfo/America/New_York\n", "America/New_York")]
    [InlineData("/usr/share/zoneinfo/posix/Asia/Tokyo", "Asia/Tokyo")]
    public void An_etc_localtime_link_names_an_IANA_zone(string target, string id)
        => NodeTimeZone.FromLocaltimeLink(target)!.Zone!.Id.Should().Be(id);

    [Theory]
    [InlineData("/etc/localtime.bak")]
    [InlineData("/usr/share/zoneinfo/No/Such_Zone")]
    [InlineData("/usr/share/zoneinfo/")]
    public void Other_link_targets_name_no_zone(string target) => NodeTimeZone.FromLocaltimeLink(target).Should().BeNull();

    [Theory]
    [InlineData("+0100", 60)]
    [InlineData("-0530", -330)]
    [InlineData("+0000", 0)]
    public void Date_offsets_are_read_as_fixed_offsets(string output, int minutes)
        => NodeTimeZone.FromDateOffset(output)!.Offset.Should().Be(TimeSpan.FromMinutes(minutes));

    [Theory]
    [InlineData("0100")]
    [InlineData("+1")]
    [InlineData("+9900")]
    [InlineData("")]
    public void Anything_else_is_no_offset(string output) => NodeTimeZone.FromDateOffset(output).Should().BeNull();

    [Fact]
    public void A_time_skipped_by_spring_forward_uses_the_offset_before_it_and_an_ambiguous_one_reads_as_standard_time()
    {
        var berlin = NodeTimeZone.FromLocaltimeLink("/usr/share/zoneinfo/Europe/Berlin")!;
        berlin.ToInstant(new DateTime(2024, 3, 31, 2, 30, 0)).Should().Be(new DateTimeOffset(2024, 3, 31, 1, 30, 0, TimeSpan.Zero));
        berlin.ToInstant(new DateTime(2024, 10, 27, 2, 30, 0)).Should().Be(new DateTimeOffset(2024, 10, 27, 1, 30, 0, TimeSpan.Zero));
    }
}
