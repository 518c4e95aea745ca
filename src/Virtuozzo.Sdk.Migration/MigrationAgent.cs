using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Containers.Runtime;
using Virtuozzo.Sdk.Containers.Runtime.Local;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Migration.Internal;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.Migration;

/// <summary>
/// The destination side of migrations, for a source that reaches this host over SSH: <c>vzsdk migrate-agent</c> runs it
/// on its standard streams. It receives VEs into the runtime given, one request at a time.
/// </summary>
/// <remarks>
/// When the source goes away (the input ends, the connection drops or the source is killed) every VE the agent was
/// receiving and had not completed is removed, so that nothing half-received stays on this host.
/// </remarks>
public static class MigrationAgent
{
    /// <summary>Serves requests read from <paramref name="input"/>, answering on <paramref name="output"/>, until the input ends.</summary>
    /// <param name="runtime">This host's runtime, which receives the VEs.</param>
    /// <param name="input">Requests, one JSON object per line.</param>
    /// <param name="output">Responses, one JSON object per line.</param>
    /// <param name="cancellationToken">Stops serving (and removes what was being received).</param>
    public static async Task RunAsync(VirtuozzoRuntime runtime, Stream input, Stream output, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        var logger = runtime.CreateLogger<MigrationClient>();
        var driver = runtime.GetDriver<IVmDriver>(VeKind.Vm, rt => VirtualMachineClient.CreateDriver(rt, new VirtualMachineClientOptions())) as LocalVmDriver
            ?? throw new UnsupportedOnHostException($"The {runtime.Kind} runtime cannot receive migrations yet.");
        var containers = runtime.GetDriver<IContainerDriver>(VeKind.Container, ContainerClient.CreateDriver) as LocalContainerDriver
            ?? throw new UnsupportedOnHostException($"The {runtime.Kind} runtime cannot receive migrations yet.");
        var pending = new HashSet<VeId>();
        var pendingContainers = new HashSet<VeId>();
        using var reader = new StreamReader(input, Encoding.UTF8);
        try
        {
            while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
            {
                if (line.Length == 0)
                    continue;
                AgentResponse response;
                try
                {
                    var request = JsonSerializer.Deserialize(line, AgentJson.Default.AgentRequest) ?? throw new ArgumentException("An empty request.");
                    response = request.Op.EndsWith("-ct", StringComparison.Ordinal)
                        ? await HandleContainerAsync(containers, request, pendingContainers, cancellationToken).ConfigureAwait(false)
                        : await HandleAsync(driver, request, pending, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is VirtuozzoException or ArgumentException or JsonException or IOException)
                {
                    logger.LogWarning("Migration agent: {Error}", ex.Message);
                    response = AgentResponse.Failure(ex);
                }
                var bytes = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(response, AgentJson.Default.AgentResponse) + "\n");
                await output.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
                await output.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            foreach (var id in pendingContainers)
            {
                logger.LogWarning("Migration agent: the source went away; removing the container {Id} it was sending", id);
                try
                {
                    await containers.AbortIncomingAsync(id, CancellationToken.None).ConfigureAwait(false);
                }
                catch (VirtuozzoException ex)
                {
                    logger.LogError("Migration agent: could not remove {Id}: {Error}", id, ex.Message);
                }
            }
            foreach (var id in pending)
            {
                logger.LogWarning("Migration agent: the source went away; removing the VE {Id} it was sending", id);
                try
                {
                    await driver.AbortIncomingAsync(id, CancellationToken.None).ConfigureAwait(false);
                }
                catch (VirtuozzoException ex)
                {
                    logger.LogError("Migration agent: could not remove {Id}: {Error}", id, ex.Message);
                }
            }
        }
    }

    private static async Task<AgentResponse> HandleContainerAsync(LocalContainerDriver driver, AgentRequest request, HashSet<VeId> pending, CancellationToken ct)
    {
        switch (request.Op)
        {
            case "prepare-ct":
                var offer = request.ContainerOffer ?? throw new ArgumentException("prepare-ct needs an offer.");
                var endpoint = await driver.PrepareIncomingAsync(offer, request.ListenAddress ?? throw new ArgumentException("prepare-ct needs the address to listen on."), ct).ConfigureAwait(false);
                pending.Add(new VeId(offer.Id));
                return new AgentResponse { Ok = true, ContainerEndpoint = endpoint };
            case "complete-ct":
                var done = new VeId(request.Id ?? throw new ArgumentException("complete-ct needs an id."));
                await driver.CompleteIncomingAsync(done, request.Live, request.Start, ct).ConfigureAwait(false);
                // still pending until the source commits: if the source is killed before, it brings the container back
                // from its own images, so this copy goes when the source's stream ends
                return new AgentResponse { Ok = true };
            case "commit-ct":
                var committed = new VeId(request.Id ?? throw new ArgumentException("commit-ct needs an id."));
                await driver.CommitIncomingAsync(committed, ct).ConfigureAwait(false);
                pending.Remove(committed);
                return new AgentResponse { Ok = true };
            case "abort-ct":
                var aborted = new VeId(request.Id ?? throw new ArgumentException("abort-ct needs an id."));
                await driver.AbortIncomingAsync(aborted, ct).ConfigureAwait(false);
                pending.Remove(aborted);
                return new AgentResponse { Ok = true };
            default:
                throw new ArgumentException($"Unknown request '{request.Op}'.");
        }
    }

    private static async Task<AgentResponse> HandleAsync(LocalVmDriver driver, AgentRequest request, HashSet<VeId> pending, CancellationToken ct)
    {
        switch (request.Op)
        {
            case "hello":
                return new AgentResponse { Ok = true };
            case "prepare-vm":
                var offer = request.Offer ?? throw new ArgumentException("prepare-vm needs an offer.");
                var endpoint = await driver.PrepareIncomingAsync(offer, request.ListenAddress ?? throw new ArgumentException("prepare-vm needs the address to listen on."), ct).ConfigureAwait(false);
                pending.Add(new VeId(JsonDocument.Parse(offer.ConfigJson).RootElement.GetProperty("id").GetGuid()));
                return new AgentResponse { Ok = true, Endpoint = endpoint };
            case "prepare-vm-offline":
                var offline = request.OfflineOffer ?? throw new ArgumentException("prepare-vm-offline needs an offer.");
                var target = await driver.PrepareOfflineIncomingAsync(offline, request.ListenAddress ?? throw new ArgumentException("prepare-vm-offline needs the address to listen on."), ct).ConfigureAwait(false);
                pending.Add(new VeId(JsonDocument.Parse(offline.ConfigJson).RootElement.GetProperty("id").GetGuid()));
                return new AgentResponse { Ok = true, OfflineEndpoint = target };
            case "complete-vm-offline":
                var received = new VeId(request.Id ?? throw new ArgumentException("complete-vm-offline needs an id."));
                await driver.CompleteOfflineIncomingAsync(received, ct).ConfigureAwait(false);
                pending.Remove(received);
                return new AgentResponse { Ok = true };
            case "complete-vm":
                var done = new VeId(request.Id ?? throw new ArgumentException("complete-vm needs an id."));
                await driver.CompleteIncomingAsync(done, ct).ConfigureAwait(false);
                pending.Remove(done);
                return new AgentResponse { Ok = true };
            case "abort-vm":
                var aborted = new VeId(request.Id ?? throw new ArgumentException("abort-vm needs an id."));
                await driver.AbortIncomingAsync(aborted, ct).ConfigureAwait(false);
                pending.Remove(aborted);
                return new AgentResponse { Ok = true };
            default:
                throw new ArgumentException($"Unknown request '{request.Op}'.");
        }
    }
}
