using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Containers.Internal;

namespace Virtuozzo.Sdk.Containers.Tests;

/// <summary>The sandbox as written into the OCI configuration: the system-call filter and the user namespace.</summary>
public class SandboxSpecTests
{
    private static ContainerConfig Config(long? userIdStart = null, string filter = ContainerConfig.DefaultFilter, params string[] allowed) => new()
    {
        Template = "busybox",
        Hostname = "h",
        MemSizeBytes = 256L << 20,
        DiskSpaceBytes = 1L << 30,
        Pids = 100,
        Init = ["/sbin/init"],
        StopSignal = "SIGTERM",
        UserIdStart = userIdStart,
        SyscallFilter = filter,
        AllowedSyscalls = [.. allowed],
    };

    /// <summary>The configuration as runc reads it (written and parsed back).</summary>
    private static JsonObject Spec(ContainerConfig config)
        => JsonNode.Parse(OciSpec.Build(config, "/root/x", "/run/netns/x", "/vzsdk/x/ve", "/run/vzsdk-userns/x").ToJsonString())!.AsObject();

    private static IEnumerable<JsonObject> Rules(JsonObject spec) => spec["linux"]!["seccomp"]!["syscalls"]!.AsArray().Select(r => r!.AsObject());

    private static HashSet<string> Unconditional(JsonObject spec, string action = "SCMP_ACT_ALLOW")
        => Rules(spec).Where(r => (string)r["action"]! == action && r["args"] is null).SelectMany(r => r["names"]!.AsArray().Select(n => (string)n!)).ToHashSet();

    [Fact]
    public void The_default_filter_refuses_everything_Docker_refuses_and_io_uring()
    {
        var spec = Spec(Config());
        var seccomp = spec["linux"]!["seccomp"]!;
        ((string)seccomp["defaultAction"]!).Should().Be("SCMP_ACT_ERRNO", "an allow-list: what is not listed is refused");
        var allowed = Unconditional(spec);
        allowed.Should().Contain(["read", "write", "execve", "openat", "socket", "clock_gettime", "epoll_wait"]);
        allowed.Intersect(SyscallProfile.DockerRefuses).Should().BeEmpty();
        allowed.Should().NotContain(["keyctl", "add_key", "bpf", "perf_event_open", "unshare", "mount", "setns", "io_uring_setup", "clone", "personality"]);
        SyscallProfile.Allowed.Should().OnlyHaveUniqueItems();
    }

    [Fact]
    public void Clone_is_allowed_only_without_namespace_flags_and_clone3_answers_ENOSYS()
    {
        var spec = Spec(Config());
        var clone = Rules(spec).Single(r => r["names"]!.AsArray().Any(n => (string)n! == "clone"));
        var arg = clone["args"]!.AsArray().Single()!;
        ((string)arg["op"]!).Should().Be("SCMP_CMP_MASKED_EQ");
        ((long)arg["value"]!).Should().Be(0x7E020000, "CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET");
        ((long)arg["valueTwo"]!).Should().Be(0);
        var clone3 = Rules(spec).Single(r => r["names"]!.AsArray().Any(n => (string)n! == "clone3"));
        ((string)clone3["action"]!).Should().Be("SCMP_ACT_ERRNO");
        ((int)clone3["errnoRet"]!).Should().Be(38);
    }

    [Fact]
    public void A_containers_own_list_adds_calls_and_lifts_their_argument_rules_and_unconfined_has_no_filter()
    {
        var spec = Spec(Config(null, ContainerConfig.DefaultFilter, "keyctl", "clone"));
        Unconditional(spec).Should().Contain(["keyctl", "clone"]);
        Rules(spec).Where(r => r["names"]!.AsArray().Any(n => (string)n! == "clone")).Should().ContainSingle("no argument rule beside the outright allow");
        Spec(Config(null, ContainerConfig.UnconfinedFilter))["linux"]!["seccomp"].Should().BeNull();
    }

    [Theory]
    [InlineData("Keyctl")]
    [InlineData("key ctl")]
    [InlineData("")]
    [InlineData("../x")]
    public void Names_that_are_not_system_calls_are_refused(string name)
        => FluentActions.Invoking(() => SyscallProfile.ValidateNames([name])).Should().Throw<ArgumentException>();

    [Fact]
    public void An_unprivileged_container_joins_its_user_namespace_first_with_its_mapping_and_the_hosts_sys_read_only()
    {
        var spec = Spec(Config(2147483648));
        var namespaces = spec["linux"]!["namespaces"]!.AsArray();
        ((string)namespaces[0]!["type"]!).Should().Be("user");
        ((string)namespaces[0]!["path"]!).Should().Be("/run/vzsdk-userns/x", "the user namespace that owns the network namespace");
        foreach (var key in new[] { "uidMappings", "gidMappings" })
        {
            var map = spec["linux"]![key]!.AsArray().Single()!;
            ((long)map["containerID"]!).Should().Be(0);
            ((long)map["hostID"]!).Should().Be(2147483648);
            ((long)map["size"]!).Should().Be(65536);
        }
        var sys = spec["mounts"]!.AsArray().Single(m => (string)m!["destination"]! == "/sys")!;
        ((string)sys["type"]!).Should().Be("bind");
        sys["options"]!.AsArray().Select(o => (string)o!).Should().Contain(["rbind", "ro"]);
        spec["linux"]!["maskedPaths"]!.AsArray().Select(p => (string)p!).Should().Contain(["/sys/kernel/debug", "/sys/kernel/security", "/sys/firmware"]);
    }

    [Fact]
    public void A_privileged_container_has_no_user_namespace_and_its_own_sysfs()
    {
        var spec = Spec(Config());
        spec["linux"]!["namespaces"]!.AsArray().Select(n => (string)n!["type"]!).Should().NotContain("user");
        spec["linux"]!["uidMappings"].Should().BeNull();
        ((string)spec["mounts"]!.AsArray().Single(m => (string)m!["destination"]! == "/sys")!["type"]!).Should().Be("sysfs");
    }
}
