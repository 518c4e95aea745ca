using System.CommandLine;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Migration;

namespace Vzsdk;

/// <summary><c>vzsdk migrate NAME DESTINATION</c> (as <c>prlctl migrate</c>) and the destination's <c>vzsdk migrate-agent</c>.</summary>
internal static class MigrateCommand
{
    public static IEnumerable<Command> Build() => [Migrate(), Agent()];

    private static Command Migrate()
    {
        var name = new Argument<string>("NAME") { Description = "The container's or VM's name or UUID." };
        var destination = new Argument<string>("DESTINATION")
        {
            Description = "ssh://[USER@]HOST[:PORT] (the SDK's vzsdk must be installed there), or the absolute path of another data root on this machine.",
        };
        var online = new Option<bool>("--online") { Description = "Migrate live (the default for a running VE)." };
        var offline = new Option<bool>("--offline") { Description = "Not live: a container is stopped, moved and started on the destination; a VM must be stopped and stays stopped (the default for a stopped VM)." };
        var requireLive = new Option<bool>("--require-live") { Description = "Fail rather than fall back to a migration that stops the VE (vzmigrate --require-realtime)." };
        var keepSource = new Option<bool>("--keep-source") { Description = "Leave the VE, stopped, on the source." };
        var downtime = new Option<int?>("--downtime") { Description = "The longest pause the switch-over may cost, in milliseconds (default 300)." };
        var bandwidth = new Option<string?>("--max-bandwidth") { Description = "Limit the memory copy (an offline VM: the disk images) to SIZE per second (e.g. 100M; default QEMU's 128M, no limit for disk images)." };
        var postCopy = new Option<bool>("--postcopy") { Description = "Switch to post-copy if pre-copy does not converge (a failure then loses the VE)." };
        var remoteDataRoot = new Option<string?>("--remote-data-root") { Description = "The destination's data root (default: the destination tool's default)." };
        var remoteVzsdk = new Option<string>("--remote-vzsdk") { Description = "The vzsdk program on the destination.", DefaultValueFactory = _ => "vzsdk" };
        var identity = new Option<string?>("--identity", "-i") { Description = "The SSH private key." };
        var knownHosts = new Option<string?>("--known-hosts") { Description = "The known-hosts file that must hold the destination's key (default ~/.ssh/known_hosts)." };
        var listen = new Option<string?>("--listen") { Description = "The destination's IP address for disks and memory (default: the SSH host, when it is an address)." };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON." };
        var cmd = new Command("migrate", "Move a container or VM to another host, live (as prlctl migrate).")
        {
            name, destination, online, offline, requireLive, keepSource, downtime, bandwidth, postCopy, remoteDataRoot, remoteVzsdk, identity, knownHosts, listen, json,
        };
        cmd.SetAction(async (p, ct) =>
        {
            if (p.GetValue(online) && p.GetValue(offline))
                throw new UsageException("--online and --offline exclude each other.");
            if (p.GetValue(offline) && p.GetValue(requireLive))
                throw new UsageException("--offline and --require-live exclude each other.");
            var options = new MigrationOptions
            {
                Mode = p.GetValue(offline) ? MigrationMode.Offline : p.GetValue(online) ? MigrationMode.Online : MigrationMode.Auto,
                RequireLive = p.GetValue(requireLive),
                KeepSource = p.GetValue(keepSource),
                PostCopy = p.GetValue(postCopy),
                DowntimeLimit = p.GetValue(downtime) is { } ms ? TimeSpan.FromMilliseconds(ms) : MigrationOptions.DefaultDowntimeLimit,
                MaxBandwidthPerSecond = p.GetValue(bandwidth) is { } bw ? ByteSize.Parse(bw) : null,
            };
            var target = Cli.HasHost(p) ? NodeDestination(p.GetValue(destination)!) : Destination(p.GetValue(destination)!, p.GetValue(remoteDataRoot), p.GetValue(remoteVzsdk)!, p.GetValue(identity), p.GetValue(knownHosts), p.GetValue(listen));
            IProgress<MigrationProgress>? progress = Console.IsErrorRedirected ? null : new Progress<MigrationProgress>(Report);
            var result = await new MigrationClient(Cli.Runtime(p)).MigrateAsync(p.GetValue(name)!, target, options, progress, ct);
            if (progress is not null)
                Console.Error.WriteLine();
            if (p.GetValue(json))
            {
                Cli.WriteJson(new MigrateResultJson(result.Id.ToString(), result.Name.Value, result.Kind == VeKind.Container ? "container" : "vm",
                    result.Mode.ToString().ToLowerInvariant(), result.Reason,
                    result.TransferMeasured ? (long)result.Downtime.TotalMilliseconds : null, (long)result.TotalTime.TotalMilliseconds,
                    result.TransferMeasured ? result.DiskBytes : null, result.TransferMeasured ? result.MemoryBytes : null, result.PostCopyUsed,
                    result.TransferMeasured ? result.PreCopyRounds : null), VzsdkJson.Default.MigrateResult);
            }
            else
            {
                Console.Out.WriteLine($"{(result.Kind == VeKind.Container ? "Container" : "VM")} {result.Name} migrated {result.Mode.ToString().ToLowerInvariant()} in {result.TotalTime.TotalSeconds:0.0} s " +
                    (result.TransferMeasured
                        ? $"(downtime {result.Downtime.TotalMilliseconds:0} ms; {new ByteSize(result.DiskBytes).ToHumanString()} of disk, {new ByteSize(result.MemoryBytes).ToHumanString()} of memory)"
                        : "(downtime and bytes copied not reported by the runtime)"));
            }
            return Cli.Success;
        });
        return cmd;
    }

    private static void Report(MigrationProgress p)
        => Console.Error.Write($"\r{p.Phase,-14} {new ByteSize(p.BytesTransferred).ToHumanString(),10} sent, {new ByteSize(p.BytesRemaining).ToHumanString(),10} left" +
            (p.ExpectedDowntime is { } d ? $", expected downtime {d.TotalMilliseconds:0} ms" : "") + "   ");

    /// <summary>With <c>--host</c>, the destination is another Virtuozzo node: <c>prlctl migrate</c> on the source reaches it.</summary>
    private static MigrationDestination NodeDestination(string text)
    {
        var (host, _, user) = Cli.SshAddress(text, "DESTINATION");
        return MigrationDestination.ToVirtuozzoNode(host, user);
    }

    private static MigrationDestination Destination(string text, string? remoteDataRoot, string remoteVzsdk, string? identity, string? knownHosts, string? listen)
    {
        if (text.StartsWith('/'))
            return MigrationDestination.ToRuntime(VirtuozzoRuntime.CreateLocal(new VirtuozzoSdkOptions { DataRoot = text }), listen ?? "127.0.0.1");
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme != "ssh" || string.IsNullOrEmpty(uri.Host))
            throw new UsageException($"'{text}' is not a destination: give ssh://[USER@]HOST[:PORT] or the absolute path of a data root.");
        var ssh = new SshHostOptions
        {
            HostName = uri.Host.Trim('[', ']'),
            Port = uri.IsDefaultPort || uri.Port <= 0 ? 22 : uri.Port,
            User = string.IsNullOrEmpty(uri.UserInfo) ? "root" : Uri.UnescapeDataString(uri.UserInfo),
            IdentityFile = identity,
            KnownHostsFile = knownHosts ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".ssh", "known_hosts"),
        };
        return MigrationDestination.OverSsh(ssh, remoteDataRoot, remoteVzsdk, listen);
    }

    private static Command Agent()
    {
        var cmd = new Command("migrate-agent", "The destination side of 'vzsdk migrate' (run by the source over SSH; reads requests on standard input).") { Hidden = true };
        cmd.SetAction(async (p, ct) =>
        {
            await MigrationAgent.RunAsync(Cli.Runtime(p), Console.OpenStandardInput(), Console.OpenStandardOutput(), ct);
            return Cli.Success;
        });
        return cmd;
    }
}

/// <summary>The JSON of <c>vzsdk migrate --json</c> (snake_case keys).</summary>
internal sealed record MigrateResultJson(string Uuid, string Name, string Type, string Mode, string Reason, long? DowntimeMs, long TotalTimeMs, long? DiskBytes, long? MemoryBytes, bool PostCopy,
    int? PreCopyRounds);
