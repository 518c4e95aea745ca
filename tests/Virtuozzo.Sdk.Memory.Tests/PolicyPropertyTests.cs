using FsCheck;
using FsCheck.Fluent;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory.Tests;

public class PolicyPropertyTests
{
    public static TheoryData<string> Policies() => new(MemoryPolicies.Names);

    /// <summary>A random host whose guarantees were admitted (Σ mem_min ≤ available), from a seed.</summary>
    internal static MemoryTelemetry RandomHost(int seed)
    {
        var r = new Random(seed);
        var n = r.Next(1, 13);
        var ves = new List<VeMemoryTelemetry>();
        for (var i = 0; i < n; i++)
        {
            var kind = r.Next(2) == 0 ? VeKind.Vm : VeKind.Container;
            var limit = (long)r.Next(32, 4096) * ByteSize.MiB;
            var guarantee = MemoryAccounting.GuaranteeBytes(limit, r.Next(0, 101));
            ves.Add(new VeMemoryTelemetry
            {
                Id = new VeId(new Guid(i + 1, 0, 0, new byte[8])), Name = "ve" + i, Kind = kind, Active = r.Next(8) != 0,
                LimitBytes = limit, GuaranteeBytes = guarantee, OverheadBytes = MemoryAccounting.Overhead(kind, limit),
                UsageBytes = (long)(limit * r.NextDouble() * 1.1), TargetBytes = r.Next(3) == 0 ? null : (long)(limit * r.NextDouble()),
                StallMicroseconds = r.Next(3) == 0 ? r.Next(0, 1_000_000) : 0,
                HardTarget = kind == VeKind.Container && r.Next(2) == 0,
            });
        }
        var minimum = ves.Sum(v => v.Active ? v.MinimumBytes : MemoryAccounting.Charge(v.MinimumBytes, v.UsageBytes, false));
        var available = minimum + (long)(r.NextDouble() * ves.Sum(v => v.LimitBytes));
        return new MemoryTelemetry(new HostMemoryTelemetry(available + ByteSize.GiB, ByteSize.GiB, available, available / 2), ves, TimeSpan.FromSeconds(1));
    }

    private static void CheckAll(Func<int, bool> property, int count = 300)
        => Check.One(Config.QuickThrowOnFailure.WithMaxTest(count), Prop.ForAll(Arb.From(Gen.Choose(0, int.MaxValue - 1)), property));

    [Theory]
    [MemberData(nameof(Policies))]
    public void Every_target_lies_between_the_guarantee_and_the_limit(string policy)
        => CheckAll(seed =>
        {
            var t = RandomHost(seed);
            var plan = MemoryBalancer.Decide(MemoryPolicies.Create(policy), t, MemoryPolicyState.Empty);
            return t.Ves.Where(v => v.Active).All(v => plan.For(v.Id) is { } p && v.GuaranteeBytes <= p.TargetBytes && p.TargetBytes <= p.LimitBytes && p.LimitBytes == v.LimitBytes);
        });

    [Theory]
    [MemberData(nameof(Policies))]
    public void The_sum_of_protections_never_exceeds_what_the_host_has(string policy)
        => CheckAll(seed =>
        {
            var t = RandomHost(seed);
            var plan = MemoryBalancer.Decide(MemoryPolicies.Create(policy), t, MemoryPolicyState.Empty);
            return plan.Targets.Sum(p => p.ProtectionBytes) <= t.Host.AvailableBytes;
        });

    [Theory]
    [MemberData(nameof(Policies))]
    public void The_targets_fit_the_memory_left_to_balance(string policy)
        => CheckAll(seed =>
        {
            var t = RandomHost(seed);
            var plan = MemoryBalancer.Decide(MemoryPolicies.Create(policy), t, MemoryPolicyState.Empty);
            var floors = t.Ves.Where(v => v.Active).Sum(v => v.GuaranteeBytes);
            return plan.Targets.Sum(p => p.TargetBytes) <= Math.Max(t.BalanceBytes, floors);
        });

    [Theory]
    [MemberData(nameof(Policies))]
    public void A_tick_is_a_pure_function_of_its_inputs(string policy)
        => CheckAll(seed =>
        {
            var t = RandomHost(seed);
            var first = MemoryBalancer.Decide(MemoryPolicies.Create(policy), t, MemoryPolicyState.Empty);
            var again = MemoryBalancer.Decide(MemoryPolicies.Create(policy), t, MemoryPolicyState.Empty);
            var third = MemoryBalancer.Decide(MemoryPolicies.Create(policy), t, first.State);
            var fourth = MemoryBalancer.Decide(MemoryPolicies.Create(policy), t, first.State);
            return first.Targets.SequenceEqual(again.Targets) && third.Targets.SequenceEqual(fourth.Targets);
        });

    [Fact]
    public void A_plan_that_breaks_the_rules_is_brought_back_within_them()
    {
        var t = RandomHost(42);
        var bad = new MemoryPlan(t.Ves.Select(v => new VeMemoryTarget(v.Id, long.MaxValue / 64, -5, long.MaxValue)).ToList(), MemoryPolicyState.Empty);
        var plan = MemoryBalancer.Normalize(t, bad);
        plan.Targets.Should().OnlyContain(p => p.TargetBytes >= t.Ves.Single(v => v.Id == p.Id).GuaranteeBytes && p.LimitBytes == t.Ves.Single(v => v.Id == p.Id).LimitBytes);
        plan.Targets.Sum(p => p.ProtectionBytes).Should().BeLessThanOrEqualTo(t.Host.AvailableBytes);
    }

    [Fact]
    public void Static_gives_every_ve_its_limit_when_the_host_has_room()
    {
        var t = RandomHost(7) with { Host = new HostMemoryTelemetry(long.MaxValue / 4, 0, long.MaxValue / 8, 0) };
        var plan = MemoryBalancer.Decide(new StaticMemoryPolicy(), t, MemoryPolicyState.Empty);
        plan.Targets.Should().OnlyContain(p => p.TargetBytes == MemoryBalancer.Align(p.LimitBytes) || p.TargetBytes == p.LimitBytes);
    }

    [Fact]
    public void Density_raises_the_target_of_a_ve_that_stalls_and_lowers_that_of_an_idle_one()
    {
        var busy = new VeMemoryTelemetry { Id = VeId.New(), Name = "busy", Kind = VeKind.Container, LimitBytes = ByteSize.GiB, UsageBytes = 256 * ByteSize.MiB, TargetBytes = 256 * ByteSize.MiB, StallMicroseconds = 200_000 };
        var idle = new VeMemoryTelemetry { Id = VeId.New(), Name = "idle", Kind = VeKind.Vm, LimitBytes = ByteSize.GiB, GuaranteeBytes = 128 * ByteSize.MiB, OverheadBytes = MemoryAccounting.Overhead(VeKind.Vm, ByteSize.GiB), UsageBytes = 100 * ByteSize.MiB, TargetBytes = ByteSize.GiB };
        var t = new MemoryTelemetry(new HostMemoryTelemetry(8 * ByteSize.GiB, 0, 4 * ByteSize.GiB, 0), [busy, idle], TimeSpan.FromSeconds(1));
        var plan = MemoryBalancer.Decide(new DensityMemoryPolicy(), t, MemoryPolicyState.Empty);
        plan.For(busy.Id)!.TargetBytes.Should().BeGreaterThan(256 * ByteSize.MiB);
        plan.For(idle.Id)!.TargetBytes.Should().BeLessThan(ByteSize.GiB).And.BeGreaterThanOrEqualTo(128 * ByteSize.MiB);
    }

    [Fact]
    public void Density_grows_a_stalling_hotplug_vm_past_its_plugged_ram_up_to_its_maximum_and_static_keeps_it_within_the_plugged_ram()
    {
        var vm = new VeMemoryTelemetry
        {
            Id = VeId.New(), Name = "hot", Kind = VeKind.Vm, LimitBytes = ByteSize.GiB, MaxBytes = 2 * ByteSize.GiB,
            GuaranteeBytes = 400 * ByteSize.MiB, OverheadBytes = MemoryAccounting.Overhead(VeKind.Vm, ByteSize.GiB),
            UsageBytes = 1000 * ByteSize.MiB, TargetBytes = ByteSize.GiB, StallMicroseconds = 300_000,
        };
        var t = new MemoryTelemetry(new HostMemoryTelemetry(8 * ByteSize.GiB, 0, 4 * ByteSize.GiB, 0), [vm], TimeSpan.FromSeconds(1));
        var dense = MemoryBalancer.Decide(new DensityMemoryPolicy(), t, MemoryPolicyState.Empty).For(vm.Id)!;
        dense.TargetBytes.Should().BeGreaterThan(ByteSize.GiB, "a stalling VM that can hotplug grows past what is plugged")
            .And.BeLessThanOrEqualTo(2 * ByteSize.GiB, "never past its maximum memory");
        Internal.LocalMemoryHost.DimmFor(ByteSize.GiB, dense.TargetBytes, vm.CeilingBytes).Should().BePositive("the manager plugs a DIMM for it");
        MemoryBalancer.Decide(new StaticMemoryPolicy(), t, MemoryPolicyState.Empty).For(vm.Id)!.TargetBytes.Should().Be(ByteSize.GiB, "static never hotplugs");
        var noHotplug = t with { Ves = [vm with { MaxBytes = null }] };
        MemoryBalancer.Decide(new DensityMemoryPolicy(), noHotplug, MemoryPolicyState.Empty).For(vm.Id)!.TargetBytes.Should().Be(ByteSize.GiB, "without hotplug the plugged RAM is the ceiling");
    }

    [Fact]
    public void Density_grows_a_hotplug_vm_whose_guest_reports_it_is_short_though_the_host_sees_no_stall_and_probes_one_with_room_down()
    {
        var vm = new VeMemoryTelemetry
        {
            Id = VeId.New(), Name = "short", Kind = VeKind.Vm, LimitBytes = 384 * ByteSize.MiB, MaxBytes = ByteSize.GiB,
            GuaranteeBytes = 150 * ByteSize.MiB, OverheadBytes = MemoryAccounting.Overhead(VeKind.Vm, 384 * ByteSize.MiB),
            UsageBytes = 350 * ByteSize.MiB, TargetBytes = 384 * ByteSize.MiB, StallMicroseconds = 0, GuestAvailableBytes = 20 * ByteSize.MiB,
        };
        DensityMemoryPolicy.IsGuestShort(vm).Should().BeTrue();
        var t = new MemoryTelemetry(new HostMemoryTelemetry(8 * ByteSize.GiB, 0, 4 * ByteSize.GiB, 0), [vm], TimeSpan.FromSeconds(1));
        var grown = MemoryBalancer.Decide(new DensityMemoryPolicy(), t, MemoryPolicyState.Empty).For(vm.Id)!;
        grown.TargetBytes.Should().BeGreaterThan(384 * ByteSize.MiB, "a guest short of memory is pressure even without a host stall");
        Internal.LocalMemoryHost.DimmFor(384 * ByteSize.MiB, grown.TargetBytes, vm.CeilingBytes).Should().BePositive("the manager plugs a DIMM for it");

        var roomy = vm with { UsageBytes = 100 * ByteSize.MiB, GuestAvailableBytes = 280 * ByteSize.MiB };
        DensityMemoryPolicy.IsGuestShort(roomy).Should().BeFalse();
        MemoryBalancer.Decide(new DensityMemoryPolicy(), t with { Ves = [roomy] }, MemoryPolicyState.Empty).For(vm.Id)!.TargetBytes
            .Should().BeLessThan(384 * ByteSize.MiB, "a guest with memory to spare is probed down");
        DensityMemoryPolicy.IsGuestShort(vm with { GuestAvailableBytes = null }).Should().BeFalse("without the guest's report only the host's stall counts");
    }

    [Fact]
    public void No_policy_sets_a_target_above_a_ve_s_ceiling_and_only_density_goes_above_the_limit()
        => CheckAll(seed =>
        {
            var r = new Random(seed);
            var t = RandomHost(seed);
            t = t with { Ves = t.Ves.Select(v => v.Kind == VeKind.Vm && r.Next(2) == 0 ? v with { MaxBytes = v.LimitBytes * 2 } : v).ToList() };
            return MemoryPolicies.Names.All(name =>
            {
                var plan = MemoryBalancer.Decide(MemoryPolicies.Create(name), t, MemoryPolicyState.Empty);
                return t.Ves.Where(v => v.Active).All(v => plan.For(v.Id)!.TargetBytes <= (name == "density" ? v.CeilingBytes : v.LimitBytes));
            });
        });

    [Fact]
    public void Density_never_probes_a_hard_target_below_what_the_container_uses()
        => CheckAll(seed =>
        {
            var t = RandomHost(seed);
            t = t with { Host = t.Host with { AvailableBytes = long.MaxValue / 4 } };
            var plan = MemoryBalancer.Decide(new DensityMemoryPolicy(), t, MemoryPolicyState.Empty);
            return t.Ves.Where(v => v.Active && v.HardTarget).All(v =>
                plan.For(v.Id)!.TargetBytes >= Math.Min(v.LimitBytes, MemoryBalancer.Align(v.UsageBytes + DensityMemoryPolicy.HardStep(v))) - MemoryBalancer.AlignmentBytes);
        });

    [Fact]
    public void Performance_protects_80_percent_of_a_vm_when_the_host_can_afford_it()
    {
        var vm = new VeMemoryTelemetry { Id = VeId.New(), Name = "vm", Kind = VeKind.Vm, LimitBytes = ByteSize.GiB, OverheadBytes = MemoryAccounting.Overhead(VeKind.Vm, ByteSize.GiB) };
        var t = new MemoryTelemetry(new HostMemoryTelemetry(8 * ByteSize.GiB, 0, 4 * ByteSize.GiB, 0), [vm], TimeSpan.FromSeconds(1));
        var plan = MemoryBalancer.Decide(new PerformanceMemoryPolicy(), t, MemoryPolicyState.Empty);
        plan.For(vm.Id)!.ProtectionBytes.Should().Be(MemoryAccounting.GuaranteeBytes(ByteSize.GiB, 80) + vm.OverheadBytes);
        plan.For(vm.Id)!.TargetBytes.Should().Be(ByteSize.GiB);
    }
}
