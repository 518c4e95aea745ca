using System.Text.Json;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

[Collection("containers")]
public class ContainerNetworkAndCliTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Client => fx.Client;

    private readonly LocalHost _host = new();

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "ping", Root = true)]
    public async Task Two_containers_on_the_bridge_reach_each_other_and_the_host_reaches_them()
    {
        var a = ContainerFixture.UniqueName("neta");
        var b = ContainerFixture.UniqueName("netb");
        var small = new ContainerResources { DiskSpace = ByteSize.Parse("128M") };
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(a), Resources = small, IpAddresses = ["10.209.0.231/24"], Nameservers = ["10.209.0.1"] });
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(b), Resources = small, IpAddresses = ["10.209.0.232/24"] });
        try
        {
            await Client.StartAsync(a);
            await Client.StartAsync(b);
            var ping = await Client.ExecAsync(a, new VeExecOptions { Command = ["ping", "-c", "2", "-W", "3", "10.209.0.232"] });
            ping.ExitCode.Should().Be(0, ping.StandardOutput + ping.StandardError);
            (await Client.ExecAsync(a, new VeExecOptions { Command = ["cat", "/etc/resolv.conf"] })).StandardOutput.Should().Be("nameserver 10.209.0.1\n");
            var fromHost = await _host.ExecuteAsync(new Command("ping").WithArguments("-c", "2", "-W", "3", "10.209.0.231").WithValidation(CommandResultValidation.None));
            fromHost.ExitCode.Should().Be(0, "the host reaches a container on the bridge");
            var ip = await Client.ExecAsync(b, new VeExecOptions { Command = ["ip", "-o", "-4", "addr", "show", "eth0"] });
            ip.StandardOutput.Should().Contain("10.209.0.232/24");
        }
        finally
        {
            await Client.DeleteAsync(a);
            await Client.DeleteAsync(b);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_second_sdk_process_sees_and_stops_a_running_container()
    {
        var name = ContainerFixture.UniqueName("twoproc");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        await Client.StartAsync(name);
        try
        {
            var list = await VzsdkTool.RunAsync("--data-root", fx.Root.Path, "ct", "list", "--json");
            list.ExitCode.Should().Be(0, list.StandardError);
            using (var doc = JsonDocument.Parse(list.StandardOutput))
            {
                var row = doc.RootElement.EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
                row.GetProperty("status").GetString().Should().Be("running");
                row.GetProperty("type").GetString().Should().Be("container");
                row.GetProperty("uuid").GetString().Should().MatchRegex("^[0-9a-f-]{36}$");
                row.TryGetProperty("ip_configured", out _).Should().BeTrue();
            }
            var stop = await VzsdkTool.RunAsync("--data-root", fx.Root.Path, "ct", "stop", name, "--timeout", "5");
            stop.ExitCode.Should().Be(0, stop.StandardError);
            (await Client.GetAsync(name)).State.Should().Be(VeState.Stopped);
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task The_ct_verbs_follow_the_cli_contract()
    {
        var root = fx.Root.Path;
        var name = ContainerFixture.UniqueName("cli");
        var create = await VzsdkTool.RunAsync("--data-root", root, "ct", "create", name, "--template", "busybox", "--memsize", "256", "--diskspace", "128M", "--cpulimit", "50", "--hostname", "clihost");
        create.ExitCode.Should().Be(0, create.StandardError);
        var id = create.StandardOutput.Trim().Split('\n')[^1];
        VeId.TryParse(id, out _).Should().BeTrue("a verb that creates something prints its id last");
        try
        {
            using (var info = JsonDocument.Parse((await VzsdkTool.RunAsync("--data-root", root, "ct", "info", name, "--json")).StandardOutput))
            {
                info.RootElement.GetProperty("memsize").GetInt64().Should().Be(256L << 20, "a bare --memsize is MiB");
                info.RootElement.GetProperty("cpulimit").GetInt32().Should().Be(50);
                info.RootElement.GetProperty("status").GetString().Should().Be("stopped");
            }
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "start", name)).ExitCode.Should().Be(0);
            var exec = await VzsdkTool.RunAsync("--data-root", root, "ct", "exec", name, "--", "sh", "-c", "hostname; exit 7");
            exec.ExitCode.Should().Be(7, "exec passes the command's exit code through");
            exec.StandardOutput.Should().Be("clihost\n");
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "exec", name, "--shell", "--", "echo", "$((6*7))")).StandardOutput.Should().Be("42\n");
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "exec", name, "--", "/no/such")).ExitCode.Should().Be(127);
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "exec", "no-such-ct", "--", "true")).ExitCode.Should().Be(125, "the tool itself failed");
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "set", name, "--memsize", "lots")).ExitCode.Should().Be(2, "a malformed size is a usage error");
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "start", name)).ExitCode.Should().Be(1, "starting a running container fails");
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "create", "../evil")).ExitCode.Should().Be(2, "a bad name is a usage error");
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "create", "x", "--template", "nope", "--diskspace", "128M")).ExitCode.Should().Be(1);
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "stop", name, "--kill")).ExitCode.Should().Be(0);
            var mount = await VzsdkTool.RunAsync("--data-root", root, "ct", "mount", name);
            mount.ExitCode.Should().Be(0, mount.StandardError);
            File.Exists(Path.Combine(mount.StandardOutput.Trim(), "sbin", "vzinit")).Should().BeTrue("the mounted disk shows the container's files");
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "umount", name)).ExitCode.Should().Be(0);
            var renamed = name + "-r";
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "rename", name, renamed)).ExitCode.Should().Be(0);
            var clone = await VzsdkTool.RunAsync("--data-root", root, "ct", "clone", renamed, "--name", name + "-c");
            clone.ExitCode.Should().Be(0, clone.StandardError);
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "start", name + "-c")).ExitCode.Should().Be(0);
            (await VzsdkTool.RunAsync("--data-root", root, "ct", "delete", name + "-c")).ExitCode.Should().Be(0);
            name = renamed;
        }
        finally
        {
            await VzsdkTool.RunAsync("--data-root", root, "ct", "delete", name);
        }
    }
}

[Collection("containers")]
public class ContainerTemplateAndAutostartTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    private ContainerClient Client => fx.Client;

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", "tar", Root = true)]
    public async Task A_template_imported_from_any_tarball_runs_containers()
    {
        await Client.ListTemplatesAsync(); // builds busybox
        using var tmp = new TempDirectory();
        var rootfs = Path.Combine(tmp.Path, "rootfs");
        Directory.CreateDirectory(rootfs);
        await new Virtuozzo.Sdk.Core.Hosts.LocalHost().ExecuteAsync(new Command("tar").WithArguments("-xpf", Path.Combine(fx.Root.Path, "templates", "busybox.tar.gz"), "-C", rootfs));
        await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "os-release"), "ID=custom\n");
        var tarball = Path.Combine(tmp.Path, "custom.tar.xz");
        await new Virtuozzo.Sdk.Core.Hosts.LocalHost().ExecuteAsync(new Command("tar").WithArguments("--numeric-owner", "-C", rootfs, "-cJf", tarball, "."));
        var t = await Client.ImportTemplateAsync(new ContainerTemplateImportOptions { Name = "custom", TarballPath = tarball, Init = ["/sbin/vzinit"] });
        t.Init.Should().Equal("/sbin/vzinit");
        (await Client.ListTemplatesAsync()).Select(x => x.Name).Should().Contain(["busybox", "custom"]);
        var name = ContainerFixture.UniqueName("tpl");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Template = "custom", Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        try
        {
            await Client.StartAsync(name);
            (await Client.ExecAsync(name, new VeExecOptions { Command = ["cat", "/etc/os-release"] })).StandardOutput.Should().Be("ID=custom\n");
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
        await Client.Invoking(c => c.ImportTemplateAsync(new ContainerTemplateImportOptions { Name = "../x", TarballPath = tarball })).Should().ThrowAsync<ArgumentException>();
        await File.WriteAllTextAsync(Path.Combine(tmp.Path, "junk.tar"), "not a tarball");
        await Client.Invoking(c => c.ImportTemplateAsync(new ContainerTemplateImportOptions { Name = "junk", TarballPath = Path.Combine(tmp.Path, "junk.tar") })).Should().ThrowAsync<CommandFailedException>();
        (await Client.ListTemplatesAsync()).Select(x => x.Name).Should().NotContain("junk");
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Autostart_starts_only_the_containers_marked_for_it()
    {
        var on = ContainerFixture.UniqueName("auto");
        var off = ContainerFixture.UniqueName("manual");
        var small = new ContainerResources { DiskSpace = ByteSize.Parse("128M") };
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(on), Resources = small, Autostart = true });
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(off), Resources = small });
        try
        {
            var started = await Client.StartAutostartAsync();
            started.Select(c => c.Name.Value).Should().Equal(on);
            (await Client.GetAsync(on)).State.Should().Be(VeState.Running);
            (await Client.GetAsync(off)).State.Should().Be(VeState.Stopped);
            (await Client.StartAutostartAsync()).Should().BeEmpty("a running container is not started twice");
        }
        finally
        {
            await Client.DeleteAsync(on);
            await Client.DeleteAsync(off);
        }
    }

    [IntegrationFact("iptables", "ip", Root = true)]
    public async Task Nat_is_off_unless_enabled_and_then_masquerades_the_bridge_subnet()
    {
        var host = new Virtuozzo.Sdk.Core.Hosts.LocalHost();
        const string bridge = "vzbrnat0";
        try
        {
            await new Virtuozzo.Sdk.Core.Runtime.Local.HostBridge(host, bridge, "10.219.5.1/24").EnsureAsync(CancellationToken.None);
            (await host.ExecuteBufferedAsync(new Command("iptables").WithArguments("-t", "nat", "-S", "POSTROUTING"))).StandardOutput.Should().NotContain("10.219.5.0/24");
            var nat = new Virtuozzo.Sdk.Core.Runtime.Local.HostBridge(host, bridge, "10.219.5.1/24", nat: true);
            nat.Subnet.Should().Be("10.219.5.0/24");
            await nat.EnsureAsync(CancellationToken.None);
            await nat.EnsureAsync(CancellationToken.None);
            var rules = (await host.ExecuteBufferedAsync(new Command("iptables").WithArguments("-t", "nat", "-S", "POSTROUTING"))).StandardOutput;
            rules.Split('\n').Count(l => l.Contains("10.219.5.0/24") && l.Contains("MASQUERADE")).Should().Be(1, "the rule is added once");
        }
        finally
        {
            await host.ExecuteAsync(new Command("iptables").WithArguments("-t", "nat", "-D", "POSTROUTING", "-s", "10.219.5.0/24", "!", "-o", bridge, "-j", "MASQUERADE").WithValidation(CommandResultValidation.None));
            await host.ExecuteAsync(new Command("ip").WithArguments("link", "del", bridge).WithValidation(CommandResultValidation.None));
        }
    }
}
