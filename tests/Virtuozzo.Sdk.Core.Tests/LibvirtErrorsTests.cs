using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Libvirt;

namespace Virtuozzo.Sdk.Core.Tests;

/// <summary>libvirt's <c>virError</c> codes (include/libvirt/virterror.h) mapped to the SDK's exceptions, and URIs checked before libvirt sees them.</summary>
public sealed class LibvirtErrorsTests
{
    [Theory]
    [InlineData(42, typeof(NotFoundException))]
    [InlineData(72, typeof(NotFoundException))]
    [InlineData(28, typeof(AlreadyExistsException))]
    [InlineData(55, typeof(InvalidStateException))]
    [InlineData(87, typeof(InvalidStateException))]
    [InlineData(86, typeof(InvalidStateException))]
    [InlineData(84, typeof(UnsupportedOnHostException))]
    [InlineData(67, typeof(UnsupportedOnHostException))]
    [InlineData(38, typeof(VirtuozzoException))]
    [InlineData(45, typeof(HostConnectionException))]
    [InlineData(39, typeof(HostConnectionException))]
    [InlineData(68, typeof(TimeoutException))]
    public void Libvirt_errors_map_to_the_SDKs_exceptions_with_code_and_message(int code, Type expected)
    {
        var e = LibvirtErrors.Map(code, 10, "Requested operation is not valid: domain is not running", "Pausing the VM web1");
        e.Should().BeOfType(expected);
        e.Message.Should().StartWith("Pausing the VM web1 failed: Requested operation is not valid").And.Contain($"libvirt error {code}, domain 10");
        e.Data["libvirt.code"].Should().Be(code);
    }

    [Theory]
    [InlineData("qemu:///system", true, null)]
    [InlineData("qemu+unix:///system", true, null)]
    [InlineData("qemu+ssh://root@host/system", false, null)]
    [InlineData("vz+ssh://root@node/system", false, null)]
    [InlineData("", false, "empty")]
    [InlineData("system", false, "no scheme")]
    [InlineData("qe mu:///system", false, "scheme")]
    [InlineData("qemu:///sys tem", false, "spaces")]
    public void Uris_are_checked_before_they_reach_libvirt(string uri, bool local, string? problem)
    {
        var result = LibvirtConnection.ValidateUri(uri);
        if (problem is null)
        {
            result.Should().BeNull();
            LibvirtConnection.IsLocalUri(uri).Should().Be(local);
        }
        else
        {
            result.Should().Contain(problem);
            FluentActions.Invoking(() => VirtuozzoRuntime.CreateLibvirt(uri)).Should().Throw<ArgumentException>();
        }
    }
}
