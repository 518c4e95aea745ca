using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Core.Tests;

public class StateStoreTests
{
    [Fact]
    public async Task The_ledger_admits_guarantees_until_the_capacity_and_refuses_the_rest_without_change()
    {
        using var dir = new TempDirectory();
        var ledger = new ResourceLedger(dir.Path, 1000);
        var a = VeId.New();
        var b = VeId.New();
        await ledger.ReserveAsync(a, VeKind.Vm, 600, 100);
        var act = () => ledger.ReserveAsync(b, VeKind.Container, 301);
        (await act.Should().ThrowAsync<InsufficientResourcesException>()).Which.AvailableBytes.Should().Be(300);
        (await ledger.GetSnapshotAsync()).ReservedBytes.Should().Be(700);
        await ledger.ReserveAsync(b, VeKind.Container, 300);
        (await ledger.GetSnapshotAsync()).AvailableBytes.Should().Be(0);
    }

    [Fact]
    public async Task A_budget_recorded_in_the_ledger_caps_admission_in_every_process_and_the_refusal_names_the_ve_the_ask_and_what_is_free()
    {
        using var dir = new TempDirectory();
        var manager = new ResourceLedger(dir.Path, 10 * ByteSize.GiB);
        var a = VeId.New();
        await manager.ReserveAsync(a, VeKind.Vm, 600 * ByteSize.MiB, 100 * ByteSize.MiB);
        (await manager.SetBudgetAsync(ByteSize.GiB)).CapacityBytes.Should().Be(ByteSize.GiB);

        // Another process (another ledger object over the same data root, with the whole host as its capacity).
        var other = new ResourceLedger(dir.Path, 10 * ByteSize.GiB);
        var snapshot = await other.GetSnapshotAsync();
        snapshot.BudgetBytes.Should().Be(ByteSize.GiB);
        snapshot.CapacityBytes.Should().Be(ByteSize.GiB);
        snapshot.AvailableBytes.Should().Be(324 * ByteSize.MiB);
        var act = () => other.ReserveAsync(VeId.New(), VeKind.Container, 400 * ByteSize.MiB);
        var refused = (await act.Should().ThrowAsync<InsufficientResourcesException>()).Which;
        refused.RequestedBytes.Should().Be(400 * ByteSize.MiB);
        refused.AvailableBytes.Should().Be(324 * ByteSize.MiB);
        refused.Message.Should().Contain("400 MiB").And.Contain("324 MiB").And.Contain("budget of 1 GiB").And.Contain("--budget");
        (await other.GetSnapshotAsync()).Reservations.Should().ContainSingle("a refused reservation changes nothing");
        await other.ReserveAsync(VeId.New(), VeKind.Container, 324 * ByteSize.MiB);

        // Clearing the budget gives admission the whole capacity back.
        await manager.SetBudgetAsync(null);
        await other.ReserveAsync(VeId.New(), VeKind.Container, 400 * ByteSize.MiB);
        (await other.GetSnapshotAsync()).BudgetBytes.Should().BeNull();
    }

    [Fact]
    public async Task A_budget_below_what_is_already_guaranteed_refuses_raises_but_still_lets_guarantees_shrink()
    {
        using var dir = new TempDirectory();
        var ledger = new ResourceLedger(dir.Path, 1000);
        var a = VeId.New();
        await ledger.ReserveAsync(a, VeKind.Container, 800);
        await ledger.SetBudgetAsync(500);
        var raise = () => ledger.ReserveAsync(a, VeKind.Container, 801);
        await raise.Should().ThrowAsync<InsufficientResourcesException>();
        await ledger.ReserveAsync(a, VeKind.Container, 600);
        (await ledger.GetSnapshotAsync()).ReservedBytes.Should().Be(600);
        var zero = () => ledger.SetBudgetAsync(0);
        await zero.Should().ThrowAsync<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void The_options_budget_caps_the_capacity_for_guarantees_and_must_be_positive()
    {
        var options = new VirtuozzoSdkOptions { HostMemoryReserve = ByteSize.FromMiB(256), HostMemoryBudget = ByteSize.Parse("3G") };
        options.GetGuaranteeCapacity(24 * ByteSize.GiB).Should().Be(3 * ByteSize.GiB);
        options.GetGuaranteeCapacity(2 * ByteSize.GiB).Should().Be(2 * ByteSize.GiB - 256 * ByteSize.MiB, "a budget larger than the host caps nothing");
        new VirtuozzoSdkOptions { HostMemoryBudget = ByteSize.FromBytes(0) }.Validate().Should().ContainSingle(e => e.Contains("HostMemoryBudget"));
    }

    [Fact]
    public async Task Lowering_a_guarantee_always_succeeds_and_raising_counts_only_the_difference()
    {
        using var dir = new TempDirectory();
        var ledger = new ResourceLedger(dir.Path, 1000);
        var a = VeId.New();
        await ledger.ReserveAsync(a, VeKind.Vm, 900);
        await ledger.ReserveAsync(a, VeKind.Vm, 1000); // replaces its own 900, not adds to it
        await ledger.ReserveAsync(a, VeKind.Vm, 10);
        (await ledger.GetSnapshotAsync()).Reservations.Should().ContainSingle().Which.GuaranteeBytes.Should().Be(10);
        (await ledger.ReleaseAsync(a)).Should().BeTrue();
        (await ledger.ReleaseAsync(a)).Should().BeFalse();
        (await ledger.GetSnapshotAsync()).Reservations.Should().BeEmpty();
    }

    [Fact]
    public async Task A_damaged_or_newer_ledger_file_is_reported_not_silently_reset()
    {
        using var dir = new TempDirectory();
        var ledger = new ResourceLedger(dir.Path, 1000);
        await File.WriteAllTextAsync(dir.File("ledger.json"), "{ not json");
        await ledger.Invoking(l => l.GetSnapshotAsync()).Should().ThrowAsync<StateStoreException>().WithMessage("*damaged*");
        await File.WriteAllTextAsync(dir.File("ledger.json"), "{\"format_version\": 99, \"reservations\": []}");
        await ledger.Invoking(l => l.GetSnapshotAsync()).Should().ThrowAsync<StateStoreException>().WithMessage("*format version 99*");
    }

    [Fact]
    public void An_unusable_data_root_gives_a_clear_error()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("file"), "x");
        var store = new StateStore(dir.File("file"));
        store.Invoking(s => s.EnsureUsable()).Should().Throw<StateStoreException>().WithMessage("*is a file, not a directory*");
        var nested = new StateStore(Path.Combine(dir.File("file"), "below"));
        nested.Invoking(s => s.EnsureUsable()).Should().Throw<StateStoreException>().WithMessage("*unusable*DataRoot*");
    }

    [Fact]
    public async Task A_ve_lock_is_exclusive_even_within_one_process_and_times_out_with_a_transient_error()
    {
        using var dir = new TempDirectory();
        var store = new StateStore(dir.Path);
        var id = VeId.New();
        using (await store.LockVeAsync(id, CancellationToken.None))
        {
            var act = () => store.LockVeAsync(id, CancellationToken.None, TimeSpan.FromMilliseconds(200));
            (await act.Should().ThrowAsync<LockTimeoutException>()).Which.IsTransient.Should().BeTrue();
            using var other = await store.LockVeAsync(VeId.New(), CancellationToken.None, TimeSpan.FromMilliseconds(200));
        }
        using var again = await store.LockVeAsync(id, CancellationToken.None, TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public async Task Reconciliation_removes_temp_files_of_dead_writers_and_keeps_live_ones()
    {
        using var dir = new TempDirectory();
        var store = new StateStore(dir.Path);
        store.EnsureUsable();
        var dead = Path.Combine(store.PrivateDirectory, ".ve.json.vzsdk-tmp-999999999-abc");
        var live = Path.Combine(store.PrivateDirectory, $".ve.json.vzsdk-tmp-{Environment.ProcessId}-abc");
        var config = Path.Combine(store.PrivateDirectory, "ve.json");
        foreach (var f in new[] { dead, live, config })
            await File.WriteAllTextAsync(f, "x");
        var report = await store.ReconcileAsync(CancellationToken.None);
        report.Removed.Should().Contain(dead).And.NotContain(config);
        File.Exists(dead).Should().BeFalse();
        File.Exists(config).Should().BeTrue();
    }
}
