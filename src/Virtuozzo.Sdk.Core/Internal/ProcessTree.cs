using System.Globalization;

namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>Reads the process tree from /proc, to terminate a command together with everything it started.</summary>
internal static class ProcessTree
{
    /// <summary>A process identified by pid and start time, so that a reused pid is never signalled.</summary>
    public readonly record struct ProcessKey(int Pid, long StartTime);

    /// <summary>Reads the parent pid and start time of a process; null when it is gone.</summary>
    public static (int ParentPid, long StartTime)? ReadStat(int pid)
    {
        string text;
        try { text = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
        return ParseStat(text);
    }

    /// <summary>Parses the interesting fields of a /proc/PID/stat line (the command name may hold spaces and parentheses).</summary>
    public static (int ParentPid, long StartTime)? ParseStat(string text)
    {
        var close = text.LastIndexOf(')');
        if (close < 0)
            return null;
        var fields = text[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // fields[0] = state (field 3), fields[1] = ppid (field 4), fields[19] = starttime (field 22)
        if (fields.Length < 20)
            return null;
        if (!int.TryParse(fields[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ppid)
            || !long.TryParse(fields[19], NumberStyles.Integer, CultureInfo.InvariantCulture, out var start))
            return null;
        return (ppid, start);
    }

    /// <summary>True when the process exists and is not a zombie.</summary>
    public static bool IsAlive(ProcessKey key)
    {
        string text;
        try { text = File.ReadAllText($"/proc/{key.Pid}/stat"); }
        catch (IOException) { return false; }
        var close = text.LastIndexOf(')');
        if (close < 0 || close + 2 >= text.Length || text[close + 2] == 'Z')
            return false;
        return ParseStat(text) is { } s && s.StartTime == key.StartTime;
    }

    /// <summary>The process and all its descendants, parents first.</summary>
    public static List<ProcessKey> Snapshot(IEnumerable<int> roots)
    {
        var children = new Dictionary<int, List<int>>();
        var starts = new Dictionary<int, long>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                continue;
            if (ReadStat(pid) is not { } stat)
                continue;
            starts[pid] = stat.StartTime;
            if (!children.TryGetValue(stat.ParentPid, out var list))
                children[stat.ParentPid] = list = [];
            list.Add(pid);
        }
        var result = new List<ProcessKey>();
        var seen = new HashSet<int>();
        var queue = new Queue<int>(roots);
        while (queue.Count > 0)
        {
            var pid = queue.Dequeue();
            if (!seen.Add(pid) || !starts.TryGetValue(pid, out var start))
                continue;
            result.Add(new ProcessKey(pid, start));
            if (children.TryGetValue(pid, out var kids))
                foreach (var k in kids)
                    queue.Enqueue(k);
        }
        return result;
    }

    /// <summary>
    /// Terminates a process tree: SIGTERM to every member, wait up to <paramref name="grace"/> for all to go,
    /// then SIGKILL to whatever is left (including children started meanwhile).
    /// </summary>
    public static async Task TerminateAsync(int rootPid, TimeSpan grace)
    {
        var tree = Snapshot([rootPid]);
        if (grace > TimeSpan.Zero)
        {
            foreach (var p in tree)
                if (IsAlive(p))
                    Native.TrySignal(p.Pid, Native.SIGTERM);
            var deadline = DateTime.UtcNow + grace;
            while (DateTime.UtcNow < deadline && tree.Any(IsAlive))
                await Task.Delay(25).ConfigureAwait(false);
        }
        for (var round = 0; round < 3; round++)
        {
            var alive = tree.Where(IsAlive).ToList();
            if (alive.Count == 0)
                return;
            var now = Snapshot(alive.Select(a => a.Pid));
            foreach (var p in now)
                if (IsAlive(p))
                    Native.TrySignal(p.Pid, Native.SIGKILL);
            tree = now;
            await Task.Delay(20).ConfigureAwait(false);
        }
    }
}
