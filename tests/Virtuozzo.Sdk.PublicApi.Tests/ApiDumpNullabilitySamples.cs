// Versions of one type for ApiDumpNullabilityTests: each namespace holds the same Widget with one nullability change.
#pragma warning disable CA1024, CA1819, CA1822, CA1034, CA1050, CA1716
namespace Virtuozzo.Sdk.PublicApi.Tests.Before
{
    public sealed class Widget
    {
        public string Name { get; init; } = "";
        public IReadOnlyList<string> Tags { get; init; } = [];
        public void Rename(string name) => _ = name;
        public string Describe() => Name;
        public string[] Lines() => [];
    }
}

namespace Virtuozzo.Sdk.PublicApi.Tests.Same
{
    public sealed class Widget
    {
        public string Name { get; init; } = "";
        public IReadOnlyList<string> Tags { get; init; } = [];
        public void Rename(string name) => _ = name;
        public string Describe() => Name;
        public string[] Lines() => [];
    }
}

namespace Virtuozzo.Sdk.PublicApi.Tests.NullableProperty
{
    public sealed class Widget
    {
        public string? Name { get; init; }
        public IReadOnlyList<string> Tags { get; init; } = [];
        public void Rename(string name) => _ = name;
        public string Describe() => Name ?? "";
        public string[] Lines() => [];
    }
}

namespace Virtuozzo.Sdk.PublicApi.Tests.NullableParameter
{
    public sealed class Widget
    {
        public string Name { get; init; } = "";
        public IReadOnlyList<string> Tags { get; init; } = [];
        public void Rename(string? name) => _ = name;
        public string Describe() => Name;
        public string[] Lines() => [];
    }
}

namespace Virtuozzo.Sdk.PublicApi.Tests.NullableElements
{
    public sealed class Widget
    {
        public string Name { get; init; } = "";
        public IReadOnlyList<string?> Tags { get; init; } = [];
        public void Rename(string name) => _ = name;
        public string Describe() => Name;
        public string?[] Lines() => [];
    }
}

namespace Virtuozzo.Sdk.PublicApi.Tests.NullableReturn
{
    public sealed class Widget
    {
        public string Name { get; init; } = "";
        public IReadOnlyList<string> Tags { get; init; } = [];
        public void Rename(string name) => _ = name;
        public string? Describe() => Name;
        public string[] Lines() => [];
    }
}
