using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;

namespace Virtuozzo.Sdk.Core.Runtime.Libvirt;

/// <summary>A libvirt snapshot of a domain, as the SDK's snapshot records need it (VMs' and containers' alike).</summary>
internal sealed record LibvirtSnapshot(Guid Id, string Name, string? Description, DateTimeOffset CreatedAt, Guid? ParentId, bool IncludesMemory, bool IsCurrent);

/// <summary>libvirt's snapshot API for the libvirt runtime's drivers: listing, taking, switching and deleting by name.</summary>
internal static class LibvirtSnapshots
{
    /// <summary>A stable id for a libvirt snapshot (libvirt names snapshots; the SDK's records carry a UUID): a hash of the domain's UUID and the name.</summary>
    public static Guid SnapshotId(Guid domain, string name)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(domain.ToString("N") + "/" + name));
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80); // version 8 (custom)
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true);
    }

    /// <summary>A snapshot record from libvirt's <c>&lt;domainsnapshot&gt;</c> XML.</summary>
    public static LibvirtSnapshot Parse(string xml, Guid domainId, bool isCurrent)
    {
        var x = XDocument.Parse(xml).Root!;
        var name = x.Element("name")!.Value;
        var parent = x.Element("parent")?.Element("name")?.Value;
        var created = long.TryParse(x.Element("creationTime")?.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var t) ? DateTimeOffset.FromUnixTimeSeconds(t) : DateTimeOffset.MinValue;
        var state = x.Element("state")?.Value;
        return new LibvirtSnapshot(SnapshotId(domainId, name), name, x.Element("description")?.Value, created,
            parent is null ? null : SnapshotId(domainId, parent), state is "running" or "paused" or "blocked", isCurrent);
    }

    /// <summary>Validates a snapshot name the SDK passes to libvirt.</summary>
    public static void ValidateName(string snapshotName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(snapshotName);
        if (snapshotName.Length > 128 || snapshotName.Any(c => char.IsControl(c) || c == '/'))
            throw new ArgumentException("A snapshot name has 1 to 128 characters, without '/' or control characters.", nameof(snapshotName));
    }

    /// <summary>The domain's snapshots, oldest first.</summary>
    public static unsafe Task<IReadOnlyList<LibvirtSnapshot>> ListAsync(LibvirtDomain dom, Guid domainId, CancellationToken ct) => dom.RunAsync(d =>
    {
        nint* snaps = null;
        var n = LibvirtNative.virDomainListAllSnapshots(d, &snaps, 0);
        if (n < 0)
            throw LibvirtErrors.Last("Listing the snapshots");
        var list = new List<LibvirtSnapshot>(n);
        try
        {
            for (var i = 0; i < n; i++)
            {
                var xml = LibvirtNative.Owned(LibvirtNative.virDomainSnapshotGetXMLDesc(snaps[i], 0));
                if (xml is null)
                    continue;
                list.Add(Parse(xml, domainId, LibvirtNative.virDomainSnapshotIsCurrent(snaps[i], 0) == 1));
            }
        }
        finally
        {
            for (var i = 0; i < n; i++)
                LibvirtNative.virDomainSnapshotFree(snaps[i]);
            System.Runtime.InteropServices.NativeMemory.Free(snaps);
        }
        return (IReadOnlyList<LibvirtSnapshot>)list.OrderBy(x => x.CreatedAt).ThenBy(x => x.Name, StringComparer.Ordinal).ToList();
    }, ct);

    /// <summary>Takes a snapshot (libvirt's default kind for the domain's driver) and returns its record.</summary>
    public static async Task<LibvirtSnapshot> CreateAsync(LibvirtDomain dom, Guid domainId, string what, string snapshotName, string? description, CancellationToken ct)
    {
        if ((await ListAsync(dom, domainId, ct).ConfigureAwait(false)).Any(x => x.Name == snapshotName))
            throw new AlreadyExistsException($"{what} already has a snapshot named '{snapshotName}'.");
        var xml = new XElement("domainsnapshot", new XElement("name", snapshotName));
        if (description is not null)
            xml.Add(new XElement("description", description));
        await dom.RunAsync(d =>
        {
            var snap = LibvirtNative.virDomainSnapshotCreateXML(d, xml.ToString(), 0);
            if (snap == 0)
                throw LibvirtErrors.Last($"Taking the snapshot '{snapshotName}' of {what}");
            LibvirtNative.virDomainSnapshotFree(snap);
            return 0;
        }, ct).ConfigureAwait(false);
        return (await ListAsync(dom, domainId, ct).ConfigureAwait(false)).First(x => x.Name == snapshotName);
    }

    /// <summary>The snapshot named, or whose id is, <paramref name="idOrName"/>.</summary>
    public static async Task<LibvirtSnapshot> FindAsync(LibvirtDomain dom, Guid domainId, string what, string idOrName, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(idOrName);
        var all = await ListAsync(dom, domainId, ct).ConfigureAwait(false);
        return all.FirstOrDefault(x => x.Name == idOrName || (Guid.TryParse(idOrName, out var g) && x.Id == g))
            ?? throw new NotFoundException($"{what} has no snapshot '{idOrName}'.");
    }

    /// <summary>Runs <paramref name="call"/> on the named snapshot's handle (revert, delete), throwing libvirt's error.</summary>
    public static Task OnAsync(LibvirtDomain dom, string name, Func<nint, int> call, string what, CancellationToken ct) => dom.RunAsync(d =>
    {
        var snap = LibvirtNative.virDomainSnapshotLookupByName(d, name, 0);
        if (snap == 0)
            throw LibvirtErrors.Last(what);
        try
        {
            return call(snap) < 0 ? throw LibvirtErrors.Last(what) : 0;
        }
        finally
        {
            LibvirtNative.virDomainSnapshotFree(snap);
        }
    }, ct);
}
