using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Resources;

namespace Virtuozzo.Sdk.Core.Tests;

public class OptionsAndRegistrationTests
{
    [Fact]
    public void Registering_the_sdk_twice_adds_its_services_once()
    {
        var services = new ServiceCollection();
        services.AddVirtuozzoSdk(o => o.DataRoot = "/tmp/x");
        services.AddVirtuozzoSdk();
        services.Count(d => d.ServiceType == typeof(IVirtuozzoHost)).Should().Be(1);
        services.Count(d => d.ServiceType == typeof(ResourceLedger)).Should().Be(1);
        services.Count(d => d.ServiceType == typeof(IValidateOptions<VirtuozzoSdkOptions>)).Should().Be(1);
    }

    [Fact]
    public void The_local_runtime_and_host_are_resolved_by_default_and_a_remote_host_is_refused_by_name()
    {
        using var local = new ServiceCollection().AddVirtuozzoSdk(o => o.DataRoot = "/tmp/x").Services.BuildServiceProvider();
        local.GetRequiredService<IVirtuozzoHost>().Should().BeOfType<LocalHost>();
        local.GetRequiredService<VirtuozzoRuntime>().Kind.Should().Be(RuntimeKind.Local);
        local.GetRequiredService<VirtuozzoRuntime>().Should().BeSameAs(local.GetRequiredService<VirtuozzoRuntime>());
        local.GetRequiredService<Virtuozzo.Sdk.Core.Resources.ResourceLedger>().Should().BeSameAs(local.GetRequiredService<VirtuozzoRuntime>().Ledger, "every client shares the runtime's one ledger");

        using var remote = new ServiceCollection().AddVirtuozzoSdk(o =>
        {
            o.DataRoot = "/tmp/x";
            o.RemoteHost = new SshHostOptions { HostName = "node1.example", KnownHostsFile = "/tmp/kh" };
        }).Services.BuildServiceProvider();
        var act = () => remote.GetRequiredService<IVirtuozzoHost>();
        act.Should().Throw<UnsupportedOnHostException>().WithMessage("*local runtime*node1.example*");
    }

    [Fact]
    public void Invalid_options_fail_validation_with_every_problem_named()
    {
        using var sp = new ServiceCollection().AddVirtuozzoSdk(o =>
        {
            o.DataRoot = "relative/path";
            o.LockTimeout = TimeSpan.Zero;
            o.RemoteHost = new SshHostOptions { HostName = "-oProxyCommand=evil", KnownHostsFile = "/tmp/kh" };
        }).Services.BuildServiceProvider();
        var act = () => sp.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
        act.Should().Throw<OptionsValidationException>()
            .Where(e => e.Failures.Count() == 3 && e.Message.Contains("absolute") && e.Message.Contains("LockTimeout") && e.Message.Contains("not a valid SSH host name"));
    }

    [Fact]
    public void The_host_memory_reserve_defaults_to_four_percent_within_bounds()
    {
        var o = new VirtuozzoSdkOptions();
        o.GetHostMemoryReserve(24L << 30).Should().Be(320L << 20);
        o.GetHostMemoryReserve(1L << 30).Should().Be(128L << 20);
        o.GetHostMemoryReserve(5L << 30).Should().Be((5L << 30) / 25);
        o.HostMemoryReserve = ByteSize.FromGiB(1);
        o.GetHostMemoryReserve(24L << 30).Should().Be(1L << 30);
    }

    [Theory]
    [InlineData("", "/tmp/kh")]
    [InlineData("host name", "/tmp/kh")]
    [InlineData("user@host", "/tmp/kh")]
    [InlineData("host", "")]
    public void Ssh_options_that_could_inject_or_skip_host_key_checks_are_refused(string host, string knownHosts)
    {
        var act = () => new SshHost(new SshHostOptions { HostName = host, KnownHostsFile = knownHosts });
        act.Should().Throw<ArgumentException>();
    }
}
