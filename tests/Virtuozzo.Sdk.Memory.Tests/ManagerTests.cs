using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Memory.Internal;

namespace Virtuozzo.Sdk.Memory.Tests;

public class ManagerTests
{
    /// <summary>A host whose settings live in a dictionary: a write counts only when it changes a value.</summary>
    private sealed class FakeHost : IMemoryHost
    {
        public List<VeMemoryTelemetry> Ves { get; } = [];
        public Dictionary<VeId, VeMemoryTarget> Applied { get; } = [];
        public HashSet<VeId> Gone { get; } = [];
        public long Available { get; set; } = 4 * ByteSize.GiB;
        public List<long?> RecordedBudgets { get; } = [];

        public Task<IDisposable> ClaimAsync(CancellationToken cancellationToken) => Task.FromResult<IDisposable>(new MemoryStream());

        public Task RecordBudgetAsync(long? budgetBytes, CancellationToken cancellationToken)
        {
            RecordedBudgets.Add(budgetBytes);
            return Task.CompletedTask;
        }

        public Task<MemoryTelemetry> ReadAsync(CancellationToken cancellationToken)
            => Task.FromResult(new MemoryTelemetry(new HostMemoryTelemetry(8 * ByteSize.GiB, 0, Available, Available),
                Ves.Select(v => v with { TargetBytes = Applied.TryGetValue(v.Id, out var a) ? a.TargetBytes : v.TargetBytes }).ToList(), TimeSpan.FromSeconds(1)));

        public Task<int> ApplyAsync(VeMemoryTelemetry ve, VeMemoryTarget target, CancellationToken cancellationToken)
        {
            if (Gone.Contains(ve.Id))
                throw new NotFoundException($"The VE {ve.Name} was deleted.");
            var changed = !Applied.TryGetValue(ve.Id, out var old) || old != target;
            Applied[ve.Id] = target;
            return Task.FromResult(changed ? 1 : 0);
        }
    }

    private static VeMemoryTelemetry Ve(string name, VeKind kind, long limit, long usage, int guaranteePercent = 0) => new()
    {
        Id = VeId.New(), Name = name, Kind = kind, LimitBytes = limit, UsageBytes = usage,
        GuaranteeBytes = MemoryAccounting.GuaranteeBytes(limit, guaranteePercent), OverheadBytes = MemoryAccounting.Overhead(kind, limit),
    };

    [Fact]
    public async Task A_second_tick_over_the_same_state_writes_nothing()
    {
        var host = new FakeHost();
        host.Ves.AddRange([Ve("a", VeKind.Container, ByteSize.GiB, 200 * ByteSize.MiB), Ve("b", VeKind.Vm, ByteSize.GiB, 300 * ByteSize.MiB, 50)]);
        var manager = new MemoryManager(host, new MemoryManagerOptions { Policy = "static" });
        (await manager.TickAsync()).Writes.Should().Be(2);
        (await manager.TickAsync()).Writes.Should().Be(0);
    }

    [Fact]
    public async Task The_first_tick_records_the_budget_for_admission_once_and_a_manager_without_one_clears_it()
    {
        var host = new FakeHost();
        var manager = new MemoryManager(host, new MemoryManagerOptions { Policy = "static", Budget = ByteSize.Parse("3G") });
        host.RecordedBudgets.Should().BeEmpty("creating a manager (as 'vzsdk mem status' does) records nothing");
        await manager.TickAsync();
        await manager.TickAsync();
        host.RecordedBudgets.Should().Equal(3 * ByteSize.GiB);
        await new MemoryManager(host, new MemoryManagerOptions { Policy = "static" }).TickAsync();
        host.RecordedBudgets.Should().Equal(3 * ByteSize.GiB, null);
    }

    [Fact]
    public async Task A_ve_deleted_during_a_tick_is_reported_and_the_others_are_still_balanced()
    {
        var host = new FakeHost();
        var gone = Ve("gone", VeKind.Container, ByteSize.GiB, 0);
        var kept = Ve("kept", VeKind.Container, ByteSize.GiB, 0);
        host.Ves.AddRange([gone, kept]);
        host.Gone.Add(gone.Id);
        var result = await new MemoryManager(host, new MemoryManagerOptions { Policy = "static" }).TickAsync();
        result.Errors.Should().Equal("gone");
        host.Applied.Should().ContainKey(kept.Id);
    }

    [Fact]
    public async Task A_policy_recorded_by_another_process_takes_over_at_the_next_tick()
    {
        var file = Path.Combine(Path.GetTempPath(), "vzsdk-mem-" + Guid.NewGuid().ToString("N"), "policy");
        var host = new FakeHost();
        host.Ves.Add(Ve("a", VeKind.Container, ByteSize.GiB, 100 * ByteSize.MiB));
        var daemon = new MemoryManager(host, new MemoryManagerOptions { Policy = "static" }, file);
        (await daemon.TickAsync()).Policy.Should().Be("static");
        await new MemoryManager(host, new MemoryManagerOptions(), file).SetPolicyAsync("WFB");
        (await daemon.TickAsync()).Policy.Should().Be("wfb");
        Directory.Delete(Path.GetDirectoryName(file)!, true);
    }

    [Fact]
    public async Task The_loop_stops_cleanly_when_cancelled()
    {
        var host = new FakeHost();
        host.Ves.Add(Ve("a", VeKind.Container, ByteSize.GiB, 100 * ByteSize.MiB));
        var manager = new MemoryManager(host, new MemoryManagerOptions { Interval = TimeSpan.FromSeconds(1) });
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(1500));
        var run = manager.RunAsync(cts.Token);
        await run.WaitAsync(TimeSpan.FromSeconds(10));
        run.IsCompletedSuccessfully.Should().BeTrue();
        host.Applied.Should().ContainKey(host.Ves[0].Id);
    }

    [Fact]
    public async Task Under_density_an_idle_vm_is_given_back_while_a_stalling_container_grows()
    {
        var host = new FakeHost { Available = 2 * ByteSize.GiB };
        var vm = Ve("vm", VeKind.Vm, ByteSize.GiB, 100 * ByteSize.MiB, 25) with { TargetBytes = ByteSize.GiB };
        var ct = Ve("ct", VeKind.Container, ByteSize.GiB, 400 * ByteSize.MiB) with { TargetBytes = 400 * ByteSize.MiB, StallMicroseconds = 300_000 };
        host.Ves.AddRange([vm, ct]);
        var manager = new MemoryManager(host, new MemoryManagerOptions { Policy = "density" });
        await manager.TickAsync();
        host.Applied[ct.Id].TargetBytes.Should().BeGreaterThan(400 * ByteSize.MiB);
        host.Ves[1] = ct with { StallMicroseconds = 0 };
        for (var i = 0; i < 30; i++)
            await manager.TickAsync();
        host.Applied[vm.Id].TargetBytes.Should().BeLessThan(ByteSize.GiB / 2).And.BeGreaterThanOrEqualTo(vm.GuaranteeBytes);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(6)]
    [InlineData(0.5)]
    public void Intervals_outside_one_to_five_seconds_are_refused(double seconds)
    {
        var errors = new MemoryManagerOptions { Interval = TimeSpan.FromSeconds(seconds) }.Validate();
        errors.Should().ContainSingle().Which.Should().Contain("Interval");
    }
}
