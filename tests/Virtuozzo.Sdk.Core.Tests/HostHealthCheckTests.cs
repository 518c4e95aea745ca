using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Core.Tests;

public sealed class HostHealthCheckTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly FakeHost _host = new();

    public void Dispose() => _root.Dispose();

    private VirtuozzoHostHealthCheck Check(ResourceLedger? ledger = null, IReadOnlyCollection<VeId>? known = null, VirtuozzoHostHealthCheckOptions? options = null)
        => new(_host, _root.Path, ledger ?? new ResourceLedger(_root.Path, 8L << 30), _ => Task.FromResult(known ?? (IReadOnlyCollection<VeId>)[]), options);

    private static Task<HealthCheckResult> RunAsync(VirtuozzoHostHealthCheck check, HealthStatus failureStatus = HealthStatus.Unhealthy)
        => check.CheckHealthAsync(new HealthCheckContext { Registration = new HealthCheckRegistration("virtuozzo-host", check, failureStatus, null) });

    [Fact]
    public async Task A_host_with_its_tools_a_writable_data_root_and_a_consistent_ledger_is_healthy()
    {
        var r = await RunAsync(Check());
        r.Status.Should().Be(HealthStatus.Healthy, r.Description);
        r.Data["kernel"].Should().Be("6.1.0-test");
        r.Data["tool:runc"].Should().Be("1.1.5");
        _host.Written.Should().ContainSingle(p => p.StartsWith(_root.Path, StringComparison.Ordinal), "the data root is probed by writing to it");
        _host.Deleted.Should().Equal(_host.Written, "the probe file is removed");
    }

    [Fact]
    public async Task A_missing_required_tool_is_unhealthy_and_named_or_the_registrations_failure_status()
    {
        _host.Tools["qemu-storage-daemon"] = null;
        var r = await RunAsync(Check());
        r.Status.Should().Be(HealthStatus.Unhealthy);
        r.Description.Should().Contain("missing tools: qemu-storage-daemon");
        (await RunAsync(Check(), HealthStatus.Degraded)).Status.Should().Be(HealthStatus.Degraded);
    }

    [Fact]
    public async Task A_data_root_that_cannot_be_written_is_unhealthy_and_named()
    {
        _host.WriteFails = true;
        var r = await RunAsync(Check());
        r.Status.Should().Be(HealthStatus.Unhealthy);
        r.Description.Should().Contain($"the data root '{_root.Path}' is not writable");
    }

    [Fact]
    public async Task Kvm_that_does_not_work_degrades_the_host_unless_it_is_required()
    {
        _host.Kvm = new FeatureStatus(false, "the probe guest did not boot within 3 s");
        var r = await RunAsync(Check());
        r.Status.Should().Be(HealthStatus.Degraded);
        r.Description.Should().Contain("KVM does not work").And.Contain("did not boot");
        (await RunAsync(Check(options: new VirtuozzoHostHealthCheckOptions { RequireKvm = true }))).Status.Should().Be(HealthStatus.Unhealthy);
        (await RunAsync(Check(options: new VirtuozzoHostHealthCheckOptions { ProbeKvmAndCriu = false }))).Status.Should().Be(HealthStatus.Healthy);
    }

    [Fact]
    public async Task Criu_that_does_not_work_is_reported_and_fails_only_when_required()
    {
        _host.Criu = new FeatureStatus(false, "criu is not installed");
        (await RunAsync(Check())).Status.Should().Be(HealthStatus.Healthy);
        (await RunAsync(Check())).Data["criu"].Should().Be("unusable: criu is not installed");
        (await RunAsync(Check(options: new VirtuozzoHostHealthCheckOptions { RequireCriu = true }))).Status.Should().Be(HealthStatus.Unhealthy);
    }

    [Fact]
    public async Task A_guarantee_reserved_for_a_ve_the_host_does_not_have_degrades_the_ledger_check()
    {
        var ledger = new ResourceLedger(_root.Path, 8L << 30);
        var present = VeId.New();
        var gone = VeId.New();
        await ledger.ReserveAsync(present, VeKind.Container, 1L << 30);
        await ledger.ReserveAsync(gone, VeKind.Vm, 1L << 30);

        var r = await RunAsync(Check(ledger, [present]));
        r.Status.Should().Be(HealthStatus.Degraded);
        r.Description.Should().Contain("do not exist").And.Contain(gone.ToString()).And.NotContain(present.ToString());
        r.Data["ledger_reserved_bytes"].Should().Be(2L << 30);

        (await RunAsync(Check(ledger, [present, gone]))).Status.Should().Be(HealthStatus.Healthy);
    }

    [Fact]
    public void The_builder_extension_registers_the_check_by_name_with_its_tags()
    {
        var services = new ServiceCollection();
        var dataRoot = _root.Path;
        #region Snippet:HealthCheckRegistration
        services.AddVirtuozzoSdk(o => o.DataRoot = dataRoot);
        services.AddHealthChecks().AddVirtuozzoHost(tags: ["ready"]);
        // ASP.NET Core: app.MapHealthChecks("/health/ready", new() { Predicate = c => c.Tags.Contains("ready") });
        #endregion
        using var provider = services.BuildServiceProvider();
        var registration = provider.GetRequiredService<Microsoft.Extensions.Options.IOptions<HealthCheckServiceOptions>>().Value.Registrations
            .Should().ContainSingle(r => r.Name == "virtuozzo-host").Which;
        registration.Tags.Should().Equal("ready");
        registration.Factory(provider).Should().BeOfType<VirtuozzoHostHealthCheck>();
    }

    private sealed class FakeHost : IVirtuozzoHost
    {
        public Dictionary<string, string?> Tools { get; } = new()
        {
            ["runc"] = "1.1.5", ["qemu-system-x86_64"] = "7.2.0", ["qemu-img"] = "7.2.0", ["qemu-storage-daemon"] = "7.2.0", ["criu"] = "4.1",
        };

        public FeatureStatus Kvm { get; set; } = new(true, "a probe guest booted under KVM");

        public FeatureStatus Criu { get; set; } = new(true, "criu check passed");

        public bool WriteFails { get; set; }

        public List<string> Written { get; } = [];

        public List<string> Deleted { get; } = [];

        public string Name => "fake-node";

        public bool IsLocal => false;

        public Task<CommandResult> ExecuteAsync(Command command, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<BufferedCommandResult> ExecuteBufferedAsync(Command command, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task<byte[]> ReadFileAsync(string path, CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public Task WriteFileAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
        {
            if (WriteFails)
                throw new UnauthorizedAccessException($"Access to the path '{path}' is denied.");
            Written.Add(path);
            return Task.CompletedTask;
        }

        public Task<bool> FileExistsAsync(string path, CancellationToken cancellationToken = default) => Task.FromResult(Written.Contains(path));

        public Task DeleteFileAsync(string path, CancellationToken cancellationToken = default)
        {
            Deleted.Add(path);
            return Task.CompletedTask;
        }

        public Task<HostCapabilities> GetCapabilitiesAsync(CapabilityProbeOptions? options = null, CancellationToken cancellationToken = default)
            => Task.FromResult(new HostCapabilities("fake-node", "6.1.0-test", CgroupLayout.V2, 4, 8L << 30,
                options?.SkipProbes == true ? new FeatureStatus(false, "not probed") : Kvm, Tools,
                options?.SkipProbes == true ? new FeatureStatus(false, "not probed") : Criu));
    }
}
