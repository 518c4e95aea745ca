using System.CommandLine;
using System.Globalization;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Core;

namespace Vzsdk.Backup;

/// <summary><c>vzsdk backup …</c>: QCOW2 backup chains (CLI.md conventions).</summary>
internal static class BackupCommand
{
    public static Command Build()
    {
        var backup = new Command("backup", "Back up containers and VMs, and list, delete, restore, verify and prune backups.");
        backup.Subcommands.Add(Create());
        backup.Subcommands.Add(List());
        backup.Subcommands.Add(Delete());
        backup.Subcommands.Add(Restore());
        backup.Subcommands.Add(Verify());
        backup.Subcommands.Add(Prune());
        return backup;
    }

    private static BackupClient Client(ParseResult p) => new(Cli.Runtime(p));

    private static Command Create()
    {
        var name = new Argument<string>("NAME") { Description = "The container's or VM's name or UUID." };
        var full = new Option<bool>("--full") { Description = "Start a new chain with a full backup." };
        var compression = new Option<string>("--compression") { Description = "zstd (default), zlib or none.", DefaultValueFactory = _ => "zstd" };
        compression.AcceptOnlyFromAmong("zstd", "zlib", "none");
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var cmd = new Command("create", "Back up a container or VM (incremental when the chain allows it); prints the backup id last.") { name, full, compression, json };
        cmd.SetAction(async (p, ct) =>
        {
            var result = await Client(p).CreateAsync(p.GetValue(name)!, new BackupCreateOptions
            {
                Full = p.GetValue(full),
                Compression = p.GetValue(compression) switch { "zlib" => BackupCompression.Zlib, "none" => BackupCompression.None, _ => BackupCompression.Zstd },
            }, cancellationToken: ct);
            if (p.GetValue(json))
                Cli.WriteJson(new CreateJson(ToJson(result.Backup), result.Consistency, result.FullReasons.ToList()), VzsdkJson.Default.BackupCreate);
            else
            {
                Console.Out.WriteLine($"{(result.Backup.Type == BackupType.Full ? "Full" : "Incremental")} backup of {result.Backup.VeName}: {new ByteSize(result.Backup.SizeBytes).ToHumanString()} ({result.Consistency})");
                foreach (var r in result.FullReasons)
                    Console.Out.WriteLine($"Full because {r}");
            }
            Console.Out.WriteLine(result.Backup.Id);
            return Cli.Success;
        });
        return cmd;
    }

    private static Command List()
    {
        var name = new Argument<string?>("NAME") { Description = "A container's or VM's name or UUID (all when omitted).", Arity = ArgumentArity.ZeroOrOne };
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var cmd = new Command("list", "List backups, oldest first.") { name, json };
        cmd.SetAction(async (p, ct) =>
        {
            var list = await Client(p).ListAsync(p.GetValue(name), ct);
            if (p.GetValue(json))
            {
                Cli.WriteJson(list.Select(ToJson).ToList(), VzsdkJson.Default.BackupList);
                return Cli.Success;
            }
            // Text: one block per chain, the full backup first and each incremental after its parent.
            Console.Out.WriteLine($"{"ID",-42}{"TYPE",-13}{"CREATED",-22}{"SIZE",-11}VE");
            foreach (var chain in await Client(p).ListChainsAsync(p.GetValue(name), ct))
            {
                foreach (var b in chain.Backups)
                    Console.Out.WriteLine($"{b.Id,-42}{b.Type.ToString().ToLowerInvariant(),-13}{b.CreatedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),-22}{new ByteSize(b.SizeBytes).ToHumanString(),-11}{b.VeName}");
            }
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Delete()
    {
        var id = new Argument<string>("BACKUP_ID") { Description = "The backup id, such as {uuid} or {uuid}.2." };
        var deps = new Option<bool>("--with-dependents") { Description = "Also delete every backup that depends on it." };
        var cmd = new Command("delete", "Delete a backup (merged into its child unless --with-dependents).") { id, deps };
        cmd.SetAction(async (p, ct) =>
        {
            foreach (var d in await Client(p).DeleteAsync(p.GetValue(id)!, p.GetValue(deps), ct))
                Console.Out.WriteLine($"Deleted backup {d}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Restore()
    {
        var id = new Argument<string>("BACKUP_ID") { Description = "The backup id." };
        var name = new Option<string?>("--name") { Description = "Restore into a new container or VM with this name (default: into the original, stopped one)." };
        var cmd = new Command("restore", "Restore a backup; prints the container's or VM's UUID last.") { id, name };
        cmd.SetAction(async (p, ct) =>
        {
            var newName = p.GetValue(name) is { } n ? new VeName(n) : (VeName?)null;
            var ve = await Client(p).RestoreAsync(p.GetValue(id)!, new BackupRestoreOptions { NewName = newName }, cancellationToken: ct);
            Console.Out.WriteLine($"Restored backup {p.GetValue(id)}");
            Console.Out.WriteLine(ve.ToString());
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Verify()
    {
        var target = new Argument<string?>("NAME_OR_BACKUP_ID") { Description = "A container or VM, a backup id, or nothing for all.", Arity = ArgumentArity.ZeroOrOne };
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var cmd = new Command("verify", "Check backups' structure and recorded digests; exits 1 when any is damaged.") { target, json };
        cmd.SetAction(async (p, ct) =>
        {
            var r = await Client(p).VerifyAsync(p.GetValue(target), ct);
            if (p.GetValue(json))
                Cli.WriteJson(new VerifyJson(r.IsValid, r.Checked.ToList(), new Dictionary<string, string>(r.Damaged), r.Affected.ToList()), VzsdkJson.Default.BackupVerify);
            else
            {
                Console.Out.WriteLine($"Checked {r.Checked.Count} backup(s): {(r.IsValid ? "all intact" : $"{r.Damaged.Count} damaged")}");
                foreach (var (id, why) in r.Damaged)
                    Console.Out.WriteLine($"DAMAGED {id}: {why}");
                foreach (var id in r.Affected)
                    Console.Out.WriteLine($"AFFECTED {id}: depends on a damaged backup");
            }
            return r.IsValid ? Cli.Success : Cli.Failure;
        });
        return cmd;
    }

    private static Command Prune()
    {
        var name = new Argument<string>("NAME") { Description = "The container's or VM's name or UUID." };
        var last = new Option<int>("--keep-last") { Description = "Keep the newest N." };
        var daily = new Option<int>("--keep-daily") { Description = "Keep one per day for N days." };
        var weekly = new Option<int>("--keep-weekly") { Description = "Keep one per week for N weeks." };
        var monthly = new Option<int>("--keep-monthly") { Description = "Keep one per month for N months." };
        var cmd = new Command("prune", "Delete the backups no retention rule keeps.") { name, last, daily, weekly, monthly };
        cmd.SetAction(async (p, ct) =>
        {
            var deleted = await Client(p).PruneAsync(p.GetValue(name)!, new BackupRetention
            {
                KeepLast = p.GetValue(last), KeepDaily = p.GetValue(daily), KeepWeekly = p.GetValue(weekly), KeepMonthly = p.GetValue(monthly),
            }, ct);
            foreach (var d in deleted)
                Console.Out.WriteLine($"Deleted backup {d}");
            return Cli.Success;
        });
        return cmd;
    }

    private static BackupJson ToJson(BackupInfo b) => new(
        b.Id, b.Type.ToString().ToLowerInvariant(), b.ParentId, b.VeId.ToString(), b.VeName,
        b.CreatedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture), b.SizeBytes,
        b.Disks.Select(d => new BackupDiskJson(d.Name, d.File, d.OriginalPath, d.VirtualSize, d.StoredSize, d.Digest)).ToList());

    internal sealed record BackupDiskJson(string Name, string File, string OriginalPath, long VirtualSize, long Size, string Digest);

    internal sealed record BackupJson(string Id, string Type, string? Parent, string VeUuid, string VeName, string Created, long Size, List<BackupDiskJson> Disks);

    internal sealed record CreateJson(BackupJson Backup, string Consistency, List<string> FullReasons);

    internal sealed record VerifyJson(bool Valid, List<string> Checked, Dictionary<string, string> Damaged, List<string> Affected);
}
