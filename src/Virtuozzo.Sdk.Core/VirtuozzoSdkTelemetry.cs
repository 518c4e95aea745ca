namespace Virtuozzo.Sdk.Core;

/// <summary>
/// The names under which the SDK reports traces and metrics through <see cref="System.Diagnostics.ActivitySource"/> and
/// <see cref="System.Diagnostics.Metrics.Meter"/> (System.Diagnostics only: the packages do not depend on OpenTelemetry).
/// Subscribe with OpenTelemetry (<c>AddSource(VirtuozzoSdkTelemetry.ActivitySourceName)</c>,
/// <c>AddMeter(VirtuozzoSdkTelemetry.MeterName)</c>) or with an <see cref="System.Diagnostics.ActivityListener"/> and a
/// <see cref="System.Diagnostics.Metrics.MeterListener"/>.
/// </summary>
/// <remarks>
/// Every long operation is one span named after the operation (<see cref="CreateOperation"/>, <see cref="StartOperation"/>…)
/// with the tags <see cref="OperationTag"/>, <see cref="VeKindTag"/> and <see cref="VeNameTag"/>; a failed one has the
/// status Error and <see cref="ErrorTypeTag"/> (the exception's type name). The same operation records
/// <see cref="OperationDurationInstrument"/> and, on failure, <see cref="OperationFailuresInstrument"/>; copies record
/// <see cref="BytesCopiedInstrument"/>; the resource ledger records each admission decision in
/// <see cref="GuaranteeDecisionsInstrument"/>.
/// </remarks>
public static class VirtuozzoSdkTelemetry
{
    /// <summary>The name of the SDK's <see cref="System.Diagnostics.ActivitySource"/>.</summary>
    public const string ActivitySourceName = "Virtuozzo.Sdk";

    /// <summary>The name of the SDK's <see cref="System.Diagnostics.Metrics.Meter"/>.</summary>
    public const string MeterName = "Virtuozzo.Sdk";

    /// <summary>The span of creating a container or VM.</summary>
    public const string CreateOperation = "vzsdk.create";

    /// <summary>The span of starting a container or VM.</summary>
    public const string StartOperation = "vzsdk.start";

    /// <summary>The span of stopping a container or VM.</summary>
    public const string StopOperation = "vzsdk.stop";

    /// <summary>The span of backing up a container or VM.</summary>
    public const string BackupOperation = "vzsdk.backup";

    /// <summary>The span of restoring a backup.</summary>
    public const string RestoreOperation = "vzsdk.restore";

    /// <summary>The span of converting a disk image (each disk a restore or an import writes).</summary>
    public const string ConvertOperation = "vzsdk.convert";

    /// <summary>The span of migrating a container or VM to another host (reserved for the Migration package).</summary>
    public const string MigrateOperation = "vzsdk.migrate";

    /// <summary>Histogram of operation durations, in seconds; tags <see cref="OperationTag"/>, <see cref="VeKindTag"/>, <see cref="OutcomeTag"/>.</summary>
    public const string OperationDurationInstrument = "vzsdk.operation.duration";

    /// <summary>Counter of failed operations; tags <see cref="OperationTag"/>, <see cref="VeKindTag"/>, <see cref="ErrorTypeTag"/>.</summary>
    public const string OperationFailuresInstrument = "vzsdk.operation.failures";

    /// <summary>Counter of bytes copied (a backup's stored bytes, a restore's or conversion's written bytes), in bytes; tags <see cref="OperationTag"/>, <see cref="VeKindTag"/>.</summary>
    public const string BytesCopiedInstrument = "vzsdk.bytes_copied";

    /// <summary>Counter of memory-guarantee admissions by the resource ledger; tags <see cref="VeKindTag"/>, <see cref="GuaranteeResultTag"/>.</summary>
    public const string GuaranteeDecisionsInstrument = "vzsdk.memory.guarantee.decisions";

    /// <summary>Tag: the operation (<see cref="CreateOperation"/>…).</summary>
    public const string OperationTag = "vzsdk.operation";

    /// <summary>Tag: <c>container</c> or <c>vm</c>.</summary>
    public const string VeKindTag = "vzsdk.ve.kind";

    /// <summary>Tag on spans only (unbounded): the VE's name or UUID as the caller gave it.</summary>
    public const string VeNameTag = "vzsdk.ve.name";

    /// <summary>Tag: <c>success</c> or <c>failure</c>.</summary>
    public const string OutcomeTag = "vzsdk.outcome";

    /// <summary>Tag: the exception type of a failure (the OpenTelemetry semantic-convention name <c>error.type</c>).</summary>
    public const string ErrorTypeTag = "error.type";

    /// <summary>Tag: <c>admitted</c> or <c>refused</c>.</summary>
    public const string GuaranteeResultTag = "vzsdk.guarantee.result";
}
