// Shows the SDK's traces and metrics through OpenTelemetry. Without arguments it needs no root: it admits and refuses
// a memory guarantee on a temporary data root and tries a backup of a VE that does not exist (a failed span).
// `Telemetry backup` (as root, with runc, qemu-storage-daemon, mkfs.ext4 and busybox) also creates a container and
// backs it up stopped, which reports the backup span and the bytes it copied.
using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;

#region Snippet:TelemetryWiring
var spans = new List<Activity>();
var metrics = new List<Metric>();
using var tracing = Sdk.CreateTracerProviderBuilder()
    .AddSource(VirtuozzoSdkTelemetry.ActivitySourceName)
    .AddConsoleExporter()
    .AddInMemoryExporter(spans)
    .Build();
using var metering = Sdk.CreateMeterProviderBuilder()
    .AddMeter(VirtuozzoSdkTelemetry.MeterName)
    .AddInMemoryExporter(metrics)
    .Build();
#endregion

var dataRoot = Directory.CreateTempSubdirectory("vzsdk-telemetry-").FullName;
try
{
    var runtime = VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = dataRoot });

    // The resource ledger counts every guarantee it admits or refuses.
    var ve = VeId.New();
    await runtime.Ledger.ReserveAsync(ve, VeKind.Container, ByteSize.MiB);
    try
    {
        await runtime.Ledger.ReserveAsync(VeId.New(), VeKind.Vm, long.MaxValue / 2);
    }
    catch (InsufficientResourcesException ex)
    {
        Console.WriteLine($"refused as expected: {ex.Message}");
    }
    await runtime.Ledger.ReleaseAsync(ve);

    var backups = new BackupClient(runtime);
    try
    {
        await backups.CreateAsync("no-such-ve");
    }
    catch (NotFoundException)
    {
        Console.WriteLine("a backup of a missing VE failed, as expected");
    }

    if (args is ["backup"])
    {
        var containers = new ContainerClient(runtime);
        await containers.CreateAsync(new ContainerCreateOptions { Name = new VeName("telemetry1"), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        var result = await backups.CreateAsync("telemetry1");
        Console.WriteLine($"backup {result.Backup.Id}: {result.Backup.SizeBytes} bytes");
        await containers.DeleteAsync("telemetry1");
    }
}
finally
{
    Directory.Delete(dataRoot, recursive: true);
}

tracing.ForceFlush();
metering.ForceFlush();
Console.WriteLine();
foreach (var span in spans)
    Console.WriteLine($"span {span.OperationName} {span.Status} {span.GetTagItem(VirtuozzoSdkTelemetry.ErrorTypeTag)} {span.Duration.TotalMilliseconds:0} ms");
foreach (var metric in metrics)
{
    foreach (ref readonly var point in metric.GetMetricPoints())
    {
        var tags = new List<string>();
        foreach (var tag in point.Tags)
            tags.Add($"{tag.Key}={tag.Value}");
        var value = metric.MetricType switch
        {
            MetricType.LongSum => point.GetSumLong().ToString(System.Globalization.CultureInfo.InvariantCulture),
            MetricType.Histogram => $"count {point.GetHistogramCount()}, sum {point.GetHistogramSum():0.###}",
            _ => metric.MetricType.ToString(),
        };
        Console.WriteLine($"metric {metric.Name} [{string.Join(", ", tags)}] {value}");
    }
}
