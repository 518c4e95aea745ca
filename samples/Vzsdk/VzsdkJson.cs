using System.Text.Json.Serialization;
using Vzsdk.Backup;
using Vzsdk.Ct;
using Vzsdk.Vm;

namespace Vzsdk;

/// <summary>
/// The JSON shapes the tool prints (snake_case keys, indented), serialized by source-generated code: the tool is
/// published with Native AOT, where reflection-based System.Text.Json cannot run. Every type given to
/// <see cref="Cli.WriteJson{T}"/> is listed here. (The <c>disk</c> verbs write qemu-img's shapes with a
/// <see cref="System.Text.Json.Utf8JsonWriter"/> directly.)
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.Never)]
[JsonSerializable(typeof(List<TopLevel.VeListJson>), TypeInfoPropertyName = "VeList")]
[JsonSerializable(typeof(List<CtCommand.CtListJson>), TypeInfoPropertyName = "ContainerList")]
[JsonSerializable(typeof(CtCommand.CtInfoJson), TypeInfoPropertyName = "ContainerInfo")]
[JsonSerializable(typeof(List<CtCommand.TemplateJson>), TypeInfoPropertyName = "TemplateList")]
[JsonSerializable(typeof(List<VmCommand.VmListJson>), TypeInfoPropertyName = "VmList")]
[JsonSerializable(typeof(VmCommand.VmInfoJson), TypeInfoPropertyName = "VmInfo")]
[JsonSerializable(typeof(List<SnapshotCommands.SnapshotJson>), TypeInfoPropertyName = "SnapshotList")]
[JsonSerializable(typeof(HostCommand.HostInfoJson), TypeInfoPropertyName = "HostInfo")]
[JsonSerializable(typeof(BackupCommand.CreateJson), TypeInfoPropertyName = "BackupCreate")]
[JsonSerializable(typeof(List<BackupCommand.BackupJson>), TypeInfoPropertyName = "BackupList")]
[JsonSerializable(typeof(BackupCommand.VerifyJson), TypeInfoPropertyName = "BackupVerify")]
[JsonSerializable(typeof(MigrateResultJson), TypeInfoPropertyName = "MigrateResult")]
[JsonSerializable(typeof(MemCommand.StatusJson), TypeInfoPropertyName = "MemStatus")]
[JsonSerializable(typeof(MemCommand.KsmJson), TypeInfoPropertyName = "MemKsm")]
internal sealed partial class VzsdkJson : JsonSerializerContext;
