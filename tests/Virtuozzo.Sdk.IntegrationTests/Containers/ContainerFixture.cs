using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

/// <summary>A data root of its own for a test class, with a container client; everything is deleted afterwards.</summary>
public sealed class ContainerFixture : IAsyncLifetime
{
    public TempDirectory Root { get; } = new("vzsdk-ct");

    public ContainerClient Client { get; private set; } = null!;

    public VirtuozzoSdkOptions Options { get; private set; } = null!;

    public Task InitializeAsync()
    {
        // A bridge per fixture would clash; the tests share vzbr0 with distinct addresses.
        Options = new VirtuozzoSdkOptions { DataRoot = Root.Path, LockTimeout = TimeSpan.FromMinutes(2) };
        Client = new ContainerClient(VirtuozzoRuntime.CreateLocal(Options));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        try
        {
            foreach (var c in await Client.ListAsync(all: true))
                await Client.DeleteAsync(c.Id.ToString());
        }
        catch (VirtuozzoException) { }
        catch (ArgumentException) { }
        Root.Dispose();
    }

    public static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>Runs a shell script in a container, asserts that it succeeded and returns its trimmed output.</summary>
    public static async Task<string> ShAsync(ContainerClient client, string name, string script)
    {
        var r = await client.ExecAsync(name, new VeExecOptions { Command = ["sh", "-c", script] });
        r.ExitCode.Should().Be(0, "'{0}' should succeed; stderr: {1}", script, r.StandardError);
        return r.StandardOutput.Trim();
    }

    /// <summary>True when one ping from the host to <paramref name="address"/> is answered within 2 s.</summary>
    public static async Task<bool> PingAsync(string address)
        => (await new Virtuozzo.Sdk.Core.Hosts.LocalHost().ExecuteAsync(new Virtuozzo.Sdk.Core.Processes.Command("ping")
            .WithArguments("-c", "1", "-W", "2", address).WithValidation(Virtuozzo.Sdk.Core.Processes.CommandResultValidation.None))).ExitCode == 0;

    /// <summary>
    /// The sandbox of containers whose processes are checkpointed (CRIU): privileged, because CRIU cannot restore an
    /// unprivileged container's processes with runc 1.1 (docs/articles/containers/sandbox.md).
    /// </summary>
    public static ContainerSecurityOptions CheckpointableSecurity { get; } = new() { Privileged = true };
}

/// <summary>Container tests touch cgroups, mounts and the bridge: they run one class at a time.</summary>
[CollectionDefinition("containers", DisableParallelization = true)]
public sealed class ContainerCollection;
