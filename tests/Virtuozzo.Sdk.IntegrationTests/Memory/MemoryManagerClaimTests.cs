using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Memory;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Memory;

/// <summary>One manager loop per data root: a second one is refused while the first runs (its budget would be overwritten), and runs once the first stopped.</summary>
public sealed class MemoryManagerClaimTests : IDisposable
{
    private readonly TempDirectory _root = new("vzsdk-memclaim");

    public void Dispose() => _root.Dispose();

    [IntegrationFact(Root = true)]
    public async Task A_second_manager_loop_on_the_same_data_root_is_refused_by_name_until_the_first_stops()
    {
        var options = new VirtuozzoSdkOptions { DataRoot = _root.Path };
        var first = new MemoryManager(VirtuozzoRuntime.CreateLocal(options), new MemoryManagerOptions { Policy = "static", Budget = ByteSize.Parse("2G"), ManageKsm = false, Interval = TimeSpan.FromSeconds(1) });
        var second = new MemoryManager(VirtuozzoRuntime.CreateLocal(options), new MemoryManagerOptions { Policy = "density", Budget = ByteSize.Parse("1G"), ManageKsm = false, Interval = TimeSpan.FromSeconds(1) });
        using var stopFirst = new CancellationTokenSource();
        var running = first.RunAsync(stopFirst.Token);
        var ledger = Path.Combine(_root.Path, "ledger.json");
        for (var i = 0; i < 50 && !(File.Exists(ledger) && File.ReadAllText(ledger).Contains("2147483648", StringComparison.Ordinal)); i++)
            await Task.Delay(100);
        File.ReadAllText(ledger).Should().Contain("2147483648", "the first manager records its 2 GiB budget");

        using (var brief = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
            await FluentActions.Awaiting(() => second.RunAsync(brief.Token)).Should().ThrowAsync<InvalidStateException>().WithMessage("*Another memory manager runs*");
        File.ReadAllText(ledger).Should().Contain("2147483648", "the refused manager recorded nothing");

        await stopFirst.CancelAsync();
        await running;
        using var stopSecond = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        await second.RunAsync(stopSecond.Token);
        File.ReadAllText(ledger).Should().Contain("1073741824", "once the first stopped, the second runs and records its budget");
    }
}
