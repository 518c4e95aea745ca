using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm.Runtime;

namespace Virtuozzo.Sdk.Migration.Internal;

// The migration agent's protocol: one JSON object per line, a request from the source and its response from the
// destination, in turn, over the standard streams of `vzsdk migrate-agent` run through SSH.

internal sealed record AgentRequest
{
    public required string Op { get; init; }

    public VmMigrationOffer? Offer { get; init; }

    public VmOfflineOffer? OfflineOffer { get; init; }

    public Containers.Runtime.ContainerMigrationOffer? ContainerOffer { get; init; }

    public bool Live { get; init; }

    public bool Start { get; init; } = true;

    public Guid? Id { get; init; }

    public string? ListenAddress { get; init; }
}

internal sealed record AgentResponse
{
    public bool Ok { get; init; }

    public VmIncomingEndpoint? Endpoint { get; init; }

    public VmOfflineEndpoint? OfflineEndpoint { get; init; }

    public Containers.Runtime.ContainerIncomingEndpoint? ContainerEndpoint { get; init; }

    public string? ErrorType { get; init; }

    public string? Message { get; init; }

    public int ProtocolVersion { get; init; } = AgentProtocol.Version;

    public static AgentResponse Failure(Exception ex) => new()
    {
        Ok = false,
        ErrorType = ex switch
        {
            InsufficientResourcesException => "insufficient-resources",
            AlreadyExistsException => "already-exists",
            UnsupportedOnHostException => "unsupported",
            NotFoundException => "not-found",
            InvalidStateException => "invalid-state",
            ArgumentException => "argument",
            _ => "failed",
        },
        Message = ex.Message,
    };

    /// <summary>The destination's error, as the exception the source's caller would have had from a local destination.</summary>
    public Exception ToException(string destination)
    {
        var message = $"{destination}: {Message}";
        return ErrorType switch
        {
            "insufficient-resources" => new InsufficientResourcesException(message),
            "already-exists" => new AlreadyExistsException(message),
            "unsupported" => new UnsupportedOnHostException(message),
            "not-found" => new NotFoundException(message),
            "argument" => new ArgumentException(message),
            _ => new InvalidStateException(message),
        };
    }
}

internal static class AgentProtocol
{
    // 2: offline VM migration (prepare-vm-offline, complete-vm-offline).
    public const int Version = 2;
}

[JsonSerializable(typeof(AgentRequest))]
[JsonSerializable(typeof(AgentResponse))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class AgentJson : JsonSerializerContext;
