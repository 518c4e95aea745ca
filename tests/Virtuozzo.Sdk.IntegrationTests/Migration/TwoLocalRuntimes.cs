using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Vm;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Migration;

/// <summary>
/// A source runtime with the test guest (<see cref="VmTestEnvironment"/>) and a destination runtime on a data root of its
/// own, for VM migrations between two local runtimes; VMs left running on the destination are killed on dispose.
/// </summary>
public abstract class TwoLocalRuntimes(string destinationPrefix) : IAsyncLifetime
{
    protected readonly VmTestEnvironment _source = new();
    protected readonly TempDirectory _destinationRoot = new(destinationPrefix);
    protected VirtuozzoRuntime _destinationRuntime = null!;
    protected VirtualMachineClient _destination = null!;

    public async Task InitializeAsync()
    {
        await _source.InitializeAsync();
        _destinationRuntime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = _destinationRoot.Path, LockTimeout = TimeSpan.FromSeconds(90) });
        _destination = new VirtualMachineClient(_destinationRuntime);
    }

    public async Task DisposeAsync()
    {
        try
        {
            foreach (var vm in await _destination.ListAsync())
            {
                if (vm.State != VeState.Stopped)
                    await _destination.KillAsync(vm.Id.ToString());
            }
        }
        finally
        {
            _destinationRoot.Dispose();
            await _source.DisposeAsync();
        }
    }

    protected static async Task<string> ShAsync(VirtualMachineClient vms, string name, string script)
    {
        var r = await vms.ExecAsync(name, new VeExecOptions { Command = ["/bin/sh", "-c", script], Timeout = TimeSpan.FromSeconds(30) });
        r.ExitCode.Should().Be(0, "'{0}' should succeed in the guest; stderr: {1}", script, r.StandardError);
        return r.StandardOutput;
    }

    /// <summary>What the destination's data root holds under <c>private/</c> (empty when nothing was made there).</summary>
    protected string[] DestinationPrivateEntries()
    {
        var dir = Path.Combine(_destinationRoot.Path, "private");
        return Directory.Exists(dir) ? Directory.GetFileSystemEntries(dir) : [];
    }
}
