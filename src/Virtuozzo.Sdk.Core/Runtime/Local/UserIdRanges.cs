using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>One VE's block of host user and group ids: container ids 0…<see cref="Count"/>−1 are host ids <see cref="Start"/>….</summary>
internal readonly record struct UserIdRange(long Start, long Count)
{
    /// <summary>True when <paramref name="id"/> (a host uid or gid) falls in this range.</summary>
    public bool Contains(long id) => id >= Start && id < Start + Count;
}

/// <summary>
/// Host-wide allocation of id ranges for unprivileged containers, in the manner of <c>/etc/subuid</c>: the SDK delegates
/// itself one large block (<see cref="BlockStart"/>, <see cref="BlockSize"/> ids, recorded as the <c>vzsdk</c> line of
/// <c>/etc/subuid</c> and <c>/etc/subgid</c>) and gives each container 65,536 ids of it. Allocations are recorded in one
/// file for the whole host (every data root shares it), so no two containers on the host ever overlap — whichever data root
/// they live in — and no range overlaps a range <c>/etc/subuid</c> or <c>/etc/subgid</c> gives to anyone else.
/// </summary>
/// <remarks>
/// A range is keyed by the container's UUID and data root. The same UUID in two data roots (a container and its migrated
/// copy on a second host that shares this machine) shares one range. A recorded range whose container no longer exists
/// (its <c>private/&lt;uuid&gt;</c> directory is gone, as after a killed test) is reclaimed when a new range is needed.
/// </remarks>
internal static class UserIdRanges
{
    /// <summary>Ids per container: the 16-bit id space a distribution expects (nobody is 65534).</summary>
    public const long PerContainer = 65536;

    /// <summary>Where the SDK's block starts: above every range useradd hands out (its default ceiling is 600,100,000).</summary>
    public const long BlockStart = 2147483648; // 2^31

    /// <summary>The SDK's block: 16,384 containers' worth.</summary>
    public const long BlockSize = 1073741824; // 2^30

    /// <summary>The file that records every allocation on the host. Tests may point it elsewhere.</summary>
    internal static string RegistryPath { get; set; } = Environment.GetEnvironmentVariable("VZSDK_IDMAP_REGISTRY") ?? "/var/lib/vzsdk-idmap/ranges.json";

    /// <summary>The host's subordinate-id files (<c>/etc/subuid</c>, <c>/etc/subgid</c>). Tests may point them elsewhere.</summary>
    internal static string[] SubordinateIdFiles { get; set; } = ["/etc/subuid", "/etc/subgid"];

    /// <summary>
    /// The range of container <paramref name="id"/> in <paramref name="dataRoot"/>: the one it already has, else
    /// <paramref name="preferred"/> when it is free (a migrated or restored container keeps its ids), else the lowest free one.
    /// </summary>
    /// <exception cref="InsufficientResourcesException">Every range of the SDK's block is taken.</exception>
    public static async Task<UserIdRange> AllocateAsync(VeId id, string dataRoot, long? preferred, CancellationToken ct)
    {
        dataRoot = Path.GetFullPath(dataRoot);
        using var registryLock = await LockAsync(ct).ConfigureAwait(false);
        var entries = Read();
        var mine = entries.FirstOrDefault(e => e.Ve == id.Value && e.DataRoot == dataRoot)
            ?? entries.FirstOrDefault(e => e.Ve == id.Value);
        if (mine is not null)
        {
            if (mine.DataRoot != dataRoot)
            {
                entries.Add(mine with { DataRoot = dataRoot });
                await WriteAsync(entries).ConfigureAwait(false);
            }
            return new UserIdRange(mine.Start, mine.Count);
        }
        entries.RemoveAll(IsStale);
        var foreign = ForeignRanges();
        bool Free(long start) => start >= BlockStart && start + PerContainer <= BlockStart + BlockSize && start % PerContainer == 0
            && !entries.Any(e => start < e.Start + e.Count && e.Start < start + PerContainer)
            && !foreign.Any(r => start < r.Start + r.Count && r.Start < start + PerContainer);
        long? chosen = preferred is { } p && Free(p) ? p : null;
        for (var start = BlockStart; chosen is null && start < BlockStart + BlockSize; start += PerContainer)
        {
            if (Free(start))
                chosen = start;
        }
        if (chosen is null)
            throw new InsufficientResourcesException($"Every id range of the SDK's block ({BlockStart}–{BlockStart + BlockSize - 1}) is taken: delete containers, or create this one with Privileged = true.");
        entries.Add(new Entry(id.Value, dataRoot, chosen.Value, PerContainer));
        await WriteAsync(entries).ConfigureAwait(false);
        EnsureDelegation();
        return new UserIdRange(chosen.Value, PerContainer);
    }

    /// <summary>Gives back the range of container <paramref name="id"/> in <paramref name="dataRoot"/> (after a delete).</summary>
    public static async Task ReleaseAsync(VeId id, string dataRoot, CancellationToken ct)
    {
        dataRoot = Path.GetFullPath(dataRoot);
        using var registryLock = await LockAsync(ct).ConfigureAwait(false);
        var entries = Read();
        if (entries.RemoveAll(e => e.Ve == id.Value && e.DataRoot == dataRoot) > 0)
            await WriteAsync(entries).ConfigureAwait(false);
    }

    private static Task<FileLock> LockAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(RegistryPath)!);
        return FileLock.AcquireAsync(RegistryPath + ".lock", "the host's id-range registry", TimeSpan.FromSeconds(30), ct);
    }

    private static bool IsStale(Entry e) => !Directory.Exists(Path.Combine(e.DataRoot, "private", e.Ve.ToString()));

    private static List<Entry> Read()
    {
        try
        {
            var doc = JsonSerializer.Deserialize(File.ReadAllBytes(RegistryPath), IdRangeJson.Default.Registry);
            return doc?.Ranges ?? [];
        }
        catch (FileNotFoundException)
        {
            return [];
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
        catch (JsonException e)
        {
            throw new StateStoreException($"The host's id-range registry '{RegistryPath}' is not valid JSON ({e.Message}); restore it from the containers' configurations or remove it when no unprivileged container exists.");
        }
    }

    private static Task WriteAsync(List<Entry> entries)
        => AtomicFile.WriteAsync(RegistryPath, JsonSerializer.SerializeToUtf8Bytes(new Registry(1, entries), IdRangeJson.Default.Registry), CancellationToken.None);

    /// <summary>Ranges <c>/etc/subuid</c> and <c>/etc/subgid</c> give to anyone but the SDK.</summary>
    private static List<UserIdRange> ForeignRanges()
    {
        var list = new List<UserIdRange>();
        foreach (var file in SubordinateIdFiles)
        {
            if (!File.Exists(file))
                continue;
            foreach (var line in File.ReadLines(file))
            {
                var f = line.Split(':');
                if (f.Length == 3 && f[0] != "vzsdk" && long.TryParse(f[1], CultureInfo.InvariantCulture, out var s) && long.TryParse(f[2], CultureInfo.InvariantCulture, out var n))
                    list.Add(new UserIdRange(s, n));
            }
        }
        return list;
    }

    /// <summary>Records the SDK's block in <c>/etc/subuid</c> and <c>/etc/subgid</c> (best effort), so useradd never hands it out.</summary>
    private static void EnsureDelegation()
    {
        var line = $"vzsdk:{BlockStart}:{BlockSize}";
        foreach (var file in SubordinateIdFiles)
        {
            try
            {
                if (File.Exists(file) && File.ReadLines(file).Any(l => l.StartsWith("vzsdk:", StringComparison.Ordinal)))
                    continue;
                File.AppendAllText(file, line + "\n");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A read-only /etc: the registry alone still prevents overlaps between the SDK's containers.
            }
        }
    }

    internal sealed record Entry(Guid Ve, string DataRoot, long Start, long Count);

    internal sealed record Registry(int FormatVersion, List<Entry> Ranges);
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(UserIdRanges.Registry))]
internal sealed partial class IdRangeJson : JsonSerializerContext;
