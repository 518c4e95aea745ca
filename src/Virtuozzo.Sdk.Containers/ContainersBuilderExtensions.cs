using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Resources;

namespace Virtuozzo.Sdk.Containers;

/// <summary>Registers <see cref="ContainerClient"/>.</summary>
public static class ContainersBuilderExtensions
{
    /// <summary>Adds <see cref="ContainerClient"/> (a singleton sharing the SDK's host, options and resource ledger). Idempotent.</summary>
    public static VirtuozzoSdkBuilder AddContainers(this VirtuozzoSdkBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddSingleton(sp => new ContainerClient(
            sp.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value,
            sp.GetRequiredService<IVirtuozzoHost>(),
            sp.GetRequiredService<ResourceLedger>(),
            sp.GetService<ILoggerFactory>()));
        return builder;
    }
}
