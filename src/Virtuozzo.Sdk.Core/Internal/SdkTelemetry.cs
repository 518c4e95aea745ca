using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>The SDK's one <see cref="ActivitySource"/> and <see cref="Meter"/>, and the helper that wraps an operation in both.</summary>
internal static class SdkTelemetry
{
    private static readonly string? Version = typeof(SdkTelemetry).Assembly.GetName().Version?.ToString();

    public static readonly ActivitySource Source = new(VirtuozzoSdkTelemetry.ActivitySourceName, Version);

    public static readonly Meter Meter = new(VirtuozzoSdkTelemetry.MeterName, Version);

    public static readonly Histogram<double> Duration = Meter.CreateHistogram<double>(
        VirtuozzoSdkTelemetry.OperationDurationInstrument, "s", "How long SDK operations take.");

    public static readonly Counter<long> Failures = Meter.CreateCounter<long>(
        VirtuozzoSdkTelemetry.OperationFailuresInstrument, "{operation}", "SDK operations that failed, by exception type.");

    public static readonly Counter<long> BytesCopied = Meter.CreateCounter<long>(
        VirtuozzoSdkTelemetry.BytesCopiedInstrument, "By", "Bytes copied by backups, restores and conversions.");

    public static readonly Counter<long> GuaranteeDecisions = Meter.CreateCounter<long>(
        VirtuozzoSdkTelemetry.GuaranteeDecisionsInstrument, "{decision}", "Memory guarantees admitted or refused by the resource ledger.");

    public static string KindName(VeKind? kind) => kind switch
    {
        VeKind.Container => "container",
        VeKind.Vm => "vm",
        _ => "unknown",
    };

    /// <summary>Runs <paramref name="body"/> as one traced, timed operation; failures are tagged with the exception type and rethrown.</summary>
    public static async Task<T> TraceAsync<T>(string operation, VeKind? kind, string? target, Func<OperationScope, Task<T>> body)
    {
        using var activity = Source.StartActivity(operation, ActivityKind.Internal);
        activity?.SetTag(VirtuozzoSdkTelemetry.OperationTag, operation);
        if (target is not null)
            activity?.SetTag(VirtuozzoSdkTelemetry.VeNameTag, target);
        var scope = new OperationScope(operation, activity) { Kind = kind };
        var started = Stopwatch.GetTimestamp();
        try
        {
            var result = await body(scope).ConfigureAwait(false);
            scope.Complete(Stopwatch.GetElapsedTime(started), null);
            return result;
        }
        catch (Exception ex)
        {
            scope.Complete(Stopwatch.GetElapsedTime(started), ex);
            throw;
        }
    }

    /// <summary>Runs <paramref name="body"/> as one traced, timed operation.</summary>
    public static Task TraceAsync(string operation, VeKind? kind, string? target, Func<OperationScope, Task> body)
        => TraceAsync<bool>(operation, kind, target, async s => { await body(s).ConfigureAwait(false); return true; });

    /// <summary>One operation in flight: its span, the VE kind once known, and the bytes it copied.</summary>
    internal sealed class OperationScope(string operation, Activity? activity)
    {
        private VeKind? _kind;
        private long _bytes;

        public Activity? Activity => activity;

        public VeKind? Kind
        {
            get => _kind;
            set
            {
                _kind = value;
                activity?.SetTag(VirtuozzoSdkTelemetry.VeKindTag, KindName(value));
            }
        }

        public void AddBytes(long bytes) => _bytes += bytes;

        internal void Complete(TimeSpan elapsed, Exception? failure)
        {
            var kindName = KindName(_kind);
            if (_bytes > 0)
            {
                activity?.SetTag(VirtuozzoSdkTelemetry.BytesCopiedInstrument, _bytes);
                BytesCopied.Add(_bytes, new(VirtuozzoSdkTelemetry.OperationTag, operation), new(VirtuozzoSdkTelemetry.VeKindTag, kindName));
            }
            Duration.Record(elapsed.TotalSeconds,
                new(VirtuozzoSdkTelemetry.OperationTag, operation), new(VirtuozzoSdkTelemetry.VeKindTag, kindName),
                new(VirtuozzoSdkTelemetry.OutcomeTag, failure is null ? "success" : "failure"));
            if (failure is null)
                return;
            var type = failure.GetType().Name;
            activity?.SetStatus(ActivityStatusCode.Error, failure.Message);
            activity?.SetTag(VirtuozzoSdkTelemetry.ErrorTypeTag, type);
            Failures.Add(1, new(VirtuozzoSdkTelemetry.OperationTag, operation), new(VirtuozzoSdkTelemetry.VeKindTag, kindName), new(VirtuozzoSdkTelemetry.ErrorTypeTag, type));
        }
    }

    public static void RecordGuarantee(VeKind kind, bool admitted)
        => GuaranteeDecisions.Add(1, new(VirtuozzoSdkTelemetry.VeKindTag, KindName(kind)), new(VirtuozzoSdkTelemetry.GuaranteeResultTag, admitted ? "admitted" : "refused"));
}
