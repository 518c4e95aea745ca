using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Core.Tests;

/// <summary>Which addresses a VE may be given on the host bridge.</summary>
public class VeAddressTests
{
    [Theory]
    [InlineData("10.209.0.1/24", "own address")]
    [InlineData("10.209.0.0/24", "network address")]
    [InlineData("10.209.0.255/24", "broadcast address")]
    [InlineData("127.0.0.5/8", "loopback")]
    [InlineData("224.0.0.1/24", "multicast")]
    [InlineData("255.255.255.255/32", "broadcast")]
    [InlineData("0.0.0.0/8", "not a host address")]
    [InlineData("169.254.1.1/16", "link-local")]
    public void Addresses_no_container_can_use_are_refused_with_the_reason(string address, string reason)
    {
        var bridge = new HostBridge(new LocalHost(), "vzbr0", "10.209.0.1/24");
        bridge.ProblemWithVeAddress(address).Should().Contain(reason);
    }

    [Theory]
    [InlineData("10.209.0.2/24")]
    [InlineData("192.168.7.10/24")]
    public void Ordinary_addresses_are_accepted(string address)
        => new HostBridge(new LocalHost(), "vzbr0", "10.209.0.1/24").ProblemWithVeAddress(address).Should().BeNull();

    [Theory]
    [InlineData("10.209.0.2")]
    [InlineData("10.209.0.2/33")]
    [InlineData("fe80::1/64")]
    [InlineData("10.209.2/24")]
    public void Malformed_addresses_are_caller_mistakes(string address)
        => ((Action)(() => new HostBridge(new LocalHost()).ProblemWithVeAddress(address))).Should().Throw<ArgumentException>();

}
