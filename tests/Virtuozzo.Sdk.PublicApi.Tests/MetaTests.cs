using System.Reflection;

namespace Virtuozzo.Sdk.PublicApi.Tests;

public class MetaTests
{
    private static IEnumerable<MethodInfo> PublicMethods => SdkAssemblies.PublicTypes
        .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
        .Where(m => !m.IsSpecialName);

    private static bool IsAwaitable(Type t) => typeof(Task).IsAssignableFrom(t) || t == typeof(ValueTask) || (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(ValueTask<>));

    [Fact]
    public void Every_public_task_returning_method_ends_in_Async_and_takes_a_cancellation_token_last()
    {
        var offenders = PublicMethods
            .Where(m => IsAwaitable(m.ReturnType) && m.Name != nameof(IAsyncDisposable.DisposeAsync))
            .Where(m => !m.Name.EndsWith("Async", StringComparison.Ordinal)
                        || m.GetParameters() is not [.., { ParameterType: var last }] || last != typeof(CancellationToken))
            .Select(m => $"{m.DeclaringType}.{m.Name}")
            .ToList();
        offenders.Should().BeEmpty();
    }

    [Fact]
    public void Every_public_cancellation_token_parameter_is_optional()
    {
        PublicMethods.SelectMany(m => m.GetParameters().Where(p => p.ParameterType == typeof(CancellationToken) && !p.HasDefaultValue).Select(_ => $"{m.DeclaringType}.{m.Name}"))
            .Should().BeEmpty();
    }

    [Fact]
    public void Every_public_exception_derives_from_its_package_root()
    {
        var root = typeof(Virtuozzo.Sdk.Core.VirtuozzoException);
        var offenders = SdkAssemblies.PublicTypes
            .Where(t => typeof(Exception).IsAssignableFrom(t) && t != root)
            .Where(t => t.Assembly.GetName().Name == "Virtuozzo.Sdk.Storage.Qcow2"
                ? !IsQcow2Root(t) && !t.Assembly.GetExportedTypes().Any(r => IsQcow2Root(r) && r.IsAssignableFrom(t))
                : !root.IsAssignableFrom(t))
            .Select(t => t.FullName)
            .ToList();
        offenders.Should().BeEmpty("Core-based packages derive from VirtuozzoException; the standalone Storage.Qcow2 has its own root, Qcow2Exception");
    }

    private static bool IsQcow2Root(Type t) => t.Name == "Qcow2Exception" && typeof(IOException).IsAssignableFrom(t);

    [Fact]
    public void Internal_namespaces_have_no_public_types()
        => SdkAssemblies.PublicTypes.Where(t => t.Namespace?.Split('.').Contains("Internal") == true).Select(t => t.FullName).Should().BeEmpty();

    [Fact]
    public void Every_public_type_lives_under_its_assembly_name()
        => SdkAssemblies.PublicTypes.Where(t => !(t.Namespace ?? "").StartsWith(t.Assembly.GetName().Name!, StringComparison.Ordinal))
            .Select(t => t.FullName).Should().BeEmpty();

    [Fact]
    public void No_package_references_a_package_to_its_right()
    {
        var allowed = new Dictionary<string, string[]>
        {
            ["Virtuozzo.Sdk.Storage.Qcow2"] = [],
            ["Virtuozzo.Sdk.Core"] = [],
            ["Virtuozzo.Sdk.Containers"] = ["Virtuozzo.Sdk.Core", "Virtuozzo.Sdk.Storage.Qcow2"],
            ["Virtuozzo.Sdk.Vm"] = ["Virtuozzo.Sdk.Core", "Virtuozzo.Sdk.Storage.Qcow2"],
            ["Virtuozzo.Sdk.Backup"] = ["Virtuozzo.Sdk.Core", "Virtuozzo.Sdk.Storage.Qcow2", "Virtuozzo.Sdk.Containers", "Virtuozzo.Sdk.Vm"],
            ["Virtuozzo.Sdk.Migration"] = ["Virtuozzo.Sdk.Core", "Virtuozzo.Sdk.Storage.Qcow2", "Virtuozzo.Sdk.Containers", "Virtuozzo.Sdk.Vm"],
            ["Virtuozzo.Sdk.Memory"] = ["Virtuozzo.Sdk.Core", "Virtuozzo.Sdk.Containers", "Virtuozzo.Sdk.Vm"],
        };
        foreach (var a in SdkAssemblies.All)
        {
            var ours = a.GetReferencedAssemblies().Select(r => r.Name!).Where(n => n.StartsWith("Virtuozzo.Sdk", StringComparison.Ordinal));
            ours.Should().BeSubsetOf(allowed[a.GetName().Name!], $"{a.GetName().Name} must keep the package direction of DESIGN.md");
        }
    }

    [Fact]
    public void Every_public_member_is_documented()
    {
        var missing = new List<string>();
        foreach (var a in SdkAssemblies.All)
        {
            var xml = Path.ChangeExtension(a.Location, ".xml");
            File.Exists(xml).Should().BeTrue($"{a.GetName().Name} ships XML docs");
            var text = File.ReadAllText(xml);
            foreach (var t in a.GetExportedTypes())
                if (!text.Contains($"name=\"T:{t.FullName!.Replace('+', '.')}\"", StringComparison.Ordinal))
                    missing.Add(t.FullName!);
        }
        missing.Should().BeEmpty();
    }
}
