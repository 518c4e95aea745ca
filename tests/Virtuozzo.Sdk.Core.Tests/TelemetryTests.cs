using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Core.Tests;

public class TelemetryTests
{
    [Fact]
    public async Task The_ledger_counts_each_guarantee_it_admits_and_each_it_refuses()
    {
        using var root = new TempDirectory();
        var ledger = new ResourceLedger(root.Path, 2L << 30);
        var decisions = new ConcurrentQueue<(string Kind, string Result)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == VirtuozzoSdkTelemetry.MeterName && instrument.Name == VirtuozzoSdkTelemetry.GuaranteeDecisionsInstrument)
                    l.EnableMeasurementEvents(instrument);
            },
        };
        var mine = new[] { VeId.New(), VeId.New() };
        listener.SetMeasurementEventCallback<long>((_, value, tags, state) =>
        {
            string? kind = null, result = null;
            foreach (var t in tags)
            {
                if (t.Key == VirtuozzoSdkTelemetry.VeKindTag) kind = (string?)t.Value;
                if (t.Key == VirtuozzoSdkTelemetry.GuaranteeResultTag) result = (string?)t.Value;
            }
            value.Should().Be(1);
            decisions.Enqueue((kind!, result!));
        });
        listener.Start();

        await ledger.ReserveAsync(mine[0], VeKind.Container, 1L << 30);
        var refused = () => ledger.ReserveAsync(mine[1], VeKind.Vm, 4L << 30);
        await refused.Should().ThrowAsync<InsufficientResourcesException>();

        // Other tests may use a ledger at the same time: this test's two decisions are among those seen.
        decisions.Should().Contain(("container", "admitted")).And.Contain(("vm", "refused"));
    }

    [Fact]
    public void The_published_names_are_the_ones_the_sdk_reports_under()
    {
        Internal.SdkTelemetry.Source.Name.Should().Be(VirtuozzoSdkTelemetry.ActivitySourceName);
        Internal.SdkTelemetry.Meter.Name.Should().Be(VirtuozzoSdkTelemetry.MeterName);
        VirtuozzoSdkTelemetry.ActivitySourceName.Should().Be("Virtuozzo.Sdk");
    }
}
