using System.Globalization;
using Microsoft.Extensions.Configuration;
using Virtuozzo.Sdk.Core.Hosts;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>
/// Binds <see cref="VirtuozzoSdkOptions"/> from a configuration section without reflection (trimming- and AOT-safe):
/// every key is read explicitly, sizes through <see cref="ByteSize"/>'s rules, and every value that does not convert —
/// and every key the SDK does not know — becomes an error naming the key's full path, reported when the options are
/// validated (at start with a generic host).
/// </summary>
internal static class OptionsConfigurationBinder
{
    private static readonly string[] TopLevelKeys =
        [nameof(VirtuozzoSdkOptions.DataRoot), nameof(VirtuozzoSdkOptions.HostMemoryReserve), nameof(VirtuozzoSdkOptions.HostMemoryBudget), nameof(VirtuozzoSdkOptions.LockTimeout),
         nameof(VirtuozzoSdkOptions.BridgeName), nameof(VirtuozzoSdkOptions.BridgeAddress), nameof(VirtuozzoSdkOptions.BridgeNat),
         nameof(VirtuozzoSdkOptions.Runtime), nameof(VirtuozzoSdkOptions.Local), nameof(VirtuozzoSdkOptions.RemoteHost)];

    private static readonly string[] LocalKeys = [nameof(LocalRuntimeOptions.EmulatorPath)];

    private static readonly string[] RemoteHostKeys =
        [nameof(SshHostOptions.HostName), nameof(SshHostOptions.Port), nameof(SshHostOptions.User), nameof(SshHostOptions.IdentityFile),
         nameof(SshHostOptions.KnownHostsFile), nameof(SshHostOptions.AcceptNewHostKey), nameof(SshHostOptions.ConnectTimeout),
         nameof(SshHostOptions.ControlPersist), nameof(SshHostOptions.ControlDirectory), nameof(SshHostOptions.SshPath)];

    /// <summary>The path of a configuration (empty for a root).</summary>
    public static string PathOf(IConfiguration configuration) => configuration is IConfigurationSection s ? s.Path : string.Empty;

    public static void Bind(IConfiguration configuration, VirtuozzoSdkOptions options)
    {
        var errors = new List<string>();
        var path = PathOf(configuration);
        options.ConfigurationPath = path;

        CheckKnown(configuration, TopLevelKeys, errors);
        if (Value(configuration, nameof(options.DataRoot)) is { } dataRoot)
            options.DataRoot = dataRoot;
        if (Value(configuration, nameof(options.HostMemoryReserve)) is { } reserve)
            options.HostMemoryReserve = reserve.Length == 0 ? null : Convert(configuration, nameof(options.HostMemoryReserve), reserve, ParseSize, errors);
        if (Value(configuration, nameof(options.HostMemoryBudget)) is { } budget)
            options.HostMemoryBudget = budget.Length == 0 ? null : Convert(configuration, nameof(options.HostMemoryBudget), budget, ParseSize, errors);
        if (Value(configuration, nameof(options.LockTimeout)) is { } lockTimeout)
            options.LockTimeout = Convert(configuration, nameof(options.LockTimeout), lockTimeout, ParseTimeSpan, errors) ?? options.LockTimeout;
        if (Value(configuration, nameof(options.BridgeName)) is { } bridgeName)
            options.BridgeName = bridgeName;
        if (Value(configuration, nameof(options.BridgeAddress)) is { } bridgeAddress)
            options.BridgeAddress = bridgeAddress;
        if (Value(configuration, nameof(options.BridgeNat)) is { } nat)
            options.BridgeNat = Convert(configuration, nameof(options.BridgeNat), nat, ParseBool, errors) ?? options.BridgeNat;
        if (Value(configuration, nameof(options.Runtime)) is { } runtime)
            options.Runtime = Convert(configuration, nameof(options.Runtime), runtime, ParseRuntime, errors) ?? options.Runtime;

        var local = configuration.GetSection(nameof(options.Local));
        if (local.Exists())
        {
            CheckKnown(local, LocalKeys, errors);
            if (Value(local, nameof(LocalRuntimeOptions.EmulatorPath)) is { } emulator)
                options.Local.EmulatorPath = emulator.Length == 0 ? null : emulator;
        }

        var remote = configuration.GetSection(nameof(options.RemoteHost));
        if (remote.Exists())
            options.RemoteHost = BindRemoteHost(remote, options.RemoteHost ?? new SshHostOptions(), errors);

        options.ConfigurationErrors = errors;
    }

    private static SshHostOptions BindRemoteHost(IConfigurationSection section, SshHostOptions o, List<string> errors)
    {
        CheckKnown(section, RemoteHostKeys, errors);
        if (Value(section, nameof(o.HostName)) is { } hostName)
            o = o with { HostName = hostName };
        if (Value(section, nameof(o.Port)) is { } port)
            o = o with { Port = Convert(section, nameof(o.Port), port, ParseInt, errors) ?? o.Port };
        if (Value(section, nameof(o.User)) is { } user)
            o = o with { User = user };
        if (Value(section, nameof(o.IdentityFile)) is { } identity)
            o = o with { IdentityFile = identity.Length == 0 ? null : identity };
        if (Value(section, nameof(o.KnownHostsFile)) is { } knownHosts)
            o = o with { KnownHostsFile = knownHosts };
        if (Value(section, nameof(o.AcceptNewHostKey)) is { } acceptNew)
            o = o with { AcceptNewHostKey = Convert(section, nameof(o.AcceptNewHostKey), acceptNew, ParseBool, errors) ?? o.AcceptNewHostKey };
        if (Value(section, nameof(o.ConnectTimeout)) is { } connectTimeout)
            o = o with { ConnectTimeout = Convert(section, nameof(o.ConnectTimeout), connectTimeout, ParseTimeSpan, errors) ?? o.ConnectTimeout };
        if (Value(section, nameof(o.ControlPersist)) is { } persist)
            o = o with { ControlPersist = Convert(section, nameof(o.ControlPersist), persist, ParseTimeSpan, errors) ?? o.ControlPersist };
        if (Value(section, nameof(o.ControlDirectory)) is { } controlDirectory)
            o = o with { ControlDirectory = controlDirectory.Length == 0 ? null : controlDirectory };
        if (Value(section, nameof(o.SshPath)) is { } sshPath)
            o = o with { SshPath = sshPath };
        return o;
    }

    private static string? Value(IConfiguration configuration, string key) => configuration.GetSection(key).Value;

    private static void CheckKnown(IConfiguration configuration, string[] known, List<string> errors)
    {
        foreach (var child in configuration.GetChildren())
        {
            if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
                errors.Add($"{child.Path}: the SDK has no such setting (known here: {string.Join(", ", known)}).");
        }
    }

    private static T? Convert<T>(IConfiguration parent, string key, string text, Func<string, (T? Value, string? Error)> parse, List<string> errors)
        where T : struct
    {
        var (value, error) = parse(text);
        if (error is null)
            return value;
        var path = PathOf(parent);
        errors.Add($"{(path.Length == 0 ? key : path + ":" + key)}: {error}");
        return null;
    }

    private static (ByteSize? Value, string? Error) ParseSize(string text)
    {
        try { return (ByteSize.Parse(text), null); }
        catch (FormatException ex) { return (null, ex.Message); }
    }

    private static (TimeSpan? Value, string? Error) ParseTimeSpan(string text)
        => TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var t)
            ? (t, null)
            : (null, $"'{text}' is not a time span: use hh:mm:ss, for example 00:00:30 for 30 seconds.");

    private static (bool? Value, string? Error) ParseBool(string text)
        => bool.TryParse(text, out var b) ? (b, null) : (null, $"'{text}' is not true or false.");

    private static (int? Value, string? Error) ParseInt(string text)
        => int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var i) ? (i, null) : (null, $"'{text}' is not a whole number.");

    private static (RuntimeKind? Value, string? Error) ParseRuntime(string text)
        => Enum.TryParse<RuntimeKind>(text, ignoreCase: true, out var kind) && Enum.IsDefined(kind) && !text.Trim().All(char.IsAsciiDigit)
            ? (kind, null)
            : (null, $"'{text}' is not a runtime: use one of {string.Join(", ", Enum.GetNames<RuntimeKind>())}.");
}
