using System.Diagnostics;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Backup.Tests;

/// <summary>
/// A delete killed while it merges a backup into its child, then finished by the next operation: a process of this
/// test assembly (see <see cref="Program"/>) runs the delete and kills itself once it has merged a few MiB.
/// </summary>
public class KilledDeleteTests
{
    private const int Clusters = 1024; // 64 MiB: the merge takes long enough to be killed in the middle

    [IntegrationFact("qemu-img")]
    public async Task A_delete_killed_in_its_merge_and_finished_by_the_next_operation_leaves_no_leaked_clusters()
    {
        using var location = new BackupLocation(Clusters);
        var everything = Enumerable.Range(0, Clusters).ToDictionary(i => i, i => (byte)(1 + (i % 200)));
        var chain = await location.AddChainAsync(new() { [0] = 1 }, everything, new() { [3] = 250 }, new() { [4] = 251 });
        var expected = location.ReadTags(chain[3].Id);
        var journal = Path.Combine(location.Repository.VeDir(location.Ve), "pending-delete.json");

        await KillInTheMergeAsync(location, chain[1].Id);
        File.Exists(journal).Should().BeTrue("the delete was killed before it finished");
        // Record the half-merged child's own data as its digest, so that verify sees intact data in a file that leaks.
        var half = (await location.Repository.FindAsync(chain[2].Id, CancellationToken.None)).Meta;
        await location.Repository.WriteMetadataAsync(location.Repository.BackupDir(location.Ve, half.Id),
            half with { Disks = [half.Disks[0] with { Digest = BackupLocation.Digest(location.DiskFile(half.Id)) }] }, CancellationToken.None);
        var killed = await location.Client().VerifyAsync(location.Ve.ToString());
        killed.IsValid.Should().BeFalse("the killed merge leaked clusters in the child, and verify says so");
        killed.Damaged.Should().ContainKey(chain[2].Id).WhoseValue.Should().Contain("leaked cluster(s)").And.Contain("the data is intact");
        killed.Affected.Should().BeEmpty("a leak loses no data: the backup after the leaking one restores");

        (await location.Client().DeleteAsync(chain[1].Id)).Should().Equal(chain[1].Id); // the re-run
        File.Exists(journal).Should().BeFalse();
        var remaining = await location.Client().ListAsync(location.Ve.ToString());
        remaining.Select(b => b.Id).Should().Equal(chain[0].Id, chain[2].Id, chain[3].Id);
        location.ReadTags(chain[3].Id).Should().Equal(expected);
        expected[..5].Should().Equal(1, 2, 3, 250, 251);
        var child = location.DiskFile(chain[2].Id);
        using (var image = Qcow2Image.Open(child, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true }))
            image.Check().Should().Match<Qcow2CheckResult>(c => c.Leaks == 0 && c.Corruptions == 0);
        var check = Run("qemu-img", "check", child);
        check.ExitCode.Should().Be(0, $"qemu-img finds neither leaks nor corruption in the merged child:\n{check.Output}");
        (await location.Client().VerifyAsync(location.Ve.ToString())).IsValid.Should().BeTrue();
    }

    /// <summary>Runs the delete in another process, which kills itself once it has merged 8 MiB into the child.</summary>
    private static async Task KillInTheMergeAsync(BackupLocation location, string backupId)
    {
        var host = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", typeof(KilledDeleteTests).Assembly.Location, "delete-and-die", location.DataRoot, backupId, (8 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        using var deleter = Process.Start(psi)!;
        var stderr = deleter.StandardError.ReadToEndAsync();
        if (!deleter.WaitForExit(TimeSpan.FromSeconds(120)))
            deleter.Kill();
        await deleter.WaitForExitAsync();
        deleter.ExitCode.Should().Be(128 + 9, $"the delete killed itself in its merge: {await stderr}");
    }

    private static (int ExitCode, string Output) Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }
}
