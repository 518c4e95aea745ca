using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Backup.Tests;

/// <summary>
/// The test assembly's entry point. With <c>delete-and-die DATA-ROOT BACKUP-ID BYTES</c> it becomes a process that
/// deletes a backup and kills itself (SIGKILL) once the merge into the child has written BYTES (see
/// <c>KilledDeleteTests</c>); otherwise it does nothing, like the entry point the test SDK would generate.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 4 && args[0] == "delete-and-die")
        {
            var store = new StateStore(args[1]);
            var repository = new BackupRepository(store, store.BackupsDirectory, NullLogger.Instance);
            var (ve, meta) = await repository.FindAsync(args[2], CancellationToken.None);
            await repository.RecoverAsync(ve, CancellationToken.None);
            await repository.DeleteAsync(ve, meta, withDependents: false, new DieAfter(long.Parse(args[3], CultureInfo.InvariantCulture)), CancellationToken.None);
            return 3; // not killed: the merge wrote less than BYTES
        }
        return 0;
    }

    private sealed class DieAfter(long bytes) : IProgress<long>
    {
        public void Report(long value)
        {
            if (value >= bytes)
                Process.GetCurrentProcess().Kill();
        }
    }
}
