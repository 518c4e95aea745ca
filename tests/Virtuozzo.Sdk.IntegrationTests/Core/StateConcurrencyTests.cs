using System.Diagnostics;
using System.Text.Json;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Core;

public class StateConcurrencyTests
{
    private readonly LocalHost _host = new();

    [Fact]
    public async Task Two_processes_reserving_at_once_never_over_admit_guarantees()
    {
        using var dir = new TempDirectory();
        const long capacity = 1000;
        const long each = 10;
        // Each process tries 80 reservations of 10 bytes: 160 attempts for room for exactly 100.
        var runs = Enumerable.Range(0, 2).Select(_ =>
            _host.ExecuteBufferedAsync(TestProgram.Command("ledger", dir.Path, capacity.ToString(), "80", each.ToString()))).ToArray();
        var results = await Task.WhenAll(runs);
        var admitted = results.Sum(r => int.Parse(r.StandardOutput.Trim()));
        admitted.Should().Be(100, "exactly the capacity is admitted, whatever the interleaving");
        var snapshot = await new ResourceLedger(dir.Path, capacity).GetSnapshotAsync();
        snapshot.Reservations.Should().HaveCount(100);
        snapshot.ReservedBytes.Should().Be(capacity);
    }

    [Fact]
    public async Task Two_processes_writing_one_config_leave_a_whole_document_from_one_of_them()
    {
        using var dir = new TempDirectory();
        var path = dir.File("private/ve.json");
        var runs = Enumerable.Range(0, 2).Select(_ => _host.ExecuteAsync(TestProgram.Command("write-configs", dir.Path, path, "40"))).ToArray();
        // Read continuously while they write: every read sees one whole document.
        var reads = 0;
        while (!runs.All(r => r.IsCompleted))
        {
            if (File.Exists(path))
            {
                AssertWhole(await File.ReadAllBytesAsync(path));
                reads++;
            }
            await Task.Delay(5);
        }
        await Task.WhenAll(runs);
        AssertWhole(await File.ReadAllBytesAsync(path));
        reads.Should().BePositive();
        Directory.GetFiles(dir.Path, "*vzsdk-tmp*", SearchOption.AllDirectories).Should().BeEmpty();
    }

    [Fact]
    public async Task A_writer_killed_mid_write_leaves_the_old_or_the_new_config_never_a_torn_one()
    {
        using var dir = new TempDirectory();
        var path = dir.File("private/ve.json");
        for (var round = 0; round < 8; round++)
        {
            var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false };
            foreach (var a in new[] { TestProgram.DllPath, "write-configs", dir.Path, path, "100000" })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            // Wait for the first completed write (start-up time varies with load), then kill at an arbitrary instant.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!File.Exists(path) && DateTime.UtcNow < deadline && !p.HasExited)
                await Task.Delay(5);
            await Task.Delay(Random.Shared.Next(0, 40));
            p.Kill(); // SIGKILL
            await p.WaitForExitAsync();
            if (File.Exists(path))
                AssertWhole(await File.ReadAllBytesAsync(path));
        }
        File.Exists(path).Should().BeTrue("at least one write completed in eight rounds");
        // The dead writers' temp files are what reconciliation removes.
        var store = new Virtuozzo.Sdk.Core.State.StateStore(dir.Path);
        await store.ReconcileAsync(CancellationToken.None);
        Directory.GetFiles(dir.Path, "*vzsdk-tmp*", SearchOption.AllDirectories).Should().BeEmpty();
        AssertWhole(await File.ReadAllBytesAsync(path));
    }

    private static void AssertWhole(byte[] bytes)
    {
        using var doc = JsonDocument.Parse(bytes); // throws on a torn file
        var root = doc.RootElement;
        var writer = root.GetProperty("Writer").GetInt32();
        var sequence = root.GetProperty("Sequence").GetInt32();
        root.GetProperty("Check").GetInt64().Should().Be(writer * 1_000_000L + sequence);
        var payload = root.GetProperty("Payload").GetString()!;
        payload.Length.Should().Be(200_000);
        payload.Distinct().Should().ContainSingle().Which.Should().Be((char)('a' + sequence % 26));
    }
}
