using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.Vm.Tests;

/// <summary>
/// Parsing of QEMU's <c>qom-get guest-stats</c> on the balloon (test doubles: replies in QEMU 7.2's shape; the
/// integration test of the memory manager reads the real ones).
/// </summary>
public class GuestMemoryStatsTests
{
    private const string Unsupported = "18446744073709551615"; // QEMU reports a statistic the guest does not send as -1 (uint64)

    private static JsonNode Reply(long lastUpdate, string total, string available, string majorFaults = "120")
        => JsonNode.Parse($$"""
            {"stats": {"stat-swap-out": 0, "stat-available-memory": {{available}}, "stat-free-memory": 104857600,
              "stat-total-memory": {{total}}, "stat-major-faults": {{majorFaults}}, "stat-minor-faults": 43100,
              "stat-disk-caches": 1048576, "stat-swap-in": 0, "stat-htlb-pgalloc": 0, "stat-htlb-pgfail": 0},
             "last-update": {{lastUpdate}}}
            """)!;

    [Fact]
    public void A_report_gives_total_available_and_major_faults()
        => GuestMemoryStats.Parse(Reply(1733500000, "402653184", "301989888")).Should()
            .Be(new GuestMemoryStats(402653184, 301989888, 120));

    [Fact]
    public void Before_the_guest_reported_there_are_no_statistics()
        => GuestMemoryStats.Parse(Reply(0, Unsupported, Unsupported, Unsupported)).Should().BeNull();

    [Fact]
    public void A_guest_that_does_not_send_available_memory_gives_no_statistics()
        => GuestMemoryStats.Parse(Reply(1733500000, "402653184", Unsupported)).Should().BeNull();

    [Fact]
    public void A_missing_major_fault_count_is_not_a_number()
        => GuestMemoryStats.Parse(Reply(1733500000, "402653184", "1000", Unsupported))!.MajorFaults.Should().BeNull();

    [Fact]
    public void Available_never_exceeds_total()
        => GuestMemoryStats.Parse(Reply(1733500000, "1000", "5000"))!.AvailableBytes.Should().Be(1000);

    [Theory]
    [InlineData("null")]
    [InlineData("{}")]
    [InlineData("{\"last-update\": 5}")]
    [InlineData("{\"last-update\": 5, \"stats\": []}")]
    public void A_malformed_reply_gives_no_statistics(string json)
        => GuestMemoryStats.Parse(JsonNode.Parse(json)).Should().BeNull();

    [Fact]
    public void Only_a_report_from_the_last_five_polling_intervals_is_fresh()
    {
        var now = DateTimeOffset.FromUnixTimeSeconds(1733500010);
        GuestMemoryStats.IsFresh(Reply(1733500009, "1000", "500"), now).Should().BeTrue();
        GuestMemoryStats.IsFresh(Reply(1733500005, "1000", "500"), now).Should().BeTrue();
        GuestMemoryStats.IsFresh(Reply(1733499000, "1000", "500"), now).Should().BeFalse("the one report a guest sends at boot says nothing about it now");
        GuestMemoryStats.IsFresh(Reply(0, "1000", "500"), now).Should().BeFalse();
        GuestMemoryStats.IsFresh(JsonNode.Parse("[1]"), now).Should().BeFalse();
    }
}
