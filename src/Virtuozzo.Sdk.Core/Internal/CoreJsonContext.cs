using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core.Resources;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>The cached result of the KVM probe, valid for one boot.</summary>
internal sealed record KvmProbeCache(string BootId, bool Usable, string Reason);

/// <summary>Source-generated JSON for Core's state files (trimming- and AOT-safe).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(KvmProbeCache))]
[JsonSerializable(typeof(LedgerFile))]
[JsonSerializable(typeof(Virtuozzo.Sdk.Core.State.VeIdentity))]
internal sealed partial class CoreJsonContext : JsonSerializerContext;
