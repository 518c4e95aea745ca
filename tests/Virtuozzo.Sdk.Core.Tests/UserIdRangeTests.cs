using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Core.Tests;

/// <summary>The host-wide id-range registry of unprivileged containers, and the ownership shift's id mapping.</summary>
public sealed class UserIdRangeTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string _savedRegistry = UserIdRanges.RegistryPath;
    private readonly string[] _savedSubordinate = UserIdRanges.SubordinateIdFiles;

    public UserIdRangeTests()
    {
        UserIdRanges.RegistryPath = Path.Combine(_dir.Path, "idmap", "ranges.json");
        UserIdRanges.SubordinateIdFiles = [Path.Combine(_dir.Path, "subuid"), Path.Combine(_dir.Path, "subgid")];
    }

    public void Dispose()
    {
        UserIdRanges.RegistryPath = _savedRegistry;
        UserIdRanges.SubordinateIdFiles = _savedSubordinate;
        _dir.Dispose();
    }

    /// <summary>A data root holding the private directory of <paramref name="id"/>, as a created container has.</summary>
    private string DataRootWith(string name, params VeId[] ids)
    {
        var root = Path.Combine(_dir.Path, name);
        foreach (var id in ids)
            Directory.CreateDirectory(Path.Combine(root, "private", id.ToString()));
        return root;
    }

    [Fact]
    public async Task Containers_get_disjoint_aligned_ranges_above_the_hosts_own_and_keep_them()
    {
        var a = VeId.New();
        var b = VeId.New();
        var root = DataRootWith("r1", a, b);
        var ra = await UserIdRanges.AllocateAsync(a, root, null, default);
        var rb = await UserIdRanges.AllocateAsync(b, root, null, default);

        ra.Count.Should().Be(65536);
        ra.Start.Should().BeGreaterThanOrEqualTo(UserIdRanges.BlockStart);
        (ra.Start % 65536).Should().Be(0);
        (rb.Start >= ra.Start + ra.Count || ra.Start >= rb.Start + rb.Count).Should().BeTrue("two ranges never overlap");
        (await UserIdRanges.AllocateAsync(a, root, null, default)).Should().Be(ra, "a container keeps its range");
        File.ReadAllText(UserIdRanges.SubordinateIdFiles[0]).Should().Contain($"vzsdk:{UserIdRanges.BlockStart}:{UserIdRanges.BlockSize}", "the SDK's block is recorded like a subuid delegation");
    }

    [Fact]
    public async Task Ranges_are_shared_across_data_roots_only_by_the_same_container()
    {
        var a = VeId.New();
        var other = VeId.New();
        var source = DataRootWith("src", a);
        var destination = DataRootWith("dst", a, other);
        var ra = await UserIdRanges.AllocateAsync(a, source, null, default);

        (await UserIdRanges.AllocateAsync(a, destination, null, default)).Should().Be(ra, "a migrated container keeps its ids");
        var ro = await UserIdRanges.AllocateAsync(other, destination, ra.Start, default);
        ro.Start.Should().NotBe(ra.Start, "another container never gets a range in use, even when it asks for it");

        await UserIdRanges.ReleaseAsync(a, source, default);
        var again = await UserIdRanges.AllocateAsync(VeId.New(), DataRootWith("third", []), ra.Start, default);
        again.Start.Should().NotBe(ra.Start, "the copy in the destination still holds the range");
    }

    [Fact]
    public async Task A_preferred_free_range_is_granted_and_ranges_of_vanished_containers_are_reclaimed()
    {
        var gone = VeId.New();
        var root = DataRootWith("r", gone);
        var first = await UserIdRanges.AllocateAsync(gone, root, null, default);
        Directory.Delete(Path.Combine(root, "private", gone.ToString()));

        var next = VeId.New();
        DataRootWith("r", next);
        (await UserIdRanges.AllocateAsync(next, root, first.Start, default)).Start.Should().Be(first.Start, "a killed test's leftover range is taken back");

        var preferred = UserIdRanges.BlockStart + 10 * 65536;
        var third = VeId.New();
        DataRootWith("r", third);
        (await UserIdRanges.AllocateAsync(third, root, preferred, default)).Start.Should().Be(preferred, "a restored or migrated container keeps its ids when they are free");
    }

    [Fact]
    public async Task Ranges_that_subuid_gives_to_someone_else_are_never_handed_out()
    {
        File.WriteAllText(UserIdRanges.SubordinateIdFiles[0], $"alice:100000:65536\nbob:{UserIdRanges.BlockStart}:{3 * 65536}\n");
        var id = VeId.New();
        var r = await UserIdRanges.AllocateAsync(id, DataRootWith("r", id), UserIdRanges.BlockStart, default);
        r.Start.Should().Be(UserIdRanges.BlockStart + 3 * 65536, "bob's delegation covers the first three ranges");
    }

    [Fact]
    public async Task A_corrupt_registry_is_a_typed_error_not_a_fresh_start()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(UserIdRanges.RegistryPath)!);
        File.WriteAllText(UserIdRanges.RegistryPath, "{ not json");
        var id = VeId.New();
        var act = () => UserIdRanges.AllocateAsync(id, DataRootWith("r", id), null, default);
        (await act.Should().ThrowAsync<StateStoreException>()).Which.Message.Should().Contain(UserIdRanges.RegistryPath);
    }

    [Theory]
    [InlineData(0, 0, 2147483648, 2147483648)]            // a template's root moves into the range
    [InlineData(1000, 0, 2147483648, 2147484648)]
    [InlineData(65535, 0, 2147483648, 2147549183)]
    [InlineData(70000, 0, 2147483648, 2147549182)]        // beyond 16 bits: nobody
    [InlineData(2147483648 + 33, 2147483648, 2147614720, 2147614720 + 33)] // clone: original's range to the copy's
    [InlineData(2147614720 + 5, 2147483648, 2147614720, 2147614720 + 5)]   // already moved (a resumed walk): kept
    [InlineData(0, 2147483648, 2147614720, 2147614720)]   // written by the host's root into a shifted tree: container root
    [InlineData(2147483648 + 7, 2147483648, 0, 7)]        // back to the host's ids (a privileged copy)
    public void Ids_map_from_one_range_to_another(long id, long from, long to, long expected)
        => OwnershipShift.Map(id, from, to).Should().Be(expected);
}
