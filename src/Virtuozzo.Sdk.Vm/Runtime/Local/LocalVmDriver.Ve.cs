using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

// The verbs every VE has, for the unified client: the VM's own verbs, by UUID.
internal sealed partial class LocalVmDriver
{
    async Task<IReadOnlyList<VeInfo>> Core.Runtime.IVeDriver.ListVesAsync(CancellationToken cancellationToken)
        => await ListAsync(cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> Core.Runtime.IVeDriver.GetVeAsync(VeId id, CancellationToken cancellationToken)
        => await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    async Task<VeInfo> Core.Runtime.IVeDriver.StartVeAsync(VeId id, CancellationToken cancellationToken)
        => await StartAsync(id.ToString(), cancellationToken).ConfigureAwait(false);

    Task<VeStopMethod> Core.Runtime.IVeDriver.StopVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken)
        => StopAsync(id.ToString(), options, cancellationToken);

    async Task<VeInfo> Core.Runtime.IVeDriver.RestartVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken)
    {
        await StopAsync(id.ToString(), options, cancellationToken).ConfigureAwait(false);
        return await StartAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    async Task<VeInfo> Core.Runtime.IVeDriver.SuspendVeAsync(VeId id, CancellationToken cancellationToken)
    {
        await SuspendAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    async Task<VeInfo> Core.Runtime.IVeDriver.ResumeVeAsync(VeId id, CancellationToken cancellationToken)
    {
        await ResumeAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        return await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    async Task<bool> Core.Runtime.IVeDriver.DeleteVeAsync(VeId id, CancellationToken cancellationToken)
    {
        // As for containers: deleting a running VE stops it first (VirtualMachineClient.DeleteAsync asks for a stopped VM).
        try
        {
            await KillAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        }
        catch (NotFoundException)
        {
            return false;
        }
        return await DeleteAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
    }

    async Task<VeInfo> Core.Runtime.IVeDriver.RenameVeAsync(VeId id, VeName newName, CancellationToken cancellationToken)
        => await RenameAsync(id.ToString(), newName, cancellationToken).ConfigureAwait(false);

    Task<VeExecResult> Core.Runtime.IVeDriver.ExecVeAsync(VeId id, VeExecOptions options, CancellationToken cancellationToken)
        => ExecAsync(id.ToString(), options, cancellationToken);

    async Task<VeUsage> Core.Runtime.IVeDriver.GetVeUsageAsync(VeId id, CancellationToken cancellationToken)
    {
        var info = await GetAsync(id.ToString(), cancellationToken).ConfigureAwait(false);
        var paths = PathsOf(id.Value);
        var allocated = info.Disks.Sum(d => File.Exists(d.ImagePath) ? new FileInfo(d.ImagePath).Length : 0);
        var runtime = info.IsRunning ? await ReadRuntimeAsync(paths, cancellationToken).ConfigureAwait(false) : null;
        TimeSpan cpu = TimeSpan.Zero;
        long? memory = null;
        if (runtime is not null)
            (cpu, memory) = ProcessUsage(runtime.Pid);
        // The host's end of the VM's tap: what it sends, the guest receives.
        var tap = HostBridge.TapName(id);
        return new VeUsage(id, VeKind.Vm, info.State, cpu, memory, allocated, info.DiskSize.Bytes,
            NetworkReceivedBytes: HostBridge.LinkCounter(tap, "tx_bytes"), NetworkSentBytes: HostBridge.LinkCounter(tap, "rx_bytes"), DateTimeOffset.UtcNow);
    }

    /// <summary>The emulator's CPU time (user + system, from <c>/proc/PID/stat</c>) and resident memory; zeros when it is gone.</summary>
    internal static (TimeSpan Cpu, long? Resident) ProcessUsage(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // fields[0] is the state (field 3); utime and stime are fields 14 and 15; rss (pages) is field 24.
            var ticks = long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture);
            var rssPages = long.Parse(fields[21], System.Globalization.CultureInfo.InvariantCulture);
            return (TimeSpan.FromSeconds(ticks / (double)ClockTicksPerSecond), rssPages * Environment.SystemPageSize);
        }
        catch (Exception ex) when (ex is IOException or FormatException or IndexOutOfRangeException or UnauthorizedAccessException)
        {
            return (TimeSpan.Zero, null);
        }
    }

    /// <summary>USER_HZ: the unit of CPU times in <c>/proc</c>, 100 on every Linux architecture the SDK runs on.</summary>
    private const int ClockTicksPerSecond = 100;

    /// <summary>The emulator's process id while the VM runs (tests and diagnostics).</summary>
    internal async Task<int?> ProcessIdAsync(VeId id, CancellationToken ct)
    {
        var runtime = await ReadRuntimeAsync(PathsOf(id.Value), ct).ConfigureAwait(false);
        return runtime is not null && IsAlive(runtime) ? runtime.Pid : null;
    }

    /// <summary>The file the VM's serial console is written to (tests and diagnostics).</summary>
    internal string ConsoleLogPath(VeId id) => PathsOf(id.Value).ConsoleLog;
}
