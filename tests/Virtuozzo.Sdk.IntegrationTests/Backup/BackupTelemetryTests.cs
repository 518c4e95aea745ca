using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Containers;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Backup;

[Collection("containers")]
public class BackupTelemetryTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task A_stopped_container_backup_produces_its_span_duration_and_byte_counter()
    {
        var name = ContainerFixture.UniqueName("telemetry");
        await fx.Client.CreateAsync(new ContainerCreateOptions { Name = new VeName(name), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });

        var spans = new ConcurrentQueue<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = s => s.Name == VirtuozzoSdkTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(activities);

        var bytes = new ConcurrentQueue<(long Value, Dictionary<string, object?> Tags)>();
        var durations = new ConcurrentQueue<(double Value, Dictionary<string, object?> Tags)>();
        using var meters = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == VirtuozzoSdkTelemetry.MeterName)
                    listener.EnableMeasurementEvents(instrument);
            },
        };
        meters.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (instrument.Name == VirtuozzoSdkTelemetry.BytesCopiedInstrument)
                bytes.Enqueue((value, ToDictionary(tags)));
        });
        meters.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            if (instrument.Name == VirtuozzoSdkTelemetry.OperationDurationInstrument)
                durations.Enqueue((value, ToDictionary(tags)));
        });
        meters.Start();

        var backups = new BackupClient(VirtuozzoRuntime.CreateLocal(fx.Options));
        var result = await backups.CreateAsync(name, new BackupCreateOptions { Compression = BackupCompression.None });
        result.Backup.SizeBytes.Should().BePositive();

        var span = spans.Should().ContainSingle(a => a.OperationName == VirtuozzoSdkTelemetry.BackupOperation
            && (string?)a.GetTagItem(VirtuozzoSdkTelemetry.VeNameTag) == name).Which;
        span.Status.Should().Be(ActivityStatusCode.Unset);
        span.GetTagItem(VirtuozzoSdkTelemetry.VeKindTag).Should().Be("container");
        span.GetTagItem(VirtuozzoSdkTelemetry.BytesCopiedInstrument).Should().Be(result.Backup.SizeBytes);
        span.Duration.Should().BePositive();

        // Other test classes may back up at the same time: this backup's bytes are among the container backups' measurements.
        bytes.Should().Contain(m => m.Value == result.Backup.SizeBytes
            && (string?)m.Tags[VirtuozzoSdkTelemetry.OperationTag] == VirtuozzoSdkTelemetry.BackupOperation
            && (string?)m.Tags[VirtuozzoSdkTelemetry.VeKindTag] == "container");
        durations.Should().Contain(m => (string?)m.Tags[VirtuozzoSdkTelemetry.OperationTag] == VirtuozzoSdkTelemetry.BackupOperation
            && (string?)m.Tags[VirtuozzoSdkTelemetry.OutcomeTag] == "success" && m.Value > 0);

        // A failure is a span with the error status and the exception type, and a failure count.
        var failed = () => backups.CreateAsync(name + "-missing");
        await failed.Should().ThrowAsync<NotFoundException>();
        var failedSpan = spans.Should().ContainSingle(a => (string?)a.GetTagItem(VirtuozzoSdkTelemetry.VeNameTag) == name + "-missing").Which;
        failedSpan.Status.Should().Be(ActivityStatusCode.Error);
        failedSpan.GetTagItem(VirtuozzoSdkTelemetry.ErrorTypeTag).Should().Be(nameof(NotFoundException));
    }

    private static Dictionary<string, object?> ToDictionary(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var d = new Dictionary<string, object?>();
        foreach (var t in tags)
            d[t.Key] = t.Value;
        return d;
    }
}
