using System.Text.Json.Nodes;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>Ending the block jobs the local runtime starts in an emulator or a storage daemon (migration copies).</summary>
internal static class BlockJobs
{
    /// <summary>
    /// Waits (at most 2 minutes) until the job <paramref name="id"/> has concluded, dismisses it, and — with
    /// <paramref name="requireSuccess"/> — throws when it ended with an error; returns at once when there is no such job.
    /// </summary>
    /// <param name="qmp">The monitor of the emulator or daemon that runs the job.</param>
    /// <param name="id">The job's id.</param>
    /// <param name="what">What the job copies, for messages ("the copy of disk hdd0").</param>
    /// <param name="requireSuccess">Throw when the job failed.</param>
    /// <param name="commandTimeout">The bound on each monitor command.</param>
    /// <param name="ct">Cancels the wait.</param>
    public static async Task FinishAsync(QmpClient qmp, string id, string what, bool requireSuccess, TimeSpan commandTimeout, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (true)
        {
            var jobs = (await qmp.ExecuteAsync("query-jobs", null, commandTimeout, ct).ConfigureAwait(false))!.AsArray();
            var job = jobs.FirstOrDefault(j => j!["id"]!.GetValue<string>() == id);
            if (job is null)
                return;
            if (job["status"]!.GetValue<string>() is "concluded" or "null")
            {
                var error = job["error"]?.GetValue<string>();
                await qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = id }, commandTimeout, ct).ConfigureAwait(false);
                if (requireSuccess && error is not null)
                    throw new InvalidStateException($"Finishing {what} failed: {error}.");
                return;
            }
            if (DateTime.UtcNow > deadline)
                throw new InvalidStateException($"{char.ToUpperInvariant(what[0])}{what[1..]} (job {id}) did not end within 2 minutes.");
            await Task.Delay(20, ct).ConfigureAwait(false);
        }
    }
}
