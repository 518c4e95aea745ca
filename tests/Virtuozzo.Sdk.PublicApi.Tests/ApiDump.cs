using System.Reflection;
using System.Text;

namespace Virtuozzo.Sdk.PublicApi.Tests;

/// <summary>
/// A stable text form of an assembly's public surface: one line per public type and member, sorted. Reference types
/// carry their nullable annotations (<c>System.String?</c>, <c>List&lt;System.String?&gt;</c>, read through
/// <see cref="NullabilityInfoContext"/>), so making a parameter or a property nullable, or no longer nullable, changes
/// the dump and fails the approval test.
/// </summary>
internal static class ApiDump
{
    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    public static string Of(Assembly assembly) => Of(assembly.GetExportedTypes());

    /// <summary>The dump of the given types (the test of the dump itself uses it on types of its own).</summary>
    public static string Of(IEnumerable<Type> types)
    {
        var nullability = new NullabilityInfoContext();
        string Name(Type t, NullabilityInfo? n = null) => TypeName(t, n);
        string Params(ParameterInfo[] ps) => string.Join(", ", ps.Select(p =>
            $"{(p.IsOut ? "out " : p.ParameterType.IsByRef ? "ref " : "")}{(p.GetCustomAttribute<ParamArrayAttribute>() is not null ? "params " : "")}{Name(p.ParameterType, nullability.Create(p))} {p.Name}{(p.HasDefaultValue ? " = " + (p.DefaultValue ?? "null") : "")}"));
        var sb = new StringBuilder();
        foreach (var type in types.OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            sb.Append(TypeHeader(type)).Append('\n');
            var members = new List<string>();
            if (type.IsEnum)
            {
                members.AddRange(Enum.GetNames(type).Select(n => $"  {n} = {Convert.ToInt64(Enum.Parse(type, n), System.Globalization.CultureInfo.InvariantCulture)}"));
            }
            else
            {
                foreach (var c in type.GetConstructors(Declared))
                    members.Add($"  ctor({Params(c.GetParameters())})");
                foreach (var m in type.GetMethods(Declared).Where(m => !m.IsSpecialName || m.Name.StartsWith("op_", StringComparison.Ordinal)))
                    members.Add($"  {(m.IsStatic ? "static " : "")}{(m.IsAbstract && !type.IsInterface ? "abstract " : m.IsVirtual && !m.IsFinal && !type.IsInterface ? "virtual " : "")}{Name(m.ReturnType, nullability.Create(m.ReturnParameter))} {m.Name}{Generic(m)}({Params(m.GetParameters())})");
                foreach (var p in type.GetProperties(Declared))
                {
                    var get = p.GetMethod is { IsPublic: true } ? "get; " : "";
                    var set = p.SetMethod is { IsPublic: true } s ? (s.ReturnParameter.GetRequiredCustomModifiers().Any(m => m.Name == "IsExternalInit") ? "init; " : "set; ") : "";
                    var n = nullability.Create(p);
                    // A setter that accepts what the getter never returns ([AllowNull]) or the reverse shows both.
                    var write = p.SetMethod is { IsPublic: true } && n.WriteState != n.ReadState && n.WriteState != NullabilityState.Unknown ? $"[set: {n.WriteState}] " : "";
                    members.Add($"  {((p.GetMethod ?? p.SetMethod)!.IsStatic ? "static " : "")}{Name(p.PropertyType, n)} {p.Name} {{ {get}{set}}}{(write.Length > 0 ? " " + write.TrimEnd() : "")}");
                }
                foreach (var f in type.GetFields(Declared))
                    members.Add($"  {(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{(f.IsInitOnly ? "readonly " : "")}{Name(f.FieldType, nullability.Create(f))} {f.Name}");
                foreach (var e in type.GetEvents(Declared))
                    members.Add($"  event {Name(e.EventHandlerType!, nullability.Create(e))} {e.Name}");
            }
            foreach (var line in members.OrderBy(m => m, StringComparer.Ordinal))
                sb.Append(line).Append('\n');
        }
        return sb.ToString();
    }

    private static string TypeHeader(Type t)
    {
        var kind = t.IsInterface ? "interface" : t.IsEnum ? "enum" : t.IsValueType ? "struct" : t.IsAbstract && t.IsSealed ? "static class" : t.IsAbstract ? "abstract class" : t.IsSealed ? "sealed class" : "class";
        var bases = new List<string>();
        if (t.BaseType is { } b && b != typeof(object) && b != typeof(ValueType) && b != typeof(Enum))
            bases.Add(TypeName(b));
        bases.AddRange(t.GetInterfaces().Where(i => i.IsPublic || i.IsNestedPublic).Select(i => TypeName(i)).OrderBy(n => n, StringComparer.Ordinal));
        return $"{kind} {TypeName(t)}{(bases.Count > 0 ? " : " + string.Join(", ", bases) : "")}";
    }

    private static string Generic(MethodInfo m) => m.IsGenericMethodDefinition ? "<" + string.Join(", ", m.GetGenericArguments().Select(a => a.Name)) + ">" : "";

    /// <summary>
    /// The type's full name; with <paramref name="n"/>, a <c>?</c> after each reference type (or type parameter) that
    /// is annotated nullable, at every level (array elements, generic arguments). Nullable value types print as
    /// <c>System.Nullable&lt;T&gt;</c>.
    /// </summary>
    private static string TypeName(Type t, NullabilityInfo? n = null)
    {
        if (t.IsByRef)
            return TypeName(t.GetElementType()!, n);
        var mark = n is not null && !t.IsValueType && (n.ReadState == NullabilityState.Nullable || (n.ReadState == NullabilityState.Unknown && n.WriteState == NullabilityState.Nullable)) ? "?" : "";
        if (t.IsArray)
            return TypeName(t.GetElementType()!, n?.ElementType) + "[]" + mark;
        if (t.IsGenericParameter)
            return t.Name + mark;
        var name = t.IsNested ? TypeName(t.DeclaringType!) + "." + t.Name : (t.Namespace is null ? "" : t.Namespace + ".") + t.Name;
        if (t.IsGenericType)
        {
            name = name[..name.IndexOf('`', StringComparison.Ordinal)];
            var args = t.GetGenericArguments();
            var argInfos = n?.GenericTypeArguments;
            name += "<" + string.Join(", ", args.Select((a, i) => TypeName(a, argInfos is { Length: var len } && len == args.Length ? argInfos[i] : null))) + ">";
        }
        return name + mark;
    }
}
