using System.Collections.Immutable;
using System.Globalization;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>A program and its argument vector for a Virtuozzo node: never a shell string.</summary>
internal sealed record PrlctlCommand(string Program, ImmutableArray<string> Arguments)
{
    /// <summary>Values that must not appear in logs or messages (passwords).</summary>
    public ImmutableArray<string> Secrets { get; init; } = [];

    /// <summary>The argument vector with the program first, as a test compares it.</summary>
    public IReadOnlyList<string> Argv => [Program, .. Arguments];

    public override string ToString() => string.Join(' ', Argv.Select(a => Secrets.Any(s => s.Length > 0 && a.Contains(s, StringComparison.Ordinal)) ? "***" : a));
}

/// <summary>
/// The argument vectors of the prlctl/vzctl commands the Virtuozzo runtime runs, one method per operation, as the
/// vendor documents them (<c>../shared/reference/virtuozzo-cli-and-sdk.md</c> §3, §4). VEs are named by UUID wherever
/// the SDK knows it, so that a rename between two calls cannot redirect one.
/// </summary>
internal static class Prlctl
{
    public const string Program = "prlctl";
    public const string Vzctl = "vzctl";

    public static PrlctlCommand Of(params string[] args) => new(Program, [.. args]);

    public static PrlctlCommand Version() => Of("--version");

    public static PrlctlCommand VzctlVersion() => new(Vzctl, ["--version"]);

    /// <summary>prl_disk_tool (package prl-disk-tool, <c>/usr/sbin/prl_disk_tool</c>; reference §4).</summary>
    public const string PrlDiskTool = "prl_disk_tool";

    /// <summary><c>prl_disk_tool compact --hdd IMAGE</c>: gives a VM disk image's unused blocks back to the node (reference §4, §6).</summary>
    public static PrlctlCommand CompactImage(string image) => new(PrlDiskTool, ["compact", "--hdd", image]);

    /// <summary><c>vzctl compact CTID</c>: gives a container's ploop disk's unused blocks back to the node (reference §4, §6).</summary>
    public static PrlctlCommand CompactContainer(string ctid) => new(Vzctl, ["compact", ctid]);

    /// <summary><c>prlctl list -a -j -o uuid,status,type,name</c>: every VE, one row each (the inventory).</summary>
    public static PrlctlCommand ListAll(VeKind? kind = null)
        => kind is null ? Of("list", "-a", "-j", "-o", "uuid,status,type,name")
            : Of("list", "-a", "-j", "-o", "uuid,status,type,name", "--vmtype", VmType(kind.Value));

    /// <summary><c>prlctl list -i -f -j ID</c>: one VE's full configuration (an array of one).</summary>
    public static PrlctlCommand Info(string id) => Of("list", "-i", "-f", "-j", id);

    /// <summary><c>prlctl list -a -i -f -j --vmtype ct|vm</c>: every VE of a kind with its full configuration.</summary>
    public static PrlctlCommand InfoAll(VeKind kind) => Of("list", "-a", "-i", "-f", "-j", "--vmtype", VmType(kind));

    public static PrlctlCommand Start(string id) => Of("start", id);

    /// <summary><c>prlctl stop ID [--kill]</c> (a clean shutdown; <c>--kill</c> ends it at once).</summary>
    public static PrlctlCommand Stop(string id, bool kill) => kill ? Of("stop", id, "--kill") : Of("stop", id);

    public static PrlctlCommand Restart(string id) => Of("restart", id);

    public static PrlctlCommand Reset(string id) => Of("reset", id);

    public static PrlctlCommand Suspend(string id) => Of("suspend", id);

    public static PrlctlCommand Resume(string id) => Of("resume", id);

    public static PrlctlCommand Pause(string id) => Of("pause", id);

    public static PrlctlCommand Delete(string id) => Of("delete", id);

    public static PrlctlCommand Mount(string id) => Of("mount", id);

    public static PrlctlCommand Umount(string id) => Of("umount", id);

    public static PrlctlCommand Rename(string id, string newName) => Of("set", id, "--name", newName);

    /// <summary><c>prlctl clone ID --name NEW [--linked]</c>.</summary>
    public static PrlctlCommand Clone(string id, string newName, bool linked = false)
        => linked ? Of("clone", id, "--name", newName, "--linked") : Of("clone", id, "--name", newName);

    /// <summary><c>prlctl set ID OPTION VALUE…</c>; null when there is nothing to set.</summary>
    public static PrlctlCommand? Set(string id, IReadOnlyList<string> options)
        => options.Count == 0 ? null : Of(["set", id, .. options]);

    /// <summary>
    /// <c>prlctl exec ID --without-shell CMD ARG…</c>: the vector as it is, never through prlctl's default <c>bash -c</c>
    /// (the SDK's shell mode passes <c>/bin/sh -c "…"</c> as the vector, as on every runtime).
    /// </summary>
    public static PrlctlCommand Exec(string id, IReadOnlyList<string> command) => Of(["exec", id, "--without-shell", .. command]);

    /// <summary><c>prlctl set ID --userpasswd USER:PASSWORD</c> (the pair is a secret).</summary>
    public static PrlctlCommand SetUserPassword(string id, string user, string password)
        => Of("set", id, "--userpasswd", user + ":" + password) with { Secrets = [password] };

    /// <summary><c>prlctl snapshot ID -n NAME [-d DESCRIPTION]</c>.</summary>
    public static PrlctlCommand CreateSnapshot(string id, string name, string? description)
        => string.IsNullOrEmpty(description) ? Of("snapshot", id, "-n", name) : Of("snapshot", id, "-n", name, "-d", description);

    public static PrlctlCommand ListSnapshots(string id) => Of("snapshot-list", id);

    public static PrlctlCommand SnapshotDetails(string id, Guid snapshotId) => Of("snapshot-list", id, "-i", Braced(snapshotId));

    public static PrlctlCommand SwitchSnapshot(string id, Guid snapshotId) => Of("snapshot-switch", id, "-i", Braced(snapshotId));

    /// <summary><c>prlctl snapshot-delete ID -i SNAPID</c> (children are re-parented, not deleted).</summary>
    public static PrlctlCommand DeleteSnapshot(string id, Guid snapshotId) => Of("snapshot-delete", id, "-i", Braced(snapshotId));

    /// <summary><c>prlctl backup ID {-f|-i} [--description TEXT]</c>: the node's backup server stores it.</summary>
    public static PrlctlCommand Backup(string id, bool full, string? description)
    {
        string[] args = ["backup", id, full ? "-f" : "-i"];
        return string.IsNullOrEmpty(description) ? Of(args) : Of([.. args, "--description", description]);
    }

    /// <summary><c>prlctl backup-list [ID]</c>.</summary>
    public static PrlctlCommand ListBackups(string? id) => id is null ? Of("backup-list") : Of("backup-list", id);

    /// <summary><c>prlctl restore -t BACKUPID [-n NEWNAME]</c>: in place (the VE must be stopped), or to a new VE.</summary>
    public static PrlctlCommand Restore(string backupId, string? newName)
        => newName is null ? Of("restore", "-t", backupId) : Of("restore", "-t", backupId, "-n", newName);

    /// <summary><c>prlctl backup-delete -t BACKUPID [--keep-chain]</c>: without <c>--keep-chain</c> the later increments go too.</summary>
    public static PrlctlCommand DeleteBackup(string backupId, bool keepChain)
        => keepChain ? Of("backup-delete", "-t", backupId, "--keep-chain") : Of("backup-delete", "-t", backupId);

    /// <summary><c>prlctl migrate ID [user@]DESTINATION[:port] [--keep-src] [--no-compression]</c> (the VE moves; the source is removed unless kept).</summary>
    public static PrlctlCommand Migrate(string id, string destination, bool keepSource, bool compress)
    {
        var args = new List<string> { "migrate", id, destination };
        if (keepSource)
            args.Add("--keep-src");
        if (!compress)
            args.Add("--no-compression");
        return Of([.. args]);
    }

    /// <summary>MiB as prlctl's size arguments take them (a bare number is MiB); sizes round up to whole MiB.</summary>
    public static string Mib(ByteSize size) => ((size.Bytes + ByteSize.MiB - 1) / ByteSize.MiB).ToString(CultureInfo.InvariantCulture);

    public static string Num(long value) => value.ToString(CultureInfo.InvariantCulture);

    public static string OnOff(bool value) => value ? "on" : "off";

    public static string Braced(Guid id) => id.ToString("B", CultureInfo.InvariantCulture);

    public static string VmType(VeKind kind) => kind == VeKind.Container ? "ct" : "vm";
}
