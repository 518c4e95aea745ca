using System.Diagnostics.CodeAnalysis;

namespace Virtuozzo.Sdk.Core;

/// <summary>
/// The unique name of a virtual environment. Names are 1–64 characters of ASCII letters, digits,
/// <c>.</c>, <c>_</c> and <c>-</c>, start with a letter or digit, and are not a UUID (the name and the
/// id must never be confused). A legacy numeric VEID (<c>101</c>) is a valid name.
/// </summary>
/// <remarks>
/// The rules keep a name safe everywhere it travels: as a command-line argument (no leading <c>-</c>),
/// as a file name (no <c>/</c>, no <c>..</c>, no control characters) and in logs.
/// Names compare ordinally (case-sensitive), as <c>prlctl</c> compares them.
/// </remarks>
public readonly record struct VeName : IComparable<VeName>
{
    /// <summary>The longest name accepted.</summary>
    public const int MaxLength = 64;

    private readonly string? _value;

    /// <summary>Validates and wraps a name.</summary>
    /// <exception cref="ArgumentException">The name breaks a rule; the message says which.</exception>
    public VeName(string value)
    {
        var error = Validate(value);
        if (error is not null)
            throw new ArgumentException(error, nameof(value));
        _value = value;
    }

    /// <summary>The name.</summary>
    public string Value => _value ?? throw new InvalidOperationException("An uninitialised VeName has no value.");

    /// <summary>Parses a name, throwing <see cref="ArgumentException"/> with the reason when it is invalid.</summary>
    public static VeName Parse(string value) => new(value);

    /// <summary>Tries to parse a name.</summary>
    public static bool TryParse([NotNullWhen(true)] string? value, out VeName name)
    {
        if (value is not null && Validate(value) is null)
        {
            name = new VeName(value);
            return true;
        }
        name = default;
        return false;
    }

    /// <summary>Returns why <paramref name="value"/> is not a valid name, or null when it is.</summary>
    public static string? Validate(string? value)
    {
        if (string.IsNullOrEmpty(value))
            return "A VE name cannot be empty.";
        if (value.Length > MaxLength)
            return $"The VE name '{Shorten(value)}' is {value.Length} characters long; the limit is {MaxLength}.";
        if (!char.IsAsciiLetterOrDigit(value[0]))
            return $"The VE name '{Printable(value)}' must start with a letter or a digit (a leading '-' or '.' could be read as an option or a hidden file).";
        foreach (var c in value)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
                return $"The VE name '{Printable(value)}' contains '{Printable(c.ToString())}'; use only letters, digits, '.', '_' and '-'.";
        }
        if (value.Contains("..", StringComparison.Ordinal))
            return $"The VE name '{value}' contains '..'.";
        if (VeId.TryParse(value, out _) || Guid.TryParse(value, out _))
            return $"The VE name '{value}' looks like a UUID; names and ids must be distinguishable. Choose another name.";
        return null;
    }

    private static string Shorten(string s) => s.Length <= 20 ? Printable(s) : Printable(s[..20]) + "…";

    private static string Printable(string s)
        => string.Concat(s.Select(c => char.IsControl(c) ? $"\\x{(int)c:x2}" : c.ToString()));

    /// <inheritdoc />
    public override string ToString() => _value ?? string.Empty;

    /// <inheritdoc />
    public int CompareTo(VeName other) => string.CompareOrdinal(_value, other._value);

    /// <summary>Converts a string to a name, validating it.</summary>
    public static explicit operator VeName(string value) => new(value);
}
