using System.Globalization;
using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>
/// A <c>prlctl</c> version (<c>prlctl --version</c>), which decides how its output is read: before 7.0.190 its JSON does
/// not escape quotes, backslashes or newlines in user fields (prlctl commit e457201, PSBM-101599).
/// </summary>
internal readonly partial record struct PrlctlVersion(int Major, int Minor, int Build) : IComparable<PrlctlVersion>
{
    /// <summary>The first version whose <c>-j</c> output escapes <c>\ " \n \t</c> in strings.</summary>
    public static readonly PrlctlVersion EscapedJson = new(7, 0, 190);

    /// <summary>The first version that prints the deprecation banner on standard error (commit e915f3e).</summary>
    public static readonly PrlctlVersion DeprecationBanner = new(7, 0, 224);

    /// <summary>True when this version's JSON escapes strings (7.0.190 and later).</summary>
    public bool EscapesJson => CompareTo(EscapedJson) >= 0;

    /// <summary>
    /// Reads the first <c>N.N.N</c> of <c>prlctl --version</c>'s output (for example <c>prlctl version 7.0.253</c>);
    /// null when there is none.
    /// </summary>
    public static PrlctlVersion? TryParse(string? output)
    {
        if (string.IsNullOrWhiteSpace(output))
            return null;
        var m = VersionPattern().Match(output);
        if (!m.Success)
            return null;
        try
        {
            return new PrlctlVersion(
                int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture),
                int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture),
                int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
        }
        catch (OverflowException)
        {
            return null;
        }
    }

    public int CompareTo(PrlctlVersion other)
        => Major != other.Major ? Major.CompareTo(other.Major)
            : Minor != other.Minor ? Minor.CompareTo(other.Minor)
            : Build.CompareTo(other.Build);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Major}.{Minor}.{Build}");

    [GeneratedRegex(@"(?<![\d.])(\d{1,9})\.(\d{1,9})\.(\d{1,9})(?![\d])", RegexOptions.CultureInvariant)]
    private static partial Regex VersionPattern();
}
