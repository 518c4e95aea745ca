using System.Text.Json;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;

namespace Virtuozzo.Sdk.IntegrationTests.Containers;

/// <summary>One client for containers and VMs, on the local runtime for real.</summary>
[Collection("containers")]
public class UnifiedClientTests(ContainerFixture fx) : IClassFixture<ContainerFixture>
{
    [IntegrationFact("runc", "qemu-storage-daemon", "mkfs.ext4", "busybox", Root = true)]
    public async Task Containers_and_vms_are_listed_driven_watched_and_measured_through_one_client_and_one_tool()
    {
        var runtime = VirtuozzoRuntime.CreateLocal(fx.Options);
        var containers = new ContainerClient(runtime);
        var vms = new VirtualMachineClient(runtime);
        var all = new VirtualEnvironmentClient(runtime);
        var ctName = ContainerFixture.UniqueName("uni-ct");
        var vmName = ContainerFixture.UniqueName("uni-vm");
        var ct = await containers.CreateAsync(new ContainerCreateOptions { Name = new VeName(ctName), Resources = new ContainerResources { DiskSpace = ByteSize.Parse("128M") } });
        var vm = await vms.CreateAsync(new VmCreateOptions { Name = new VeName(vmName), MemorySize = ByteSize.FromMiB(256), Network = VmNetworkMode.User });
        try
        {
            (await all.ListAsync()).Where(v => v.Name.Value.StartsWith("uni-", StringComparison.Ordinal)).Select(v => (v.Name.Value, v.Kind, v.GetType().Name))
                .Should().BeEquivalentTo([(ctName, VeKind.Container, nameof(ContainerInfo)), (vmName, VeKind.Vm, nameof(VmInfo))]);

            var listed = await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "list", "-a", "--json");
            listed.ExitCode.Should().Be(0, listed.StandardError);
            using (var doc = JsonDocument.Parse(listed.StandardOutput))
            {
                var rows = doc.RootElement.EnumerateArray().ToDictionary(r => r.GetProperty("name").GetString()!, r => (Type: r.GetProperty("type").GetString(), Status: r.GetProperty("status").GetString(), Uuid: r.GetProperty("uuid").GetString()));
                rows[ctName].Should().Be(("container", "stopped", ct.Id.ToString()));
                rows[vmName].Should().Be(("vm", "stopped", vm.Id.ToString()));
            }
            var table = await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "list", "-a", "-o", "type,status,name");
            table.StandardOutput.Should().MatchRegex($@"(?m)^CT\s+stopped\s+{ctName}$").And.MatchRegex($@"(?m)^VM\s+stopped\s+{vmName}$");
            (await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "list", "--json")).StandardOutput.Should().NotContain(ctName, "stopped VEs are listed only with -a");

            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var events = new List<VeEvent>();
            var ready = new TaskCompletionSource();
            var watcher = Task.Run(async () =>
            {
                await foreach (var e in all.WatchAsync(new VeWatchOptions { Interval = TimeSpan.FromMilliseconds(200), IncludeExisting = true }, cts.Token))
                {
                    if (e.Id != ct.Id)
                        continue;
                    lock (events)
                        events.Add(e);
                    ready.TrySetResult();
                    if (e.Type == VeEventType.StateChanged && e.State == VeState.Stopped)
                        break;
                }
            });
            await ready.Task.WaitAsync(cts.Token);
            (await all.StartAsync(ctName)).State.Should().Be(VeState.Running);

            var usage = await all.GetUsageAsync(ct.Id);
            usage.State.Should().Be(VeState.Running);
            usage.CpuTime.Should().BePositive();
            usage.MemoryUsedBytes.Should().BePositive();
            usage.DiskAllocatedBytes.Should().BePositive();
            usage.DiskSizeBytes.Should().Be(ByteSize.Parse("128M").Bytes);

            var exec = await all.ExecAsync(ctName, new VeExecOptions { Command = ["echo", "$((6*7))"], Shell = true });
            (exec.ExitCode, exec.StandardOutput).Should().Be((0, "42\n"));

            await Task.Delay(600); // the watcher sees the running state before another process stops it
            var stop = await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "stop", ctName);
            stop.ExitCode.Should().Be(0, stop.StandardError);
            await watcher.WaitAsync(cts.Token);
            // A start or stop under way shows as busy (never as "mounted"); a fast one may pass between two looks.
            events.Select(e => (e.Type, e.State)).Where(e => e.State != VeState.Busy)
                .Should().Equal((VeEventType.Created, VeState.Stopped), (VeEventType.StateChanged, VeState.Running), (VeEventType.StateChanged, VeState.Stopped));
            events.Should().NotContain(e => e.State == VeState.Mounted);

            (await all.DeleteAsync(vmName)).Should().BeTrue();
            (await all.DeleteAsync(vmName)).Should().BeFalse("deleting twice is harmless");
            var deleteAgain = await VzsdkTool.RunAsync("--data-root", fx.Options.DataRoot, "delete", vmName);
            deleteAgain.ExitCode.Should().Be(1);
            deleteAgain.StandardError.Should().Contain("vzsdk list -a");
        }
        finally
        {
            await containers.DeleteAsync(ct.Id);
            await vms.DeleteAsync(vm.Id);
        }
    }
}
