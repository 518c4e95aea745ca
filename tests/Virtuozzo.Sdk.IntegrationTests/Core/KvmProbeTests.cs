using System.Diagnostics;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Core;

public class KvmProbeTests
{
    private readonly LocalHost _host = new();

    [IntegrationFact("qemu-system-x86_64")]
    public async Task The_probe_guest_runs_to_its_exit_port_under_tcg()
    {
        var status = await HostProber.ProbeAcceleratorAsync(_host, "tcg", HostProber.ProbeGuest(hang: false), TimeSpan.FromSeconds(20), CancellationToken.None);
        status.Usable.Should().BeTrue(status.Reason);
        status.Reason.Should().Contain("booted and exited");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task An_accelerator_whose_guest_hangs_is_reported_unusable_within_the_timeout_not_hung()
    {
        var sw = Stopwatch.StartNew();
        var status = await HostProber.ProbeAcceleratorAsync(_host, "tcg", HostProber.ProbeGuest(hang: true), TimeSpan.FromSeconds(2), CancellationToken.None);
        sw.Stop();
        status.Usable.Should().BeFalse();
        status.Reason.Should().Contain("did not finish within 2 s");
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(15));
        ProbeQemuProcesses().Should().BeEmpty("the hung guest's QEMU was killed");
        Directory.GetDirectories("/tmp", "vzsdk-probe.*").Should().BeEmpty("the probe removes its guest image");
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task The_host_reports_a_definite_kvm_verdict_in_bounded_time_and_caches_it_for_the_boot()
    {
        var sw = Stopwatch.StartNew();
        var caps = await _host.GetCapabilitiesAsync(new CapabilityProbeOptions { RefreshKvmProbe = true });
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(30));
        caps.Kvm.Reason.Should().NotBeNullOrWhiteSpace();
        if (File.Exists("/dev/kvm"))
        {
            File.Exists(HostProber.KvmCachePath).Should().BeTrue();
            var cached = Stopwatch.StartNew();
            var again = await _host.GetCapabilitiesAsync();
            again.Kvm.Should().Be(caps.Kvm);
            cached.Elapsed.Should().BeLessThan(sw.Elapsed + TimeSpan.FromSeconds(1));
        }
        else
        {
            caps.Kvm.Usable.Should().BeFalse();
            caps.Kvm.Reason.Should().Contain("/dev/kvm");
        }
    }

    private static List<int> ProbeQemuProcesses()
    {
        var found = new List<int>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.Contains("qemu-system") && cmdline.Contains("vzsdk-probe"))
                    found.Add(int.Parse(Path.GetFileName(dir)));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        }
        return found;
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "runc")]
    public async Task The_host_reports_kernel_cgroups_memory_cpus_and_tool_versions()
    {
        var caps = await _host.GetCapabilitiesAsync(new CapabilityProbeOptions { SkipProbes = true });
        caps.Kernel.Should().Be((await File.ReadAllTextAsync("/proc/sys/kernel/osrelease")).Trim());
        caps.Cpus.Should().Be(Environment.ProcessorCount);
        caps.MemoryBytes.Should().BeGreaterThan(256L << 20);
        caps.Cgroup.Should().NotBe(CgroupLayout.None);
        caps.Tools["qemu-img"].Should().MatchRegex(@"^\d+\.\d+");
        caps.Tools["runc"].Should().MatchRegex(@"^\d+\.\d+");
        caps.Kvm.Reason.Should().Be("not probed");
    }
}
