using System.Net;
using System.Text.Json;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>
/// The host bridge VEs attach to (<c>vzbr0</c>, host address 10.209.0.1/24 by default; no NAT unless asked), and
/// the links that attach them: a veth pair into a container's network namespace, a tap for a VM. Names derive
/// from the VE id so that leftovers can be found and removed after a crash.
/// </summary>
internal sealed class HostBridge(IVirtuozzoHost host, string name = HostBridge.DefaultName, string hostAddress = HostBridge.DefaultHostAddress, bool nat = false)
{
    /// <summary>Whether VEs on the bridge reach other networks through the host (masquerading).</summary>
    public bool Nat { get; } = nat;

    public const string DefaultName = "vzbr0";
    public const string DefaultHostAddress = "10.209.0.1/24";

    public string Name { get; } = name;

    public string HostAddress { get; } = hostAddress;

    /// <summary>The gateway address VEs use (the bridge's own address).</summary>
    public string Gateway => HostAddress.Split('/')[0];

    /// <summary>The name of a VE's network namespace (<c>ip netns</c>).</summary>
    public static string NamespaceName(VeId id) => "vz-" + id.ToString()[..8] + id.ToString()[^4..];

    /// <summary>The host-side link name of a VE (at most 15 characters).</summary>
    public static string HostLinkName(VeId id) => "vz" + id.ToString()[..8] + "h";

    /// <summary>The VE-side link name before it is renamed inside the namespace.</summary>
    public static string PeerLinkName(VeId id) => "vz" + id.ToString()[..8] + "c";

    /// <summary>The tap name of a VM.</summary>
    public static string TapName(VeId id) => "vz" + id.ToString()[..8] + "t";

    private Task<BufferedCommandResult> Ip(params string[] args) => host.ExecuteBufferedAsync(new Command("ip").WithArguments(args).WithTimeout(TimeSpan.FromSeconds(30)));

    private Task<BufferedCommandResult> IpUnchecked(params string[] args)
        => host.ExecuteBufferedAsync(new Command("ip").WithArguments(args).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(30)));

    /// <summary>Creates the bridge with its address when missing, and brings it up. Idempotent.</summary>
    public async Task EnsureAsync(CancellationToken cancellationToken)
    {
        if (!await LinkExistsAsync(Name).ConfigureAwait(false))
        {
            var created = await IpUnchecked("link", "add", "name", Name, "type", "bridge").ConfigureAwait(false);
            if (created.ExitCode != 0 && !await LinkExistsAsync(Name).ConfigureAwait(false))
                throw new CommandFailedException($"Cannot create the bridge {Name}: {created.StandardError.Trim()}", "ip link add", created.ExitCode, created.StandardError.Trim());
        }
        var addrs = await Ip("-j", "addr", "show", "dev", Name).ConfigureAwait(false);
        if (!addrs.StandardOutput.Contains($"\"local\":\"{Gateway}\"", StringComparison.Ordinal))
        {
            var add = await IpUnchecked("addr", "add", HostAddress, "dev", Name).ConfigureAwait(false);
            if (add.ExitCode != 0 && !add.StandardError.Contains("exists", StringComparison.OrdinalIgnoreCase))
                throw new CommandFailedException($"Cannot give {Name} the address {HostAddress}: {add.StandardError.Trim()}", "ip addr add", add.ExitCode, add.StandardError.Trim());
        }
        await Ip("link", "set", Name, "up").ConfigureAwait(false);
        if (Nat)
            await EnsureNatAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The bridge's subnet in CIDR form (10.209.0.0/24 for 10.209.0.1/24).</summary>
    public string Subnet
    {
        get
        {
            var parts = HostAddress.Split('/');
            var prefix = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
            var bytes = IPAddress.Parse(parts[0]).GetAddressBytes();
            var value = (uint)(bytes[0] << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3]);
            var mask = prefix == 0 ? 0u : uint.MaxValue << (32 - prefix);
            var network = value & mask;
            return $"{network >> 24}.{(network >> 16) & 255}.{(network >> 8) & 255}.{network & 255}/{prefix}";
        }
    }

    /// <summary>Turns on forwarding and masquerades the bridge's subnet (idempotent: the rule is added once).</summary>
    private async Task EnsureNatAsync(CancellationToken cancellationToken)
    {
        await host.ExecuteAsync(new Command("sysctl").WithArguments("-q", "-w", "net.ipv4.ip_forward=1"), cancellationToken).ConfigureAwait(false);
        string[] rule = ["POSTROUTING", "-s", Subnet, "!", "-o", Name, "-j", "MASQUERADE"];
        var check = await host.ExecuteAsync(new Command("iptables").WithArguments(["-t", "nat", "-C", .. rule]).WithValidation(CommandResultValidation.None), cancellationToken).ConfigureAwait(false);
        if (check.ExitCode != 0)
            await host.ExecuteAsync(new Command("iptables").WithArguments(["-t", "nat", "-A", .. rule]), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>True when a link exists.</summary>
    public async Task<bool> LinkExistsAsync(string link)
        => (await IpUnchecked("link", "show", "dev", link).ConfigureAwait(false)).ExitCode == 0;

    /// <summary>
    /// Creates the VE's network namespace with loopback up, and — with an address — a veth pair whose host end
    /// joins the bridge and whose other end is <c>eth0</c> inside, with the address and a default route via the bridge.
    /// </summary>
    /// <returns>The namespace's path, for runc's config.</returns>
    /// <remarks>
    /// With <paramref name="userIds"/> (an unprivileged container), the network namespace is owned by a user namespace
    /// with that id mapping, made here and pinned at <see cref="UserNamespacePath"/>: the container runs in that user
    /// namespace, so that its processes (and <c>runc exec</c>, which enters the user namespace first) may enter and
    /// administer their own network namespace, as they could not one owned by the host.
    /// </remarks>
    public async Task<string> CreateVeNamespaceAsync(VeId id, IReadOnlyList<string> addresses, CancellationToken cancellationToken, UserIdRange? userIds = null)
    {
        var ns = NamespaceName(id);
        await IpUnchecked("netns", "del", ns).ConfigureAwait(false);
        await ReleaseUserNamespaceAsync(id).ConfigureAwait(false);
        if (userIds is { } range)
            await CreateOwnedNamespacesAsync(id, ns, range, cancellationToken).ConfigureAwait(false);
        else
            await Ip("netns", "add", ns).ConfigureAwait(false);
        await Ip("-n", ns, "link", "set", "lo", "up").ConfigureAwait(false);
        if (addresses.Count > 0)
        {
            await EnsureAsync(cancellationToken).ConfigureAwait(false);
            var hostLink = HostLinkName(id);
            var peer = PeerLinkName(id);
            await IpUnchecked("link", "del", hostLink).ConfigureAwait(false);
            await Ip("link", "add", hostLink, "type", "veth", "peer", "name", peer).ConfigureAwait(false);
            await Ip("link", "set", hostLink, "master", Name).ConfigureAwait(false);
            await Ip("link", "set", hostLink, "up").ConfigureAwait(false);
            await Ip("link", "set", peer, "netns", ns).ConfigureAwait(false);
            await Ip("-n", ns, "link", "set", peer, "name", "eth0").ConfigureAwait(false);
            foreach (var a in addresses)
                await Ip("-n", ns, "addr", "add", a, "dev", "eth0").ConfigureAwait(false);
            await Ip("-n", ns, "link", "set", "eth0", "up").ConfigureAwait(false);
            await Ip("-n", ns, "route", "add", "default", "via", Gateway).ConfigureAwait(false);
            // The new link has a new MAC address: forget what the host remembers for these addresses (a restarted or
            // restored VE would otherwise be unreachable until the stale neighbour entry times out).
            foreach (var a in addresses)
                await IpUnchecked("neigh", "flush", "to", a.Split('/')[0], "dev", Name).ConfigureAwait(false);
        }
        return "/var/run/netns/" + ns;
    }

    /// <summary>Where the user namespace of an unprivileged container is pinned (a bind mount of its nsfs file; gone at reboot).</summary>
    public static string UserNamespacePath(VeId id) => "/run/vzsdk-userns/" + NamespaceName(id);

    /// <summary>
    /// Makes a user namespace mapping container ids 0…65535 to <paramref name="range"/> and a network namespace it owns,
    /// pinned at <see cref="UserNamespacePath"/> and <c>/run/netns/NAME</c>: <c>unshare</c> creates both at once (the
    /// kernel makes the user namespace first, so it owns the network namespace); while its process lives the id maps are
    /// written and both namespaces bind-mounted from outside (unshare's own pinning is refused here), then it ends.
    /// </summary>
    private async Task CreateOwnedNamespacesAsync(VeId id, string ns, UserIdRange range, CancellationToken ct)
    {
        var userPin = UserNamespacePath(id);
        var netPin = "/run/netns/" + ns;
        Directory.CreateDirectory(Path.GetDirectoryName(userPin)!);
        Directory.CreateDirectory("/run/netns");
        File.WriteAllBytes(userPin, []);
        File.WriteAllBytes(netPin, []);
        try
        {
            await host.ExecuteAsync(new Command("sh").WithArguments("-c", OwnedNamespacesScript, "sh", userPin, netPin,
                range.Start.ToString(System.Globalization.CultureInfo.InvariantCulture), range.Count.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .WithTimeout(TimeSpan.FromSeconds(30)), ct).ConfigureAwait(false);
        }
        catch
        {
            await IpUnchecked("netns", "del", ns).ConfigureAwait(false);
            await ReleaseUserNamespaceAsync(id).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The script of <see cref="CreateOwnedNamespacesAsync"/>: $1 user pin, $2 network pin, $3 first host id, $4 count.</summary>
    private const string OwnedNamespacesScript =
        "unshare --user --net sleep 30 &\n" +
        "pid=$!\n" +
        "i=0\n" +
        "while [ \"$(readlink /proc/$pid/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ]; do\n" +
        "  i=$((i+1)); [ $i -lt 1000 ] || { kill $pid; echo 'unshare did not create the namespaces' >&2; exit 1; }\n" +
        "  sleep 0.01\n" +
        "done\n" +
        "echo \"0 $3 $4\" > /proc/$pid/uid_map && echo \"0 $3 $4\" > /proc/$pid/gid_map &&\n" +
        "  mount --bind /proc/$pid/ns/user \"$1\" && mount --bind /proc/$pid/ns/net \"$2\"\n" +
        "status=$?\n" +
        "kill $pid\n" +
        "wait $pid 2>/dev/null\n" +
        "exit $status\n";

    private async Task ReleaseUserNamespaceAsync(VeId id)
    {
        var pin = UserNamespacePath(id);
        if (!File.Exists(pin))
            return;
        await host.ExecuteBufferedAsync(new Command("umount").WithArguments(pin).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromSeconds(30))).ConfigureAwait(false);
        try { File.Delete(pin); }
        catch (IOException) { }
    }

    /// <summary>Removes the VE's namespace and host link. Idempotent.</summary>
    public async Task DeleteVeNamespaceAsync(VeId id, CancellationToken cancellationToken)
    {
        await IpUnchecked("link", "del", HostLinkName(id)).ConfigureAwait(false);
        await IpUnchecked("netns", "del", NamespaceName(id)).ConfigureAwait(false);
        await ReleaseUserNamespaceAsync(id).ConfigureAwait(false);
        await IpUnchecked("link", "del", TapName(id)).ConfigureAwait(false);
    }

    /// <summary>Creates a tap attached to the bridge, for a VM's NIC. Returns its name.</summary>
    public async Task<string> CreateTapAsync(VeId id, CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken).ConfigureAwait(false);
        var tap = TapName(id);
        await IpUnchecked("link", "del", tap).ConfigureAwait(false);
        await Ip("tuntap", "add", "dev", tap, "mode", "tap").ConfigureAwait(false);
        await Ip("link", "set", tap, "master", Name).ConfigureAwait(false);
        await Ip("link", "set", tap, "up").ConfigureAwait(false);
        return tap;
    }

    /// <summary>Validates an <c>ADDRESS/PREFIX</c> IPv4 address such as 10.209.0.2/24.</summary>
    public static string ValidateAddress(string cidr)
    {
        var parts = (cidr ?? string.Empty).Split('/');
        if (parts.Length != 2 || !IPAddress.TryParse(parts[0], out var ip) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork
            || !int.TryParse(parts[1], out var prefix) || prefix is < 1 or > 32 || parts[0].Count(c => c == '.') != 3)
            throw new ArgumentException($"'{cidr}' is not an IPv4 address with a prefix, such as 10.209.0.2/24.", nameof(cidr));
        return cidr!;
    }

    /// <summary>
    /// Checks an address for a VE on this bridge: a valid IPv4 address with prefix that is not the bridge's own address,
    /// nor the network or broadcast address of the bridge's subnet (when it lies in it), nor a loopback, multicast,
    /// link-local, broadcast or unspecified address. Returns the problem in plain words, or null when it is usable.
    /// </summary>
    public string? ProblemWithVeAddress(string cidr)
    {
        ValidateAddress(cidr);
        var ip = IPAddress.Parse(cidr.Split('/')[0]);
        var b = ip.GetAddressBytes();
        if (b[0] == 127)
            return $"{ip} is a loopback address.";
        if (b[0] is >= 224 and <= 239)
            return $"{ip} is a multicast address.";
        if (b[0] >= 240)
            return $"{ip} is a reserved or broadcast address.";
        if (b[0] == 0)
            return $"{ip} is not a host address.";
        if (b[0] == 169 && b[1] == 254)
            return $"{ip} is a link-local address.";
        var bridgeParts = HostAddress.Split('/');
        var bridgeIp = IPAddress.Parse(bridgeParts[0]);
        var prefix = int.Parse(bridgeParts[1], System.Globalization.CultureInfo.InvariantCulture);
        if (ip.Equals(bridgeIp))
            return $"{ip} is the host bridge's own address (the VEs' gateway).";
        uint Value(IPAddress a) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(a.GetAddressBytes());
        var mask = prefix == 0 ? 0u : uint.MaxValue << (32 - prefix);
        var network = Value(bridgeIp) & mask;
        if (prefix <= 30 && (Value(ip) & mask) == network)
        {
            if (Value(ip) == network)
                return $"{ip} is the network address of the bridge's subnet {new IPAddress(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(network))}/{prefix}.";
            if (Value(ip) == (network | ~mask))
                return $"{ip} is the broadcast address of the bridge's subnet.";
        }
        return null;
    }

    /// <summary>A counter of a host network link (<c>/sys/class/net/LINK/statistics/NAME</c>); 0 when the link does not exist.</summary>
    public static long LinkCounter(string link, string counter)
    {
        try
        {
            return long.Parse(File.ReadAllText($"/sys/class/net/{link}/statistics/{counter}").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is IOException or FormatException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>Names of links on the host that belong to VEs (for reconciliation).</summary>
    public async Task<IReadOnlyList<string>> ListVeLinksAsync()
    {
        var r = await Ip("-j", "link", "show").ConfigureAwait(false);
        using var doc = JsonDocument.Parse(r.StandardOutput);
        return doc.RootElement.EnumerateArray().Select(e => e.GetProperty("ifname").GetString()!)
            .Where(n => n.Length == 11 && n.StartsWith("vz", StringComparison.Ordinal) && n[^1] is 'h' or 't').ToList();
    }
}
