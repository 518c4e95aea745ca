using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Memory;

/// <summary>
/// Runs <see cref="MemoryManager.RunAsync"/> as a hosted service: it starts with the host, ticks every 1–5 s, and stops
/// cleanly when the host stops.
/// </summary>
public sealed class MemoryManagerService(MemoryManager manager) : BackgroundService
{
    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => manager.RunAsync(stoppingToken);
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
