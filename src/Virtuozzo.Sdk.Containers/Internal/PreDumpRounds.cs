namespace Virtuozzo.Sdk.Containers.Internal;

/// <summary>
/// When a live container migration stops copying memory while the container runs (CRIU pre-dumps) and freezes it for the
/// final dump. P.Haul's rules (phaul/iters.py): stop once a round wrote at most 64 pages, once a round wrote more than
/// 10 % more pages than the round before (the container dirties memory faster than it is sent), or after 8 rounds.
/// </summary>
internal static class PreDumpRounds
{
    /// <summary>At most this many pre-dumps (P.Haul's MAX_ITERS_COUNT).</summary>
    public const int MaxRounds = 8;

    /// <summary>A round that wrote this many pages or fewer leaves nothing worth another round (MIN_ITER_PAGES_COUNT).</summary>
    public const long MinPages = 64;

    /// <summary>A round that grew by more than this percentage over the previous one does not converge (MAX_ITER_GROW_RATE).</summary>
    public const int MaxGrowthPercent = 10;

    /// <summary>The size of a page in CRIU's page images.</summary>
    public const int PageSize = 4096;

    /// <summary>
    /// Why to stop after round <paramref name="round"/> (1-based), which wrote <paramref name="pagesWritten"/> pages after a
    /// round that wrote <paramref name="previousPages"/> (null for the first); null to run another round.
    /// </summary>
    public static string? StopReason(int round, long pagesWritten, long? previousPages)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(round, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(pagesWritten);
        if (pagesWritten <= MinPages)
            return $"round {round} wrote {pagesWritten} pages (at most {MinPages}: the memory is in sync)";
        if (previousPages is { } previous && previous > 0 && (pagesWritten - previous) * 100 > previous * MaxGrowthPercent)
            return $"round {round} wrote {pagesWritten} pages against {previous} before (more than {MaxGrowthPercent} % growth: the memory is dirtied faster than it is sent)";
        if (round >= MaxRounds)
            return $"{MaxRounds} rounds ran";
        return null;
    }

    /// <summary>The pages a dump wrote into <paramref name="imageDirectory"/>: the sizes of its <c>pages-*.img</c> files.</summary>
    public static long PagesWritten(string imageDirectory)
    {
        long bytes = 0;
        foreach (var file in new DirectoryInfo(imageDirectory).EnumerateFiles("pages-*.img"))
            bytes += file.Length;
        return bytes / PageSize;
    }
}
