using System.Globalization;
using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>A row of <c>prlctl snapshot-list ID</c>: <c>printf("%38s %c%38s\n", parent, current ? '*' : ' ', id)</c>.</summary>
internal sealed record PrlctlSnapshotRow(Guid Id, Guid? ParentId, bool IsCurrent);

/// <summary>The details <c>prlctl snapshot-list ID -i SNAPID</c> prints (<c>ID:</c>, <c>Name:</c>, <c>Date:</c>, <c>Current:</c>, <c>State:</c>, <c>Description:</c>).</summary>
internal sealed record PrlctlSnapshotDetails(Guid Id, string Name, DateTimeOffset? CreatedAt, bool IsCurrent, string? State, string? Description);

/// <summary>A row of <c>prlctl backup-list</c>: <c>"%38s %-38s %-20s %-20s %4s %10s"</c> = ID, Backup_ID, Node, Date, Type, Size.</summary>
internal sealed record PrlctlBackupRow(Guid VeId, string BackupId, string Node, DateTime Date, char Type, long SizeBytes);

/// <summary>The plain-text outputs of prlctl that have no JSON mode (snapshots, backups, success lines).</summary>
internal static partial class PrlctlText
{
    /// <summary>
    /// The braced id in a success line: <c>The snapshot with id {UUID} has been successfully created.</c> (docs.openvz.org
    /// prints "ID"; matched case-insensitively).
    /// </summary>
    /// <exception cref="VirtuozzoException">No such line.</exception>
    public static Guid ParseCreatedSnapshotId(string output)
    {
        var m = SnapshotCreated().Match(output ?? string.Empty);
        return m.Success ? Guid.Parse(m.Groups[1].Value)
            : throw new VirtuozzoException($"prlctl did not print the new snapshot's id (expected 'The snapshot with id {{UUID}} has been successfully created.'): '{PrlctlJson.Excerpt(output ?? string.Empty, 0)}'.");
    }

    /// <summary>The backup id in <c>The CT has been successfully backed up with backup id {UUID}[.N].</c></summary>
    /// <exception cref="VirtuozzoException">No such line.</exception>
    public static string ParseCreatedBackupId(string output)
    {
        var m = BackupCreated().Match(output ?? string.Empty);
        return m.Success ? m.Groups[1].Value
            : throw new VirtuozzoException($"prlctl did not print the backup id (expected '… successfully backed up with backup id {{UUID}}.'): '{PrlctlJson.Excerpt(output ?? string.Empty, 0)}'.");
    }

    /// <summary>Rows of <c>snapshot-list</c>, with or without its header; the root's parent column is blank.</summary>
    public static IReadOnlyList<PrlctlSnapshotRow> ParseSnapshotList(string output)
    {
        var rows = new List<PrlctlSnapshotRow>();
        foreach (var raw in (output ?? string.Empty).Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0 || line.Contains("SNAPSHOT_ID", StringComparison.Ordinal))
                continue;
            var m = SnapshotRow().Match(line);
            if (!m.Success)
                throw new VirtuozzoException($"prlctl snapshot-list printed a line the SDK cannot read: '{PrlctlJson.Excerpt(line, 0)}'.");
            rows.Add(new PrlctlSnapshotRow(
                Guid.Parse(m.Groups["id"].Value),
                m.Groups["parent"].Success ? Guid.Parse(m.Groups["parent"].Value) : null,
                m.Groups["cur"].Value == "*"));
        }
        return rows;
    }

    /// <summary>The <c>Key: value</c> lines of <c>snapshot-list ID -i SNAPID</c>.</summary>
    public static PrlctlSnapshotDetails ParseSnapshotDetails(string output)
    {
        var fields = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var raw in (output ?? string.Empty).Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
                continue;
            fields.TryAdd(line[..colon].Trim(), line[(colon + 1)..].Trim());
        }
        if (!fields.TryGetValue("ID", out var idText) || !Guid.TryParse(idText.Trim('{', '}'), out var id))
            throw new VirtuozzoException($"prlctl snapshot-list -i printed no snapshot ID: '{PrlctlJson.Excerpt(output ?? string.Empty, 0)}'.");
        DateTimeOffset? date = fields.TryGetValue("Date", out var d) && DateTime.TryParse(d, CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var dt)
            ? new DateTimeOffset(dt) : null;
        return new PrlctlSnapshotDetails(id,
            fields.GetValueOrDefault("Name") ?? string.Empty,
            date,
            fields.TryGetValue("Current", out var cur) && cur.Equals("yes", StringComparison.OrdinalIgnoreCase),
            fields.GetValueOrDefault("State"),
            fields.TryGetValue("Description", out var desc) && desc.Length > 0 ? desc : null);
    }

    /// <summary>
    /// Rows of <c>backup-list</c>. <c>Date</c> is the node's local time (<c>MM/DD/YYYY HH:MM:SS</c>, converted by
    /// <c>convert_time</c>), returned as <see cref="DateTimeKind.Unspecified"/>.
    /// </summary>
    public static IReadOnlyList<PrlctlBackupRow> ParseBackupList(string output)
    {
        var rows = new List<PrlctlBackupRow>();
        foreach (var raw in (output ?? string.Empty).Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0 || line.Contains("Backup_ID", StringComparison.Ordinal))
                continue;
            var m = BackupRow().Match(line);
            if (!m.Success)
                throw new VirtuozzoException($"prlctl backup-list printed a line the SDK cannot read: '{PrlctlJson.Excerpt(line, 0)}'.");
            var date = DateTime.ParseExact(m.Groups["date"].Value, "MM/dd/yyyy HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.None);
            rows.Add(new PrlctlBackupRow(Guid.Parse(m.Groups["ve"].Value), m.Groups["bid"].Value, m.Groups["node"].Value, date,
                m.Groups["type"].Value[0], long.Parse(m.Groups["size"].Value, CultureInfo.InvariantCulture)));
        }
        return rows;
    }

    private const string Uuid = @"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";

    [GeneratedRegex(@"snapshot with id \{(" + Uuid + @")\}", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex SnapshotCreated();

    [GeneratedRegex(@"backed up with backup id (\{" + Uuid + @"\}(?:\.\d+)?)", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex BackupCreated();

    [GeneratedRegex(@"^\s*(?:\{(?<parent>" + Uuid + @")\})?\s(?<cur>[ *])\s*\{(?<id>" + Uuid + @")\}\s*$", RegexOptions.CultureInvariant)]
    private static partial Regex SnapshotRow();

    [GeneratedRegex(@"^\s*\{?(?<ve>" + Uuid + @")\}?\s+(?<bid>\{" + Uuid + @"\}(?:\.\d+)?)\s+(?<node>\S+)\s+(?<date>\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2})\s+(?<type>[fid])\s+(?<size>\d+)\s*$",
        RegexOptions.CultureInvariant)]
    private static partial Regex BackupRow();
}
