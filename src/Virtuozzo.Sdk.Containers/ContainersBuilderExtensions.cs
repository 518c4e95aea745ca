using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Containers;

/// <summary>Registers <see cref="ContainerClient"/>.</summary>
public static class ContainersBuilderExtensions
{
    /// <summary>
    /// Adds <see cref="ContainerClient"/> (a singleton over the SDK's one <see cref="VirtuozzoRuntime"/>) and lets
    /// <see cref="VirtualEnvironmentClient"/> see containers. Idempotent.
    /// </summary>
    public static VirtuozzoSdkBuilder AddContainers(this VirtuozzoSdkBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddVeKind(VeKind.Container, (rt, _) => ContainerClient.CreateDriver(rt));
        builder.Services.TryAddSingleton(sp => new ContainerClient(sp.GetRequiredService<VirtuozzoRuntime>()));
        return builder;
    }
}
