using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>A disk of a VE as <c>prlctl list -i -j</c> shows it (<c>Hardware.hddN</c>).</summary>
internal sealed record PrlctlDisk(string Name, string? Image, ByteSize Size, string? MountPoint);

/// <summary>
/// One VE's configuration read from an item of <c>prlctl list -i [-f] -j</c> (the keys are prlctl's human labels:
/// <c>ID</c>, <c>Name</c>, <c>Type</c>, <c>State</c>, <c>Hardware</c>…). Missing optional keys read as null or empty; the
/// parsing rules are the reference's §7: sizes <c>^\d+Mb$</c>, percents <c>^\d+%$</c>, IP lists split on blanks with an
/// optional <c>/mask</c>, <c>cpus</c> a number or <c>"unlimited"</c>, <c>memory_guarantee</c> <c>{"auto":true}</c> or
/// <c>{"value":"N%"}</c>.
/// </summary>
internal sealed partial record PrlctlVeConfig
{
    public required VeId Id { get; init; }

    public required string Name { get; init; }

    public string? EnvId { get; init; }

    public string? Description { get; init; }

    public required VeKind Kind { get; init; }

    /// <summary>prlctl's state word (<c>running</c>, <c>stopped</c>…).</summary>
    public required string StateText { get; init; }

    public VeState State => MapState(StateText);

    public string? Os { get; init; }

    public string? Home { get; init; }

    public string? Hostname { get; init; }

    /// <summary>CPUs; null when <c>unlimited</c> or absent.</summary>
    public int? Cpus { get; init; }

    public int? CpuUnits { get; init; }

    public int? CpuLimitPercent { get; init; }

    public string? CpuMask { get; init; }

    public bool CpuHotplug { get; init; }

    public ByteSize MemorySize { get; init; }

    public bool MemoryHotplug { get; init; }

    /// <summary>The memory guarantee in percent of the memory size; null when <c>auto</c> (the node's VCMMD decides).</summary>
    public int? MemoryGuaranteePercent { get; init; }

    public IReadOnlyList<PrlctlDisk> Disks { get; init; } = [];

    public string? CdromImage { get; init; }

    /// <summary>Configured addresses of every network adapter (<c>venet0</c>, <c>netN</c>), without masks, in adapter order.</summary>
    public IReadOnlyList<string> IpAddresses { get; init; } = [];

    /// <summary>The first adapter's MAC address as prlctl prints it (12 hex digits, no colons).</summary>
    public string? MacAddress { get; init; }

    public IReadOnlyList<string> Nameservers { get; init; } = [];

    /// <summary>Autostart <c>on</c> (or <c>auto</c>).</summary>
    public bool Autostart { get; init; }

    /// <summary>Guest tools state for VMs (<c>installed</c>, <c>not_installed</c>…); null when absent.</summary>
    public string? GuestToolsState { get; init; }

    /// <summary>Maps prlctl's state words (<c>vmstate2str</c>) to the SDK's states; transitional ones are <see cref="VeState.Busy"/>.</summary>
    public static VeState MapState(string state) => state.ToLowerInvariant() switch
    {
        "stopped" => VeState.Stopped,
        "running" => VeState.Running,
        "paused" => VeState.Paused,
        "suspended" => VeState.Suspended,
        "mounted" => VeState.Mounted,
        _ => VeState.Busy,
    };

    /// <summary>Reads one item of <c>list -i -j</c>.</summary>
    /// <exception cref="VirtuozzoException">A required key (<c>ID</c>, <c>Name</c>, <c>Type</c>, <c>State</c>) is missing or malformed.</exception>
    public static PrlctlVeConfig Parse(JsonObject item)
    {
        ArgumentNullException.ThrowIfNull(item);
        var idText = Str(item, "ID") ?? throw Malformed("ID", item);
        if (!Guid.TryParse(idText.Trim('{', '}'), out var guid))
            throw Malformed("ID", item);
        var name = Str(item, "Name") ?? throw Malformed("Name", item);
        var kind = Str(item, "Type") switch
        {
            "CT" => VeKind.Container,
            "VM" => VeKind.Vm,
            _ => throw Malformed("Type", item),
        };
        var state = Str(item, "State") ?? throw Malformed("State", item);

        var hw = item["Hardware"] as JsonObject;
        var cpu = hw?["cpu"] as JsonObject;
        var memory = hw?["memory"] as JsonObject;
        var guarantee = hw?["memory_guarantee"] as JsonObject;

        var disks = new List<PrlctlDisk>();
        var ips = new List<string>();
        string? mac = null;
        string? cdrom = null;
        var nameservers = new List<string>();
        if (hw is not null)
        {
            foreach (var (key, value) in hw)
            {
                if (value is not JsonObject dev)
                    continue;
                if (DiskKey().IsMatch(key))
                    disks.Add(new PrlctlDisk(key, Str(dev, "image"), ParseMb(Str(dev, "size")) ?? ByteSize.Zero, Str(dev, "mnt")));
                else if (key == "cdrom0")
                    cdrom = Str(dev, "image");
                else if (key == "venet0" || NetKey().IsMatch(key))
                {
                    ips.AddRange(SplitAddresses(Str(dev, "ips")));
                    mac ??= NullIfDash(Str(dev, "mac"));
                    nameservers.AddRange(Split(Str(dev, "nameservers")));
                }
            }
        }
        nameservers.AddRange(Split(Str(item, "DNS Servers")));

        return new PrlctlVeConfig
        {
            Id = new VeId(guid),
            Name = name,
            EnvId = Str(item, "EnvID"),
            Description = Str(item, "Description"),
            Kind = kind,
            StateText = state,
            Os = Str(item, "OS"),
            Home = Str(item, "Home"),
            Hostname = NullIfEmpty(Str(item, "Hostname")),
            Cpus = Int(cpu?["cpus"]),
            CpuUnits = Int(cpu?["cpuunits"]),
            CpuLimitPercent = ParsePercent(cpu is null ? null : Str(cpu, "cpulimit")),
            CpuMask = cpu is null ? null : NullIfEmpty(Str(cpu, "mask")),
            CpuHotplug = Bool(cpu?["hotplug"]),
            MemorySize = ParseMb(memory is null ? null : Str(memory, "size")) ?? ByteSize.Zero,
            MemoryHotplug = Bool(memory?["hotplug"]),
            MemoryGuaranteePercent = guarantee is null || Bool(guarantee["auto"]) ? null : ParsePercent(Str(guarantee, "value")),
            Disks = disks,
            CdromImage = cdrom,
            IpAddresses = ips.Distinct(StringComparer.Ordinal).ToList(),
            MacAddress = mac,
            Nameservers = nameservers.Distinct(StringComparer.Ordinal).ToList(),
            Autostart = Str(item, "Autostart") is "on" or "auto",
            GuestToolsState = item["GuestTools"] is JsonObject gt ? Str(gt, "state") : null,
        };
    }

    /// <summary><c>"1024Mb"</c> → 1 GiB; null for anything else.</summary>
    public static ByteSize? ParseMb(string? text)
    {
        if (text is null)
            return null;
        var m = MbValue().Match(text.Trim());
        return m.Success && long.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var mb) && mb <= long.MaxValue / ByteSize.MiB
            ? ByteSize.FromMiB(mb)
            : null;
    }

    /// <summary><c>"50%"</c> → 50; null for anything else (a limit in <c>Mhz</c> is not a percentage).</summary>
    public static int? ParsePercent(string? text)
    {
        if (text is null)
            return null;
        var m = PercentValue().Match(text.Trim());
        return m.Success && int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var p) ? p : null;
    }

    /// <summary><c>"10.0.0.1/255.255.255.0 fe80::1/64 "</c> → the addresses without masks.</summary>
    public static IEnumerable<string> SplitAddresses(string? text)
        => Split(text).Select(a => a.Split('/')[0]).Where(a => a.Length > 0 && a != "-");

    private static IEnumerable<string> Split(string? text)
        => string.IsNullOrWhiteSpace(text) || text == "-" ? [] : text.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);

    private static string? Str(JsonObject o, string key)
        => o[key] is JsonValue v ? v.GetValueKind() switch
        {
            JsonValueKind.String => v.GetValue<string>(),
            JsonValueKind.Number => v.ToJsonString(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            _ => null,
        } : null;

    // prlctl prints some numbers as numbers and some as strings ("EnvID", "iolimit"); accept both, and "unlimited" as null.
    private static int? Int(JsonNode? node)
    {
        if (node is not JsonValue v)
            return null;
        if (v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var i))
            return i;
        return v.GetValueKind() == JsonValueKind.String && int.TryParse(v.GetValue<string>(), NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s : null;
    }

    private static bool Bool(JsonNode? node)
        => node is JsonValue v && v.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.String => v.GetValue<string>().ToLowerInvariant() is "yes" or "on" or "true",
            _ => false,
        };

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    private static string? NullIfDash(string? s) => string.IsNullOrEmpty(s) || s == "-" ? null : s;

    private static VirtuozzoException Malformed(string key, JsonObject item)
        => new($"prlctl's VE info has no valid '{key}': {PrlctlJson.Excerpt(item.ToJsonString(), 0)}");

    [GeneratedRegex(@"^hdd\d+$", RegexOptions.CultureInvariant)]
    private static partial Regex DiskKey();

    [GeneratedRegex(@"^net\d+$", RegexOptions.CultureInvariant)]
    private static partial Regex NetKey();

    [GeneratedRegex(@"^(\d{1,15})\s*Mb$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex MbValue();

    [GeneratedRegex(@"^(\d{1,9})\s*%$", RegexOptions.CultureInvariant)]
    private static partial Regex PercentValue();
}
