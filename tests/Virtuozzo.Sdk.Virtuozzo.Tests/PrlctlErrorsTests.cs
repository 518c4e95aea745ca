using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// The error table: prlctl's exit codes (<c>prlerr2exitcode</c>, reference §3.1: 253 dispatcher unreachable, 254 frozen,
/// 255 anything else) and its messages (<c>Failed to … : &lt;dispatcher message&gt;</c>) to the SDK's exceptions.
/// </summary>
public class PrlctlErrorsTests
{
    private static VirtuozzoException Map(int exit, string stderr, string stdout = "")
        => PrlctlErrors.Map("prlctl start web1", exit, stdout, stderr, "node1");

    [Fact]
    public void Exit_253_is_a_connection_error_that_says_how_to_start_the_service()
        => Map(253, PrlctlFixtures.Banner + "Failed to login to the server: Unable to connect to Virtuozzo. You may experience a connection problem or the server may be down.")
            .Should().BeOfType<HostConnectionException>().Which.Message.Should().Contain("prl-disp-service");

    [Fact]
    public void Exit_254_is_a_frozen_VE()
        => Map(254, "Failed to start the CT: The VE is frozen").Should().BeOfType<InvalidStateException>()
            .Which.InnerException.Should().BeOfType<CommandFailedException>().Which.ExitCode.Should().Be(254);

    [Theory]
    [InlineData("The web1 virtual machine does not exist.")]
    [InlineData("Failed to get VM config: The virtual machine could not be found.")]
    [InlineData("Unable to find the CT web1")]
    public void A_missing_VE_is_not_found(string message)
        => Map(255, PrlctlFixtures.Banner + message).Should().BeOfType<NotFoundException>().Which.Message.Should().Contain("prlctl start web1");

    [Theory]
    [InlineData("Failed to start the CT: The CT is already running.")]
    [InlineData("Failed to suspend the VM: The virtual machine is not running.")]
    public void A_VE_in_the_wrong_state_is_an_invalid_state(string message)
        => Map(255, message).Should().BeOfType<InvalidStateException>();

    [Fact]
    public void A_name_in_use_is_already_exists()
        => Map(255, "Failed to create the CT: The CT with name web1 already exists.").Should().BeOfType<AlreadyExistsException>();

    [Theory]
    [InlineData("Failed to start the VM: Unable to start the VE: the memory guarantee cannot be met.")]
    [InlineData("Failed to start the CT: Not enough memory to start the CT.")]
    public void A_guarantee_the_node_cannot_meet_is_insufficient_resources(string message)
        => Map(255, message).Should().BeOfType<InsufficientResourcesException>().Which.Message.Should().Contain("memory guarantee");

    [Fact]
    public void Any_other_failure_is_a_command_failure_with_the_command_exit_code_and_message_without_the_banner()
    {
        var e = Map(255, PrlctlFixtures.Banner + "Failed to configure the VM: Operation failed.").Should().BeOfType<CommandFailedException>().Subject;
        e.ExitCode.Should().Be(255);
        e.CommandLine.Should().Be("prlctl start web1");
        e.StandardErrorTail.Should().Be("Failed to configure the VM: Operation failed.");
        e.Message.Should().NotContain("deprecated");
    }

    [Fact]
    public void A_message_printed_on_standard_output_is_used_when_standard_error_has_only_the_banner()
        => Map(255, PrlctlFixtures.Banner, stdout: "The web1 virtual machine does not exist.").Should().BeOfType<NotFoundException>();

    [Theory]
    [InlineData("ssh: connect to host 10.0.0.9 port 22: Connection refused")]
    [InlineData("Host key verification failed.")]
    [InlineData("root@node1: Permission denied (publickey,gssapi-keyex).")]
    [InlineData("ssh: Could not resolve hostname node9: Name or service not known")]
    public void Ssh_failing_to_reach_the_node_with_its_own_exit_255_is_a_connection_error(string message)
        => Map(255, message).Should().BeOfType<HostConnectionException>().Which.Message.Should().Contain("node1");

    [Fact]
    public void A_missing_prlctl_over_SSH_is_a_missing_tool()
        => Map(127, "bash: prlctl: command not found").Should().BeOfType<ToolNotFoundException>().Which.Tool.Should().Be("prlctl");

    [Fact]
    public void The_banners_of_prlctl_and_vzctl_are_removed_and_nothing_else()
        => PrlctlErrors.WithoutBanner(PrlctlFixtures.Banner + "Warning: The 'set' action is deprecated\nreal error\n").Should().Be("real error");
}
