using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Core;

public class HostHealthCheckTests
{
    [IntegrationFact("runc", "qemu-system-x86_64", "qemu-img", "qemu-storage-daemon", Root = true)]
    public async Task The_real_host_with_the_sdks_tools_passes_its_health_check_through_the_health_check_service()
    {
        using var root = new TempDirectory();
        var services = new ServiceCollection();
        services.AddSingleton(typeof(ILogger<>), typeof(NullLogger<>)); // the health check service logs
        services.AddVirtuozzoSdk(o => o.DataRoot = root.Path);
        services.AddHealthChecks().AddVirtuozzoHost();
        await using var provider = services.BuildServiceProvider();

        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        var entry = report.Entries["virtuozzo-host"];
        // KVM guests hang on some CI machines: that degrades the host, it does not fail it.
        entry.Status.Should().NotBe(HealthStatus.Unhealthy, entry.Description);
        entry.Data["tool:runc"].Should().NotBe("missing");
        entry.Data["kernel"].Should().BeOfType<string>().Which.Should().NotBeEmpty();
        ((string)entry.Data["kvm"]).Should().MatchRegex("^(usable|unusable: .+)$");
        Directory.EnumerateFileSystemEntries(root.Path, ".vzsdk-health-*").Should().BeEmpty("the probe file is removed");
    }

    [IntegrationFact("runc", Root = true)]
    public async Task A_data_root_on_a_read_only_path_makes_the_real_host_unhealthy()
    {
        var services = new ServiceCollection();
        services.AddSingleton(typeof(ILogger<>), typeof(NullLogger<>)); // the health check service logs
        services.AddVirtuozzoSdk(o => o.DataRoot = "/proc/vzsdk-health-readonly");
        services.AddHealthChecks().AddVirtuozzoHost(options: new VirtuozzoHostHealthCheckOptions { ProbeKvmAndCriu = false });
        await using var provider = services.BuildServiceProvider();

        var entry = (await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync()).Entries["virtuozzo-host"];
        entry.Status.Should().Be(HealthStatus.Unhealthy);
        entry.Description.Should().Contain("'/proc/vzsdk-health-readonly' is not writable");
    }
}
