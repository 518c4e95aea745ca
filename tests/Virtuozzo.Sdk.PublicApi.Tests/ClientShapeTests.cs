using System.Reflection;
using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.PublicApi.Tests;

/// <summary>The rules that make the clients one API: runtime-neutral names, one constructor shape, mockable members, one naming rule.</summary>
public class ClientShapeTests
{
    private static readonly string[] NeutralAssemblies = ["Virtuozzo.Sdk.Containers", "Virtuozzo.Sdk.Vm", "Virtuozzo.Sdk.Backup"];

    private static IEnumerable<Type> NeutralTypes => NeutralAssemblies.Select(SdkAssemblies.Load).SelectMany(a => a.GetExportedTypes());

    private static IEnumerable<Type> Clients => SdkAssemblies.PublicTypes.Where(t => t.IsClass && t.Name.EndsWith("Client", StringComparison.Ordinal));

    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// <summary>Words that belong to one runtime (the local one's tools, processes and files), never to the neutral API.</summary>
    private static readonly Regex RuntimeWord = new(@"Qemu|Qmp|Runc|Oci(?![a-z])|Cgroup|ProcessId|(?<![a-z])Pids?(?![a-z])|Console|Emulator|Fuse|StorageDaemon", RegexOptions.Compiled);

    /// <summary>Every name a public type shows: its own, its members', their parameters', and the names of the types they use.</summary>
    private static IEnumerable<(string Where, string Name)> NamesOf(Type t)
    {
        yield return (t.FullName!, t.Name);
        foreach (var m in t.GetMembers(Declared))
        {
            var where = $"{t.Name}.{m.Name}";
            yield return (where, m.Name);
            var types = m switch
            {
                PropertyInfo p => [p.PropertyType],
                FieldInfo f => [f.FieldType],
                MethodBase mb => mb.GetParameters().Select(p => p.ParameterType).Concat(mb is MethodInfo mi ? [mi.ReturnType] : []),
                _ => Enumerable.Empty<Type>(),
            };
            if (m is MethodBase method)
            {
                foreach (var p in method.GetParameters())
                    yield return (where, char.ToUpperInvariant(p.Name![0]) + p.Name[1..]);
            }
            foreach (var used in types.SelectMany(Flatten))
                yield return (where, used.Name);
        }
    }

    private static IEnumerable<Type> Flatten(Type t)
    {
        if (t.IsByRef || t.IsArray)
            return Flatten(t.GetElementType()!);
        return t.IsGenericType ? t.GetGenericArguments().SelectMany(Flatten).Prepend(t) : [t];
    }

    [Fact]
    public void No_public_type_of_Containers_Vm_or_Backup_names_a_runtime_detail()
    {
        var offenders = NeutralTypes.SelectMany(NamesOf).Where(n => RuntimeWord.IsMatch(n.Name)).Select(n => $"{n.Where}: {n.Name}").Distinct().ToList();
        offenders.Should().BeEmpty("the public API is runtime-neutral: runc, QEMU, OCI, cgroups, PIDs and console paths belong to the local runtime (DESIGN.md)");
    }

    [Fact]
    public void No_public_member_of_Containers_Vm_or_Backup_hands_out_the_disk_engine()
    {
        var engine = SdkAssemblies.Load("Virtuozzo.Sdk.Storage.Qcow2");
        var offenders = NeutralTypes.SelectMany(t => t.GetMembers(Declared).Select(m => (t, m)))
            .Where(x => x.m switch
            {
                PropertyInfo p => Flatten(p.PropertyType).Any(u => u.Assembly == engine),
                MethodInfo mi => Flatten(mi.ReturnType).Concat(mi.GetParameters().SelectMany(p => Flatten(p.ParameterType))).Any(u => u.Assembly == engine),
                _ => false,
            })
            .Select(x => $"{x.t.Name}.{x.m.Name}")
            .ToList();
        offenders.Should().BeEmpty("a runtime other than the local one has no QCOW2 engine object to hand out");
    }

    [Fact]
    public void Every_client_is_mockable_through_a_protected_constructor_and_virtual_members()
    {
        Clients.Should().NotBeEmpty();
        foreach (var client in Clients)
        {
            client.IsSealed.Should().BeFalse($"{client.Name} must be mockable");
            client.GetConstructor(BindingFlags.NonPublic | BindingFlags.Instance, Type.EmptyTypes).Should()
                .NotBeNull($"{client.Name} needs a protected parameterless constructor for mocking frameworks")
                .And.Match<ConstructorInfo>(c => c.IsFamily, $"{client.Name}'s parameterless constructor is protected");
            var sealedMembers = client.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
                .Where(m => !m.IsVirtual || m.IsFinal)
                .Where(m => !m.IsSpecialName || m.Name.StartsWith("get_", StringComparison.Ordinal))
                .Select(m => m.Name)
                .ToList();
            sealedMembers.Should().BeEmpty($"every public member of {client.Name} is virtual");
        }
    }

    [Fact]
    public void Every_client_is_built_from_the_runtime_and_at_most_its_own_options()
    {
        foreach (var client in Clients)
        {
            var ctors = client.GetConstructors();
            ctors.Should().ContainSingle($"{client.Name} has one public constructor");
            var p = ctors[0].GetParameters();
            p.Should().NotBeEmpty();
            p[0].ParameterType.Name.Should().Be("VirtuozzoRuntime", $"{client.Name} is built on the SDK's one runtime");
            if (p.Length > 1)
            {
                p.Should().HaveCount(2);
                p[1].Name.Should().Be("options");
                p[1].ParameterType.Name.Should().Be(client.Name + "Options");
                p[1].HasDefaultValue.Should().BeTrue($"{client.Name}'s options are optional");
            }
        }
    }

    [Fact]
    public void Options_records_are_named_noun_first_and_use_whole_words()
    {
        var options = SdkAssemblies.PublicTypes.Where(t => t.Name.EndsWith("Options", StringComparison.Ordinal)).ToList();
        options.Where(t => Regex.IsMatch(t.Name, "^(Create|Set|Stop|Start|Clone|Exec|Delete|Restore|Import)")).Select(t => t.FullName)
            .Should().BeEmpty("options are named {Noun}{Verb}Options (VmCreateOptions, VeStopOptions, BackupRestoreOptions)");
        var abbreviated = SdkAssemblies.PublicTypes.SelectMany(t => t.GetProperties(Declared).Select(p => $"{t.Name}.{p.Name}"))
            .Where(n => Regex.IsMatch(n, @"\.(Mem[A-Z]|MemSize|.*Guarantee$|CpuLimit$)"))
            .ToList();
        abbreviated.Should().BeEmpty("resource names are whole words and percentages say so (MemorySize, MemoryGuaranteePercent, CpuLimitPercent)");
    }

    [Fact]
    public void Every_client_method_names_a_VE_with_VeRef_not_a_bare_string()
    {
        var offenders = Clients.SelectMany(c => c.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly).Select(m => (c, m)))
            .SelectMany(x => x.m.GetParameters().Where(p => p.ParameterType == typeof(string) && Regex.IsMatch(p.Name!, "^(nameOrId.*|ve|vm|container)$")).Select(p => $"{x.c.Name}.{x.m.Name}({p.Name})"))
            .ToList();
        offenders.Should().BeEmpty("a VE is named by VeRef, which takes a name, a UUID, a VeName or a VeId");
    }

    [Fact]
    public void The_same_verb_returns_the_same_shape_on_every_client()
    {
        Type Return(string client, string method) => Clients.Single(c => c.Name == client).GetMethods().First(m => m.Name == method).ReturnType;
        foreach (var verb in new[] { "StopAsync", "DeleteAsync", "ExecAsync" })
        {
            var shapes = new[] { "ContainerClient", "VirtualMachineClient", "VirtualEnvironmentClient" }.Select(c => Return(c, verb)).Distinct().ToList();
            shapes.Should().ContainSingle($"{verb} returns the same type on every client");
        }
        foreach (var verb in new[] { "StartAsync", "SuspendAsync", "ResumeAsync", "RenameAsync", "RestartAsync", "GetAsync" })
        {
            foreach (var client in new[] { "ContainerClient", "VirtualMachineClient", "VirtualEnvironmentClient" })
            {
                var r = Return(client, verb);
                (r.IsGenericType && r.GetGenericArguments()[0].Name.EndsWith("Info", StringComparison.Ordinal) && r.GetGenericArguments()[0].IsAssignableTo(SdkAssemblies.Load("Virtuozzo.Sdk.Core").GetType("Virtuozzo.Sdk.Core.VeInfo")))
                    .Should().BeTrue($"{client}.{verb} returns the VE's info afterwards (a VeInfo)");
            }
        }
    }
}
