using System.Globalization;
using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>
/// The node's local time zone, in which <c>prlctl backup-list</c> prints its dates (reference §3.8: <c>convert_time</c>
/// turns the dispatcher's UTC <c>YYYY-MM-DD HH:MM:SS</c> into local <c>MM/DD/YYYY HH:MM:SS</c>, without an offset).
/// Read from the target of <c>/etc/localtime</c> (an IANA zone, so daylight saving time applies to each date), else from
/// <c>date +%z</c> (one fixed offset: the one in force when asked), else UTC.
/// </summary>
internal sealed partial record NodeTimeZone(TimeZoneInfo? Zone, TimeSpan Offset, string Source)
{
    public static readonly NodeTimeZone Utc = new(null, TimeSpan.Zero, "unknown: the node named no time zone; read as UTC");

    /// <summary>The zone an <c>/etc/localtime</c> link target names (<c>../usr/share/zoneinfo/Europe/Berlin</c>), when this machine knows it.</summary>
    public static NodeTimeZone? FromLocaltimeLink(string target)
    {
        var t = target.Trim();
        var i = t.LastIndexOf("zoneinfo/", StringComparison.Ordinal);
        if (i < 0)
            return null;
        var id = t[(i + "zoneinfo/".Length)..];
        if (id.StartsWith("posix/", StringComparison.Ordinal))
            id = id["posix/".Length..];
        if (id.Length == 0 || id.StartsWith("right/", StringComparison.Ordinal))
            return null;
        try
        {
            var zone = TimeZoneInfo.FindSystemTimeZoneById(id);
            return new NodeTimeZone(zone, zone.BaseUtcOffset, $"{id} (/etc/localtime)");
        }
        catch (Exception ex) when (ex is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            return null;
        }
    }

    /// <summary>The fixed offset <c>date +%z</c> prints (<c>+0100</c>, <c>-0530</c>).</summary>
    public static NodeTimeZone? FromDateOffset(string output)
    {
        var m = OffsetRegex().Match(output.Trim());
        if (!m.Success)
            return null;
        var offset = new TimeSpan(int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture), 0);
        if (m.Groups[1].Value == "-")
            offset = -offset;
        return offset > TimeSpan.FromHours(14) || offset < TimeSpan.FromHours(-14) ? null
            : new NodeTimeZone(null, offset, $"UTC{m.Value} (date +%z: the offset in force now, applied to every date)");
    }

    /// <summary>A wall-clock time the node printed, as an instant.</summary>
    public DateTimeOffset ToInstant(DateTime local)
    {
        local = DateTime.SpecifyKind(local, DateTimeKind.Unspecified);
        var offset = Zone is null ? Offset
            : Zone.IsInvalidTime(local) ? Zone.GetUtcOffset(local.AddHours(-1)) // skipped by a spring-forward: the offset before it
            : Zone.GetUtcOffset(local); // an ambiguous hour reads as standard time
        return new DateTimeOffset(local, offset).ToUniversalTime();
    }

    [GeneratedRegex(@"^([+-])(\d{2})(\d{2})$")]
    private static partial Regex OffsetRegex();
}
