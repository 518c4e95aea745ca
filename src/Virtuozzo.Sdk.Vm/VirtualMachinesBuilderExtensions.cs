using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Vm;

/// <summary>Registers the VM package with the SDK's builder.</summary>
public static class VirtualMachinesBuilderExtensions
{
    /// <summary>
    /// Registers <see cref="VirtualMachineClient"/> (a singleton over the SDK's one <see cref="VirtuozzoRuntime"/>) and
    /// lets <see cref="VirtualEnvironmentClient"/> see VMs. Idempotent; call it after <c>services.AddVirtuozzoSdk()</c>.
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
        builder.AddVeKind(VeKind.Vm, (rt, sp) => VirtualMachineClient.CreateDriver(rt, sp.GetRequiredService<IOptions<VirtualMachineClientOptions>>().Value));
        builder.Services.TryAddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<VirtualMachineClientOptions>>().Value;
            return new VirtualMachineClient(sp.GetRequiredService<VirtuozzoRuntime>(), o);
        });
        return builder;
    }

}
