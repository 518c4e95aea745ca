using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

public class OrderedPipelineTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 4)]
    [InlineData(8, 2)]
    public void Items_arrive_in_order_and_no_slot_is_reused_before_its_item_is_released(int workers, int depth)
    {
        const int count = 300;
        int effectiveDepth = Math.Max(depth, workers);
        var slotOwner = new long[effectiveDepth];
        Array.Fill(slotOwner, -1);
        var rnd = new ThreadLocal<Random>(() => new Random(Environment.CurrentManagedThreadId));
        using var pipeline = new OrderedPipeline<long[]>(count, workers, depth, (i, slot) =>
        {
            long previous = Interlocked.Exchange(ref slotOwner[slot], i);
            if (previous >= 0 && previous != i - effectiveDepth)
                throw new InvalidOperationException($"slot {slot} taken by {i} while {previous} may be in use");
            if (rnd.Value!.Next(4) == 0)
                Thread.Sleep(1);
            return [i, slot];
        }, CancellationToken.None);
        var seen = new List<long>();
        foreach (var item in pipeline.Consume())
        {
            Interlocked.Read(ref slotOwner[item[1]]).Should().Be(item[0], "the slot of an item being consumed is not refilled");
            seen.Add(item[0]);
        }
        seen.Should().Equal(Enumerable.Range(0, count).Select(i => (long)i));
    }

    [Fact]
    public void A_worker_s_exception_reaches_the_consumer_and_stops_the_workers()
    {
        int produced = 0;
        using var pipeline = new OrderedPipeline<object>(1000, 2, 4, (i, _) =>
        {
            Interlocked.Increment(ref produced);
            if (i == 10)
                throw new IOException("read failed at 10");
            return new object();
        }, CancellationToken.None);
        var act = () => pipeline.Consume().Count();
        act.Should().Throw<IOException>().WithMessage("read failed at 10");
        pipeline.Dispose();
        produced.Should().BeLessThan(20, "workers stop once one has failed");
    }

    [Fact]
    public void Cancelling_stops_the_pipeline_with_OperationCanceledException()
    {
        using var cts = new CancellationTokenSource();
        using var pipeline = new OrderedPipeline<object>(1000, 2, 4, (i, _) => new object(), cts.Token);
        var act = () =>
        {
            foreach (var _ in pipeline.Consume())
                cts.Cancel();
        };
        act.Should().Throw<OperationCanceledException>();
    }

    [Fact]
    public void Disposing_in_the_middle_joins_the_workers()
    {
        var pipeline = new OrderedPipeline<object>(1000, 2, 3, (i, _) => new object(), CancellationToken.None);
        pipeline.Consume().Take(5).Count().Should().Be(5);
        var dispose = () => pipeline.Dispose();
        dispose.ExecutionTime().Should().BeLessThan(TimeSpan.FromSeconds(10));
    }
}
