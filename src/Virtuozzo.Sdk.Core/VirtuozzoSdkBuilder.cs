using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core;

/// <summary>
/// Returned by <see cref="VirtuozzoSdkServiceCollectionExtensions.AddVirtuozzoSdk"/>; the SDK's other packages extend it
/// (<c>.AddContainers()</c>, <c>.AddVirtualMachines()</c>, <c>.AddBackup()</c>…).
/// </summary>
public sealed class VirtuozzoSdkBuilder
{
    internal VirtuozzoSdkBuilder(IServiceCollection services) => Services = services;

    /// <summary>The service collection the SDK is registered in.</summary>
    public IServiceCollection Services { get; }
}

/// <summary>Registers the SDK with Microsoft.Extensions.DependencyInjection.</summary>
public static class VirtuozzoSdkServiceCollectionExtensions
{
    /// <summary>
    /// Registers the SDK's core services: <see cref="IVirtuozzoHost"/> (the local machine, or a remote one when
    /// <see cref="VirtuozzoSdkOptions.RemoteHost"/> is set) and the <see cref="ResourceLedger"/>. Idempotent: calling it
    /// again only adds the extra configuration. Options are validated when first resolved (and at start with a generic host).
    /// </summary>
    /// <example>
    /// <code>
    /// services.AddVirtuozzoSdk(o => o.DataRoot = "/srv/vzsdk");
    /// </code>
    /// </example>
    public static VirtuozzoSdkBuilder AddVirtuozzoSdk(this IServiceCollection services, Action<VirtuozzoSdkOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptions<VirtuozzoSdkOptions>();
        if (configure is not null)
            options.Configure(configure);
        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<VirtuozzoSdkOptions>, VirtuozzoSdkOptionsValidator>());

        services.TryAddSingleton<IVirtuozzoHost>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
            var loggers = sp.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance;
            return o.RemoteHost is { } remote
                ? new SshHost(remote, loggers.CreateLogger<SshHost>())
                : new LocalHost(loggers.CreateLogger<LocalHost>());
        });
        services.TryAddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
            return new StateStore(o.DataRoot, o.LockTimeout);
        });
        services.TryAddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
            return new ResourceLedger(sp.GetRequiredService<StateStore>(), ResourceLedger.LocalCapacity(o));
        });
        return new VirtuozzoSdkBuilder(services);
    }
}

internal sealed class VirtuozzoSdkOptionsValidator : IValidateOptions<VirtuozzoSdkOptions>
{
    public ValidateOptionsResult Validate(string? name, VirtuozzoSdkOptions options)
    {
        var errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
