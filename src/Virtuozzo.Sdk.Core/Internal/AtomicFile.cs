namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>Crash-safe whole-file writes: temp file in the same directory, fsync, rename, fsync the directory.</summary>
internal static class AtomicFile
{
    /// <summary>The marker in temp file names, so that reconciliation can find leftovers of killed writers.</summary>
    public const string TempMarker = ".vzsdk-tmp-";

    /// <summary>
    /// Removes the temp files of atomic writes in <paramref name="directory"/> (and below it, to
    /// <paramref name="maxDepth"/>) whose writer process is gone: the leftovers of killed writers. Returns them.
    /// </summary>
    public static List<string> RemoveAbandoned(string directory, int maxDepth = 0)
    {
        var removed = new List<string>();
        if (!Directory.Exists(directory))
            return removed;
        // Temp names start with a dot, which counts as hidden: skip no attributes.
        var options = new EnumerationOptions { RecurseSubdirectories = maxDepth > 0, MaxRecursionDepth = maxDepth, IgnoreInaccessible = true, AttributesToSkip = 0 };
        foreach (var file in Directory.EnumerateFiles(directory, "*" + TempMarker + "*", options))
        {
            if (WriterIsAlive(Path.GetFileName(file)))
                continue;
            try
            {
                File.Delete(file);
                removed.Add(file);
            }
            catch (IOException) { }
        }
        return removed;
    }

    /// <summary>Whether the process that writes a temp file (its id follows the marker in the name) still runs.</summary>
    private static bool WriterIsAlive(string tempName)
    {
        var rest = tempName[(tempName.IndexOf(TempMarker, StringComparison.Ordinal) + TempMarker.Length)..];
        var pidText = rest.Split('-')[0];
        return int.TryParse(pidText, out var pid) && ProcessTree.ReadStat(pid) is not null;
    }

    public static async Task WriteAsync(string path, ReadOnlyMemory<byte> content, CancellationToken ct)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full) ?? "/";
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}{TempMarker}{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            var fs = new FileStream(temp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, Options = FileOptions.Asynchronous });
            await using (fs.ConfigureAwait(false))
            {
                await fs.WriteAsync(content, ct).ConfigureAwait(false);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
            Native.FsyncDirectory(dir);
        }
        catch
        {
            try { File.Delete(temp); }
            catch (IOException) { }
            throw;
        }
    }

    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full) ?? "/";
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}{TempMarker}{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(content);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
            Native.FsyncDirectory(dir);
        }
        catch
        {
            try { File.Delete(temp); }
            catch (IOException) { }
            throw;
        }
    }
}
