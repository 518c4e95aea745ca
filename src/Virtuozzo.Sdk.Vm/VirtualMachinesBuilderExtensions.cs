using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Vm;

/// <summary>Registers the VM package with the SDK's builder.</summary>
public static class VirtualMachinesBuilderExtensions
{
    /// <summary>
    /// Registers <see cref="VirtualMachineClient"/> (a singleton sharing the SDK's host, state store and resource ledger).
    /// Idempotent; call it after <c>services.AddVirtuozzoSdk()</c>.
    /// </summary>
    /// <example>
    /// <code>
    /// services.AddVirtuozzoSdk(o => o.DataRoot = "/srv/vzsdk").AddVirtualMachines(o => o.StartTimeout = TimeSpan.FromMinutes(1));
    /// </code>
    /// </example>
    public static VirtuozzoSdkBuilder AddVirtualMachines(this VirtuozzoSdkBuilder builder, Action<VirtualMachineClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = builder.Services.AddOptions<VirtualMachineClientOptions>();
        if (configure is not null)
            options.Configure(configure);
        builder.Services.TryAddSingleton(sp =>
        {
            var host = sp.GetRequiredService<IVirtuozzoHost>();
            if (!host.IsLocal)
                throw new UnsupportedOnHostException($"The VM runtime manages the local machine only; '{host.Name}' is remote.");
            var loggers = sp.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance;
            return new VirtualMachineClient(
                host, sp.GetRequiredService<StateStore>(), sp.GetRequiredService<ResourceLedger>(),
                sp.GetRequiredService<IOptions<VirtualMachineClientOptions>>().Value, loggers.CreateLogger<VirtualMachineClient>(),
                sp.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value);
        });
        return builder;
    }
}
