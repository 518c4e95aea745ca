using FluentAssertions;
using Virtuozzo.Sdk.Core.Internal;
using Xunit;

namespace Virtuozzo.Sdk.Core.Tests;

/// <summary>The owner markers that tell reconcile whether an interrupted operation's process still lives.</summary>
public class OwnerMarkerTests
{
    [Theory]
    [InlineData("4242 123456\n", 4242, 123456L)]
    [InlineData(" 7 0 ", 7, 0L)]
    public void A_marker_is_read_back(string text, int pid, long start)
        => OwnerMarker.Parse(text).Should().Be(new ProcessTree.ProcessKey(pid, start));

    [Theory]
    [InlineData("")]
    [InlineData("garbage")]
    [InlineData("0 5")]
    [InlineData("-3 5")]
    [InlineData("12 34 56")]
    public void A_damaged_marker_names_no_process(string text)
        => OwnerMarker.Parse(text).Should().BeNull();

    [Fact]
    public async Task A_marker_written_by_this_process_names_a_live_owner_and_a_missing_one_names_none()
    {
        var dir = Directory.CreateTempSubdirectory("vzsdk-marker-");
        try
        {
            var path = Path.Combine(dir.FullName, ".incoming");
            OwnerMarker.IsOwnerAlive(path).Should().BeFalse();
            await OwnerMarker.WriteAsync(path, CancellationToken.None);
            OwnerMarker.Read(path).Should().Be(new ProcessTree.ProcessKey(Environment.ProcessId, ProcessTree.ReadStat(Environment.ProcessId)!.Value.StartTime));
            OwnerMarker.IsOwnerAlive(path).Should().BeTrue();
            Directory.GetFileSystemEntries(dir.FullName).Should().Equal([path], "no temp file is left beside the marker");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void A_marker_naming_a_reused_pid_with_another_start_time_is_not_alive()
    {
        var dir = Directory.CreateTempSubdirectory("vzsdk-marker-");
        try
        {
            var path = Path.Combine(dir.FullName, ".migrating-out");
            var start = ProcessTree.ReadStat(Environment.ProcessId)!.Value.StartTime;
            File.WriteAllText(path, OwnerMarker.Format(Environment.ProcessId, start + 1));
            OwnerMarker.IsOwnerAlive(path).Should().BeFalse();
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
