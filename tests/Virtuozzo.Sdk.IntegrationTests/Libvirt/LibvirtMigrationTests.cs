using System.Net;
using System.Net.Sockets;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Libvirt;

/// <summary>
/// A second libvirtd on this machine, standing for a second libvirt host: its own mount namespace (private /run/libvirt
/// and /var/lib/libvirt, its own virtlogd), in which the source's data root is covered by an empty tmpfs (so a VM's disks
/// must travel: nothing passes through the file system), its own host UUID (libvirt refuses a migration to the same
/// host), listening on 127.0.0.1 over TCP without authentication (tests only).
/// </summary>
public sealed class SecondLibvirtd : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("vzsdk-libvirtd2");

    private SecondLibvirtd(int port) => Port = port;

    public int Port { get; }

    public string Uri => $"qemu+tcp://127.0.0.1:{Port}/system";

    public static async Task<SecondLibvirtd> StartAsync(string hiddenPath)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var d = new SecondLibvirtd(port);
        File.WriteAllText(d._dir.File("libvirtd.conf"), $"""
            listen_tls = 0
            listen_tcp = 1
            tcp_port = "{port}"
            listen_addr = "127.0.0.1"
            auth_tcp = "none"
            host_uuid = "{Guid.NewGuid()}"
            """);
        File.WriteAllText(d._dir.File("start.sh"), $"""
            set -e
            mount -t tmpfs tmpfs /run/libvirt
            mount -t tmpfs tmpfs /var/lib/libvirt
            mkdir -p /var/lib/libvirt/qemu
            mount -t tmpfs tmpfs '{hiddenPath}'
            test -z "$(ls -A '{hiddenPath}')"
            virtlogd -d -p '{d._dir.File("virtlogd.pid")}'
            libvirtd -d -l -f '{d._dir.File("libvirtd.conf")}' -p '{d._dir.File("libvirtd.pid")}'
            """);
        var (code, output) = await LibvirtFixture.Run("unshare", "-m", "--propagation", "private", "sh", d._dir.File("start.sh"));
        code.Should().Be(0, "the second libvirtd should start: {0}", output);
        for (var i = 0; i < 100 && (await LibvirtFixture.Run("virsh", "-c", d.Uri, "list")).ExitCode != 0; i++)
            await Task.Delay(100);
        (await LibvirtFixture.Run("virsh", "-c", d.Uri, "list")).ExitCode.Should().Be(0, "the second libvirtd should answer on {0}", d.Uri);
        return d;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            var (_, names) = await LibvirtFixture.Run("virsh", "-c", Uri, "list", "--all", "--name");
            foreach (var name in names.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                await LibvirtFixture.Run("virsh", "-c", Uri, "destroy", name);
                await LibvirtFixture.Run("virsh", "-c", Uri, "undefine", name);
            }
        }
        finally
        {
            foreach (var pid in new[] { "libvirtd.pid", "virtlogd.pid" })
            {
                if (File.Exists(_dir.File(pid)) && int.TryParse(File.ReadAllText(_dir.File(pid)).Trim(), out var p))
                {
                    try { System.Diagnostics.Process.GetProcessById(p).Kill(); } catch (ArgumentException) { } catch (InvalidOperationException) { }
                }
            }
            _dir.Dispose();
        }
    }
}

/// <summary>Live migration through libvirt (<c>virDomainMigrateToURI3</c>, peer to peer) between two real libvirtds.</summary>
[Collection("libvirt")]
public sealed class LibvirtMigrationTests(LibvirtFixture env)
{
    private sealed class Recorder : IProgress<MigrationProgress>
    {
        public List<MigrationProgress> Seen { get; } = [];

        public void Report(MigrationProgress value)
        {
            lock (Seen)
                Seen.Add(value);
        }
    }

    [IntegrationFact("libvirtd", "virtlogd", "virsh", "unshare", "qemu-system-x86_64", Root = true)]
    public async Task A_running_VM_moves_live_to_another_libvirtd_with_its_state_and_a_cancelled_move_leaves_it_home()
    {
        await using var dest = await SecondLibvirtd.StartAsync(env.Root.Path);
        var vm = await env.Vms.CreateAsync(env.GuestVm("mig"));
        var name = vm.Name.Value;
        await env.Vms.StartAsync(name);
        await env.Vms.WaitForGuestToolsAsync(name, TimeSpan.FromSeconds(120));
        (await env.Vms.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", "echo kept > /marker"] })).ExitCode.Should().Be(0);
        var migrations = new MigrationClient(env.Runtime);
        var to = MigrationDestination.ToLibvirt(dest.Uri, "127.0.0.1");

        // Cancelled: a 1 MiB/s limit keeps the job running long enough to abort it; the VM stays running at home.
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2)))
        {
            await FluentActions.Awaiting(() => migrations.MigrateAsync(name, to, new MigrationOptions { MaxBandwidthPerSecond = ByteSize.FromMiB(1) }, null, cts.Token))
                .Should().ThrowAsync<OperationCanceledException>();
        }
        (await env.Vms.GetAsync(name)).State.Should().Be(VeState.Running);
        (await LibvirtFixture.Run("virsh", "-c", dest.Uri, "list", "--all", "--name")).Output.Should().NotContain(name);
        (await env.Vms.ExecAsync(name, new VeExecOptions { Command = ["/bin/cat", "/marker"] })).StandardOutput.Trim().Should().Be("kept");

        var progress = new Recorder();
        var diskPath = vm.Disks[0].ImagePath;
        var sum = (await env.Vms.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", "dd if=/dev/urandom of=/dev/vda bs=1M count=8 2>/dev/null && sync && head -c 8388608 /dev/vda | md5sum"] }))
            .StandardOutput.Trim();
        sum.Should().MatchRegex("^[0-9a-f]{32}");
        var result = await migrations.MigrateAsync(name, to, null, progress);
        result.Mode.Should().Be(MigrationMode.Online);
        result.DiskBytes.Should().BePositive("the disk is on a local file system, so it was copied");
        File.Exists(diskPath).Should().BeFalse("the source's stale copy of a moved disk is removed");
        result.TransferMeasured.Should().BeTrue();
        result.MemoryBytes.Should().BePositive();
        result.Downtime.Should().BePositive().And.BeLessThan(TimeSpan.FromSeconds(10));
        progress.Seen.Select(p => p.Phase).Should().Contain(MigrationPhase.Preparing).And.Contain(MigrationPhase.CleaningUp);
        (await LibvirtFixture.Run("virsh", "-c", dest.Uri, "domblklist", name)).Output.Should().Contain(diskPath, "the disk sits at the same path on the destination");

        (await LibvirtFixture.Virsh("list", "--all", "--name")).Output.Should().NotContain(name, "the source's definition is undefined");
        (await LibvirtFixture.Run("virsh", "-c", dest.Uri, "domstate", name)).Output.Trim().Should().Be("running");
        var there = new VirtualMachineClient(VirtuozzoRuntime.CreateLibvirt(dest.Uri, env.Options));
        (await there.ExecAsync(name, new VeExecOptions { Command = ["/bin/cat", "/marker"] })).StandardOutput.Trim().Should().Be("kept", "the guest kept its memory");
        (await there.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", "head -c 8388608 /dev/vda | md5sum"] })).StandardOutput.Trim()
            .Should().Be(sum, "the disk's data moved with it");
        await there.KillAsync(name);
        (await there.DeleteAsync(name)).Should().BeTrue();

        // What libvirt cannot do is refused before anything moves.
        await FluentActions.Awaiting(() => migrations.MigrateAsync(name, to)).Should().ThrowAsync<NotFoundException>();
        await FluentActions.Awaiting(() => migrations.MigrateAsync("x", MigrationDestination.ToLibvirt(LibvirtFixture.Uri))).Should().ThrowAsync<ArgumentException>();
        FluentActions.Invoking(() => MigrationDestination.ToLibvirt("nonsense")).Should().Throw<ArgumentException>();
    }
}
