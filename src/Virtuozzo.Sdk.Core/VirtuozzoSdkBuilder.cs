using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.Runtime;

namespace Virtuozzo.Sdk.Core;

/// <summary>
/// Returned by <see cref="VirtuozzoSdkServiceCollectionExtensions.AddVirtuozzoSdk(IServiceCollection, Action{VirtuozzoSdkOptions}?)"/>; chooses the runtime
/// (<see cref="UseLocalRuntime"/>) and is extended by the SDK's other packages (<c>.AddContainers()</c>,
/// <c>.AddVirtualMachines()</c>, <c>.AddBackup()</c>…).
/// </summary>
public sealed class VirtuozzoSdkBuilder
{
    internal VirtuozzoSdkBuilder(IServiceCollection services) => Services = services;

    /// <summary>The service collection the SDK is registered in.</summary>
    public IServiceCollection Services { get; }

    /// <summary>
    /// Chooses the local runtime: this machine, managed by the SDK itself (the default when no runtime is chosen).
    /// </summary>
    public VirtuozzoSdkBuilder UseLocalRuntime()
    {
        Services.Configure<VirtuozzoSdkOptions>(o => o.Runtime = RuntimeKind.Local);
        return this;
    }

    /// <summary>
    /// Chooses the Virtuozzo runtime: a Virtuozzo Hybrid Server 7 / OpenVZ 7 node driven through <c>prlctl</c> and
    /// <c>vzctl</c> on <paramref name="host"/> (<see cref="LocalHost"/> on the node, or an <see cref="SshHost"/>). See
    /// <see cref="VirtuozzoRuntime.CreateVirtuozzo"/>.
    /// </summary>
    /// <param name="host">The node. The caller keeps owning it: dispose an <see cref="SshHost"/> after the service provider.</param>
    /// <exception cref="ArgumentNullException"><paramref name="host"/> is null.</exception>
    /// <example>
    /// <code>
    /// services.AddVirtuozzoSdk()
    ///     .UseVirtuozzoRuntime(new SshHost(new SshHostOptions { HostName = "node1.example.com", User = "root" }))
    ///     .AddContainers()
    ///     .AddVirtualMachines();
    /// </code>
    /// </example>
    public VirtuozzoSdkBuilder UseVirtuozzoRuntime(IVirtuozzoHost host)
    {
        ArgumentNullException.ThrowIfNull(host);
        Services.Configure<VirtuozzoSdkOptions>(o => o.Runtime = RuntimeKind.Virtuozzo);
        Services.RemoveAll<VirtuozzoNodeHost>();
        Services.AddSingleton(new VirtuozzoNodeHost(host));
        return this;
    }

    /// <summary>
    /// Chooses the libvirt runtime: VMs defined and driven by the libvirt daemon at <paramref name="uri"/>
    /// (<c>qemu:///system</c>, <c>qemu+ssh://root@host/system</c>, <c>vz+ssh://root@node/system</c>). See
    /// <see cref="VirtuozzoRuntime.CreateLibvirt"/>. Containers are refused on this runtime (except through Virtuozzo's
    /// <c>vz</c> driver): <c>AddContainers()</c> then contributes nothing to the unified client.
    /// </summary>
    /// <exception cref="ArgumentException">The URI is malformed.</exception>
    /// <example>
    /// <code>
    /// services.AddVirtuozzoSdk().UseLibvirtRuntime("qemu:///system").AddVirtualMachines();
    /// </code>
    /// </example>
    public VirtuozzoSdkBuilder UseLibvirtRuntime(string uri)
    {
        if (Runtime.Libvirt.LibvirtConnection.ValidateUri(uri) is { } problem)
            throw new ArgumentException(problem, nameof(uri));
        Services.Configure<VirtuozzoSdkOptions>(o => o.Runtime = RuntimeKind.Libvirt);
        Services.RemoveAll<LibvirtUri>();
        Services.AddSingleton(new LibvirtUri(uri));
        return this;
    }

    /// <summary>Makes a VE kind's driver part of every runtime this container builds (used by the kind packages). Idempotent.</summary>
    internal VirtuozzoSdkBuilder AddVeKind(VeKind kind, Func<VirtuozzoRuntime, IServiceProvider, IVeDriver> factory)
    {
        if (!Services.Any(d => d.ServiceType == typeof(VeDriverRegistration) && d.ImplementationInstance is VeDriverRegistration r && r.Kind == kind))
            Services.AddSingleton(new VeDriverRegistration(kind, factory));
        return this;
    }
}

/// <summary>Registers the SDK with Microsoft.Extensions.DependencyInjection.</summary>
public static class VirtuozzoSdkServiceCollectionExtensions
{
    /// <summary>
    /// Registers the SDK's root: one <see cref="VirtuozzoRuntime"/> (the local runtime unless another is chosen on the
    /// returned builder), its <see cref="IVirtuozzoHost"/> and <see cref="ResourceLedger"/>, and
    /// <see cref="VirtualEnvironmentClient"/>. Every client resolved from the container shares that runtime. Idempotent:
    /// calling it again only adds the extra configuration. Options are validated when first resolved (and at start with a
    /// generic host).
    /// </summary>
    /// <example>
    /// <code>
    /// services.AddVirtuozzoSdk(o => o.DataRoot = "/srv/vzsdk").UseLocalRuntime().AddContainers().AddVirtualMachines();
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

        services.TryAddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<VirtuozzoSdkOptions>>().Value;
            var runtime = o.Runtime switch
            {
                RuntimeKind.Local => VirtuozzoRuntime.CreateLocal(o, sp.GetService<ILoggerFactory>()),
                RuntimeKind.Virtuozzo => VirtuozzoRuntime.CreateVirtuozzo(
                    sp.GetService<VirtuozzoNodeHost>()?.Host ?? throw new InvalidOperationException(
                        "The Virtuozzo runtime needs its node: choose it with UseVirtuozzoRuntime(host) rather than by the Runtime option alone."),
                    o, sp.GetService<ILoggerFactory>()),
                RuntimeKind.Libvirt => VirtuozzoRuntime.CreateLibvirt(
                    sp.GetService<LibvirtUri>()?.Uri ?? throw new InvalidOperationException(
                        "The libvirt runtime needs its URI: choose it with UseLibvirtRuntime(uri) rather than by the Runtime option alone."),
                    o, sp.GetService<ILoggerFactory>()),
                _ => throw new UnsupportedOnHostException($"The {o.Runtime} runtime is not available; use UseLocalRuntime(), UseVirtuozzoRuntime(host) or UseLibvirtRuntime(uri)."),
            };
            foreach (var registration in sp.GetServices<VeDriverRegistration>())
            {
                try
                {
                    runtime.GetDriver(registration.Kind, rt => registration.Factory(rt, sp));
                }
                catch (UnsupportedOnHostException) when (runtime.Kind == RuntimeKind.Libvirt)
                {
                    // A kind this runtime refuses (containers over libvirt's QEMU driver) is left out of the unified client;
                    // its own client still refuses by name when resolved.
                }
            }
            return runtime;
        });
        services.TryAddSingleton(sp => sp.GetRequiredService<VirtuozzoRuntime>().Host);
        services.TryAddSingleton(sp => sp.GetRequiredService<VirtuozzoRuntime>().Ledger);
        services.TryAddSingleton(sp => new VirtualEnvironmentClient(sp.GetRequiredService<VirtuozzoRuntime>()));
        return new VirtuozzoSdkBuilder(services);
    }

    /// <summary>
    /// Registers the SDK as <see cref="AddVirtuozzoSdk(IServiceCollection, Action{VirtuozzoSdkOptions}?)"/> does, with its
    /// options bound from <paramref name="configuration"/> (typically <c>configuration.GetSection("Virtuozzo")</c>), then
    /// <paramref name="configure"/> applied on top.
    /// </summary>
    /// <remarks>
    /// Keys are the option names (<c>DataRoot</c>, <c>HostMemoryReserve</c>, <c>HostMemoryBudget</c>, <c>LockTimeout</c>, <c>BridgeName</c>,
    /// <c>BridgeAddress</c>, <c>BridgeNat</c>, <c>Runtime</c>, <c>Local:EmulatorPath</c>, <c>RemoteHost:HostName</c>…).
    /// Sizes take binary suffixes (<c>"512M"</c>, <c>"2G"</c>; a bare number is bytes), time spans <c>hh:mm:ss</c>. A value
    /// that does not convert, an unknown key, or an invalid combination fails validation with
    /// <see cref="OptionsValidationException"/> naming each key by its full path — at start with a generic host
    /// (<c>ValidateOnStart</c>), otherwise when the SDK is first resolved. The binding reads each key explicitly, without
    /// reflection, so it is safe under trimming and Native AOT.
    /// </remarks>
    /// <example>
    /// <code>
    /// services.AddVirtuozzoSdk(configuration.GetSection("Virtuozzo")).AddContainers();
    /// </code>
    /// </example>
    public static VirtuozzoSdkBuilder AddVirtuozzoSdk(this IServiceCollection services, IConfiguration configuration, Action<VirtuozzoSdkOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        var builder = services.AddVirtuozzoSdk(o => OptionsConfigurationBinder.Bind(configuration, o));
        if (configure is not null)
            services.Configure(configure);
        return builder;
    }
}

/// <summary>The node chosen by <see cref="VirtuozzoSdkBuilder.UseVirtuozzoRuntime"/>.</summary>
internal sealed class VirtuozzoNodeHost(IVirtuozzoHost host)
{
    public IVirtuozzoHost Host { get; } = host;
}

internal sealed class VirtuozzoSdkOptionsValidator : IValidateOptions<VirtuozzoSdkOptions>
{
    public ValidateOptionsResult Validate(string? name, VirtuozzoSdkOptions options)
    {
        var errors = options.Validate();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>The libvirt URI chosen with <see cref="VirtuozzoSdkBuilder.UseLibvirtRuntime"/>.</summary>
internal sealed record LibvirtUri(string Uri);
