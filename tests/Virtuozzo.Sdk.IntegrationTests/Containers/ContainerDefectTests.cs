using System.Text.RegularExpressions;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

/// <summary>The defects a newcomer met (issue 13), each pinned by a test that failed on the code before the fix.</summary>
[Collection("containers")]
public class ContainerDefectTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Client => fx.Client;

    private async Task<ContainerInfo> CreateAsync(string prefix, IReadOnlyList<string>? ips = null)
        => await Client.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName(ContainerFixture.UniqueName(prefix)),
            Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") },
            IpAddresses = ips ?? [],
        });

    private static IEnumerable<string> CgroupDirectoriesOf(string dataRoot, VeId id)
    {
        var parent = CgroupManager.ParentFor(dataRoot);
        return new DirectoryInfo("/sys/fs/cgroup").EnumerateDirectories().Where(d => d.LinkTarget is null)
            .Select(d => Path.Combine(d.FullName, parent, id.ToString()))
            .Append(Path.Combine("/sys/fs/cgroup", parent + ".slice", id.ToString()))
            .Where(Directory.Exists);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_stopped_and_deleted_container_leaves_no_cgroup_in_any_hierarchy()
    {
        var c = await CreateAsync("cgleft");
        await Client.StartAsync(c.Id);
        CgroupDirectoriesOf(fx.Options.DataRoot, c.Id).Should().NotBeEmpty("a running container has cgroups");
        await Client.StopAsync(c.Id);
        CgroupDirectoriesOf(fx.Options.DataRoot, c.Id).Should().BeEmpty("a stop removes the cgroups runc made in devices, systemd and unified too");
        await Client.StartAsync(c.Id);
        (await Client.DeleteAsync(c.Id)).Should().BeTrue();
        CgroupDirectoriesOf(fx.Options.DataRoot, c.Id).Should().BeEmpty("a delete of a running container leaves nothing either");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Reconciling_another_data_root_leaves_this_one_s_running_containers_alone()
    {
        var c = await CreateAsync("otherroot");
        await Client.StartAsync(c.Id);
        using var otherRoot = new TempDirectory("vzsdk-other");
        var other = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = otherRoot.Path }));
        await other.ReconcileAsync();
        (await Client.GetAsync(c.Id)).State.Should().Be(VeState.Running, "another data root's reconcile must not take this container for an orphan");
        (await Client.ExecAsync(c.Id, new VeExecOptions { Command = ["true"] })).ExitCode.Should().Be(0);
        await Client.DeleteAsync(c.Id);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task The_library_names_the_ve_in_api_terms_without_command_line_hints()
    {
        var notFound = await Client.Awaiting(c => c.GetAsync("no-such-ct")).Should().ThrowAsync<NotFoundException>();
        notFound.Which.Message.Should().Contain("'no-such-ct'").And.NotContain("vzsdk");

        var ram = long.Parse(Regex.Match(File.ReadAllText("/proc/meminfo"), @"MemTotal:\s+(\d+) kB").Groups[1].Value) * 1024;
        var name = ContainerFixture.UniqueName("bigguarantee");
        var huge = await Client.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName(name),
            Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M"), MemorySize = ByteSize.FromBytes(ram), MemoryGuaranteePercent = 100 },
        });
        var refused = await Client.Awaiting(c => c.StartAsync(huge.Id)).Should().ThrowAsync<InsufficientResourcesException>();
        refused.Which.Message.Should().Contain($"container {name}").And.NotContain("--");
        await Client.DeleteAsync(huge.Id);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Shrinking_a_disk_is_a_state_error_exit_1_and_the_list_columns_stay_apart()
    {
        var c = await CreateAsync("shrink");
        await Client.Awaiting(x => x.SetAsync(c.Id, new ContainerSetOptions { DiskSpace = ByteSize.Parse("64M") })).Should().ThrowAsync<InvalidStateException>();
        var cli = await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "ct", "set", c.Name.Value, "--diskspace", "64M");
        cli.ExitCode.Should().Be(1, "a disk that cannot shrink is not a usage error; stderr: " + cli.StandardError);

        var list = await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "ct", "list", "-a");
        list.StandardOutput.Split('\n')[0].Should().MatchRegex(@"^UUID\s+STATUS\s+IP_ADDR\s+NAME$");
        list.StandardOutput.Should().MatchRegex(@"(?m)^\{[0-9a-f-]{36}\}\s+stopped\s+-\s+" + Regex.Escape(c.Name.Value) + "$");
        await Client.DeleteAsync(c.Id);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Resources_no_start_could_honour_are_refused_at_create()
    {
        foreach (var (memory, swap) in new[] { ("999999T", "0"), ("8388607T", "8388607T") })
        {
            var act = () => Client.CreateAsync(new ContainerCreateOptions
            {
                Name = new VeName(ContainerFixture.UniqueName("huge")),
                Resources = new ContainerResources { MemorySize = ByteSize.Parse(memory), Swap = ByteSize.Parse(swap) },
            });
            await act.Should().ThrowAsync<ArgumentOutOfRangeException>();
        }
        (await Client.ListAsync()).Should().NotContain(c => c.Name.Value.StartsWith("huge-"), "a refused create leaves nothing");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Addresses_already_used_or_special_are_refused()
    {
        var a = await CreateAsync("ipa", ["10.209.0.171/24"]);
        var dup = () => CreateAsync("ipb", ["10.209.0.171/24"]);
        (await dup.Should().ThrowAsync<AlreadyExistsException>()).WithMessage($"*10.209.0.171*{a.Name}*");
        foreach (var bad in new[] { "10.209.0.1/24", "10.209.0.0/24", "10.209.0.255/24", "127.0.0.2/8", "224.1.1.1/24" })
            await ((Func<Task>)(() => CreateAsync("ipbad", [bad]))).Should().ThrowAsync<ArgumentException>(bad);
        await ((Func<Task>)(() => CreateAsync("iptwice", ["10.209.0.172/24", "10.209.0.172/24"]))).Should().ThrowAsync<ArgumentException>();
        await Client.DeleteAsync(a.Id);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_guest_that_makes_etc_hostname_a_directory_still_starts_and_keeps_the_directory_s_files()
    {
        var c = await CreateAsync("hostdir");
        var root = await Client.MountAsync(c.Id);
        File.Delete(Path.Combine(root, "etc", "hostname"));
        Directory.CreateDirectory(Path.Combine(root, "etc", "hostname"));
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "hostname", "kept"), "guest data");
        await Client.UnmountAsync(c.Id);

        (await Client.StartAsync(c.Id)).State.Should().Be(VeState.Running);
        (await Client.ExecAsync(c.Id, new VeExecOptions { Command = ["cat", "/etc/hostname"] })).StandardOutput.Should().Be(c.Name.Value + "\n");
        (await Client.ExecAsync(c.Id, new VeExecOptions { Command = ["sh", "-c", "cat /etc/hostname.vzsdk-moved-*/kept"] })).StandardOutput.Should().Be("guest data");
        await Client.DeleteAsync(c.Id);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_new_hostname_applies_to_a_running_container_at_once()
    {
        var c = await CreateAsync("rename-host");
        await Client.StartAsync(c.Id);
        (await Client.SetAsync(c.Id, new ContainerSetOptions { Hostname = "live-name" })).Hostname.Should().Be("live-name");
        (await Client.ExecAsync(c.Id, new VeExecOptions { Command = ["hostname"] })).StandardOutput.Should().Be("live-name\n");
        (await Client.ExecAsync(c.Id, new VeExecOptions { Command = ["cat", "/etc/hostname"] })).StandardOutput.Should().Be("live-name\n");
        await Client.DeleteAsync(c.Id);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Of_two_concurrent_deletes_exactly_one_reports_success()
    {
        var c = await CreateAsync("twodel");
        await Client.StartAsync(c.Id);
        var other = new ContainerClient(VirtuozzoRuntime.CreateLocal(fx.Options));
        var results = await Task.WhenAll(Client.DeleteAsync(c.Id), other.DeleteAsync(c.Id));
        results.Count(r => r).Should().Be(1);
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Running_a_missing_program_exits_127_with_a_plain_message()
    {
        var c = await CreateAsync("noprog");
        await Client.StartAsync(c.Id);
        var r = await Client.ExecAsync(c.Id, new VeExecOptions { Command = ["no-such-program", "x"] });
        r.ExitCode.Should().Be(127);
        r.StandardError.Should().Be("no-such-program: command not found\n");
        var cli = await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "exec", c.Name.Value, "--", "no-such-program");
        cli.ExitCode.Should().Be(127);
        cli.StandardError.Should().Be("no-such-program: command not found\n");
        await Client.DeleteAsync(c.Id);
    }
}
