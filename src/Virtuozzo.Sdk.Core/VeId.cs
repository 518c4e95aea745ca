using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Virtuozzo.Sdk.Core;

/// <summary>
/// The identity of a virtual environment (a container or a VM): a UUID. Parsing accepts the braces that
/// <c>prlctl list</c> prints (<c>{…}</c>); <see cref="ToString"/> prints without braces, as <c>prlctl list -j</c> does.
/// </summary>
public readonly record struct VeId : IComparable<VeId>, ISpanParsable<VeId>
{
    /// <summary>Wraps an existing UUID.</summary>
    /// <param name="value">The UUID; <see cref="Guid.Empty"/> is refused.</param>
    /// <exception cref="ArgumentException">The UUID is empty.</exception>
    public VeId(Guid value)
    {
        if (value == Guid.Empty)
            throw new ArgumentException("A VE id cannot be the empty UUID.", nameof(value));
        Value = value;
    }

    /// <summary>The UUID.</summary>
    public Guid Value { get; }

    /// <summary>Creates a new random id.</summary>
    public static VeId New() => new(Guid.NewGuid());

    /// <summary>Parses <c>xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx</c>, with or without braces.</summary>
    /// <exception cref="FormatException">The text is not a UUID.</exception>
    public static VeId Parse(string s) => Parse(s.AsSpan(), null);

    /// <inheritdoc />
    public static VeId Parse(string s, IFormatProvider? provider) => Parse(s.AsSpan(), provider);

    /// <inheritdoc />
    public static VeId Parse(ReadOnlySpan<char> s, IFormatProvider? provider)
        => TryParse(s, provider, out var id)
            ? id
            : throw new FormatException($"'{s.ToString()}' is not a VE id: expected a UUID such as 0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44, optionally in braces.");

    /// <summary>Tries to parse a UUID, with or without braces.</summary>
    public static bool TryParse([NotNullWhen(true)] string? s, out VeId result) => TryParse(s.AsSpan(), null, out result);

    /// <inheritdoc />
    public static bool TryParse([NotNullWhen(true)] string? s, IFormatProvider? provider, out VeId result) => TryParse(s.AsSpan(), provider, out result);

    /// <inheritdoc />
    public static bool TryParse(ReadOnlySpan<char> s, IFormatProvider? provider, out VeId result)
    {
        s = s.Trim();
        if (s.Length == 38 && s[0] == '{' && s[^1] == '}')
            s = s[1..^1];
        if (s.Length == 36 && Guid.TryParseExact(s, "D", out var g) && g != Guid.Empty)
        {
            result = new VeId(g);
            return true;
        }
        result = default;
        return false;
    }

    /// <summary>The UUID without braces, lower case.</summary>
    public override string ToString() => Value.ToString("D", CultureInfo.InvariantCulture);

    /// <summary>The UUID in braces, as <c>prlctl list</c> prints it.</summary>
    public string ToBracedString() => Value.ToString("B", CultureInfo.InvariantCulture);

    /// <inheritdoc />
    public int CompareTo(VeId other) => Value.CompareTo(other.Value);
}
