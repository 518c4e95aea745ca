using System.Globalization;

namespace Virtuozzo.Sdk.Core;

/// <summary>What a bare number (no suffix) means when a size is parsed.</summary>
public enum SizeUnit
{
    /// <summary>Bytes, as in <c>qemu-img</c> and <c>vzsdk disk</c>.</summary>
    Bytes,

    /// <summary>Kibibytes.</summary>
    Kibibytes,

    /// <summary>Mebibytes, as in <c>prlctl</c> resource flags (<c>--memsize</c>, <c>--swap</c>, <c>--diskspace</c>).</summary>
    Mebibytes,

    /// <summary>Gibibytes.</summary>
    Gibibytes,
}

/// <summary>
/// A non-negative size in bytes that parses and prints binary suffixes: <c>512K</c>, <c>256M</c>, <c>1G</c>, <c>1T</c>
/// (case-insensitive, optional <c>B</c> or <c>iB</c>: <c>256MiB</c>, <c>1gb</c>). A bare number's unit is the caller's choice
/// (<see cref="SizeUnit"/>), following the rules of the <c>vzsdk</c> tool. Binds from configuration text through
/// <see cref="ByteSizeConverter"/> (a bare number there is bytes).
/// </summary>
[System.ComponentModel.TypeConverter(typeof(ByteSizeConverter))]
public readonly record struct ByteSize : IComparable<ByteSize>
{
    /// <summary>One kibibyte.</summary>
    public const long KiB = 1L << 10;

    /// <summary>One mebibyte.</summary>
    public const long MiB = 1L << 20;

    /// <summary>One gibibyte.</summary>
    public const long GiB = 1L << 30;

    /// <summary>One tebibyte.</summary>
    public const long TiB = 1L << 40;

    /// <summary>Creates a size.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is negative.</exception>
    public ByteSize(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Bytes = bytes;
    }

    /// <summary>The size in bytes.</summary>
    public long Bytes { get; }

    /// <summary>Zero bytes.</summary>
    public static ByteSize Zero => default;

    /// <summary>A size in bytes.</summary>
    public static ByteSize FromBytes(long bytes) => new(bytes);

    /// <summary>A size in kibibytes.</summary>
    public static ByteSize FromKiB(long value) => new(checked(value * KiB));

    /// <summary>A size in mebibytes.</summary>
    public static ByteSize FromMiB(long value) => new(checked(value * MiB));

    /// <summary>A size in gibibytes.</summary>
    public static ByteSize FromGiB(long value) => new(checked(value * GiB));

    /// <summary>The size in whole mebibytes, rounded down.</summary>
    public long TotalMiB => Bytes / MiB;

    /// <summary>
    /// Parses a size such as <c>512K</c>, <c>1.5G</c>, <c>256MiB</c> or a bare number whose unit is <paramref name="bareUnit"/>.
    /// </summary>
    /// <exception cref="FormatException">The text is not a size, is negative, or does not fit in 63 bits.</exception>
    public static ByteSize Parse(string text, SizeUnit bareUnit = SizeUnit.Bytes)
        => TryParse(text, bareUnit, out var size, out var error) ? size : throw new FormatException(error);

    /// <summary>Tries to parse a size; see <see cref="Parse"/>.</summary>
    public static bool TryParse(string? text, SizeUnit bareUnit, out ByteSize size) => TryParse(text, bareUnit, out size, out _);

    private static bool TryParse(string? text, SizeUnit bareUnit, out ByteSize size, out string error)
    {
        size = default;
        var s = (text ?? string.Empty).Trim();
        error = $"'{text}' is not a size: use a number with an optional K, M, G or T suffix (binary), for example 512M or 2G.";
        if (s.Length == 0)
            return false;

        int end = s.Length;
        if (EndsWith(s, "ib")) end -= 2;
        else if (EndsWith(s, "b")) end -= 1;
        long multiplier;
        var unitChar = end > 0 ? char.ToUpperInvariant(s[end - 1]) : '\0';
        switch (unitChar)
        {
            case 'K': multiplier = KiB; end--; break;
            case 'M': multiplier = MiB; end--; break;
            case 'G': multiplier = GiB; end--; break;
            case 'T': multiplier = TiB; end--; break;
            default:
                if (end != s.Length && !(end == s.Length - 1 && char.ToUpperInvariant(s[^1]) == 'B'))
                    return false; // "iB" without a unit letter
                multiplier = end == s.Length ? UnitMultiplier(bareUnit) : 1; // "512B" is bytes
                break;
        }
        var number = s[..end];
        if (number.Length == 0 || number[0] is '+' or '-')
            return false;
        if (!decimal.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value))
            return false;
        try
        {
            var bytes = decimal.Floor(value * multiplier);
            if (bytes > long.MaxValue)
            {
                error = $"The size '{text}' is too large.";
                return false;
            }
            size = new ByteSize((long)bytes);
            return true;
        }
        catch (OverflowException)
        {
            error = $"The size '{text}' is too large.";
            return false;
        }
    }

    private static bool EndsWith(string s, string suffix) => s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase);

    private static long UnitMultiplier(SizeUnit unit) => unit switch
    {
        SizeUnit.Bytes => 1,
        SizeUnit.Kibibytes => KiB,
        SizeUnit.Mebibytes => MiB,
        SizeUnit.Gibibytes => GiB,
        _ => throw new ArgumentOutOfRangeException(nameof(unit), unit, "Unknown size unit."),
    };

    /// <summary>
    /// The shortest exact form: the largest binary suffix that divides the size (<c>512K</c>, <c>1G</c>), else plain bytes.
    /// </summary>
    public override string ToString()
    {
        if (Bytes == 0)
            return "0";
        foreach (var (unit, suffix) in new[] { (TiB, "T"), (GiB, "G"), (MiB, "M"), (KiB, "K") })
        {
            if (Bytes % unit == 0)
                return (Bytes / unit).ToString(CultureInfo.InvariantCulture) + suffix;
        }
        return Bytes.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>A human form with at most one decimal, such as <c>1.5 GiB</c> (not exact; for display only).</summary>
    public string ToHumanString()
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        double v = Bytes;
        var i = 0;
        while (v >= 1024 && i < units.Length - 1)
        {
            v /= 1024;
            i++;
        }
        return i == 0 ? $"{Bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{v:0.#} {units[i]}");
    }

    /// <inheritdoc />
    public int CompareTo(ByteSize other) => Bytes.CompareTo(other.Bytes);

    /// <summary>Compares two sizes.</summary>
    public static bool operator <(ByteSize left, ByteSize right) => left.Bytes < right.Bytes;

    /// <summary>Compares two sizes.</summary>
    public static bool operator >(ByteSize left, ByteSize right) => left.Bytes > right.Bytes;

    /// <summary>Compares two sizes.</summary>
    public static bool operator <=(ByteSize left, ByteSize right) => left.Bytes <= right.Bytes;

    /// <summary>Compares two sizes.</summary>
    public static bool operator >=(ByteSize left, ByteSize right) => left.Bytes >= right.Bytes;
}
