using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.Migration;

/// <summary>Registers <see cref="MigrationClient"/>.</summary>
public static class MigrationBuilderExtensions
{
    /// <summary>
    /// Adds <see cref="MigrationClient"/> over the SDK's one runtime (and <see cref="ContainerClient"/> and
    /// <see cref="VirtualMachineClient"/>, whose VEs it migrates). Idempotent.
    /// </summary>
    public static VirtuozzoSdkBuilder AddMigration(this VirtuozzoSdkBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddContainers();
        builder.AddVirtualMachines();
        builder.Services.TryAddSingleton(sp => new MigrationClient(sp.GetRequiredService<VirtuozzoRuntime>()));
        return builder;
    }
}
