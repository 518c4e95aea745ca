using System.Diagnostics;
using System.Text;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Vm;

[CollectionDefinition("shared-guest")]
public sealed class SharedGuestCollection : ICollectionFixture<SharedGuestFixture>;

/// <summary>Tests that share one booted guest (booting takes seconds under software emulation).</summary>
[Collection("shared-guest")]
public class SharedGuestTests(SharedGuestFixture env)
{
    private const string Vm = SharedGuestFixture.Name;

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task The_booted_guest_is_reported_running_and_its_guarantee_is_in_the_ledger()
    {
        var info = await env.Client.GetAsync(Vm);
        info.State.Should().Be(VeState.Running);
        info.ProcessId.Should().NotBeNull();
        var ledger = await env.Client.Ledger.GetSnapshotAsync();
        ledger.Reservations.Should().ContainSingle(r => r.VeId == info.Id)
            .Which.GuaranteeBytes.Should().BeGreaterThanOrEqualTo(ByteSize.FromGiB(1).Bytes * 80 / 100 - 1);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Exec_returns_the_output_and_the_exit_code_of_the_guest_program()
    {
        var ok = await env.Client.ExecAsync(Vm, new VeExecOptions { Command = ["/bin/uname", "-r"] });
        ok.ExitCode.Should().Be(0);
        ok.StandardOutput.Should().Contain("cloud-amd64");

        var failing = await env.Client.ExecAsync(Vm, new VeExecOptions { Command = ["exit 7; echo not reached"], Shell = true });
        failing.ExitCode.Should().Be(7);
        failing.StandardOutput.Should().BeEmpty();

        var withInput = await env.Client.ExecAsync(Vm, new VeExecOptions { Command = ["/bin/cat"], StandardInput = new MemoryStream(Encoding.UTF8.GetBytes("piped in")) });
        withInput.StandardOutput.Should().Be("piped in");

        var stderr = await env.Client.ExecAsync(Vm, new VeExecOptions { Command = ["echo oops >&2; exit 3"], Shell = true });
        (stderr.ExitCode, stderr.StandardError.Trim()).Should().Be((3, "oops"));
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task The_data_disk_made_on_the_host_is_mounted_in_the_guest()
    {
        (await env.ShAsync(Vm, "cat /mnt/data/hello.txt")).Should().Be("hello from the data disk\n");
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task A_password_set_through_the_guest_tools_is_the_users_password_in_the_guest()
    {
        await env.Client.SetUserPasswordAsync(Vm, "guest", "s3cret-Pa55");
        var entry = (await env.ShAsync(Vm, "grep '^guest:' /etc/shadow")).Trim().Split(':')[1];
        entry.Should().StartWith("$6$");
        var salt = entry.Split('$')[2];
        var recomputed = (await env.ShAsync(Vm, $"mkpasswd -m sha512 -S '{salt}' 's3cret-Pa55'")).Trim();
        recomputed.Should().Be(entry);
        var wrong = (await env.ShAsync(Vm, $"mkpasswd -m sha512 -S '{salt}' 'other'")).Trim();
        wrong.Should().NotBe(entry);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Guest_network_info_shows_the_nic_with_its_mac_and_dhcp_address()
    {
        var info = await env.Client.GetAsync(Vm);
        IReadOnlyList<VmGuestInterface> nics = [];
        for (var i = 0; i < 50; i++)
        {
            nics = await env.Client.GetGuestNetworkAsync(Vm);
            if (nics.Any(n => n.Addresses.Any(a => a.Address == "10.0.2.15")))
                break;
            await Task.Delay(200);
        }
        nics.Should().Contain(n => n.Name == "lo");
        var eth = nics.Should().ContainSingle(n => n.MacAddress == info.MacAddress).Subject;
        eth.Addresses.Should().Contain(a => a.Address == "10.0.2.15" && a.PrefixLength == 24 && !a.IsIPv6);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task A_new_client_in_a_new_process_state_reattaches_to_the_running_vm()
    {
        var other = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(env.SdkOptions));
        var info = await other.GetAsync(Vm);
        info.State.Should().Be(VeState.Running);
        (await other.ExecAsync(Vm, new VeExecOptions { Command = ["/bin/echo", "again"] })).StandardOutput.Should().Be("again\n");
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Pause_stops_the_guest_clock_and_resume_continues_it()
    {
        await env.Client.PauseAsync(Vm);
        (await env.Client.GetAsync(Vm)).State.Should().Be(VeState.Paused);
        await env.Client.ResumeAsync(Vm);
        (await env.Client.GetAsync(Vm)).State.Should().Be(VeState.Running);
        (await env.ShAsync(Vm, "echo alive")).Should().Be("alive\n");
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Memory_hotplug_up_and_down_is_seen_in_the_guests_meminfo()
    {
        var start = (await env.Client.GetAsync(Vm)).MemorySize;
        var before = VmTestEnvironment.MemTotalKiB(await env.ShAsync(Vm, "cat /proc/meminfo"));
        var grownTo = ByteSize.FromBytes(start.Bytes + 256 * ByteSize.MiB);
        var grown = await env.Client.SetAsync(Vm, new VmSetOptions { MemorySize = grownTo });
        grown.MemorySize.Should().Be(grownTo);
        long after = 0;
        for (var i = 0; i < 300 && after < before + 200 * 1024; i++)
        {
            after = VmTestEnvironment.MemTotalKiB(await env.ShAsync(Vm, "cat /proc/meminfo"));
            await Task.Delay(100);
        }
        after.Should().BeGreaterThan(before + 200 * 1024, "256 MiB were added (balloon deflated, then a DIMM plugged)");

        var shrunkTo = ByteSize.FromBytes(grownTo.Bytes - 512 * ByteSize.MiB);
        await env.Client.SetAsync(Vm, new VmSetOptions { MemorySize = shrunkTo });
        long shrunk = after;
        // the guest gives pages back to the balloon at its own pace: up to 30 s on a loaded two-CPU host under TCG
        for (var i = 0; i < 300 && shrunk > after - 400 * 1024; i++)
        {
            await Task.Delay(100);
            shrunk = VmTestEnvironment.MemTotalKiB(await env.ShAsync(Vm, "cat /proc/meminfo"));
        }
        shrunk.Should().BeLessThan(after - 400 * 1024, "the balloon took back 512 MiB");
        (await env.Client.GetAsync(Vm)).MemorySize.Should().Be(shrunkTo);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Cpu_hotplug_adds_a_vcpu_the_guest_sees_online()
    {
        var before = int.Parse((await env.ShAsync(Vm, "grep -c ^processor /proc/cpuinfo")).Trim());
        var info = await env.Client.SetAsync(Vm, new VmSetOptions { Cpus = before + 1 });
        info.Cpus.Should().Be(before + 1);
        var after = int.Parse((await env.ShAsync(Vm, "grep -c ^processor /proc/cpuinfo")).Trim());
        after.Should().Be(before + 1);
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task A_hotplugged_disk_appears_as_a_block_device_grows_online_and_goes_away_when_removed()
    {
        var before = await env.ShAsync(Vm, "ls /sys/block");
        var disk = await env.Client.AddDiskAsync(Vm, new VmDiskOptions { Size = ByteSize.FromMiB(64) });
        string now = before;
        for (var i = 0; i < 100 && now == before; i++)
        {
            await Task.Delay(100);
            now = await env.ShAsync(Vm, "ls /sys/block");
        }
        var added = now.Split('\n', StringSplitOptions.RemoveEmptyEntries).Except(before.Split('\n', StringSplitOptions.RemoveEmptyEntries)).Should().ContainSingle().Subject;
        (await env.ShAsync(Vm, $"cat /sys/block/{added}/size")).Trim().Should().Be((64L * 1024 * 1024 / 512).ToString());

        await env.Client.ResizeDiskAsync(Vm, disk.Name, ByteSize.FromMiB(96));
        (await env.ShAsync(Vm, $"cat /sys/block/{added}/size")).Trim().Should().Be((96L * 1024 * 1024 / 512).ToString());
        (await env.Client.GetAsync(Vm)).Disks.Should().ContainSingle(d => d.Name == disk.Name).Which.Size.Should().Be(ByteSize.FromMiB(96));

        await env.Client.RemoveDiskAsync(Vm, disk.Name);
        (await env.ShAsync(Vm, "ls /sys/block")).Should().NotContain(added);
        File.Exists(disk.ImagePath).Should().BeFalse();
    }

    [IntegrationFact("qemu-system-x86_64", "qemu-img", "mkfs.ext4")]
    public async Task Suspend_and_resume_keep_the_guests_uptime_counting_from_before()
    {
        // Hotplugged memory and vCPUs must come back too: the resumed emulator is rebuilt with them.
        var info = await env.Client.GetAsync(Vm);
        await env.Client.SetAsync(Vm, new VmSetOptions { MemorySize = ByteSize.FromBytes(info.MemorySize.Bytes + 128 * ByteSize.MiB), Cpus = Math.Min(info.Cpus!.Value + 1, info.MaxCpus) });
        await Task.Delay(500);
        var memBefore = VmTestEnvironment.MemTotalKiB(await env.ShAsync(Vm, "cat /proc/meminfo"));
        var cpusBefore = (await env.ShAsync(Vm, "grep -c ^processor /proc/cpuinfo")).Trim();
        var uptime = double.Parse((await env.ShAsync(Vm, "cut -d' ' -f1 /proc/uptime")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        await env.ShAsync(Vm, "echo kept-in-memory > /tmp/marker");
        await env.Client.SuspendAsync(Vm);
        var suspended = await env.Client.GetAsync(Vm);
        suspended.State.Should().Be(VeState.Suspended);
        suspended.ProcessId.Should().BeNull();
        (await env.Client.Ledger.GetSnapshotAsync()).Reservations.Should().NotContain(r => r.VeId == suspended.Id);

        await env.Client.ResumeAsync(Vm);
        (await env.Client.GetAsync(Vm)).State.Should().Be(VeState.Running);
        var later = double.Parse((await env.ShAsync(Vm, "cut -d' ' -f1 /proc/uptime")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        later.Should().BeGreaterThanOrEqualTo(uptime);
        (await env.ShAsync(Vm, "cat /tmp/marker")).Should().Be("kept-in-memory\n");
        VmTestEnvironment.MemTotalKiB(await env.ShAsync(Vm, "cat /proc/meminfo")).Should().Be(memBefore);
        (await env.ShAsync(Vm, "grep -c ^processor /proc/cpuinfo")).Trim().Should().Be(cpusBefore);
    }
}
