using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory;

/// <summary>
/// Runs <see cref="MemoryManager.RunAsync"/> as a hosted service: it starts with the host, ticks every 1–5 s, and stops
/// cleanly when the host stops. When another manager already balances the data root (a <c>vzsdk mem daemon</c>, another
/// service), this one logs an error and stays idle instead of stopping the host.
/// </summary>
public sealed class MemoryManagerService(MemoryManager manager, ILogger<MemoryManagerService>? logger = null) : BackgroundService
{
    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await manager.RunAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (InvalidStateException ex)
        {
            logger?.LogError("The memory manager does not run: {Reason}", ex.Message);
        }
    }
}

/// <summary>Registers the memory manager.</summary>
public static class MemoryBuilderExtensions
{
    /// <summary>
    /// Adds <see cref="MemoryManager"/> (a singleton over the SDK's runtime), and with <paramref name="runAsService"/> its
    /// hosted loop <see cref="MemoryManagerService"/>. Idempotent. The options are validated when the manager is created.
    /// </summary>
    public static VirtuozzoSdkBuilder AddMemoryManagement(this VirtuozzoSdkBuilder builder, Action<MemoryManagerOptions>? configure = null, bool runAsService = true)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddSingleton(sp =>
        {
            var options = new MemoryManagerOptions();
            configure?.Invoke(options);
            return new MemoryManager(sp.GetRequiredService<VirtuozzoRuntime>(), options);
        });
        if (runAsService)
            builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, MemoryManagerService>());
        return builder;
    }
}
