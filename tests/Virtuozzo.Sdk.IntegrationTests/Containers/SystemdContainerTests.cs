using System.Diagnostics;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;
using Xunit.Abstractions;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

/// <summary>
/// The Debian 12 template built from packages (debootstrap) once per machine and kept in <see cref="CacheDirectory"/>
/// between test runs (CI starts without it and builds it).
/// </summary>
public static class DebianTemplate
{
    public const string CacheDirectory = "/var/cache/vzsdk-tests";

    private static readonly SemaphoreSlim Gate = new(1, 1);

    /// <summary>How long building the template took in this process; null when it came from the cache.</summary>
    public static TimeSpan? BuildTime { get; private set; }

    /// <summary>Builds the template unless it is cached, and imports it into <paramref name="client"/>'s data root.</summary>
    public static async Task ImportIntoAsync(ContainerClient client)
    {
        var cached = Path.Combine(CacheDirectory, "debian-12.tar.gz");
        await Gate.WaitAsync();
        try
        {
            if (!File.Exists(cached))
            {
                var watch = Stopwatch.StartNew();
                using var buildRoot = new TempDirectory("vzsdk-tpl");
                var builder = new ContainerClient(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = buildRoot.Path }));
                await builder.CreateTemplateAsync(new ContainerTemplateCreateOptions { Name = "debian-12" });
                BuildTime = watch.Elapsed;
                Directory.CreateDirectory(CacheDirectory);
                File.Copy(Path.Combine(buildRoot.Path, "templates", "debian-12.tar.gz"), cached + ".tmp", overwrite: true);
                File.Move(cached + ".tmp", cached, overwrite: true);
            }
        }
        finally
        {
            Gate.Release();
        }
        await client.ImportTemplateAsync(new ContainerTemplateImportOptions { Name = "debian-12", TarballPath = cached, Init = ["/sbin/init"], StopSignal = "SIGRTMIN+3" });
    }

    /// <summary>Why the template cannot be built here, or null.</summary>
    public static string? MissingReason => Prerequisites.MissingReason(needsRoot: true, ["debootstrap", "runc", "qemu-storage-daemon", "mkfs.ext4"]);
}

/// <summary>A data root with the debian-12 template (issue 22).</summary>
public sealed class DebianTemplateFixture : IAsyncLifetime
{
    public ContainerFixture Containers { get; } = new();

    public TimeSpan? BuildTime => DebianTemplate.BuildTime;

    public async Task InitializeAsync()
    {
        await Containers.InitializeAsync();
        if (DebianTemplate.MissingReason is null)
            await DebianTemplate.ImportIntoAsync(Containers.Client); // otherwise the tests say why they skip (or fail under CI=true)
    }

    public Task DisposeAsync() => Containers.DisposeAsync();
}

[Collection("containers")]
public class SystemdContainerTests(DebianTemplateFixture fx, ITestOutputHelper output) : IClassFixture<DebianTemplateFixture>
{
    private ContainerClient Client => fx.Containers.Client;

    [IntegrationFact("debootstrap", "runc", "qemu-storage-daemon", "mkfs.ext4", "ping", Root = true)]
    public async Task A_Debian_container_boots_systemd_runs_services_and_logins_and_stops_cleanly_and_quickly()
    {
        if (fx.BuildTime is { } built)
            output.WriteLine($"debian-12 template built from packages in {built.TotalSeconds:0.0} s");
        var name = ContainerFixture.UniqueName("deb");
        const string ip = "10.209.0.236";
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Template = "debian-12", IpAddresses = [ip + "/24"], Resources = new ContainerResources { DiskSpace = ByteSize.Parse("1G") } });
        try
        {
            var watch = Stopwatch.StartNew();
            (await Client.StartAsync(name)).State.Should().Be(VeState.Running);
            output.WriteLine($"start to systemd 'running': {watch.Elapsed.TotalSeconds:0.00} s");
            (await ContainerFixture.ShAsync(Client, name, "systemctl is-system-running")).Should().Be("running", "no unit failed: {0}", await ContainerFixture.ShAsync(Client, name, "systemctl --failed --no-legend || true"));
            (await ContainerFixture.ShAsync(Client, name, "cat /proc/1/comm")).Should().Be("systemd");
            (await ContainerFixture.ShAsync(Client, name, "grep '^Seccomp:' /proc/1/status")).Should().EndWith("2", "systemd runs under the filter too");
            (await ContainerFixture.ShAsync(Client, name, "cat /proc/self/uid_map")).Should().NotStartWith("0 0", "and in its own user namespace");

            // a service the test installs starts, and the journal records it
            await ContainerFixture.ShAsync(Client, name, "printf '[Service]\\nExecStart=/bin/sh -c \"echo hello-from-unit; echo started > /run/hello; exec sleep infinity\"\\n' > /etc/systemd/system/hello.service && systemctl daemon-reload && systemctl start hello");
            (await ContainerFixture.ShAsync(Client, name, "systemctl is-active hello")).Should().Be("active");
            (await ContainerFixture.ShAsync(Client, name, "cat /run/hello")).Should().Be("started");
            (await ContainerFixture.ShAsync(Client, name, "journalctl -u hello --no-pager -o cat")).Should().Contain("hello-from-unit");

            // the address answers from the bridge; the host name is the container's
            (await ContainerFixture.PingAsync(ip)).Should().BeTrue();
            (await ContainerFixture.ShAsync(Client, name, "hostname")).Should().Be(name);
            (await ContainerFixture.ShAsync(Client, name, "hostnamectl --static")).Should().Be(name, "systemd's own view of the name (hostnamed over D-Bus)");

            // a password set from the host logs in through su (run by an unprivileged user, so that su asks for it)
            await ContainerFixture.ShAsync(Client, name, "useradd -m alice");
            await Client.SetUserPasswordAsync(name, "alice", "S3cret:pass");
            const string login = "setpriv --reuid=nobody --regid=nogroup --clear-groups script -qc \"su alice -c 'id -un'\" /dev/null";
            (await ContainerFixture.ShAsync(Client, name, $"(sleep 1; echo 'S3cret:pass') | {login}")).Should().EndWith("alice");
            (await ContainerFixture.ShAsync(Client, name, $"(sleep 1; echo wrong) | {login}")).Should().Contain("Authentication failure");

            // stopped by SIGRTMIN+3: systemd shuts down by itself, well within the timeout
            watch.Restart();
            (await Client.StopAsync(name)).Should().Be(VeStopMethod.Signal, "systemd ends on its stop signal, without a kill");
            watch.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(8));
            output.WriteLine($"stop: {watch.Elapsed.TotalSeconds:0.00} s");

            // a backup and a restored copy of it boot the same way
            var backups = new BackupClient(VirtuozzoRuntime.CreateLocal(fx.Containers.Options));
            var backup = await backups.CreateAsync(name);
            var copy = name + "-r";
            await backups.RestoreAsync(backup.Backup.Id, new BackupRestoreOptions { NewName = new VeName(copy) });
            try
            {
                await Client.StartAsync(copy);
                (await ContainerFixture.ShAsync(Client, copy, "systemctl is-system-running")).Should().Be("running");
                (await ContainerFixture.ShAsync(Client, copy, "id -un alice && test -d /home/alice && echo home")).Should().Be("alice\nhome");
                (await ContainerFixture.ShAsync(Client, copy, "stat -c %u /home/alice")).Should().Be("1000", "the restored copy's files moved to its own id range");
            }
            finally
            {
                await Client.DeleteAsync(copy);
            }
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_template_whose_init_exits_at_once_fails_the_start_with_its_output_and_is_rolled_back()
    {
        await Client.ListTemplatesAsync(); // the busybox template
        var busybox = Directory.EnumerateFiles(Path.Combine(fx.Containers.Root.Path, "templates"), "busybox.tar*").Single();
        await Client.ImportTemplateAsync(new ContainerTemplateImportOptions
        {
            Name = "dies-at-once",
            TarballPath = busybox,
            Init = ["/bin/sh", "-c", "echo init-says-bye; exit 3"],
        });
        var name = ContainerFixture.UniqueName("dies");
        await Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Template = "dies-at-once", Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        try
        {
            var start = () => Client.StartAsync(name);
            (await start.Should().ThrowAsync<CommandFailedException>()).Which.Message.Should().Contain("init-says-bye").And.Contain("exited");
            (await Client.GetAsync(name)).State.Should().Be(VeState.Stopped, "a failed start is rolled back, never reported running");
            var again = () => Client.StartAsync(name);
            await again.Should().ThrowAsync<CommandFailedException>("nothing was left behind that would change the outcome");
        }
        finally
        {
            await Client.DeleteAsync(name);
        }
    }

    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Updating_an_imported_template_is_refused_by_name_and_bad_template_options_are_typed_errors()
    {
        await Client.ListTemplatesAsync();
        var update = () => Client.UpdateTemplateAsync("busybox");
        (await update.Should().ThrowAsync<InvalidStateException>()).Which.Message.Should().Contain("import");
        var missing = () => Client.UpdateTemplateAsync("no-such-template");
        await missing.Should().ThrowAsync<NotFoundException>();
        var unknown = () => Client.CreateTemplateAsync(new ContainerTemplateCreateOptions { Name = "centos-7" });
        (await unknown.Should().ThrowAsync<ArgumentException>()).Which.Message.Should().Contain("debian-12");
        var badPackage = () => Client.CreateTemplateAsync(new ContainerTemplateCreateOptions { Name = "debian-12", Packages = ["vim; rm -rf /"] });
        await badPackage.Should().ThrowAsync<ArgumentException>();
        var password = () => Client.SetUserPasswordAsync("whatever", "alice", "two\nlines");
        await password.Should().ThrowAsync<ArgumentException>();
    }
}
