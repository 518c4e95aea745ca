using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Containers.Tests;

/// <summary>
/// When a live container migration stops its CRIU pre-dump rounds (P.Haul's rules), and what runc is asked to do. The
/// rounds themselves need the kernel's memory dirty tracking, which the reference machine lacks; the integration tests
/// show that the probe says so and that the migration then makes one dump.
/// </summary>
public class PreDumpRoundsTests
{
    [Fact]
    public void A_round_that_wrote_at_most_64_pages_is_the_last()
    {
        PreDumpRounds.StopReason(1, 64, null).Should().Contain("64 pages");
        PreDumpRounds.StopReason(3, 0, 5000).Should().NotBeNull();
        PreDumpRounds.StopReason(1, 65, null).Should().BeNull();
    }

    [Fact]
    public void Memory_dirtied_faster_than_it_is_sent_stops_the_rounds()
    {
        // 10 % growth is tolerated, more is not (P.Haul's MAX_ITER_GROW_RATE)
        PreDumpRounds.StopReason(2, 1100, 1000).Should().BeNull();
        PreDumpRounds.StopReason(2, 1101, 1000).Should().Contain("growth");
    }

    [Fact]
    public void Shrinking_rounds_go_on_until_the_eighth()
    {
        long? previous = null;
        var pages = 100_000L;
        var rounds = 0;
        for (var round = 1; round <= 20; round++)
        {
            rounds = round;
            if (PreDumpRounds.StopReason(round, pages, previous) is { } why)
            {
                why.Should().Contain("8 rounds");
                break;
            }
            previous = pages;
            pages = pages * 9 / 10;
        }
        rounds.Should().Be(PreDumpRounds.MaxRounds);
    }

    [Fact]
    public void Bad_counts_are_refused()
    {
        FluentActions.Invoking(() => PreDumpRounds.StopReason(0, 10, null)).Should().Throw<ArgumentOutOfRangeException>();
        FluentActions.Invoking(() => PreDumpRounds.StopReason(1, -1, null)).Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void The_pages_written_are_counted_from_the_page_images_only()
    {
        var dir = Directory.CreateTempSubdirectory("vzsdk-predump-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "pages-1.img"), new byte[3 * 4096]);
            File.WriteAllBytes(Path.Combine(dir, "pages-2.img"), new byte[5 * 4096]);
            File.WriteAllBytes(Path.Combine(dir, "pagemap-1.img"), new byte[100 * 4096]);
            File.WriteAllBytes(Path.Combine(dir, "core-1.img"), new byte[7 * 4096]);
            PreDumpRounds.PagesWritten(dir).Should().Be(8);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static readonly VeId Id = new(Guid.Parse("7c9e6679-7425-40de-944b-e07fc1f90ae7"));

    [Fact]
    public void A_pre_dump_leaves_the_container_running_and_names_its_parent()
    {
        var args = Runc.CheckpointArguments("/run/r", "/opt/criu", Id, "/p/checkpoint.pre/2", "/w", leaveRunning: true, preDump: true, parentPath: "../1");
        args.Should().Contain("--pre-dump").And.NotContain("--leave-running");
        args.Should().ContainInConsecutiveOrder("--parent-path", "../1");
        args.Should().ContainInConsecutiveOrder("--image-path", "/p/checkpoint.pre/2");
        args[^1].Should().Be(Id.ToString());
    }

    [Fact]
    public void The_final_dump_follows_the_last_round()
    {
        var args = Runc.CheckpointArguments("/run/r", "/opt/criu", Id, "/p/checkpoint.partial", "/w", leaveRunning: false, preDump: false, parentPath: "../checkpoint.pre/3");
        args.Should().NotContain("--pre-dump").And.NotContain("--leave-running");
        args.Should().ContainInConsecutiveOrder("--parent-path", "../checkpoint.pre/3");
        var plain = Runc.CheckpointArguments("/run/r", "/opt/criu", Id, "/p/checkpoint.partial", "/w", leaveRunning: false, preDump: false, parentPath: null);
        plain.Should().NotContain("--parent-path");
    }

    [Fact]
    public void The_final_dumps_parent_resolves_to_the_last_round_before_and_after_the_checkpoint_is_renamed()
    {
        var parent = Runtime.Local.LocalContainerDriver.PreDumpParent(3);
        Path.GetFullPath(Path.Combine("/data/private/x/checkpoint.partial", parent)).Should().Be("/data/private/x/checkpoint.pre/3");
        Path.GetFullPath(Path.Combine("/data/private/x/checkpoint", parent)).Should().Be("/data/private/x/checkpoint.pre/3");
    }

    [Fact]
    public void A_parent_given_as_an_absolute_path_is_refused()
        => FluentActions.Invoking(() => Runc.CheckpointArguments("/run/r", "/opt/criu", Id, "/p/c", "/w", false, false, "/p/checkpoint.pre/1"))
            .Should().Throw<ArgumentException>();
}
