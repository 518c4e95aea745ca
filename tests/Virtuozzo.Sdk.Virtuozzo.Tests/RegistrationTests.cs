using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>Choosing the Virtuozzo runtime (the code docs/articles/virtuozzo/runtime.md shows). Nothing connects: registration is lazy.</summary>
public class RegistrationTests
{
    [Fact]
    public async Task A_node_over_SSH_is_registered_for_every_client()
    {
        #region Snippet:VirtuozzoRegistration
        // The node, over SSH (key authentication; the host key must be in the known-hosts file).
        await using var node = new SshHost(new SshHostOptions
        {
            HostName = "node1.example.com",
            User = "root",
            KnownHostsFile = "/home/panel/.ssh/known_hosts",
        });

        var services = new ServiceCollection();
        services.AddVirtuozzoSdk()
            .UseVirtuozzoRuntime(node)   // prlctl on that node; new LocalHost() on the node itself
            .AddContainers()
            .AddVirtualMachines()
            .AddBackup()                 // prlctl backup, backup-list, restore, backup-delete
            .AddMigration();             // prlctl migrate, to MigrationDestination.ToVirtuozzoNode("node2")
        await using var provider = services.BuildServiceProvider();
        #endregion

        var runtime = provider.GetRequiredService<VirtuozzoRuntime>();
        runtime.Kind.Should().Be(RuntimeKind.Virtuozzo);
        runtime.Host.Should().BeSameAs(node);
        provider.GetRequiredService<ContainerClient>().Should().NotBeNull();
        provider.GetRequiredService<VirtualMachineClient>().Should().NotBeNull();
        provider.GetRequiredService<BackupClient>().Location.Should().Contain("root@node1.example.com");
        provider.GetRequiredService<MigrationClient>().Should().NotBeNull();
    }

    [Fact]
    public async Task A_runtime_is_made_without_dependency_injection_too()
    {
        #region Snippet:VirtuozzoWithoutDi
        await using var node = new SshHost(new SshHostOptions { HostName = "node1.example.com", KnownHostsFile = "/home/panel/.ssh/known_hosts" });
        var runtime = VirtuozzoRuntime.CreateVirtuozzo(node);
        var containers = new ContainerClient(runtime); // ContainerClient, VirtualMachineClient, BackupClient… as on any runtime
        #endregion
        containers.Should().NotBeNull();
        runtime.Kind.Should().Be(RuntimeKind.Virtuozzo);
    }

    [Fact]
    public void CreateVirtuozzo_refuses_a_null_host_and_invalid_options()
    {
        ((Action)(() => VirtuozzoRuntime.CreateVirtuozzo(null!))).Should().Throw<ArgumentNullException>();
        ((Action)(() => VirtuozzoRuntime.CreateVirtuozzo(new Testing.RecordedSessionHost(), new VirtuozzoSdkOptions { DataRoot = "" })))
            .Should().Throw<ArgumentException>();
    }

    [Fact]
    public void The_local_runtime_names_the_Virtuozzo_runtime_for_a_remote_host()
        => ((Action)(() => VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions
            {
                RemoteHost = new SshHostOptions { HostName = "node1", KnownHostsFile = "/dev/null" },
            })))
            .Should().Throw<UnsupportedOnHostException>().WithMessage("*CreateVirtuozzo*");
}
