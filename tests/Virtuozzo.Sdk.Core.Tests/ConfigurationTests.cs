using System.ComponentModel;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Virtuozzo.Sdk.Core.Tests;

public class ConfigurationTests
{
    private static IConfigurationSection Section(params (string Key, string? Value)[] values)
        => new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>("Virtuozzo:" + v.Key, v.Value)))
            .Build()
            .GetSection("Virtuozzo");

    private static VirtuozzoSdkOptions Resolve(IConfiguration configuration)
    {
        using var provider = new ServiceCollection().AddVirtuozzoSdk(configuration).Services.BuildServiceProvider();
        return provider.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
    }

    [Fact]
    public void The_example_appsettings_file_binds_every_value_including_a_size_with_a_suffix()
    {
        #region Snippet:ConfigurationBinding
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "Configuration", "appsettings.json"))
            .Build();

        var services = new ServiceCollection();
        services.AddVirtuozzoSdk(configuration.GetSection("Virtuozzo"));
        #endregion

        using var provider = services.BuildServiceProvider();
        var o = provider.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
        o.DataRoot.Should().Be("/srv/vzsdk");
        o.HostMemoryReserve.Should().Be(ByteSize.FromMiB(512), "\"512M\" is a size, not something to drop silently");
        o.LockTimeout.Should().Be(TimeSpan.FromMinutes(1));
        o.BridgeNat.Should().BeTrue();
        o.Runtime.Should().Be(RuntimeKind.Local);
        o.Local.EmulatorPath.Should().Be("/usr/bin/qemu-system-x86_64");
    }

    [Theory]
    [InlineData("512M", 512L << 20)]
    [InlineData("2g", 2L << 30)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("4096", 4096L)]
    public void A_host_memory_reserve_binds_from_text_with_binary_suffixes(string text, long bytes)
        => Resolve(Section(("HostMemoryReserve", text))).HostMemoryReserve.Should().Be(ByteSize.FromBytes(bytes));

    [Fact]
    public void A_host_memory_budget_binds_from_text_and_an_empty_value_means_none()
    {
        Resolve(Section(("HostMemoryBudget", "3G"))).HostMemoryBudget.Should().Be(ByteSize.FromGiB(3));
        Resolve(Section(("HostMemoryBudget", ""))).HostMemoryBudget.Should().BeNull();
    }

    [Fact]
    public void A_bad_size_fails_validation_at_start_naming_the_key()
    {
        var services = new ServiceCollection().AddVirtuozzoSdk(Section(("HostMemoryReserve", "512Q"))).Services;
        using var provider = services.BuildServiceProvider();
        // What a generic host runs at start for ValidateOnStart.
        var act = () => provider.GetRequiredService<IStartupValidator>().Validate();
        act.Should().Throw<OptionsValidationException>().WithMessage("*Virtuozzo:HostMemoryReserve*'512Q' is not a size*");
    }

    [Fact]
    public void Every_value_that_does_not_convert_and_every_unknown_key_is_named_by_its_path()
    {
        var act = () => Resolve(Section(
            ("LockTimeout", "soon"), ("BridgeNat", "maybe"), ("Runtime", "Xen"), ("HostMemoryReserv", "1G"),
            ("RemoteHost:HostName", "node1"), ("RemoteHost:KnownHostsFile", "/tmp/kh"), ("RemoteHost:Port", "ssh")));
        var ex = act.Should().Throw<OptionsValidationException>().Which;
        ex.Failures.Should().Contain(f => f.StartsWith("Virtuozzo:LockTimeout: 'soon'", StringComparison.Ordinal));
        ex.Failures.Should().Contain(f => f.StartsWith("Virtuozzo:BridgeNat: 'maybe'", StringComparison.Ordinal));
        ex.Failures.Should().Contain(f => f.StartsWith("Virtuozzo:Runtime: 'Xen'", StringComparison.Ordinal));
        ex.Failures.Should().Contain(f => f.StartsWith("Virtuozzo:HostMemoryReserv: the SDK has no such setting", StringComparison.Ordinal));
        ex.Failures.Should().Contain(f => f.StartsWith("Virtuozzo:RemoteHost:Port: 'ssh'", StringComparison.Ordinal));
    }

    [Fact]
    public void A_value_that_converts_but_is_invalid_is_named_with_the_section_path()
    {
        var act = () => Resolve(Section(("DataRoot", "relative/path")));
        act.Should().Throw<OptionsValidationException>().WithMessage("*Virtuozzo:DataRoot must be an absolute path*");
    }

    [Fact]
    public void The_remote_host_section_binds_into_ssh_host_options()
    {
        var section = Section(("DataRoot", "/tmp/x"), ("RemoteHost:HostName", "node1.example"), ("RemoteHost:Port", "2222"),
            ("RemoteHost:KnownHostsFile", "/etc/vzsdk/known_hosts"), ("RemoteHost:AcceptNewHostKey", "true"), ("RemoteHost:ConnectTimeout", "00:00:05"));
        var remote = Resolve(section).RemoteHost;
        remote.Should().NotBeNull();
        remote!.HostName.Should().Be("node1.example");
        remote.Port.Should().Be(2222);
        remote.KnownHostsFile.Should().Be("/etc/vzsdk/known_hosts");
        remote.AcceptNewHostKey.Should().BeTrue();
        remote.ConnectTimeout.Should().Be(TimeSpan.FromSeconds(5));
        remote.User.Should().Be("root", "keys that are not set keep their defaults");
    }

    [Fact]
    public void Code_configuration_applies_on_top_of_the_bound_section()
    {
        using var provider = new ServiceCollection()
            .AddVirtuozzoSdk(Section(("DataRoot", "/srv/a"), ("BridgeName", "br1")), o => o.DataRoot = "/srv/b")
            .Services.BuildServiceProvider();
        var o = provider.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
        o.DataRoot.Should().Be("/srv/b");
        o.BridgeName.Should().Be("br1");
    }

    [Fact]
    public void Every_settable_option_is_a_key_the_binder_knows()
    {
        // A new option must be bound from configuration too: set every one and expect no "no such setting" error.
        var keys = typeof(VirtuozzoSdkOptions).GetProperties().Where(p => p.CanWrite && p.SetMethod!.IsPublic).Select(p => p.Name).ToList();
        keys.Should().Contain(["DataRoot", "HostMemoryReserve", "Local", "RemoteHost"]);
        var values = keys.Where(k => k is not ("Local" or "RemoteHost")).Select(k => (k, (string?)"x")).ToList();
        values.Add(("Local:EmulatorPath", "/x"));
        values.AddRange(typeof(Virtuozzo.Sdk.Core.Hosts.SshHostOptions).GetProperties().Where(p => p.CanWrite).Select(p => ("RemoteHost:" + p.Name, (string?)"x")));
        var act = () => Resolve(Section([.. values]));
        act.Should().Throw<OptionsValidationException>().Which.Failures.Should().NotContain(f => f.Contains("no such setting", StringComparison.Ordinal));
    }

    [Fact]
    public void The_byte_size_type_converter_lets_the_reflection_binder_bind_sizes()
    {
        TypeDescriptor.GetConverter(typeof(ByteSize)).Should().BeOfType<ByteSizeConverter>();
        // Before the converter, the standard binder left "512M" as null without a word.
        var bound = Section(("HostMemoryReserve", "512M")).Get<SizeHolder>();
        bound!.HostMemoryReserve.Should().Be(ByteSize.FromMiB(512));
        var bad = () => Section(("HostMemoryReserve", "lots")).Get<SizeHolder>();
        bad.Should().Throw<InvalidOperationException>().WithMessage("*Virtuozzo:HostMemoryReserve*");
        TypeDescriptor.GetConverter(typeof(ByteSize)).ConvertToInvariantString(ByteSize.FromGiB(2)).Should().Be("2G");
    }

    private sealed class SizeHolder
    {
        public ByteSize? HostMemoryReserve { get; set; }
    }
}
