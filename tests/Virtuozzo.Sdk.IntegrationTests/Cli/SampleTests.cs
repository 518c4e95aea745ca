using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

public class SampleTests
{
    [IntegrationFact("qemu-system-x86_64", "runc", "qemu-storage-daemon", "busybox")]
    public async Task The_quick_start_sample_runs_to_the_end_and_leaves_no_guarantee_behind()
    {
        using var dir = new TempDirectory();
        var r = await new LocalHost().ExecuteBufferedAsync(
            new Command("dotnet").WithArguments(Path.Combine(AppContext.BaseDirectory, "QuickStart.dll"), dir.Path).WithTimeout(TimeSpan.FromMinutes(2)));
        r.StandardOutput.Should().Contain("KVM:").And.Contain("uname says: Linux").And.Contain("A failing command throws: exit code 3")
            .And.Contain("Refused:").And.Contain("Guaranteed: 1 GiB");
        if (Prerequisites.IsRoot)
            r.StandardOutput.Should().Contain("hostname inside: demo").And.Contain("Live change: memsize 512M").And.Contain("Deleted container")
                .And.Contain("(Incremental, parent").And.Contain("/root/note says 'after'");
        var ledger = await File.ReadAllTextAsync(Path.Combine(dir.Path, "ledger.json"));
        ledger.Should().Contain("\"reservations\": []");
    }
}
