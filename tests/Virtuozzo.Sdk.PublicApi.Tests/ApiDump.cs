using System.Reflection;
using System.Text;

namespace Virtuozzo.Sdk.PublicApi.Tests;

/// <summary>A stable text form of an assembly's public surface: one line per public type and member, sorted.</summary>
internal static class ApiDump
{
    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    public static string Of(Assembly assembly)
    {
        var sb = new StringBuilder();
        foreach (var type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
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
                    members.Add($"  {(m.IsStatic ? "static " : "")}{(m.IsAbstract && !type.IsInterface ? "abstract " : m.IsVirtual && !m.IsFinal && !type.IsInterface ? "virtual " : "")}{Name(m.ReturnType)} {m.Name}{Generic(m)}({Params(m.GetParameters())})");
                foreach (var p in type.GetProperties(Declared))
                {
                    var get = p.GetMethod is { IsPublic: true } ? "get; " : "";
                    var set = p.SetMethod is { IsPublic: true } s ? (s.ReturnParameter.GetRequiredCustomModifiers().Any(m => m.Name == "IsExternalInit") ? "init; " : "set; ") : "";
                    members.Add($"  {((p.GetMethod ?? p.SetMethod)!.IsStatic ? "static " : "")}{Name(p.PropertyType)} {p.Name} {{ {get}{set}}}");
                }
                foreach (var f in type.GetFields(Declared))
                    members.Add($"  {(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{(f.IsInitOnly ? "readonly " : "")}{Name(f.FieldType)} {f.Name}");
                foreach (var e in type.GetEvents(Declared))
                    members.Add($"  event {Name(e.EventHandlerType!)} {e.Name}");
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
            bases.Add(Name(b));
        bases.AddRange(t.GetInterfaces().Where(i => i.IsPublic || i.IsNestedPublic).Select(Name).OrderBy(n => n, StringComparer.Ordinal));
        return $"{kind} {Name(t)}{(bases.Count > 0 ? " : " + string.Join(", ", bases) : "")}";
    }

    private static string Generic(MethodInfo m) => m.IsGenericMethodDefinition ? "<" + string.Join(", ", m.GetGenericArguments().Select(a => a.Name)) + ">" : "";

    private static string Params(ParameterInfo[] ps) => string.Join(", ", ps.Select(p =>
        $"{(p.IsOut ? "out " : p.ParameterType.IsByRef ? "ref " : "")}{(p.GetCustomAttribute<ParamArrayAttribute>() is not null ? "params " : "")}{Name(p.ParameterType)} {p.Name}{(p.HasDefaultValue ? " = " + (p.DefaultValue ?? "null") : "")}"));

    private static string Name(Type t)
    {
        if (t.IsByRef)
            return Name(t.GetElementType()!);
        if (t.IsArray)
            return Name(t.GetElementType()!) + "[]";
        if (t.IsGenericParameter)
            return t.Name;
        var name = t.IsNested ? Name(t.DeclaringType!) + "." + t.Name : (t.Namespace is null ? "" : t.Namespace + ".") + t.Name;
        if (t.IsGenericType)
        {
            name = name[..name.IndexOf('`', StringComparison.Ordinal)];
            name += "<" + string.Join(", ", t.GetGenericArguments().Select(Name)) + ">";
        }
        return name;
    }
}
