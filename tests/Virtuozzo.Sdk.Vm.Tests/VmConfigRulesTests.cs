using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Tests;

public class VmConfigRulesTests
{
    private static readonly long HostRam = ByteSize.FromGiB(16).Bytes;

    private static VmConfig Make(VmCreateOptions o, int hostCpus = 2, long? hostRam = null)
        => VmConfigRules.FromCreateOptions(o, Guid.Parse("0a1b2c3d-0000-0000-0000-000000000001"), DateTimeOffset.UnixEpoch, hostCpus, hostRam ?? HostRam);

    [Fact]
    public void A_new_vm_defaults_to_one_cpu_1_GiB_an_80_percent_guarantee_and_bridged_networking()
    {
        var c = Make(new VmCreateOptions { Name = new VeName("web") });
        c.Cpus.Should().Be(1);
        c.MaxCpus.Should().Be(2, "the maximum defaults to the host's CPU count");
        c.MemoryBytes.Should().Be(ByteSize.GiB);
        c.MemoryGuaranteePercent.Should().Be(80);
        c.MemoryHotplug.Should().BeFalse();
        c.MaxMemoryBytes.Should().Be(ByteSize.GiB);
        c.Network.Should().Be(VmNetworkMode.Bridged);
        c.MacAddress.Should().MatchRegex("^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$");
        c.BootOrder.Should().Equal(VmBootDevice.Disk, VmBootDevice.Cdrom);
    }

    [Fact]
    public void Memory_hotplug_defaults_to_four_times_memory_capped_at_host_ram_with_eight_slots()
    {
        var c = Make(new VmCreateOptions { Name = new VeName("m"), MemorySize = ByteSize.FromGiB(2), MemoryHotplug = true });
        c.MaxMemoryBytes.Should().Be(8 * ByteSize.GiB);
        c.MemorySlots.Should().Be(8);
        var capped = Make(new VmCreateOptions { Name = new VeName("m"), MemorySize = ByteSize.FromGiB(2), MemoryHotplug = true }, hostRam: 5 * ByteSize.GiB + 3 * ByteSize.MiB);
        capped.MaxMemoryBytes.Should().Be(5 * ByteSize.GiB, "the cap is rounded down to 128 MiB");
    }

    [Fact]
    public void Memory_hotplug_is_refused_below_1_GiB_and_allowed_at_exactly_1_GiB()
    {
        var small = () => Make(new VmCreateOptions { Name = new VeName("s"), MemorySize = ByteSize.FromMiB(1023), MemoryHotplug = true });
        small.Should().Throw<ArgumentException>().WithMessage("*at least 1 GiB*");
        Make(new VmCreateOptions { Name = new VeName("s"), MemorySize = ByteSize.FromGiB(1), MemoryHotplug = true }).MemoryHotplug.Should().BeTrue();
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("3f2504e0-4f89-11d3-9a0c-0305e82c3301")]
    public void Bad_names_are_refused(string name)
        => ((Action)(() => Make(new VmCreateOptions { Name = new VeName(name) }))).Should().Throw<ArgumentException>();

    [Fact]
    public void Bad_settings_are_refused_with_argument_errors()
    {
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), Cpus = 0 }))).Should().Throw<ArgumentOutOfRangeException>();
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), Cpus = 4, MaxCpus = 2 }))).Should().Throw<ArgumentOutOfRangeException>();
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), MemorySize = ByteSize.FromMiB(32) }))).Should().Throw<ArgumentOutOfRangeException>();
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), MemoryGuaranteePercent = 101 }))).Should().Throw<ArgumentOutOfRangeException>();
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), MaxMemory = ByteSize.FromGiB(4) }))).Should().Throw<ArgumentException>().WithMessage("*need MemoryHotplug*");
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), InitrdPath = "/etc/hostname" }))).Should().Throw<ArgumentException>().WithMessage("*needs a kernel*");
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), KernelPath = "/no/such/kernel" }))).Should().Throw<ArgumentException>().WithMessage("*does not exist*");
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), CpuMask = "1-0" }))).Should().Throw<ArgumentException>();
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), Disks = [new VmDiskOptions()] }))).Should().Throw<ArgumentException>();
        ((Action)(() => Make(new VmCreateOptions { Name = new VeName("x"), BootOrder = [VmBootDevice.Disk, VmBootDevice.Disk] }))).Should().Throw<ArgumentException>();
    }

    [Theory]
    [InlineData("0", new[] { 0 })]
    [InlineData("0-2,5", new[] { 0, 1, 2, 5 })]
    [InlineData("3,1", new[] { 1, 3 })]
    public void Cpu_lists_parse_like_the_kernels(string text, int[] cpus)
        => VmConfigRules.ParseCpuList(text).Should().Equal(cpus);

    [Theory]
    [InlineData("")]
    [InlineData("a")]
    [InlineData("2-1")]
    [InlineData("-1")]
    [InlineData("0,,1")]
    public void Malformed_cpu_lists_are_refused(string text)
        => ((Action)(() => VmConfigRules.ParseCpuList(text))).Should().Throw<ArgumentException>();

    private static VmConfig Hotplug(long memGiB = 1) => Make(new VmCreateOptions { Name = new VeName("h"), MemorySize = ByteSize.FromGiB(memGiB), MemoryHotplug = true, MaxMemory = ByteSize.FromGiB(4) });

    [Fact]
    public void Growing_within_the_plugged_memory_only_deflates_the_balloon()
        => VmConfigRules.PlanMemoryChange(Hotplug(), ByteSize.GiB + 256 * ByteSize.MiB, 1, ByteSize.GiB + 128 * ByteSize.MiB)
            .Should().Be((0L, ByteSize.GiB + 128 * ByteSize.MiB));

    [Fact]
    public void Growing_past_the_plugged_memory_adds_a_dimm_rounded_up_to_128_MiB()
        => VmConfigRules.PlanMemoryChange(Hotplug(), ByteSize.GiB, 0, ByteSize.GiB + 200 * ByteSize.MiB)
            .Should().Be((256 * ByteSize.MiB, ByteSize.GiB + 200 * ByteSize.MiB));

    [Fact]
    public void Shrinking_inflates_the_balloon_even_without_hotplug()
    {
        var c = Make(new VmCreateOptions { Name = new VeName("n"), MemorySize = ByteSize.FromGiB(2) });
        VmConfigRules.PlanMemoryChange(c, 2 * ByteSize.GiB, 0, ByteSize.GiB).Should().Be((0L, ByteSize.GiB));
    }

    [Fact]
    public void Growing_without_hotplug_past_the_maximum_or_without_a_free_slot_is_refused()
    {
        var noHotplug = Make(new VmCreateOptions { Name = new VeName("n"), MemorySize = ByteSize.FromGiB(2) });
        ((Action)(() => VmConfigRules.PlanMemoryChange(noHotplug, 2 * ByteSize.GiB, 0, 3 * ByteSize.GiB))).Should().Throw<InvalidStateException>().WithMessage("*hotplug is off*");
        ((Action)(() => VmConfigRules.PlanMemoryChange(Hotplug(), ByteSize.GiB, 0, 5 * ByteSize.GiB))).Should().Throw<ArgumentOutOfRangeException>();
        ((Action)(() => VmConfigRules.PlanMemoryChange(Hotplug(), 2 * ByteSize.GiB, 8, 3 * ByteSize.GiB))).Should().Throw<InsufficientResourcesException>();
    }

    [Fact]
    public void The_vm_overhead_is_64_MiB_plus_8_bytes_per_page()
        => Virtuozzo.Sdk.Vm.Runtime.Local.LocalVmDriver.Overhead(ByteSize.GiB).Should().Be(64 * ByteSize.MiB + ByteSize.GiB / 4096 * 8);
}
