using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

/// <summary>
/// The container sandbox, checked from inside real containers: user namespaces with an id range per container (the
/// default), the system-call filter, and the opt-outs (issue 15, items 8 and 9).
/// </summary>
[Collection("containers")]
public class ContainerSandboxTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Client => fx.Client;

    private async Task<VeExecResult> RunAsync(string name, string script)
        => await Client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", script] });

    /// <summary>The owner (uid:gid) on the host of a file in a stopped container, read through the container's mount.</summary>
    private async Task<string> HostOwnerAsync(string name, string pathInside)
    {
        var mounted = await Client.MountAsync(name);
        try
        {
            var full = Path.Combine(mounted, pathInside.TrimStart('/'));
            var r = await new Virtuozzo.Sdk.Core.Hosts.LocalHost().ExecuteBufferedAsync(new Virtuozzo.Sdk.Core.Processes.Command("stat").WithArguments("-c", "%u:%g", full));
            return r.StandardOutput.Trim();
        }
        finally
        {
            await Client.UnmountAsync(name);
        }
    }

    /// <summary>The real uids of the host's processes.</summary>
    private static HashSet<long> ProcessUids()
    {
        var uids = new HashSet<long>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                var line = File.ReadLines(Path.Combine(dir, "status")).FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
                if (line is not null)
                    uids.Add(long.Parse(line[4..].Split('\t', StringSplitOptions.RemoveEmptyEntries)[0]));
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return uids;
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "unshare", Root = true)]
    public async Task A_new_container_is_unprivileged_its_root_is_a_host_id_of_its_own_range_and_its_files_belong_to_that_range()
    {
        var a = ContainerFixture.UniqueName("sbx");
        var b = ContainerFixture.UniqueName("sbx");
        var infoA = await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(a), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        var infoB = await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(b), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        try
        {
            infoA.Security.Privileged.Should().BeFalse("unprivileged is the default for new containers");
            infoA.HostIdStart.Should().NotBeNull().And.BeGreaterThanOrEqualTo(65536, "container root must not be a host id below 65536");
            infoB.HostIdStart.Should().NotBeNull();
            Math.Abs(infoA.HostIdStart!.Value - infoB.HostIdStart!.Value).Should().BeGreaterThanOrEqualTo(65536, "two containers' ranges never overlap");
            var start = infoA.HostIdStart.Value;

            await Client.StartAsync(a);
            (await ContainerFixture.ShAsync(Client, a, "id -u")).Should().Be("0", "inside, the container's root is root");
            (await ContainerFixture.ShAsync(Client, a, "cat /proc/self/uid_map")).Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Should().Equal("0", start.ToString(), "65536");
            (await ContainerFixture.ShAsync(Client, a, "cat /proc/self/gid_map")).Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Should().Equal("0", start.ToString(), "65536");
            (await ContainerFixture.ShAsync(Client, a, "stat -c %u:%g /bin/busybox /etc/hostname")).Split('\n').Should().AllBe("0:0", "the template's files and the SDK's were shifted into the range");
            await ContainerFixture.ShAsync(Client, a, "echo x > /made-inside && chown 1000:1000 /made-inside && sync");

            // seen from the host, the container's processes run as the range's first id, not as root
            ProcessUids().Should().Contain(start, "the container's init runs as host id {0}", start);

            await Client.StopAsync(a);
            (await HostOwnerAsync(a, "/made-inside")).Should().Be($"{start + 1000}:{start + 1000}", "a file the container's uid 1000 owns is host id start+1000");
            (await HostOwnerAsync(a, "/bin/busybox")).Should().Be($"{start}:{start}");
        }
        finally
        {
            await Client.DeleteAsync(a);
            await Client.DeleteAsync(b);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "unshare", Root = true)]
    public async Task The_default_system_call_filter_refuses_namespaces_and_mounts_and_the_opt_outs_relax_it()
    {
        var strict = ContainerFixture.UniqueName("sbx");
        var relaxed = ContainerFixture.UniqueName("sbx");
        var unconfined = ContainerFixture.UniqueName("sbx");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(strict), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        await Client.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName(relaxed),
            Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") },
            Security = new ContainerSecurityOptions { AllowedSyscalls = ["unshare"] },
        });
        await Client.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName(unconfined),
            Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") },
            Security = new ContainerSecurityOptions { SyscallFilter = ContainerSyscallFilter.Unconfined },
        });
        try
        {
            await Client.StartAsync(strict);
            await Client.StartAsync(relaxed);
            await Client.StartAsync(unconfined);

            (await ContainerFixture.ShAsync(Client, strict, "grep '^Seccomp:' /proc/self/status")).Should().EndWith("2", "a filter applies (mode 2)");
            var unshare = await RunAsync(strict, "unshare -U true");
            unshare.ExitCode.Should().NotBe(0, "making a user namespace inside is refused");
            unshare.StandardError.Should().Contain("Operation not permitted");
            (await RunAsync(strict, "unshare -m true")).ExitCode.Should().NotBe(0);
            (await RunAsync(strict, "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t")).ExitCode.Should().NotBe(0, "mounts are refused");
            (await ContainerFixture.ShAsync(Client, strict, "echo ok")).Should().Be("ok", "ordinary programs run");

            (await RunAsync(relaxed, "unshare -U true")).ExitCode.Should().Be(0, "a call the container's own list allows goes through");
            (await ContainerFixture.ShAsync(Client, relaxed, "grep '^Seccomp:' /proc/self/status")).Should().EndWith("2", "the rest of the filter still applies");

            (await ContainerFixture.ShAsync(Client, unconfined, "grep '^Seccomp:' /proc/self/status")).Should().EndWith("0", "no filter at all");
            (await RunAsync(unconfined, "unshare -U true")).ExitCode.Should().Be(0);
        }
        finally
        {
            await Client.DeleteAsync(strict);
            await Client.DeleteAsync(relaxed);
            await Client.DeleteAsync(unconfined);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_privileged_container_keeps_the_hosts_ids_and_the_filter()
    {
        var name = ContainerFixture.UniqueName("sbx");
        var info = await Client.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName(name),
            Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") },
            Security = new ContainerSecurityOptions { Privileged = true },
        });
        try
        {
            info.Security.Privileged.Should().BeTrue();
            info.HostIdStart.Should().BeNull();
            await Client.StartAsync(name);
            (await ContainerFixture.ShAsync(Client, name, "cat /proc/self/uid_map")).Split(' ', StringSplitOptions.RemoveEmptyEntries).Should().Equal("0", "0", "4294967295");
            (await ContainerFixture.ShAsync(Client, name, "grep '^Seccomp:' /proc/self/status")).Should().EndWith("2", "privileged means host ids, not no filter");
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_clone_gets_a_range_of_its_own_and_its_files_move_to_it_at_its_first_start()
    {
        var name = ContainerFixture.UniqueName("sbx");
        var copy = ContainerFixture.UniqueName("sbx");
        var original = await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        try
        {
            await Client.StartAsync(name);
            await ContainerFixture.ShAsync(Client, name, "echo mine > /data && chown 33:33 /data && sync");
            await Client.StopAsync(name);

            var clone = await Client.CloneAsync(name, new VeName(copy));
            clone.HostIdStart.Should().NotBeNull().And.NotBe(original.HostIdStart, "a clone never shares its original's ids");
            await Client.StartAsync(copy);
            (await ContainerFixture.ShAsync(Client, copy, "stat -c %u:%g /data /bin/busybox")).Split('\n').Should().Equal("33:33", "0:0");
            (await ContainerFixture.ShAsync(Client, copy, "cat /data")).Should().Be("mine");
            await Client.StopAsync(copy);
            (await HostOwnerAsync(copy, "/data")).Should().Be($"{clone.HostIdStart + 33}:{clone.HostIdStart + 33}");
            (await HostOwnerAsync(name, "/data")).Should().Be($"{original.HostIdStart + 33}:{original.HostIdStart + 33}", "the original is untouched");
        }
        finally
        {
            await Client.DeleteAsync(copy);
            await Client.DeleteAsync(name);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Checkpointing_an_unprivileged_container_is_refused_by_name_and_the_container_keeps_running()
    {
        var name = ContainerFixture.UniqueName("sbx");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        try
        {
            await Client.StartAsync(name);
            var suspend = () => Client.SuspendToDiskAsync(name);
            (await suspend.Should().ThrowAsync<UnsupportedOnHostException>()).Which.Message.Should().Contain("unprivileged").And.Contain("Privileged = true");
            (await Client.GetAsync(name)).State.Should().Be(VeState.Running);
            (await ContainerFixture.ShAsync(Client, name, "echo still")).Should().Be("still");
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }
}
