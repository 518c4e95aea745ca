using System.Globalization;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>Where one qemu-storage-daemon keeps its files.</summary>
/// <param name="DiskPath">The QCOW2 image it serves.</param>
/// <param name="ExportPath">The regular file the FUSE export is mounted on (the disk appears there as raw bytes).</param>
/// <param name="QmpSocket">Its QMP monitor socket.</param>
/// <param name="PidFile">Its pid file.</param>
internal sealed record StorageDaemonPaths(string DiskPath, string ExportPath, string QmpSocket, string PidFile);

/// <summary>
/// The lifecycle of qemu-storage-daemon exporting one QCOW2 disk through FUSE: started daemonised inside the VE's
/// service cgroup, stopped through QMP, and torn down in the order that leaves no stale FUSE mount.
/// </summary>
internal static class StorageDaemon
{
    public const string DiskNode = "disk0";

    /// <summary>
    /// The node the FUSE export serves: a raw layer over <see cref="DiskNode"/>, whose child a backup can switch onto
    /// a copy-before-write filter (<c>blockdev-reopen</c>) and back. Daemons started before it existed export
    /// <see cref="DiskNode"/> directly.
    /// </summary>
    public const string ExportNode = "top0";
    public const string ExportId = "export0";

    /// <summary>Starts the daemon; returns when the export is mounted and the monitor answers.</summary>
    public static async Task StartAsync(IVirtuozzoHost host, StorageDaemonPaths paths, VeCgroup? cgroup, CancellationToken cancellationToken)
    {
        if (!File.Exists(paths.ExportPath))
            await File.WriteAllBytesAsync(paths.ExportPath, [], cancellationToken).ConfigureAwait(false);
        File.Delete(paths.QmpSocket);
        var procs = cgroup?.ProcsFiles(CgroupRole.Service) ?? [];
        // sh joins the cgroups, then becomes the daemon: every process the SDK starts for a VE lives in its cgroup.
        const string joinAndExec = "n=$1; shift; while [ \"$n\" -gt 0 ]; do echo $$ > \"$1\"; shift; n=$((n-1)); done; exec \"$@\"";
        string[] args =
        [
            "-c", joinAndExec, "sh", procs.Count.ToString(CultureInfo.InvariantCulture), .. procs,
            "qemu-storage-daemon", "--daemonize", "--pidfile", paths.PidFile,
            "--blockdev", $"driver=file,node-name=file0,filename={EscapeOption(paths.DiskPath)}",
            "--blockdev", $"driver=qcow2,node-name={DiskNode},file=file0",
            "--blockdev", $"driver=raw,node-name={ExportNode},file={DiskNode}",
            "--export", $"type=fuse,id={ExportId},node-name={ExportNode},mountpoint={EscapeOption(paths.ExportPath)},writable=on",
            "--chardev", $"socket,id=mon0,path={EscapeOption(paths.QmpSocket)},server=on,wait=off",
            "--monitor", "chardev=mon0",
        ];
        try
        {
            await host.ExecuteAsync(new Command("sh").WithArguments(args).WithTimeout(LocalTimeouts.StorageDaemonStart), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await StopAsync(host, paths, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Starts a daemon that serves the disk over NBD only (no FUSE export), writable, on <paramref name="address"/>:
    /// <paramref name="port"/> under the export name <paramref name="exportName"/>: how a migration's destination
    /// receives a container's disk. <see cref="StopAsync"/> stops it.
    /// </summary>
    public static async Task StartNbdReceiverAsync(IVirtuozzoHost host, StorageDaemonPaths paths, string address, int port, string exportName, CancellationToken cancellationToken)
    {
        File.Delete(paths.QmpSocket);
        string[] args =
        [
            "--daemonize", "--pidfile", paths.PidFile,
            "--blockdev", $"driver=file,node-name=file0,filename={EscapeOption(paths.DiskPath)}",
            "--blockdev", $"driver=qcow2,node-name={DiskNode},file=file0",
            "--nbd-server", $"addr.type=inet,addr.host={address},addr.port={port.ToString(CultureInfo.InvariantCulture)}",
            "--export", $"type=nbd,id={ExportId},node-name={DiskNode},name={EscapeOption(exportName)},writable=on",
            "--chardev", $"socket,id=mon0,path={EscapeOption(paths.QmpSocket)},server=on,wait=off",
            "--monitor", "chardev=mon0",
        ];
        try
        {
            await host.ExecuteAsync(new Command("qemu-storage-daemon").WithArguments(args).WithTimeout(LocalTimeouts.StorageDaemonStart), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await StopAsync(host, paths, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>QEMU's option syntax doubles commas inside values.</summary>
    internal static string EscapeOption(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    /// <summary>The daemon's pid when it is running.</summary>
    public static int? RunningPid(StorageDaemonPaths paths)
    {
        try
        {
            if (int.TryParse(File.ReadAllText(paths.PidFile).Trim(), CultureInfo.InvariantCulture, out var pid)
                && File.Exists($"/proc/{pid}/cmdline") && File.ReadAllText($"/proc/{pid}/cmdline").Contains("qemu-storage-daemon", StringComparison.Ordinal))
                return pid;
        }
        catch (IOException) { }
        return null;
    }

    /// <summary>Opens the daemon's monitor.</summary>
    public static Task<QmpClient> ConnectAsync(StorageDaemonPaths paths, CancellationToken cancellationToken)
        => QmpClient.ConnectAsync(paths.QmpSocket, LocalTimeouts.MonitorConnect, cancellationToken);

    /// <summary>The dirty bitmaps of a block node (the daemon's disk node by default), as QMP reports them (name, recording, persistent, inconsistent…).</summary>
    public static async Task<IReadOnlyList<System.Text.Json.Nodes.JsonNode>> QueryBitmapsAsync(QmpClient qmp, CancellationToken cancellationToken, string nodeName = DiskNode)
    {
        var nodes = (await qmp.ExecuteAsync("query-named-block-nodes", new System.Text.Json.Nodes.JsonObject { ["flat"] = true }, LocalTimeouts.MonitorBlockCommand, cancellationToken).ConfigureAwait(false))!.AsArray();
        var node = nodes.FirstOrDefault(n => n!["node-name"]!.GetValue<string>() == nodeName);
        return node?["dirty-bitmaps"]?.AsArray().Select(b => b!).ToList() ?? [];
    }

    /// <summary>
    /// Stops the daemon (QMP <c>quit</c>, then signals), unmounts a stale FUSE export and removes its files. Idempotent.
    /// Unmount whatever is mounted from the export first.
    /// </summary>
    public static async Task StopAsync(IVirtuozzoHost host, StorageDaemonPaths paths, CancellationToken cancellationToken)
    {
        var pid = RunningPid(paths);
        if (pid is { } p)
        {
            try
            {
                var qmp = await QmpClient.ConnectAsync(paths.QmpSocket, TimeSpan.FromSeconds(3), cancellationToken).ConfigureAwait(false);
                await using (qmp.ConfigureAwait(false))
                    await qmp.ExecuteAsync("quit", null, LocalTimeouts.MonitorQuickCommand, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is QmpException or TimeoutException or IOException) { }
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (RunningPid(paths) is not null && DateTime.UtcNow < deadline)
                await Task.Delay(20, cancellationToken).ConfigureAwait(false);
            if (RunningPid(paths) is not null)
            {
                Native.TrySignal(p, Native.SIGKILL);
                await Task.Delay(100, cancellationToken).ConfigureAwait(false);
            }
        }
        if (IsMounted(paths.ExportPath))
        {
            await host.ExecuteAsync(new Command("umount").WithArguments("-l", paths.ExportPath).WithValidation(CommandResultValidation.None), cancellationToken).ConfigureAwait(false);
        }
        foreach (var f in new[] { paths.QmpSocket, paths.PidFile, paths.ExportPath })
        {
            try { File.Delete(f); }
            catch (IOException) { }
        }
    }

    /// <summary>True when <paramref name="path"/> is a mount point (per /proc/self/mountinfo).</summary>
    public static bool IsMounted(string path) => MountSource(path) is not null;

    /// <summary>The source mounted at <paramref name="path"/> (a device such as /dev/loop0), or null when nothing is.</summary>
    public static string? MountSource(string path)
    {
        var full = Path.GetFullPath(path);
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var f = line.Split(' ');
            var sep = Array.IndexOf(f, "-");
            if (f.Length > 4 && UnescapeMount(f[4]) == full)
                return sep > 0 && sep + 2 < f.Length ? UnescapeMount(f[sep + 2]) : string.Empty;
        }
        return null;
    }

    private static string UnescapeMount(string s) => s.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal).Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);
}
