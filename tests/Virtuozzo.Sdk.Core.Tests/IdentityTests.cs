using Virtuozzo.Sdk.Core;

namespace Virtuozzo.Sdk.Core.Tests;

public class IdentityTests
{
    [Theory]
    [InlineData("0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44")]
    [InlineData("{0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44}")]
    [InlineData("{0F3C2A8E-5B1D-4C0E-9A57-2F9D2C1B7E44}")]
    public void A_ve_id_parses_with_or_without_braces_and_prints_without(string text)
    {
        var id = VeId.Parse(text);
        id.ToString().Should().Be("0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44");
        id.ToBracedString().Should().Be("{0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44}");
    }

    [Theory]
    [InlineData("")]
    [InlineData("101")]
    [InlineData("{0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44")]
    [InlineData("00000000-0000-0000-0000-000000000000")]
    [InlineData("0f3c2a8e5b1d4c0e9a572f9d2c1b7e44")]
    public void Text_that_is_not_a_uuid_is_not_a_ve_id(string text)
    {
        VeId.TryParse(text, out _).Should().BeFalse();
        var act = () => VeId.Parse(text);
        act.Should().Throw<FormatException>().WithMessage("*not a VE id*");
    }

    [Theory]
    [InlineData("web01")]
    [InlineData("101")]
    [InlineData("customer-42.example_com")]
    [InlineData("A")]
    public void Reasonable_names_are_accepted(string name)
        => new VeName(name).Value.Should().Be(name);

    [Theory]
    [InlineData("", "empty")]
    [InlineData("-rf", "start with a letter or a digit")]
    [InlineData(".hidden", "start with a letter or a digit")]
    [InlineData("a/../../etc", "contains '/'")]
    [InlineData("a..b", "contains '..'")]
    [InlineData("web 01", "contains ' '")]
    [InlineData("web;rm", "contains ';'")]
    [InlineData("web\n01", "contains '\\x0a'")]
    [InlineData("név", "contains 'é'")]
    [InlineData("0f3c2a8e-5b1d-4c0e-9a57-2f9d2c1b7e44", "looks like a UUID")]
    [InlineData("0f3c2a8e5b1d4c0e9a572f9d2c1b7e44", "looks like a UUID")]
    public void Dangerous_or_confusing_names_are_refused_with_the_reason(string name, string reason)
    {
        var act = () => new VeName(name);
        act.Should().Throw<ArgumentException>().Where(e => e.Message.Contains(reason, StringComparison.Ordinal));
        VeName.TryParse(name, out _).Should().BeFalse();
    }

    [Fact]
    public void A_name_longer_than_the_limit_is_refused()
    {
        new VeName(new string('a', VeName.MaxLength)).Value.Length.Should().Be(64);
        var act = () => new VeName(new string('a', VeName.MaxLength + 1));
        act.Should().Throw<ArgumentException>().WithMessage("*limit is 64*");
    }
}
