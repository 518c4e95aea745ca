namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>
/// Passes each report of an inner operation (a convert's bytes, a copy's bytes) straight to the caller's progress, on the
/// reporting thread. <see cref="Progress{T}"/> would post each report to the thread pool instead, so reports could reach
/// the caller out of order or after the operation (and the backup) had returned; the caller's own
/// <see cref="IProgress{T}"/> decides where its handler runs.
/// </summary>
internal sealed class RelayProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
