using Virtuozzo.Sdk.Memory.Simulation;

namespace Virtuozzo.Sdk.Memory.Tests;

public class SimulatorTests
{
    private static readonly SimulationOptions Options = new() { RecordTrace = true };

    [Theory]
    [InlineData("static")]
    [InlineData("performance")]
    [InlineData("density")]
    [InlineData("wfb")]
    [InlineData("senpai")]
    public void No_policy_ever_takes_a_ve_below_its_guarantee_on_the_mixed_fleet(string policy)
    {
        var fleet = MemorySimulator.MixedFleet(12);
        var r = MemorySimulator.Run(MemoryPolicies.Create(policy), fleet, Options);
        r.GuaranteeViolations.Should().Be(0);
        r.Trace.Should().HaveCount(12 * Options.Ticks);
        foreach (var s in r.Trace)
        {
            var ve = fleet.Single(v => v.Name == s.Name);
            s.TargetBytes.Should().BeInRange(MemoryAccounting.GuaranteeBytes(ve.LimitBytes, ve.GuaranteePercent), ve.LimitBytes);
        }
    }

    [Fact]
    public void The_simulator_is_deterministic()
    {
        var a = MemorySimulator.Run(new DensityMemoryPolicy(), MemorySimulator.MixedFleet(9), Options);
        var b = MemorySimulator.Run(new DensityMemoryPolicy(), MemorySimulator.MixedFleet(9), Options);
        b.Trace.Should().Equal(a.Trace);
        b.BusyStallSeconds.Should().Be(a.BusyStallSeconds);
    }

    [Fact]
    public void Density_admits_at_least_one_and_a_half_times_as_many_ves_as_static_at_the_same_stall_budget()
    {
        var density = MemorySimulator.Density(() => new DensityMemoryPolicy());
        var fixedLimits = MemorySimulator.Density(() => new StaticMemoryPolicy());
        density.Should().BeGreaterThanOrEqualTo((int)Math.Ceiling(fixedLimits * 1.5));
    }

    [Fact]
    public void Density_beats_wfb_and_senpai_on_stall_or_reclaim_without_losing_on_the_other()
    {
        var fleet = MemorySimulator.MixedFleet(12);
        var density = MemorySimulator.Run(new DensityMemoryPolicy(), fleet);
        foreach (var baseline in new IMemoryPolicy[] { new WfbMemoryPolicy(), new SenpaiMemoryPolicy() })
        {
            var b = MemorySimulator.Run(baseline, fleet);
            var stallNoWorse = density.BusyStallSeconds <= b.BusyStallSeconds;
            var reclaimNoWorse = density.ReclaimedFromIdleBytes >= b.ReclaimedFromIdleBytes;
            (stallNoWorse && reclaimNoWorse && (density.BusyStallSeconds < b.BusyStallSeconds || density.ReclaimedFromIdleBytes > b.ReclaimedFromIdleBytes))
                .Should().BeTrue($"density (stall {density.BusyStallSeconds:F1} s, reclaimed {density.ReclaimedFromIdleBytes >> 20} MiB) should beat {b.Policy} (stall {b.BusyStallSeconds:F1} s, reclaimed {b.ReclaimedFromIdleBytes >> 20} MiB)");
        }
    }

    [Fact]
    public void Static_reclaims_nothing_from_idle_ves_when_the_host_has_room()
    {
        var r = MemorySimulator.Run(new StaticMemoryPolicy(), MemorySimulator.MixedFleet(4));
        r.ReclaimedFromIdleBytes.Should().Be(0);
        r.TargetChangesPerVeMinute.Should().Be(0);
    }

    [Fact]
    public void A_fleet_whose_guarantees_do_not_fit_is_refused()
        => FluentActions.Invoking(() => MemorySimulator.Run(new StaticMemoryPolicy(), MemorySimulator.MixedFleet(8), new SimulationOptions { HostAvailableBytes = 64L << 20 }))
            .Should().Throw<ArgumentException>();
}
