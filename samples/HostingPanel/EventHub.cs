using System.Collections.Concurrent;
using System.Threading.Channels;
using Virtuozzo.Sdk.Core;

namespace HostingPanel;

/// <summary>One message for the browsers: a VE event (filtered by the VE's owner) or an operation's progress (filtered by tenant).</summary>
public sealed record HubMessage(string Type, string? Tenant, VeId? VeId, object Data);

/// <summary>Fans the SDK's one event stream out to every connected browser.</summary>
public sealed class EventHub
{
    private readonly ConcurrentDictionary<Guid, Channel<HubMessage>> _subscribers = new();

    public (Guid Id, ChannelReader<HubMessage> Reader) Subscribe()
    {
        var channel = Channel.CreateBounded<HubMessage>(new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.DropOldest });
        var id = Guid.NewGuid();
        _subscribers[id] = channel;
        return (id, channel.Reader);
    }

    public bool HasSubscribers => !_subscribers.IsEmpty;

    public void Unsubscribe(Guid id) => _subscribers.TryRemove(id, out _);

    public void Publish(HubMessage message)
    {
        foreach (var channel in _subscribers.Values)
            channel.Writer.TryWrite(message);
    }
}

#region Snippet:PanelWatch
/// <summary>Reads the SDK's event stream (<see cref="VirtualEnvironmentClient.WatchAsync"/>) for the life of the panel and publishes each event.</summary>
public sealed class VeWatcher(VirtualEnvironmentClient client, EventHub hub, ILogger<VeWatcher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await foreach (VeEvent e in client.WatchAsync(new VeWatchOptions { Interval = TimeSpan.FromSeconds(1) }, stoppingToken))
                    hub.Publish(new HubMessage("ve", null, e.Id, new { Id = e.Id.ToString(), Name = e.Name.Value, e.Kind, e.State, Event = e.Type }));
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (VirtuozzoException ex)
            {
                logger.LogWarning(ex, "The VE event stream failed; reconnecting");
                await Task.Delay(TimeSpan.FromSeconds(2), stoppingToken);
            }
        }
    }
}
#endregion

/// <summary>While a browser is connected, publishes the usage of each running VE every few seconds (server push, not browser polling).</summary>
public sealed class UsageSampler(VirtualEnvironmentClient client, EventHub hub, ILogger<UsageSampler> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(3));
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            if (!hub.HasSubscribers)
                continue;
            try
            {
                foreach (var ve in await client.ListAsync(all: false, stoppingToken))
                {
                    var u = await client.GetUsageAsync(ve.Id, stoppingToken);
                    hub.Publish(new HubMessage("usage", null, ve.Id, new { Id = ve.Id.ToString(), u.State, u.MemoryUsedBytes, CpuTime = u.CpuTime.ToString(@"hh\:mm\:ss\.ff", System.Globalization.CultureInfo.InvariantCulture), u.DiskAllocatedBytes }));
                }
            }
            catch (VirtuozzoException ex)
            {
                logger.LogDebug(ex, "Reading usage failed; the next tick retries");
            }
        }
    }
}
