using System.Globalization;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>
/// A small file naming the process that owns an operation in progress (its pid and start time, so that a reused pid
/// never passes for the owner): written durably when the operation starts, removed when it ends. Reconcile reads it to
/// tell an operation still under way from one whose process was killed.
/// </summary>
internal static class OwnerMarker
{
    internal static string Format(int pid, long startTime) => FormattableString.Invariant($"{pid} {startTime}\n");

    /// <summary>The owner a marker's text names; null when the text is damaged.</summary>
    internal static ProcessTree.ProcessKey? Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
            return null;
        var parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid > 0
            && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var start)
            ? new ProcessTree.ProcessKey(pid, start)
            : null;
    }

    /// <summary>Names this process as the owner, crash-safely (<see cref="AtomicFile"/>: a killed writer's temp file is reconciled away).</summary>
    internal static Task WriteAsync(string path, CancellationToken ct)
    {
        var pid = Environment.ProcessId;
        return AtomicFile.WriteAsync(path, System.Text.Encoding.ASCII.GetBytes(Format(pid, ProcessTree.ReadStat(pid)?.StartTime ?? 0)), ct);
    }

    /// <summary>The owner the marker at <paramref name="path"/> names; null when there is none or it is damaged.</summary>
    internal static ProcessTree.ProcessKey? Read(string path)
    {
        try
        {
            return Parse(File.ReadAllText(path));
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <summary>True when the marker names a process that is still alive (the operation may go on).</summary>
    internal static bool IsOwnerAlive(string path) => Read(path) is { } owner && ProcessTree.IsAlive(owner);
}
