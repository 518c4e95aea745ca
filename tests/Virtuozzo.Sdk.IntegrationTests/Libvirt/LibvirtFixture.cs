using System.Diagnostics;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Libvirt;

/// <summary>
/// A real libvirtd (started here when its socket is absent: these machines have no systemd), a libvirt runtime on
/// <c>qemu:///system</c> with a data root of its own, and the test guest. Every domain the tests define is named with the
/// fixture's prefix and undefined on dispose, so that a failed test leaves nothing in <c>virsh list --all</c>.
/// </summary>
public sealed class LibvirtFixture : IAsyncLifetime
{
    public const string Uri = "qemu:///system";

    public static readonly string[] Tools = ["libvirtd", "virtlogd", "virsh", "qemu-system-x86_64"];

    public TempDirectory Root { get; } = new("vzsdk-libvirt");

    public string Prefix { get; } = "lvt" + Guid.NewGuid().ToString("N")[..6] + "-";

    public VirtuozzoRuntime Runtime { get; private set; } = null!;

    public VirtualMachineClient Vms { get; private set; } = null!;

    public TestGuest Guest { get; private set; } = null!;

    public VirtuozzoSdkOptions Options => new() { DataRoot = Root.Path, LockTimeout = TimeSpan.FromSeconds(90) };

    public async Task InitializeAsync()
    {
        if (Prerequisites.MissingReason(true, Tools) is not null)
            return; // the tests report it (a skip outside CI, a failure in CI)
        await EnsureDaemonAsync();
        Guest = await TestGuest.GetAsync();
        Runtime = VirtuozzoRuntime.CreateLibvirt(Uri, Options);
        Vms = new VirtualMachineClient(Runtime);
    }

    /// <summary>Starts virtlogd and libvirtd when libvirtd's socket does not answer.</summary>
    public static async Task EnsureDaemonAsync()
    {
        if ((await Virsh("list")).ExitCode == 0)
            return;
        foreach (var daemon in new[] { "virtlogd", "libvirtd" })
        {
            if ((await Run("pgrep", "-x", daemon)).ExitCode != 0)
                (await Run(daemon, "-d")).ExitCode.Should().Be(0, $"{daemon} -d should start the daemon");
        }
        for (var i = 0; i < 100 && (await Virsh("list")).ExitCode != 0; i++)
            await Task.Delay(100);
        (await Virsh("list")).ExitCode.Should().Be(0, "libvirtd should answer on qemu:///system");
    }

    /// <summary>The test guest, booted directly; with memory hotplug it has 1 GiB (the SDK's minimum for hotplug) and may reach 2 GiB.</summary>
    public VmCreateOptions GuestVm(string name, bool hotplug = false) => new()
    {
        Name = new VeName(Prefix + name),
        MemorySize = hotplug ? ByteSize.FromGiB(1) : ByteSize.FromMiB(512),
        MemoryHotplug = hotplug,
        MaxMemory = hotplug ? ByteSize.FromGiB(2) : null,
        Cpus = 1,
        MaxCpus = 2,
        KernelPath = Guest.KernelPath,
        InitrdPath = Guest.InitrdPath,
        KernelCommandLine = TestGuest.CommandLine,
        Network = VmNetworkMode.User,
        Disks = [new VmDiskOptions { Size = ByteSize.FromMiB(64) }],
    };

    public static Task<(int ExitCode, string Output)> Virsh(params string[] args) => Run("virsh", ["-c", Uri, .. args]);

    public static async Task<(int ExitCode, string Output)> Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout + await stderr);
    }

    public async Task DisposeAsync()
    {
        try
        {
            var (_, names) = await Virsh("list", "--all", "--name");
            foreach (var name in names.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)))
            {
                await Virsh("destroy", name);
                await Virsh("undefine", name, "--managed-save", "--snapshots-metadata", "--checkpoints-metadata");
            }
        }
        catch (Exception)
        {
            // nothing to clean when libvirt is absent
        }
        Root.Dispose();
    }
}

[CollectionDefinition("libvirt")]
public sealed class LibvirtCollection : ICollectionFixture<LibvirtFixture>;
