using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Memory.Simulation;

namespace Virtuozzo.Sdk.Memory.Tests;

// The code docs/articles/memory/*.md quotes: compiled with the tests, and run by the tests below.

#region Snippet:WritingAPolicy
/// <summary>
/// A policy that gives every VE what it uses plus a fixed margin, never less than its guarantee. Pure: everything it
/// needs is in the telemetry; it remembers nothing, so it passes the state through unchanged.
/// </summary>
public sealed class MarginPolicy(long marginBytes) : IMemoryPolicy
{
    public string Name => "margin";

    public MemoryPlan Decide(MemoryTelemetry telemetry, MemoryPolicyState state)
    {
        var targets = telemetry.Ves
            .Where(ve => ve.Active)
            .Select(ve => new VeMemoryTarget(
                ve.Id,
                ProtectionBytes: ve.MinimumBytes,                        // guarantee + vram + overhead
                TargetBytes: Math.Max(ve.GuaranteeBytes, ve.UsageBytes + marginBytes),
                LimitBytes: ve.LimitBytes))
            .ToList();
        return new MemoryPlan(targets, state);                           // the manager normalizes what it returns
    }
}
#endregion

public class DocsSamples
{
    [Fact]
    public void The_policy_of_the_docs_runs_through_the_simulator_without_violating_a_guarantee()
    {
        #region Snippet:SimulateAPolicy
        var fleet = MemorySimulator.MixedFleet(12);                 // idle VMs, busy containers, a leak…
        foreach (var policy in new IMemoryPolicy[] { new MarginPolicy(64L << 20), new DensityMemoryPolicy(), new StaticMemoryPolicy() })
        {
            var r = MemorySimulator.Run(policy, fleet);
            Console.WriteLine($"{r.Policy,-8} violations {r.GuaranteeViolations}  stall {r.BusyStallSeconds,6:F1} s  " +
                              $"reclaimed {r.ReclaimedFromIdleBytes >> 20} MiB  changes/VE/min {r.TargetChangesPerVeMinute:F1}");
        }
        #endregion
        MemorySimulator.Run(new MarginPolicy(64L << 20), fleet).GuaranteeViolations.Should().Be(0);
    }

    [Fact]
    public void The_manager_registers_as_a_hosted_service()
    {
        #region Snippet:HostedManager
        var services = new ServiceCollection();
        services.AddVirtuozzoSdk(o => o.DataRoot = "/var/lib/vzsdk")
            .UseLocalRuntime()
            .AddMemoryManagement(o =>
            {
                o.Policy = "density";
                o.Interval = TimeSpan.FromSeconds(2);
                o.Budget = ByteSize.Parse("3G");                      // run the host as if VEs had only 3 GiB
            });
        // In a generic host (Host.CreateApplicationBuilder), MemoryManagerService now starts and stops with the host.
        #endregion
        services.Should().Contain(d => d.ServiceType == typeof(IHostedService) && d.ImplementationType == typeof(MemoryManagerService));
        services.Should().Contain(d => d.ServiceType == typeof(MemoryManager));
    }
}
