using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Cli;

public class SampleTests
{
    [IntegrationFact("qemu-system-x86_64")]
    public async Task The_quick_start_sample_runs_to_the_end_and_leaves_no_guarantee_behind()
    {
        using var dir = new TempDirectory();
        var r = await new LocalHost().ExecuteBufferedAsync(
            new Command("dotnet").WithArguments(Path.Combine(AppContext.BaseDirectory, "QuickStart.dll"), dir.Path).WithTimeout(TimeSpan.FromMinutes(2)));
        r.StandardOutput.Should().Contain("KVM:").And.Contain("uname says: Linux").And.Contain("A failing command throws: exit code 3")
            .And.Contain("Refused:").And.Contain("Guaranteed: 1 GiB");
        var ledger = await File.ReadAllTextAsync(Path.Combine(dir.Path, "ledger.json"));
        ledger.Should().Contain("\"reservations\": []");
    }
}
