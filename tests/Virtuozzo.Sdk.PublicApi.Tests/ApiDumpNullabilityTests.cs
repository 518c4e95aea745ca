namespace Virtuozzo.Sdk.PublicApi.Tests;

/// <summary>
/// The approval gate sees nullability: two versions of one type that differ only in a <c>?</c> give different dumps
/// (so the approval test fails on such a change), while two identical versions give the same dump.
/// </summary>
public class ApiDumpNullabilityTests
{
    /// <summary>The dump of a type with its namespace removed, so that two versions of it can be compared.</summary>
    private static string DumpOf(Type t) => ApiDump.Of([t]).Replace(t.Namespace + ".", "", StringComparison.Ordinal);

    [Fact]
    public void Two_identical_versions_of_a_type_dump_the_same()
        => DumpOf(typeof(Before.Widget)).Should().Be(DumpOf(typeof(Same.Widget)));

    [Fact]
    public void Making_a_property_nullable_changes_the_dump()
    {
        var before = DumpOf(typeof(Before.Widget));
        var after = DumpOf(typeof(NullableProperty.Widget));
        after.Should().NotBe(before);
        before.Should().Contain("System.String Name { get; init; }");
        after.Should().Contain("System.String? Name { get; init; }");
    }

    [Fact]
    public void Making_a_parameter_nullable_changes_the_dump()
    {
        DumpOf(typeof(NullableParameter.Widget)).Should().NotBe(DumpOf(typeof(Before.Widget)))
            .And.Contain("Rename(System.String? name)");
    }

    [Fact]
    public void A_nullable_generic_argument_or_array_element_changes_the_dump()
    {
        var before = DumpOf(typeof(Before.Widget));
        var after = DumpOf(typeof(NullableElements.Widget));
        after.Should().NotBe(before);
        before.Should().Contain("System.Collections.Generic.IReadOnlyList<System.String> Tags { get; init; }").And.Contain("System.String[] Lines()");
        after.Should().Contain("System.Collections.Generic.IReadOnlyList<System.String?> Tags { get; init; }").And.Contain("System.String?[] Lines()");
    }

    [Fact]
    public void A_nullable_return_value_changes_the_dump()
        => DumpOf(typeof(NullableReturn.Widget)).Should().NotBe(DumpOf(typeof(Before.Widget))).And.Contain("System.String? Describe()");
}
