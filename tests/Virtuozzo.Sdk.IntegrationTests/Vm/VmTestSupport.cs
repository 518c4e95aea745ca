using System.Text.RegularExpressions;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Vm;

/// <summary>A data root of its own, a client on it, and the test guest's files; kills every VM left running on dispose.</summary>
public class VmTestEnvironment : IAsyncLifetime
{
    public TempDirectory Root { get; } = new("vzsdk-vm");

    public VirtualMachineClient Client { get; private set; } = null!;

    public TestGuest Guest { get; private set; } = null!;

    public VirtuozzoSdkOptions SdkOptions => new() { DataRoot = Root.Path, LockTimeout = TimeSpan.FromSeconds(90) };

    public virtual async Task InitializeAsync()
    {
        Guest = await TestGuest.GetAsync();
        Client = new VirtualMachineClient(VirtuozzoRuntime.CreateLocal(SdkOptions));
    }

    /// <summary>Options for a VM that boots the test guest directly.</summary>
    public VmCreateOptions GuestVm(string name, bool deaf = false) => new()
    {
        Name = VeName.TryParse(name, out var n) ? n : throw new ArgumentException($"'{name}' is not a valid VE name.", nameof(name)),
        MemorySize = ByteSize.FromMiB(512),
        KernelPath = Guest.KernelPath,
        InitrdPath = Guest.InitrdPath,
        KernelCommandLine = deaf ? TestGuest.DeafCommandLine : TestGuest.CommandLine,
        Acceleration = VmAcceleration.Auto,
        Network = VmNetworkMode.User,
    };

    public async Task<string> ShAsync(string vm, string script)
    {
        var r = await Client.ExecAsync(vm, new VeExecOptions { Command = ["/bin/sh", "-c", script], Timeout = TimeSpan.FromSeconds(30) });
        r.ExitCode.Should().Be(0, "'{0}' should succeed in the guest; stderr: {1}", script, r.StandardError);
        return r.StandardOutput;
    }

    public static long MemTotalKiB(string meminfo) => long.Parse(Regex.Match(meminfo, @"MemTotal:\s+(\d+) kB").Groups[1].Value);

    public async Task DisposeAsync()
    {
        try
        {
            foreach (var vm in await Client.ListAsync())
            {
                if (vm.ProcessId is not null || vm.State is VeState.Running or VeState.Paused or VeState.Busy)
                    await Client.KillAsync(vm.Id.ToString());
            }
        }
        finally
        {
            Root.Dispose();
        }
    }
}

/// <summary>One guest booted for a whole test class: 1 GiB with memory hotplug, 1 of 3 vCPUs, an ext4 data disk.</summary>
public sealed class SharedGuestFixture : VmTestEnvironment
{
    public const string Name = "shared";

    public VmInfo Vm { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        var disk = await TestGuest.MakeExt4DiskAsync(Root.Path, "data", 64, new Dictionary<string, string> { ["hello.txt"] = "hello from the data disk\n" });
        Vm = await Client.CreateAsync(GuestVm(Name) with
        {
            MemorySize = ByteSize.FromGiB(1),
            MemoryHotplug = true,
            MaxMemory = ByteSize.FromGiB(2),
            Cpus = 1,
            MaxCpus = 3,
            Disks = [new VmDiskOptions { SourceImagePath = disk }],
        });
        await Client.StartAsync(Name);
        await Client.WaitForGuestToolsAsync(Name, TimeSpan.FromSeconds(60));
    }
}
