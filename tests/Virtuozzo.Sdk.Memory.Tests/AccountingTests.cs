using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory.Tests;

public class AccountingTests
{
    [Fact]
    public void A_vm_costs_64_MiB_plus_8_bytes_per_4_KiB_page_besides_its_ram()
    {
        MemoryAccounting.Overhead(VeKind.Vm, ByteSize.GiB).Should().Be(64 * ByteSize.MiB + 262144 * 8);
        MemoryAccounting.Overhead(VeKind.Vm, 4 * ByteSize.GiB).Should().Be(64 * ByteSize.MiB + 8 * ByteSize.MiB);
    }

    [Fact]
    public void A_container_costs_nothing_besides_its_memory()
        => MemoryAccounting.Overhead(VeKind.Container, ByteSize.GiB).Should().Be(0);

    [Fact]
    public void The_host_reserve_is_a_share_of_ram_clamped_to_its_bounds()
    {
        HostMemoryReserve.Default.For(24 * ByteSize.GiB).Should().Be(320 * ByteSize.MiB);
        HostMemoryReserve.Default.For(ByteSize.GiB).Should().Be(128 * ByteSize.MiB);
        new HostMemoryReserve(0.10, 0, long.MaxValue).For(10 * ByteSize.GiB).Should().Be(ByteSize.GiB);
    }

    [Fact]
    public void A_budget_caps_the_memory_available_to_ves()
    {
        MemoryAccounting.Available(24 * ByteSize.GiB, HostMemoryReserve.Default).Should().Be(24 * ByteSize.GiB - 320 * ByteSize.MiB);
        MemoryAccounting.Available(24 * ByteSize.GiB, HostMemoryReserve.Default, 3 * ByteSize.GiB).Should().Be(3 * ByteSize.GiB);
    }

    [Fact]
    public void An_inactive_ve_counts_its_resident_memory_when_that_is_more_than_its_minimum()
    {
        MemoryAccounting.Charge(100, 300, active: false).Should().Be(300);
        MemoryAccounting.Charge(100, 300, active: true).Should().Be(100);
        MemoryAccounting.Charge(500, 300, active: false).Should().Be(500);
    }

    [Fact]
    public void Admission_refuses_a_raise_that_does_not_fit_and_always_allows_a_cut()
    {
        MemoryAccounting.Admits(1000, 600, 100, 400).Should().BeTrue();
        MemoryAccounting.Admits(1000, 600, 100, 401).Should().BeFalse();
        MemoryAccounting.Admits(1000, 2000, 500, 100).Should().BeTrue();
    }

    [Fact]
    public void A_guarantee_in_percent_does_not_overflow_on_huge_sizes()
        => MemoryAccounting.GuaranteeBytes(long.MaxValue / 2, 80).Should().BeGreaterThan(0);

    [Fact]
    public void Unknown_policy_names_are_refused_with_the_list_of_policies()
        => FluentActions.Invoking(() => MemoryPolicies.Create("fast")).Should().Throw<ArgumentException>().WithMessage("*static, performance, density, wfb, senpai*");
}

public class HotplugTests
{
    [Theory]
    [InlineData(1024, 1024, 0)]
    [InlineData(1024, 900, 0)]
    [InlineData(1024, 1025, 128)]
    [InlineData(1024, 1300, 384)]
    public void A_target_above_the_plugged_ram_asks_for_dimms_in_128_MiB_steps(long pluggedMiB, long targetMiB, long dimmMiB)
        => Internal.LocalMemoryHost.DimmFor(pluggedMiB << 20, targetMiB << 20).Should().Be(dimmMiB << 20);

    [Theory]
    [InlineData(1024, 1300, 1536, 384)]
    [InlineData(1024, 1500, 1536, 512)]
    [InlineData(1024, 1600, 1536, 512)]
    [InlineData(1536, 1600, 1536, 0)]
    public void A_dimm_never_takes_a_vm_past_its_maximum_memory(long pluggedMiB, long targetMiB, long maxMiB, long dimmMiB)
        => Internal.LocalMemoryHost.DimmFor(pluggedMiB << 20, targetMiB << 20, maxMiB << 20).Should().Be(dimmMiB << 20);
}
