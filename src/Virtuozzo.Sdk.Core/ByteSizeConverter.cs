using System.ComponentModel;
using System.Globalization;

namespace Virtuozzo.Sdk.Core;

/// <summary>
/// Converts text such as <c>512M</c>, <c>2G</c> or <c>1.5GiB</c> to a <see cref="ByteSize"/> (a bare number is bytes), so
/// that <c>Microsoft.Extensions.Configuration</c>'s binder and other <see cref="TypeDescriptor"/> users bind sizes.
/// </summary>
public sealed class ByteSizeConverter : TypeConverter
{
    /// <inheritdoc />
    public override bool CanConvertFrom(ITypeDescriptorContext? context, Type sourceType)
        => sourceType == typeof(string) || sourceType == typeof(long) || base.CanConvertFrom(context, sourceType);

    /// <inheritdoc />
    public override bool CanConvertTo(ITypeDescriptorContext? context, Type? destinationType)
        => destinationType == typeof(string) || base.CanConvertTo(context, destinationType);

    /// <inheritdoc />
    /// <exception cref="FormatException">The text is not a size.</exception>
    public override object? ConvertFrom(ITypeDescriptorContext? context, CultureInfo? culture, object value) => value switch
    {
        string s => ByteSize.Parse(s),
        long l => new ByteSize(l),
        _ => base.ConvertFrom(context, culture, value),
    };

    /// <inheritdoc />
    public override object? ConvertTo(ITypeDescriptorContext? context, CultureInfo? culture, object? value, Type destinationType)
        => destinationType == typeof(string) && value is ByteSize size ? size.ToString() : base.ConvertTo(context, culture, value, destinationType);
}
