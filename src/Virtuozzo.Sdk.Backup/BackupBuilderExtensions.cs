using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.Backup;

/// <summary>Registers <see cref="BackupClient"/>.</summary>
public static class BackupBuilderExtensions
{
    /// <summary>
    /// Adds <see cref="BackupClient"/> over the SDK's one runtime (and <see cref="ContainerClient"/> and
    /// <see cref="VirtualMachineClient"/>, whose VEs it backs up). Idempotent.
    /// </summary>
    public static VirtuozzoSdkBuilder AddBackup(this VirtuozzoSdkBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddContainers();
        builder.AddVirtualMachines();
        builder.Services.TryAddSingleton(sp => new BackupClient(sp.GetRequiredService<VirtuozzoRuntime>()));
        return builder;
    }
}
