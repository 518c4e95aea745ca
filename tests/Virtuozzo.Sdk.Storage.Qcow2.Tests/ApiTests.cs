using System.Reflection;
using System.Text;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

[CollectionDefinition("zstd availability", DisableParallelization = true)]
public class ZstdAvailabilityCollection;

public class ApiTests
{
    private static readonly Assembly Lib = typeof(Qcow2Image).Assembly;

    private static IEnumerable<Type> PublicTypes => Lib.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal);

    internal static string Dump()
    {
        var sb = new StringBuilder();
        foreach (var t in PublicTypes)
        {
            sb.Append(t.IsEnum ? "enum " : t.IsValueType ? "struct " : t.IsInterface ? "interface " : t.IsAbstract && t.IsSealed ? "static class " : "class ").Append(t.FullName);
            if (t.BaseType is { } b && b != typeof(object) && b != typeof(Enum) && b != typeof(ValueType))
                sb.Append(" : ").Append(b.Name);
            sb.AppendLine();
            foreach (var m in t.GetMembers(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly)
                         .Where(m => m is not MethodInfo { IsSpecialName: true })
                         .Select(Describe).Where(s => s is not null).Order(StringComparer.Ordinal))
                sb.Append("    ").AppendLine(m);
        }
        return sb.ToString().ReplaceLineEndings("\n");
    }

    private static string? Describe(MemberInfo m) => m switch
    {
        ConstructorInfo c => $"ctor({Params(c.GetParameters())})",
        MethodInfo mi when mi.Name is "Equals" or "GetHashCode" or "ToString" or "<Clone>$" or "Deconstruct" or "PrintMembers" => null,
        MethodInfo mi => $"{(mi.IsStatic ? "static " : "")}{Name(mi.ReturnType)} {mi.Name}({Params(mi.GetParameters())})",
        PropertyInfo p => $"{Name(p.PropertyType)} {p.Name} {{ {(p.GetMethod?.IsPublic == true ? "get; " : "")}{(p.SetMethod?.IsPublic == true ? (p.SetMethod.ReturnParameter.GetRequiredCustomModifiers().Any(x => x.Name == "IsExternalInit") ? "init; " : "set; ") : "")}}}",
        FieldInfo f when f.DeclaringType!.IsEnum => f.IsSpecialName ? null : $"{f.Name} = {f.GetRawConstantValue()}",
        FieldInfo f => $"field {Name(f.FieldType)} {f.Name}",
        _ => null,
    };

    private static string Params(ParameterInfo[] ps) => string.Join(", ", ps.Select(p => $"{Name(p.ParameterType)} {p.Name}{(p.HasDefaultValue ? " = " + (p.DefaultValue ?? "null") : "")}"));

    private static string Name(Type t) => t.IsGenericType
        ? $"{t.Name[..t.Name.IndexOf('`')]}<{string.Join(", ", t.GetGenericArguments().Select(Name))}>"
        : t.Name;

    private static string ApprovedPath([System.Runtime.CompilerServices.CallerFilePath] string here = "")
        => Path.Combine(Path.GetDirectoryName(here)!, "api", "Virtuozzo.Sdk.Storage.Qcow2.txt");

    [Fact]
    public void The_public_api_matches_the_approved_file()
    {
        var path = ApprovedPath();
        var actual = Dump();
        // the test never rewrites the approved file; it leaves the current surface next to the temp files for review
        var received = Path.Combine(Path.GetTempPath(), "Virtuozzo.Sdk.Storage.Qcow2.received.txt");
        File.WriteAllText(received, actual);
        File.Exists(path).Should().BeTrue($"the approved API file {path} must be checked in; the current surface is:\n{actual}");
        File.ReadAllText(path).ReplaceLineEndings("\n").Should().Be(actual, $"a public API change needs the approved file updated in the same commit (current surface: {received})");
    }

    [Fact]
    public void Every_public_task_returning_method_ends_in_async_and_takes_a_cancellation_token()
    {
        var offenders = PublicTypes.SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => typeof(Task).IsAssignableFrom(m.ReturnType) || m.ReturnType.Name.StartsWith("ValueTask", StringComparison.Ordinal))
            .Where(m => m.Name != "DisposeAsync")
            .Where(m => !m.Name.EndsWith("Async", StringComparison.Ordinal) || m.GetParameters().LastOrDefault()?.ParameterType != typeof(CancellationToken))
            .Select(m => $"{m.DeclaringType!.Name}.{m.Name}");
        offenders.Should().BeEmpty();
    }

    [Fact]
    public void Every_public_exception_derives_from_the_package_root_and_internal_types_stay_internal()
    {
        PublicTypes.Where(t => typeof(Exception).IsAssignableFrom(t)).Should().OnlyContain(t => typeof(Qcow2Exception).IsAssignableFrom(t));
        typeof(Qcow2Exception).Should().BeDerivedFrom<IOException>();
        PublicTypes.Should().NotContain(t => t.Namespace!.EndsWith(".Internal", StringComparison.Ordinal));
    }
}

[Collection("zstd availability")]
public class ZstdMissingTests
{
    [Fact]
    public void Without_libzstd_zstd_clusters_fail_clearly_and_zlib_keeps_working()
    {
        var zstd = new MemoryStorage();
        var zlib = new MemoryStorage();
        var data = TestData.Compressible(65536, 1);
        using (var a = Qcow2Image.Create(zstd, new Qcow2CreateOptions { Size = 1 << 20, CompressionType = Qcow2CompressionType.Zstd }))
            a.WriteCompressed(0, data);
        using (var b = Qcow2Image.Create(zlib, new Qcow2CreateOptions { Size = 1 << 20 }))
            b.WriteCompressed(0, data);
        Compression.Zstd.OverrideForTests = false;
        try
        {
            using var a = Qcow2Image.Open(zstd, new Qcow2OpenOptions { ReadOnly = true });
            a.Invoking(i => i.Read(0, new byte[10])).Should().Throw<Qcow2NotSupportedException>().WithMessage("*zstd*libzstd*");
            using var b = Qcow2Image.Open(zlib, new Qcow2OpenOptions { ReadOnly = true });
            var back = new byte[65536];
            b.Read(0, back);
            back.Should().Equal(data);
        }
        finally
        {
            Compression.Zstd.OverrideForTests = null;
        }
    }
}
