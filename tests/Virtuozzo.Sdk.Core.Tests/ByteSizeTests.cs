using FsCheck;
using FsCheck.Fluent;
using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Core.Tests;

public class ByteSizeTests
{
    [Theory]
    [InlineData("512K", 512L * 1024)]
    [InlineData("256M", 256L * 1024 * 1024)]
    [InlineData("1G", 1L << 30)]
    [InlineData("1T", 1L << 40)]
    [InlineData("1g", 1L << 30)]
    [InlineData("256MiB", 256L << 20)]
    [InlineData("256mb", 256L << 20)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData("512B", 512)]
    [InlineData(" 2G ", 2L << 30)]
    public void Suffixed_sizes_are_binary(string text, long bytes)
    {
        ByteSize.Parse(text, SizeUnit.Bytes).Bytes.Should().Be(bytes);
        ByteSize.Parse(text, SizeUnit.Mebibytes).Bytes.Should().Be(bytes, "a suffix overrides the bare-number unit");
    }

    [Fact]
    public void A_bare_number_means_bytes_for_disks_and_mebibytes_for_resources()
    {
        ByteSize.Parse("1024", SizeUnit.Bytes).Bytes.Should().Be(1024);
        ByteSize.Parse("1024", SizeUnit.Mebibytes).Bytes.Should().Be(1024L << 20);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-1G")]
    [InlineData("+1G")]
    [InlineData("G")]
    [InlineData("1X")]
    [InlineData("1iB")]
    [InlineData("one")]
    [InlineData("99999999999T")]
    [InlineData("1e3")]
    public void Malformed_or_negative_or_huge_sizes_are_refused(string text)
    {
        var act = () => ByteSize.Parse(text);
        act.Should().Throw<FormatException>();
    }

    [Theory]
    [InlineData(0, "0")]
    [InlineData(512L * 1024, "512K")]
    [InlineData(256L << 20, "256M")]
    [InlineData(1L << 30, "1G")]
    [InlineData(3L << 40, "3T")]
    [InlineData(1000, "1000")]
    [InlineData((1L << 30) + 512, "1073742336")]
    public void Sizes_print_in_their_shortest_exact_form(long bytes, string text)
        => new ByteSize(bytes).ToString().Should().Be(text);

    [Fact]
    public void Every_size_survives_printing_and_parsing()
        => Prop.ForAll(Gen.Choose(0, int.MaxValue).Select(i => (long)i * 3).ToArbitrary(), bytes =>
                ByteSize.Parse(new ByteSize(bytes).ToString()).Bytes == bytes)
            .QuickCheckThrowOnFailure();

    [Fact]
    public void Every_multiple_of_a_unit_survives_printing_and_parsing()
        => Prop.ForAll(Gen.Choose(1, 100_000).ToArbitrary(), Gen.Elements(ByteSize.KiB, ByteSize.MiB, ByteSize.GiB).ToArbitrary(), (n, unit) =>
                ByteSize.Parse(new ByteSize(n * unit).ToString(), SizeUnit.Mebibytes).Bytes == n * unit)
            .QuickCheckThrowOnFailure();
}
