using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Containers.Internal;
using Virtuozzo.Sdk.Containers.Runtime.Local;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Containers.Tests;

/// <summary>The decisions a container's create, set and exec make before anything runs.</summary>
public class ContainerRulesTests
{
    private static readonly long HostRam = 24 * ByteSize.GiB;

    [Fact]
    public void The_default_resources_are_valid()
        => ((Action)(() => OciSpec.Validate(new ContainerResources(), HostRam))).Should().NotThrow();

    [Theory]
    [InlineData("999999T", "0")]
    [InlineData("25G", "0")]
    [InlineData("8388607T", "8388607T")]
    [InlineData("512M", "8388607T")]
    [InlineData("8M", "0")]
    public void Memory_no_start_could_honour_is_refused_at_create(string memory, string swap)
    {
        var r = new ContainerResources { MemorySize = ByteSize.Parse(memory), Swap = ByteSize.Parse(swap) };
        var act = () => OciSpec.Validate(r, HostRam);
        act.Should().Throw<ArgumentOutOfRangeException>().Which.Message.Should().MatchRegex("MemorySize|Swap");
    }

    [Fact]
    public void Memory_up_to_the_host_ram_with_swap_is_accepted()
        => ((Action)(() => OciSpec.Validate(new ContainerResources { MemorySize = ByteSize.FromGiB(24), Swap = ByteSize.FromGiB(64) }, HostRam))).Should().NotThrow();

    [Theory]
    [InlineData(101, null, null)]
    [InlineData(0, 0, null)]
    [InlineData(0, null, 7L)]
    public void Out_of_range_percentages_cpus_and_process_limits_are_refused_by_name(int guarantee, int? cpus, long? maxProcesses)
    {
        var r = new ContainerResources { MemoryGuaranteePercent = guarantee, Cpus = cpus, MaxProcesses = maxProcesses ?? 4096 };
        var act = () => OciSpec.Validate(r, HostRam);
        act.Should().Throw<ArgumentOutOfRangeException>().Which.Message.Should().MatchRegex("MemoryGuaranteePercent|Cpus|MaxProcesses");
    }

    [Fact]
    public void The_guarantee_in_bytes_is_the_percentage_of_the_memory_size_without_overflow()
    {
        new ContainerResources { MemorySize = ByteSize.FromMiB(1000), MemoryGuaranteePercent = 50 }.GuaranteeBytes.Should().Be(500 * ByteSize.MiB);
        new ContainerResources { MemorySize = ByteSize.FromBytes(OciSpec.MaxSwapBytes), MemoryGuaranteePercent = 100 }.GuaranteeBytes.Should().Be(OciSpec.MaxSwapBytes);
    }

    [Theory]
    [InlineData(255, "runc exec failed: exec: \"nope\": executable file not found in $PATH", 127)]
    [InlineData(255, "exec failed: unable to start container process: exec: \"/x\": stat /x: no such file or directory", 127)]
    [InlineData(255, "exec failed: unable to start container process: exec: \"/etc/passwd\": permission denied", 126)]
    [InlineData(255, "exec failed: exec format error", 126)]
    public void The_runtime_failing_to_start_a_program_becomes_the_shell_exit_code(int exit, string stderr, int expected)
        => ExecFailure.Classify(exit, stderr)!.Value.ExitCode.Should().Be(expected);

    [Theory]
    [InlineData(255, "some program's own error: exec failed")]
    [InlineData(127, "exec failed: not found")]
    [InlineData(1, "no such file or directory")]
    public void A_program_that_ran_keeps_its_own_exit_code(int exit, string stderr)
        => ExecFailure.Classify(exit, stderr).Should().BeNull(exit == 255 ? "a program's own message is not the runtime's failure unless it says it could not start the program" : "only the runtime's exit code 255 is its own");

    [Fact]
    public void A_missing_program_is_reported_in_plain_words_not_the_runtime_log_line()
        => ExecFailure.Classify(255, "time=\"2026-01-01\" level=error msg=\"runc exec failed: exec: \\\"nope\\\": executable file not found in $PATH\"")!.Value.Reason.Should().Be("command not found");

    [Fact]
    public void Streamed_standard_error_passes_the_program_s_lines_and_holds_back_the_runtime_s_failure_line()
    {
        var sink = new MemoryStream();
        using (var filter = new ExecFailure.FilterStream(sink))
        {
            var text = "warning: one\ntime=\"x\" level=error msg=\"runc exec failed: exec: \\\"nope\\\": executable file not found in $PATH\"\nlast line without newline";
            var bytes = System.Text.Encoding.UTF8.GetBytes(text);
            filter.Write(bytes, 0, 5);                   // lines arrive in pieces
            filter.Write(bytes, 5, bytes.Length - 5);
            filter.Flush();
        }
        System.Text.Encoding.UTF8.GetString(sink.ToArray()).Should().Be("warning: one\nlast line without newline");
    }

    [Theory]
    [InlineData(null, null, null)]
    [InlineData(150, null, 150)]
    [InlineData(null, 2, 200)]
    [InlineData(150, 1, 100)]
    public void The_effective_cpu_limit_is_the_lower_of_cpulimit_and_cpus(int? limit, int? cpus, int? expected)
    {
        var config = new ContainerConfig { Template = "busybox", Hostname = "h", CpuLimit = limit, Cpus = cpus, Init = ["/sbin/init"], StopSignal = "SIGTERM" };
        config.EffectiveCpuPercent.Should().Be(expected);
    }

    [Fact]
    public void The_bundle_keeps_the_sandbox_and_the_limits_the_config_asks_for()
    {
        var config = new ContainerConfig { Template = "busybox", Hostname = "web1", MemSizeBytes = 256 * ByteSize.MiB, SwapBytes = 64 * ByteSize.MiB, Pids = 100, Init = ["/sbin/init"], StopSignal = "SIGTERM" };
        var spec = OciSpec.Build(config, "/root/x", "/run/netns/x", "/vzsdk/x/ve");
        spec["hostname"]!.GetValue<string>().Should().Be("web1");
        spec["process"]!["noNewPrivileges"]!.GetValue<bool>().Should().BeTrue();
        spec["process"]!["capabilities"]!["bounding"]!.AsArray().Select(c => c!.GetValue<string>()).Should().NotContain("CAP_SYS_ADMIN");
        spec["linux"]!["resources"]!["memory"]!["swap"]!.GetValue<long>().Should().Be(320 * ByteSize.MiB, "the OCI swap limit is memory plus swap");
        spec["linux"]!["resources"]!["pids"]!["limit"]!.GetValue<long>().Should().Be(100);
        spec["linux"]!["cgroupsPath"]!.GetValue<string>().Should().Be("/vzsdk/x/ve");
    }

    [Theory]
    [InlineData("-bad")]
    [InlineData("a_b")]
    [InlineData("")]
    public void Invalid_host_names_are_refused(string hostname)
        => ((Action)(() => OciSpec.ValidateHostname(hostname))).Should().Throw<ArgumentException>();
}

/// <summary>SDK users mock the clients by overriding their members.</summary>
public class ContainerClientMockingTests
{
    private sealed class StubContainers : ContainerClient
    {
        public List<string> Started { get; } = [];

        public override Task<ContainerInfo> StartAsync(VeRef container, CancellationToken cancellationToken = default)
        {
            Started.Add(container.Value);
            return Task.FromResult(new ContainerInfo
            {
                Id = VeId.New(), Name = new VeName(container.Value), Kind = VeKind.Container, State = VeState.Running, MemorySize = ByteSize.FromMiB(512),
                Template = ContainerClient.BusyboxTemplate, Resources = new ContainerResources(),
            });
        }
    }

    [Fact]
    public async Task A_subclass_replaces_a_verb_and_names_its_container_as_the_caller_did()
    {
        ContainerClient client = new StubContainers();
        var info = await client.StartAsync(new VeName("web"));
        info.State.Should().Be(VeState.Running);
        ((StubContainers)client).Started.Should().Equal("web");
    }

    [Fact]
    public async Task A_verb_the_mock_does_not_override_says_it_has_no_runtime()
    {
        ContainerClient client = new StubContainers();
        await client.Awaiting(c => c.ListAsync()).Should().ThrowAsync<InvalidOperationException>().WithMessage("*mocking*");
    }
}
