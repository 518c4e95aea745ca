using Microsoft.Extensions.Logging;
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Vzsdk;

/// <summary>Exit codes and plumbing every verb shares (CLI.md).</summary>
internal static class Cli
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UsageError = 2;

    /// <summary>Global <c>--verbose</c>: stack traces on errors, debug logs to standard error.</summary>
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces and debug logs to standard error.", Recursive = true };

    /// <summary>Global <c>--data-root</c>: the local runtime's data root (default $VZSDK_DATA_ROOT or /var/lib/vzsdk).</summary>
    public static readonly Option<string> DataRoot = new("--data-root")
    {
        Description = "The local runtime's data root (default: $VZSDK_DATA_ROOT, else /var/lib/vzsdk).",
        Recursive = true,
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VZSDK_DATA_ROOT") is { Length: > 0 } env ? env : Virtuozzo.Sdk.Core.VirtuozzoSdkOptions.DefaultDataRoot,
    };

    /// <summary>
    /// Global <c>--host</c>: a Virtuozzo node to manage through its own tools instead of this machine
    /// (<c>ssh://[USER@]HOST[:PORT]</c>, or <c>local</c> on the node itself). The SSH key and known-hosts file come from
    /// <c>$VZSDK_SSH_IDENTITY</c> and <c>$VZSDK_KNOWN_HOSTS</c> (default ~/.ssh/known_hosts).
    /// </summary>
    public static readonly Option<string?> Host = new("--host")
    {
        Description = "Manage a Virtuozzo node through prlctl instead of this machine: ssh://[USER@]HOST[:PORT], or 'local' on the node itself.",
        Recursive = true,
    };

    /// <summary>
    /// Global <c>--connect</c>: a libvirt daemon to drive VMs through instead of this machine's own runtime
    /// (<c>qemu:///system</c>, <c>qemu+ssh://root@host/system</c>, <c>vz+ssh://root@node/system</c>).
    /// </summary>
    public static readonly Option<string?> Connect = new("--connect")
    {
        Description = "Drive VMs through a libvirt daemon instead of this machine's runtime: qemu:///system, qemu+ssh://root@host/system.",
        Recursive = true,
    };

    /// <summary>True when <c>--host</c> names a Virtuozzo node.</summary>
    public static bool HasHost(ParseResult parse) => parse.GetValue(Host) is not null;

    /// <summary>The host <c>--host</c> names.</summary>
    public static Virtuozzo.Sdk.Core.Hosts.IVirtuozzoHost NodeHost(string text, ILoggerFactory? loggers)
    {
        if (text == "local")
            return new Virtuozzo.Sdk.Core.Hosts.LocalHost(loggers?.CreateLogger<Virtuozzo.Sdk.Core.Hosts.LocalHost>());
        var (host, port, user) = SshAddress(text, "--host");
        var knownHosts = Environment.GetEnvironmentVariable("VZSDK_KNOWN_HOSTS") is { Length: > 0 } k ? k
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".ssh", "known_hosts");
        return new Virtuozzo.Sdk.Core.Hosts.SshHost(new Virtuozzo.Sdk.Core.Hosts.SshHostOptions
        {
            HostName = host,
            Port = port,
            User = user,
            IdentityFile = Environment.GetEnvironmentVariable("VZSDK_SSH_IDENTITY") is { Length: > 0 } i ? i : null,
            KnownHostsFile = knownHosts,
        }, loggers?.CreateLogger<Virtuozzo.Sdk.Core.Hosts.SshHost>());
    }

    /// <summary>Parses <c>ssh://[USER@]HOST[:PORT]</c> as a usage error when malformed.</summary>
    public static (string Host, int Port, string User) SshAddress(string text, string option)
    {
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme != "ssh" || string.IsNullOrEmpty(uri.Host)
            || uri.AbsolutePath is not ("" or "/") || uri.Query.Length > 0)
            throw new UsageException($"{option}: '{text}' is not ssh://[USER@]HOST[:PORT].");
        return (uri.Host.Trim('[', ']'), uri.IsDefaultPort || uri.Port <= 0 ? 22 : uri.Port,
            string.IsNullOrEmpty(uri.UserInfo) ? "root" : Uri.UnescapeDataString(uri.UserInfo));
    }

    /// <summary>The SDK options for this invocation.</summary>
    public static Virtuozzo.Sdk.Core.VirtuozzoSdkOptions Options(ParseResult parse) => new() { DataRoot = Path.GetFullPath(parse.GetValue(DataRoot)!) };

    /// <summary>
    /// The SDK's runtime for this invocation (the local runtime, or the Virtuozzo runtime on the <c>--host</c> node): one
    /// per process, shared by every client the verb uses.
    /// </summary>
    public static Virtuozzo.Sdk.Core.VirtuozzoRuntime Runtime(ParseResult parse)
    {
        if (s_runtime is not null)
            return s_runtime;
        var loggers = Loggers(parse);
        if (parse.GetValue(Connect) is { } uri)
        {
            if (parse.GetValue(Host) is not null)
                throw new UsageException("--host and --connect name two runtimes; give one of them.");
            return s_runtime = Virtuozzo.Sdk.Core.VirtuozzoRuntime.CreateLibvirt(uri, Options(parse), loggers);
        }
        return s_runtime = parse.GetValue(Host) is { } host
            ? Virtuozzo.Sdk.Core.VirtuozzoRuntime.CreateVirtuozzo(NodeHost(host, loggers), Options(parse), loggers)
            : Virtuozzo.Sdk.Core.VirtuozzoRuntime.CreateLocal(Options(parse), loggers);
    }

    private static Virtuozzo.Sdk.Core.VirtuozzoRuntime? s_runtime;

    /// <summary>Debug logs to standard error with --verbose; none otherwise.</summary>
    public static ILoggerFactory? Loggers(ParseResult parse)
        => parse.GetValue(Verbose)
            ? LoggerFactory.Create(b => b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Debug))
            : null;

    /// <summary>Parses a size flag (bare number = MiB, as prlctl), as a usage error when malformed.</summary>
    public static Virtuozzo.Sdk.Core.ByteSize? ResourceSize(ParseResult parse, Option<string?> option)
    {
        var text = parse.GetValue(option);
        if (text is null)
            return null;
        return Virtuozzo.Sdk.Core.ByteSize.TryParse(text, Virtuozzo.Sdk.Core.SizeUnit.Mebibytes, out var size)
            ? size
            : throw new UsageException($"{option.Name}: '{text}' is not a size (a number of MiB, or with a K, M, G or T suffix).");
    }

    /// <summary>Parses an on/off flag.</summary>
    public static bool? OnOff(ParseResult parse, Option<string?> option)
        => parse.GetValue(option) switch
        {
            null => null,
            "on" or "yes" or "true" => true,
            "off" or "no" or "false" => false,
            var other => throw new UsageException($"{option.Name}: '{other}' is not on or off."),
        };

    private const string RootDescription = "vzsdk: manage containers, virtual machines and QCOW2 disks with Virtuozzo.Sdk.";

    public static Command BuildRoot(params Command[] commands) => BuildRoot(lean: false, commands);

    /// <summary>The root command.</summary>
    /// <param name="lean">
    /// A plain root without the help and version options and the directives that <see cref="RootCommand"/>
    /// adds: creating those loads System.CommandLine's localised resources, about 6 ms of every call. Only
    /// for invocations that ask for none of them (<see cref="AsksForHelp"/>); the <c>disk</c> verbs use it.
    /// </param>
    /// <param name="commands">The subcommands.</param>
    public static Command BuildRoot(bool lean, params Command[] commands)
    {
        var root = lean ? new Command("vzsdk", RootDescription) : new RootCommand(RootDescription);
        root.Options.Add(Verbose);
        root.Options.Add(DataRoot);
        root.Options.Add(Host);
        root.Options.Add(Connect);
        foreach (var c in commands)
            root.Subcommands.Add(c);
        return root;
    }

    /// <summary>Whether the arguments ask for help, the version or a directive, which only the full root knows.</summary>
    public static bool AsksForHelp(string[] args)
        => Array.Exists(args, a => a is "-h" or "--help" or "-?" or "/h" or "/?" or "--version" || a.StartsWith('['));

    /// <summary>Parses and runs; usage errors exit 2, failures print one line and exit 1 (or the verb's own code).</summary>
    public static async Task<int> RunAsync(string[] args, Command root)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            Console.Error.WriteLine($"vzsdk: {parse.Errors[0].Message} (see 'vzsdk --help')");
            return UsageError;
        }
        using var cts = new CancellationTokenSource();
        // Ctrl+C cancels the verb (which then cleans up) instead of killing the process. A signal
        // registration rather than Console.CancelKeyPress: that one sets up the terminal first, which
        // costs every call several milliseconds.
        using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        // SIGTERM (kill, systemd stop) cancels the verb the same way, so that 'vzsdk mem daemon' stops cleanly and exits 0;
        // a second SIGTERM terminates at once, for a verb that does not stop.
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
            {
                c.Cancel = !cts.IsCancellationRequested;
                cts.Cancel();
            });
        try
        {
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }, cts.Token);
        }
        catch (Exception ex)
        {
            return ReportError(ex, parse.GetValue(Verbose));
        }
    }

    /// <summary>Prints one line (or the stack trace with --verbose) and returns the exit code for the error.</summary>
    public static int ReportError(Exception ex, bool verbose)
    {
        var code = ex switch
        {
            UsageException => UsageError,
            Virtuozzo.Sdk.Core.VirtuozzoException => Failure,
            ArgumentException => UsageError,
            FormatException => UsageError,
            OperationCanceledException => Failure,
            _ => Failure,
        };
        // The library speaks in API terms; the tool adds its own hints.
        var hint = ex switch
        {
            Virtuozzo.Sdk.Core.NotFoundException when ex.Message.StartsWith("There is no", StringComparison.Ordinal) => " List them with 'vzsdk list -a'.",
            Virtuozzo.Sdk.Core.InsufficientResourcesException => " (--memguarantee and --memsize set them.)",
            _ => "",
        };
        Console.Error.WriteLine(verbose ? $"vzsdk: {ex}" : $"vzsdk: {OneLine(ex.Message)}{hint}");
        return code;
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();

    /// <summary>Prints <paramref name="value"/> as JSON through its source-generated contract (<see cref="VzsdkJson"/>).</summary>
    public static void WriteJson<T>(T value, JsonTypeInfo<T> typeInfo)
        => Console.Out.WriteLine(JsonSerializer.Serialize(value, typeInfo));
}

/// <summary>A usage mistake found after parsing (bad value for a flag); exits 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>The operation could not be done (exit 1), e.g. it names a snapshot or bitmap the image does not have.</summary>
internal sealed class OperationFailedException(string message) : Exception(message);
