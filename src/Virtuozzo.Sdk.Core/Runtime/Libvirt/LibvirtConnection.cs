using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core.Runtime.Libvirt;

/// <summary>A domain's state as libvirt reports it (<c>virDomainState</c>).</summary>
internal enum LibvirtDomainState
{
    NoState = 0,
    Running = 1,
    Blocked = 2,
    Paused = 3,
    Shutdown = 4,
    Shutoff = 5,
    Crashed = 6,
    PmSuspended = 7,
}

/// <summary>A domain as listed: identity, kind (from its OS type) and state.</summary>
internal sealed record LibvirtDomainSummary(Guid Id, string Name, VeKind Kind, LibvirtDomainState State, bool HasManagedSave)
{
    /// <summary>The SDK's state for the domain: a managed-save image makes a shut-off domain suspended.</summary>
    public VeState VeState => State switch
    {
        LibvirtDomainState.Running or LibvirtDomainState.Blocked => VeState.Running,
        LibvirtDomainState.Paused => VeState.Paused,
        LibvirtDomainState.Shutdown => VeState.Busy,
        LibvirtDomainState.PmSuspended => VeState.Suspended,
        _ => HasManagedSave ? VeState.Suspended : VeState.Stopped,
    };

    /// <summary>True while the domain runs (running, paused, shutting down).</summary>
    public bool IsActive => State is not (LibvirtDomainState.Shutoff or LibvirtDomainState.NoState or LibvirtDomainState.Crashed);

    /// <summary>A size element of libvirt's XML (<c>&lt;memory unit='KiB'&gt;</c>…) in bytes; null when absent or not a number.</summary>
    public static long? Bytes(System.Xml.Linq.XElement? e)
    {
        if (e is null || !long.TryParse(e.Value.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n))
            return null;
        return ((string?)e.Attribute("unit"))?.ToUpperInvariant() switch
        {
            "B" or "BYTES" => n,
            "K" or "KIB" or null => n * 1024,
            "KB" => n * 1000,
            "M" or "MIB" => n * 1024 * 1024,
            "MB" => n * 1_000_000,
            "G" or "GIB" => n * 1024 * 1024 * 1024,
            "GB" => n * 1_000_000_000,
            _ => n * 1024,
        };
    }
}

/// <summary>One domain's statistics from <c>virConnectGetAllDomainStats</c>, keyed by libvirt's field names (<c>cpu.time</c>, <c>balloon.rss</c>, <c>net.0.rx.bytes</c>…).</summary>
internal sealed record LibvirtDomainStats(Guid Id, IReadOnlyDictionary<string, object> Fields);

/// <summary>
/// One connection to a libvirt daemon (<c>qemu:///system</c>, <c>qemu+ssh://root@host/system</c>, <c>vz+ssh://…</c>).
/// libvirt's connection objects are thread-safe; every call runs on a pool thread and reads libvirt's error on that same
/// thread (libvirt keeps the last error per thread). Domain events are delivered by libvirt's default event loop, run by
/// one background thread per process, and raised as <see cref="DomainChanged"/>.
/// </summary>
internal sealed class LibvirtConnection : IVeInventory, IDisposable
{
    private static readonly object EventLoopGate = new();
    private static bool _eventLoopStarted;

    private readonly ILogger? _logger;
    private nint _conn;
    private GCHandle _self;
    private int _callbackId = -1;

    private LibvirtConnection(string uri, nint conn, ILogger? logger)
    {
        Uri = uri;
        _conn = conn;
        _logger = logger;
    }

    /// <summary>The URI the connection was opened with.</summary>
    public string Uri { get; }

    /// <summary>True when the URI names this machine (no host part): disks are then created by the SDK's own QCOW2 engine.</summary>
    public bool IsLocal => IsLocalUri(Uri);

    /// <summary>True for Virtuozzo's <c>vz</c> driver, whose <c>exe</c> domains are containers.</summary>
    public bool IsVz => Uri.StartsWith("vz", StringComparison.OrdinalIgnoreCase) || Uri.StartsWith("parallels", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// True when the connection's <c>exe</c> domains are containers the runtime drives: Virtuozzo's <c>vz</c> driver, and
    /// libvirt's built-in test driver (<c>test:///default</c>), which stands in for a Virtuozzo node in the SDK's tests.
    /// </summary>
    public bool HasContainers => IsVz || Uri.StartsWith("test:", StringComparison.OrdinalIgnoreCase);

    /// <summary>Raised (on libvirt's event thread) when a domain starts, stops, pauses, is defined or undefined.</summary>
    public event Action<Guid>? DomainChanged;

    /// <summary>
    /// Checks a libvirt URI before it reaches libvirt: a scheme (<c>qemu</c>, <c>qemu+ssh</c>, <c>vz+ssh</c>…), then
    /// <c>://</c>. Returns the problem, or null when the URI is acceptable.
    /// </summary>
    public static string? ValidateUri(string? uri)
    {
        if (string.IsNullOrWhiteSpace(uri))
            return "The libvirt URI is empty; give one such as 'qemu:///system' or 'qemu+ssh://root@host/system'.";
        var sep = uri.IndexOf("://", StringComparison.Ordinal);
        if (sep <= 0)
            return $"'{uri}' is not a libvirt URI: it has no scheme (for example 'qemu:///system').";
        var scheme = uri[..sep];
        if (!scheme.All(c => char.IsAsciiLetterOrDigit(c) || c is '+' or '-' or '.'))
            return $"'{uri}' is not a libvirt URI: the scheme '{scheme}' has characters a scheme cannot have.";
        if (uri.Any(char.IsControl) || uri.Contains(' ', StringComparison.Ordinal))
            return $"'{uri}' is not a libvirt URI: it contains spaces or control characters.";
        return null;
    }

    /// <summary>True when <paramref name="uri"/> has no host part (<c>qemu:///system</c>, <c>qemu+unix:///system</c>).</summary>
    public static bool IsLocalUri(string uri)
    {
        var sep = uri.IndexOf("://", StringComparison.Ordinal);
        return sep > 0 && uri.AsSpan(sep + 3).StartsWith("/");
    }

    /// <summary>Opens a connection (and, the first time in the process, libvirt's event loop).</summary>
    /// <exception cref="ArgumentException">The URI is malformed.</exception>
    /// <exception cref="ToolNotFoundException">libvirt's client library (libvirt0) is not installed.</exception>
    /// <exception cref="HostConnectionException">The daemon cannot be reached.</exception>
    public static async Task<LibvirtConnection> OpenAsync(string uri, ILogger? logger, CancellationToken cancellationToken)
    {
        if (ValidateUri(uri) is { } problem)
            throw new ArgumentException(problem, nameof(uri));
        cancellationToken.ThrowIfCancellationRequested();
        return await Task.Run(() =>
        {
            try
            {
                StartEventLoop();
            }
            catch (DllNotFoundException ex)
            {
                throw new ToolNotFoundException("libvirt.so.0", "libvirt's client library (libvirt.so.0) is not installed: install Debian's libvirt0 (apt-get install libvirt0), or choose another runtime.", ex);
            }
            var conn = LibvirtNative.virConnectOpen(uri);
            if (conn == 0)
            {
                var e = LibvirtErrors.Last($"Connecting to libvirt at '{uri}'");
                throw e is HostConnectionException ? e : new HostConnectionException(
                    e.Message + " Is libvirtd running (libvirtd -d, or systemctl start libvirtd) and does this user have access?", e);
            }
            var c = new LibvirtConnection(uri, conn, logger);
            c.RegisterEvents();
            return c;
        }, cancellationToken).ConfigureAwait(false);
    }

    private unsafe static void StartEventLoop()
    {
        lock (EventLoopGate)
        {
            if (_eventLoopStarted)
                return;
            LibvirtNative.virInitialize();
            // libvirt prints every error to stderr unless a handler is set; the SDK reads them itself.
            LibvirtNative.virSetErrorFunc(0, (nint)(delegate* unmanaged<nint, nint, void>)&IgnoreError);
            if (LibvirtNative.virEventRegisterDefaultImpl() < 0)
                throw LibvirtErrors.Last("Starting libvirt's event loop");
            var thread = new Thread(() =>
            {
                while (true)
                    LibvirtNative.virEventRunDefaultImpl();
            })
            { IsBackground = true, Name = "vzsdk-libvirt-events" };
            thread.Start();
            _eventLoopStarted = true;
        }
    }

    [UnmanagedCallersOnly]
    private static void IgnoreError(nint userData, nint error)
    {
    }

    private unsafe void RegisterEvents()
    {
        _self = GCHandle.Alloc(this);
        _callbackId = LibvirtNative.virConnectDomainEventRegisterAny(_conn, 0, LibvirtNative.EventIdLifecycle,
            (nint)(delegate* unmanaged<nint, nint, int, int, nint, int>)&OnLifecycle, GCHandle.ToIntPtr(_self), 0);
        if (_callbackId < 0)
        {
            // A daemon without events still works: the SDK's watch then relies on its polling alone.
            _logger?.LogDebug("{Error}", LibvirtErrors.Last("Registering for libvirt's domain events").Message);
        }
        LibvirtNative.virConnectSetKeepAlive(_conn, 5, 3);
    }

    [UnmanagedCallersOnly]
    private static int OnLifecycle(nint conn, nint dom, int eventType, int detail, nint opaque)
    {
        try
        {
            if (GCHandle.FromIntPtr(opaque).Target is LibvirtConnection c && c.DomainChanged is { } handler && UuidOf(dom) is { } id)
                handler(id);
        }
        catch (Exception)
        {
            // An exception must not cross into libvirt's C stack.
        }
        return 0;
    }

    private nint Handle => _conn != 0 ? _conn : throw new ObjectDisposedException(nameof(LibvirtConnection));

    /// <summary>Runs a libvirt call on a pool thread; <paramref name="call"/> reads the error on its own thread.</summary>
    public Task<T> RunAsync<T>(Func<nint, T> call, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.Run(() => call(Handle), cancellationToken);
    }

    /// <summary>libvirt's version on this connection's daemon side, as major*1,000,000 + minor*1,000 + release.</summary>
    public Task<ulong> GetLibraryVersionAsync(CancellationToken cancellationToken) => RunAsync(c =>
        LibvirtNative.virConnectGetLibVersion(c, out var v) < 0 ? throw LibvirtErrors.Last("Reading libvirt's version") : (ulong)v, cancellationToken);

    /// <summary>The hypervisor's capabilities XML (<c>virsh capabilities</c>).</summary>
    public unsafe Task<string> GetCapabilitiesAsync(CancellationToken cancellationToken) => RunAsync(c =>
        LibvirtNative.Owned(LibvirtNative.virConnectGetCapabilities(c)) ?? throw LibvirtErrors.Last("Reading the hypervisor's capabilities"), cancellationToken);

    /// <summary>Every domain, defined or running.</summary>
    public unsafe Task<IReadOnlyList<LibvirtDomainSummary>> ListDomainsAsync(CancellationToken cancellationToken) => RunAsync(c =>
    {
        nint* domains = null;
        var n = LibvirtNative.virConnectListAllDomains(c, &domains, LibvirtNative.ListDomainsAll);
        if (n < 0)
            throw LibvirtErrors.Last("Listing libvirt's domains");
        var list = new List<LibvirtDomainSummary>(n);
        try
        {
            for (var i = 0; i < n; i++)
            {
                if (Summarize(domains[i]) is { } s)
                    list.Add(s);
            }
        }
        finally
        {
            for (var i = 0; i < n; i++)
                LibvirtNative.virDomainFree(domains[i]);
            NativeMemory.Free(domains);
        }
        return (IReadOnlyList<LibvirtDomainSummary>)list.OrderBy(d => d.Name, StringComparer.Ordinal).ToList();
    }, cancellationToken);

    /// <summary>Every domain as a handle the caller disposes (one call; no lookup by name or UUID after the listing).</summary>
    public unsafe Task<IReadOnlyList<LibvirtDomain>> ListDomainHandlesAsync(CancellationToken cancellationToken) => RunAsync(c =>
    {
        nint* domains = null;
        var n = LibvirtNative.virConnectListAllDomains(c, &domains, LibvirtNative.ListDomainsAll);
        if (n < 0)
            throw LibvirtErrors.Last("Listing libvirt's domains");
        var list = new List<LibvirtDomain>(n);
        for (var i = 0; i < n; i++)
            list.Add(new LibvirtDomain(this, domains[i]));
        NativeMemory.Free(domains);
        return (IReadOnlyList<LibvirtDomain>)list;
    }, cancellationToken);

    private unsafe static LibvirtDomainSummary? Summarize(nint dom)
    {
        // A domain undefined between the list and these calls is skipped.
        if (UuidOf(dom) is not { } id || LibvirtNative.Borrowed(LibvirtNative.virDomainGetName(dom)) is not { } name)
            return null;
        if (LibvirtNative.virDomainGetState(dom, out var state, out _, 0) < 0)
            return null;
        var os = LibvirtNative.Owned(LibvirtNative.virDomainGetOSType(dom));
        if (os is not ("hvm" or "exe") && LibvirtNative.Owned(LibvirtNative.virDomainGetXMLDesc(dom, LibvirtNative.XmlInactive)) is { } xml)
        {
            // Drivers that report a generic OS type (libvirt's test driver says "linux") name the kind in the XML.
            os = System.Xml.Linq.XDocument.Parse(xml).Root?.Element("os")?.Element("type")?.Value ?? os;
        }
        var saved = LibvirtNative.virDomainHasManagedSaveImage(dom, 0) == 1;
        LibvirtNative.virResetLastError();
        return new LibvirtDomainSummary(id, name, string.Equals(os, "exe", StringComparison.OrdinalIgnoreCase) ? VeKind.Container : VeKind.Vm, (LibvirtDomainState)state, saved);
    }

    private unsafe static Guid? UuidOf(nint dom)
    {
        var buffer = stackalloc byte[37];
        if (LibvirtNative.virDomainGetUUIDString(dom, buffer) < 0)
            return null;
        return Guid.TryParse(Encoding.ASCII.GetString(buffer, 36), out var g) ? g : null;
    }

    /// <summary>A domain by UUID or name, as a handle the caller disposes; null when there is none.</summary>
    public Task<LibvirtDomain?> FindDomainAsync(string nameOrId, CancellationToken cancellationToken) => RunAsync(c =>
    {
        var dom = Guid.TryParse(nameOrId, out var id) ? LibvirtNative.virDomainLookupByUUIDString(c, id.ToString()) : 0;
        if (dom == 0)
            dom = LibvirtNative.virDomainLookupByName(c, nameOrId);
        if (dom != 0)
            return new LibvirtDomain(this, dom);
        if (LibvirtErrors.LastIs(LibvirtErrors.NoDomain))
        {
            LibvirtNative.virResetLastError();
            return null;
        }
        throw LibvirtErrors.Last($"Looking up the domain '{nameOrId}'");
    }, cancellationToken);

    /// <summary>Defines (or redefines) a persistent domain from XML.</summary>
    public Task<LibvirtDomain> DefineAsync(string xml, string what, CancellationToken cancellationToken) => RunAsync(c =>
    {
        var dom = LibvirtNative.virDomainDefineXML(c, xml);
        return dom != 0 ? new LibvirtDomain(this, dom) : throw LibvirtErrors.Last(what);
    }, cancellationToken);

    /// <summary>Statistics of every domain (<c>virConnectGetAllDomainStats</c>: state, CPU, balloon, interfaces, block devices).</summary>
    public unsafe Task<IReadOnlyList<LibvirtDomainStats>> GetAllStatsAsync(CancellationToken cancellationToken) => RunAsync(c =>
    {
        LibvirtNative.VirDomainStatsRecord** records = null;
        var n = LibvirtNative.virConnectGetAllDomainStats(c, UsageStats, &records, 0);
        return ReadStats(records, n, "Reading the domains' statistics");
    }, cancellationToken);

    /// <summary>The statistics groups the usage records are built from.</summary>
    internal const uint UsageStats = LibvirtNative.StatsState | LibvirtNative.StatsCpuTotal | LibvirtNative.StatsBalloon | LibvirtNative.StatsInterface | LibvirtNative.StatsBlock;

    /// <summary>Reads and frees the records a statistics call returned (<paramref name="n"/> negative: it failed).</summary>
    internal static unsafe IReadOnlyList<LibvirtDomainStats> ReadStats(LibvirtNative.VirDomainStatsRecord** records, int n, string what)
    {
        if (n < 0)
            throw LibvirtErrors.Last(what);
        var list = new List<LibvirtDomainStats>(n);
        try
        {
            for (var i = 0; i < n; i++)
            {
                var r = records[i];
                if (UuidOf(r->Dom) is not { } id)
                    continue;
                var fields = LibvirtNative.ReadTypedParameters(r->Params, r->NParams);
                list.Add(new LibvirtDomainStats(id, fields));
            }
        }
        finally
        {
            if (records is not null)
                LibvirtNative.virDomainStatsRecordListFree(records);
        }
        return list;
    }

    /// <summary>
    /// Makes sure a storage pool covers <paramref name="directory"/> (libvirt pre-creates a migrating VM's disks only in a
    /// pool): an existing pool with that target, or a new transient directory pool (the directory is made). Returns the
    /// pool the caller must destroy when done (a transient one), or 0 when an existing pool serves.
    /// </summary>
    public Task<nint> EnsureDirectoryPoolAsync(string directory, CancellationToken cancellationToken) => RunAsync(c =>
    {
        var existing = LibvirtNative.virStoragePoolLookupByTargetPath(c, directory);
        if (existing != 0)
        {
            LibvirtNative.virStoragePoolFree(existing);
            return (nint)0;
        }
        LibvirtNative.virResetLastError();
        var xml = new System.Xml.Linq.XElement("pool", new System.Xml.Linq.XAttribute("type", "dir"),
            new System.Xml.Linq.XElement("name", "vzsdk-" + Guid.NewGuid().ToString("N")[..12]),
            new System.Xml.Linq.XElement("target", new System.Xml.Linq.XElement("path", directory))).ToString();
        var pool = LibvirtNative.virStoragePoolCreateXML(c, xml, LibvirtNative.StoragePoolCreateWithBuild);
        return pool != 0 ? pool : throw LibvirtErrors.Last($"Making a storage pool for '{directory}' on {Uri}");
    }, cancellationToken);

    /// <summary>Stops and frees a transient pool from <see cref="EnsureDirectoryPoolAsync"/> (its files stay).</summary>
    public Task DestroyPoolAsync(nint pool) => RunAsync(_ =>
    {
        if (pool != 0)
        {
            LibvirtNative.virStoragePoolDestroy(pool);
            LibvirtNative.virStoragePoolFree(pool);
            LibvirtNative.virResetLastError();
        }
        return 0;
    }, CancellationToken.None);

    // ---- IVeInventory: libvirt's domains are the runtime's VEs.

    async Task<IReadOnlyList<VeIdentity>> IVeInventory.ListAsync(CancellationToken cancellationToken, VeKind? kind)
        => (await ListDomainsAsync(cancellationToken).ConfigureAwait(false))
            .Where(d => kind is null || d.Kind == kind)
            .Select(d => new VeIdentity(VeRegistry.FormatVersion, d.Id.ToString(), d.Name, d.Kind, DateTimeOffset.MinValue))
            .ToList();

    async Task<VeIdentity?> IVeInventory.FindAsync(string nameOrId, CancellationToken cancellationToken)
    {
        using var dom = await FindDomainAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        if (dom is null)
            return null;
        var s = await dom.SummarizeAsync(cancellationToken).ConfigureAwait(false);
        return new VeIdentity(VeRegistry.FormatVersion, s.Id.ToString(), s.Name, s.Kind, DateTimeOffset.MinValue);
    }

    internal static LibvirtDomainSummary SummaryOf(nint dom, string what) => Summarize(dom) ?? throw LibvirtErrors.Last(what);

    public void Dispose()
    {
        var conn = Interlocked.Exchange(ref _conn, 0);
        if (conn == 0)
            return;
        if (_callbackId >= 0)
            LibvirtNative.virConnectDomainEventDeregisterAny(conn, _callbackId);
        LibvirtNative.virConnectClose(conn);
        if (_self.IsAllocated)
            _self.Free();
    }
}

/// <summary>A handle on one domain (<c>virDomainPtr</c>); dispose it to free the reference.</summary>
internal sealed class LibvirtDomain : IDisposable
{
    private readonly LibvirtConnection _connection;
    private nint _dom;

    internal LibvirtDomain(LibvirtConnection connection, nint dom)
    {
        _connection = connection;
        _dom = dom;
    }

    private nint Handle => _dom != 0 ? _dom : throw new ObjectDisposedException(nameof(LibvirtDomain));

    /// <summary>Runs a call on the domain on a pool thread (libvirt's error is read on that thread).</summary>
    public Task<T> RunAsync<T>(Func<nint, T> call, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var dom = Handle;
        return Task.Run(() => call(dom), cancellationToken);
    }

    /// <summary>Runs a call that returns libvirt's int status (negative on failure), throwing the mapped error.</summary>
    public Task CallAsync(Func<nint, int> call, string what, CancellationToken cancellationToken)
        => RunAsync(d => call(d) < 0 ? throw LibvirtErrors.Last(what) : 0, cancellationToken);

    public Task<LibvirtDomainSummary> SummarizeAsync(CancellationToken cancellationToken)
        => RunAsync(d => LibvirtConnection.SummaryOf(d, "Reading a domain's state"), cancellationToken);

    /// <summary>The domain's XML: the live definition while it runs, or the persistent one with <paramref name="inactive"/>.</summary>
    public unsafe Task<string> GetXmlAsync(bool inactive, CancellationToken cancellationToken)
        => RunAsync(d => LibvirtNative.Owned(LibvirtNative.virDomainGetXMLDesc(d, inactive ? LibvirtNative.XmlInactive : 0)) ?? throw LibvirtErrors.Last("Reading the domain's XML"), cancellationToken);

    /// <summary>Sends a command to the guest agent through libvirt and returns its JSON reply.</summary>
    public unsafe Task<string> AgentCommandAsync(string json, int timeoutSeconds, CancellationToken cancellationToken)
        => RunAsync(d => LibvirtNative.Owned(LibvirtNative.virDomainQemuAgentCommand(d, json, timeoutSeconds, 0)) ?? throw LibvirtErrors.Last("A guest tools command"), cancellationToken);

    /// <summary>
    /// Sends a QMP command to the domain's QEMU through libvirt (<c>virDomainQemuMonitorCommand</c>) and returns the JSON
    /// reply; null when libvirt refuses (not a QEMU domain, or not running). libvirt marks the domain tainted
    /// ("custom-monitor"); the SDK uses it only to read what libvirt does not report.
    /// </summary>
    public unsafe Task<string?> TryMonitorCommandAsync(string json, CancellationToken cancellationToken)
        => RunAsync(d =>
        {
            if (LibvirtNative.virDomainQemuMonitorCommand(d, json, out var result, 0) < 0)
            {
                LibvirtNative.virResetLastError();
                return null;
            }
            return LibvirtNative.Owned(result);
        }, cancellationToken);

    /// <summary>
    /// Migrates the domain to another libvirt daemon, peer to peer (<c>virDomainMigrateToURI3</c>): blocks until the
    /// migration ends, on a thread of its own. <paramref name="parameters"/> are string or unsigned-long typed parameters
    /// (<c>migrate_uri</c>, <c>bandwidth</c>).
    /// </summary>
    public unsafe Task MigrateAsync(string destinationUri, IReadOnlyList<KeyValuePair<string, object>> parameters, uint flags, string what)
    {
        var dom = Handle;
        return Task.Factory.StartNew(() =>
        {
            var count = parameters.Count;
            var native = (LibvirtNative.VirTypedParameter*)NativeMemory.AllocZeroed((nuint)Math.Max(1, count), (nuint)sizeof(LibvirtNative.VirTypedParameter));
            var strings = new List<nint>();
            try
            {
                for (var i = 0; i < count; i++)
                {
                    var (name, value) = (parameters[i].Key, parameters[i].Value);
                    var bytes = Encoding.UTF8.GetBytes(name);
                    if (bytes.Length >= 80)
                        throw new ArgumentException($"The migration parameter name '{name}' is too long.", nameof(parameters));
                    for (var b = 0; b < bytes.Length; b++)
                        native[i].Field[b] = bytes[b];
                    switch (value)
                    {
                        case string text:
                            var ptr = Marshal.StringToCoTaskMemUTF8(text);
                            strings.Add(ptr);
                            native[i].Type = LibvirtNative.TypedParamString;
                            native[i].Value = ptr;
                            break;
                        case long number:
                            native[i].Type = LibvirtNative.TypedParamULLong;
                            native[i].Value = number;
                            break;
                        default:
                            throw new ArgumentException($"The migration parameter '{name}' must be a string or a long.", nameof(parameters));
                    }
                }
                if (LibvirtNative.virDomainMigrateToURI3(dom, destinationUri, native, (uint)count, flags) < 0)
                    throw LibvirtErrors.Last(what);
            }
            finally
            {
                foreach (var ptr in strings)
                    Marshal.FreeCoTaskMem(ptr);
                NativeMemory.Free(native);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>The domain's running job (type 0 when none): elapsed time, bytes processed and remaining.</summary>
    public Task<LibvirtNative.VirDomainJobInfo?> GetJobInfoAsync(CancellationToken cancellationToken)
        => RunAsync(d =>
        {
            if (LibvirtNative.virDomainGetJobInfo(d, out var info) < 0)
            {
                LibvirtNative.virResetLastError();
                return (LibvirtNative.VirDomainJobInfo?)null;
            }
            return info;
        }, cancellationToken);

    /// <summary>The statistics of the domain's last completed job (an incoming or outgoing migration); null when libvirt keeps none.</summary>
    public unsafe Task<IReadOnlyDictionary<string, object>?> GetCompletedJobStatsAsync(CancellationToken cancellationToken)
        => RunAsync(d =>
        {
            if (LibvirtNative.virDomainGetJobStats(d, out _, out var parameters, out var count, LibvirtNative.JobStatsCompleted) < 0)
            {
                LibvirtNative.virResetLastError();
                return null;
            }
            try
            {
                return (IReadOnlyDictionary<string, object>?)LibvirtNative.ReadTypedParameters(parameters, count);
            }
            finally
            {
                LibvirtNative.virTypedParamsFree(parameters, count);
            }
        }, cancellationToken);

    /// <summary>
    /// The domain's running job, or with <paramref name="completed"/> its last completed one: the type (none, bounded,
    /// unbounded; <see cref="LibvirtNative.JobCompleted"/>, <see cref="LibvirtNative.JobFailed"/>, <see cref="LibvirtNative.JobCancelled"/>)
    /// and statistics (<c>operation</c>, <c>data_processed</c>, <c>errmsg</c>…); null when libvirt has none.
    /// </summary>
    public unsafe Task<(int Type, IReadOnlyDictionary<string, object> Stats)?> GetJobAsync(bool completed, CancellationToken cancellationToken)
        => RunAsync(d =>
        {
            if (LibvirtNative.virDomainGetJobStats(d, out var type, out var parameters, out var count, completed ? LibvirtNative.JobStatsCompleted : 0) < 0)
            {
                LibvirtNative.virResetLastError();
                return ((int, IReadOnlyDictionary<string, object>)?)null;
            }
            try
            {
                return (type, LibvirtNative.ReadTypedParameters(parameters, count));
            }
            finally
            {
                LibvirtNative.virTypedParamsFree(parameters, count);
            }
        }, cancellationToken);

    /// <summary>Starts a backup job (<c>virDomainBackupBegin</c>), creating the checkpoint <paramref name="checkpointXml"/> at the same instant.</summary>
    public Task BeginBackupAsync(string backupXml, string? checkpointXml, string what, CancellationToken cancellationToken)
        => CallAsync(d => LibvirtNative.virDomainBackupBegin(d, backupXml, checkpointXml, 0), what, cancellationToken);

    /// <summary>The names of the domain's checkpoints.</summary>
    public unsafe Task<IReadOnlyList<string>> ListCheckpointsAsync(CancellationToken cancellationToken) => RunAsync(d =>
    {
        nint* list = null;
        var n = LibvirtNative.virDomainListAllCheckpoints(d, &list, 0);
        if (n < 0)
            throw LibvirtErrors.Last("Listing the domain's checkpoints");
        var names = new List<string>(n);
        try
        {
            for (var i = 0; i < n; i++)
            {
                if (Marshal.PtrToStringUTF8((nint)LibvirtNative.virDomainCheckpointGetName(list[i])) is { } name)
                    names.Add(name);
            }
        }
        finally
        {
            for (var i = 0; i < n; i++)
                LibvirtNative.virDomainCheckpointFree(list[i]);
            NativeMemory.Free(list);
        }
        return (IReadOnlyList<string>)names;
    }, cancellationToken);

    /// <summary>
    /// Deletes the named checkpoints (libvirt re-parents the children of each). An active domain's bitmaps go with them
    /// (a checkpoint whose bitmap QEMU no longer has is forgotten instead); an inactive domain's checkpoints can only be
    /// forgotten (<paramref name="metadataOnly"/>), their bitmaps left in the files.
    /// </summary>
    public unsafe Task DeleteCheckpointsAsync(IEnumerable<string> names, bool metadataOnly, CancellationToken cancellationToken)
    {
        var list = names.ToList();
        return RunAsync(d =>
        {
            nint* all = null;
            var n = LibvirtNative.virDomainListAllCheckpoints(d, &all, 0);
            if (n < 0)
                throw LibvirtErrors.Last("Listing the domain's checkpoints");
            try
            {
                for (var i = n - 1; i >= 0; i--)
                {
                    var name = Marshal.PtrToStringUTF8((nint)LibvirtNative.virDomainCheckpointGetName(all[i]));
                    if (name is null || !list.Contains(name))
                        continue;
                    if (LibvirtNative.virDomainCheckpointDelete(all[i], metadataOnly ? LibvirtNative.CheckpointDeleteMetadataOnly : 0) >= 0)
                        continue;
                    // A checkpoint whose bitmap is gone (its QEMU was killed before storing it) can only be forgotten.
                    var error = LibvirtErrors.Last($"Deleting the checkpoint {name}");
                    if (metadataOnly || LibvirtNative.virDomainCheckpointDelete(all[i], LibvirtNative.CheckpointDeleteMetadataOnly) < 0)
                        throw error;
                }
            }
            finally
            {
                for (var i = 0; i < n; i++)
                    LibvirtNative.virDomainCheckpointFree(all[i]);
                NativeMemory.Free(all);
            }
            return 0;
        }, cancellationToken);
    }

    /// <summary>Records a checkpoint whose bitmaps already exist in the disks (<c>VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE</c>).</summary>
    public Task RedefineCheckpointAsync(string xml, string what, CancellationToken cancellationToken) => RunAsync(d =>
    {
        var cp = LibvirtNative.virDomainCheckpointCreateXML(d, xml, LibvirtNative.CheckpointCreateRedefine);
        if (cp == 0)
            throw LibvirtErrors.Last(what);
        LibvirtNative.virDomainCheckpointFree(cp);
        return 0;
    }, cancellationToken);

    /// <summary>Freezes the guest's file systems through its agent; returns how many, or -1 when the agent did not do it.</summary>
    public Task<int> TryFreezeFileSystemsAsync(CancellationToken cancellationToken) => RunAsync(d =>
    {
        var n = LibvirtNative.virDomainFSFreeze(d, 0, 0, 0);
        if (n < 0)
            LibvirtNative.virResetLastError();
        return n;
    }, cancellationToken);

    /// <summary>Thaws the guest's file systems; false when the agent did not answer.</summary>
    public Task<bool> TryThawFileSystemsAsync() => RunAsync(d =>
    {
        var ok = LibvirtNative.virDomainFSThaw(d, 0, 0, 0) >= 0;
        LibvirtNative.virResetLastError();
        return ok;
    }, CancellationToken.None);

    /// <summary>This domain's statistics alone (<c>virDomainListGetStats</c>), as <see cref="LibvirtConnection.GetAllStatsAsync"/> reads every domain's.</summary>
    public unsafe Task<LibvirtDomainStats?> GetStatsAsync(CancellationToken cancellationToken) => RunAsync(d =>
    {
        var doms = stackalloc nint[2];
        doms[0] = d;
        doms[1] = 0;
        LibvirtNative.VirDomainStatsRecord** records = null;
        var n = LibvirtNative.virDomainListGetStats(doms, LibvirtConnection.UsageStats, &records, 0);
        return LibvirtConnection.ReadStats(records, n, "Reading the domain's statistics").FirstOrDefault();
    }, cancellationToken);

    /// <summary>Aborts the domain's running job (a migration); false when there was none to abort.</summary>
    public Task<bool> AbortJobAsync() => RunAsync(d =>
    {
        var ok = LibvirtNative.virDomainAbortJob(d) >= 0;
        LibvirtNative.virResetLastError();
        return ok;
    }, CancellationToken.None);

    /// <summary>Sets the longest pause a running live migration may take at its end; false when no migration runs.</summary>
    public Task<bool> SetMaxDowntimeAsync(TimeSpan downtime) => RunAsync(d =>
    {
        var ok = LibvirtNative.virDomainMigrateSetMaxDowntime(d, (ulong)Math.Max(1, downtime.TotalMilliseconds), 0) >= 0;
        LibvirtNative.virResetLastError();
        return ok;
    }, CancellationToken.None);

    public void Dispose()
    {
        var dom = Interlocked.Exchange(ref _dom, 0);
        if (dom != 0)
            LibvirtNative.virDomainFree(dom);
    }
}
