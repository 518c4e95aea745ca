using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

/// <summary>
/// Mutation fuzzing with qemu-img check as the oracle (issue 15, item 8): small images that qemu-img makes,
/// damaged where the metadata lives, must never crash, hang or blow up the library, and check must reach
/// qemu-img's exit class (clean, leaks, corruptions, not completed) on every image qemu-img can open.
/// </summary>
public class CheckFuzzTests
{
    private const int Cases = 2500;
    private static readonly TimeSpan PerImage = TimeSpan.FromSeconds(5);
    private const long PerImageBytes = 96L << 20;

    private sealed record SeedImage(string Name, byte[] Bytes, int ClusterSize, long L1, long Reftable, long Snapshots, List<long> L2, List<long> Refblocks);

    private static SeedImage Load(string file)
    {
        var b = File.ReadAllBytes(file);
        ulong U(long at) => BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan((int)at));
        int cs = 1 << (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(20));
        long l1 = (long)U(40), rt = (long)U(48), snaps = (long)U(64);
        int l1Size = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(36));
        var l2 = Enumerable.Range(0, l1Size).Select(i => (long)(U(l1 + i * 8L) & HostileShapes.OffsetMask)).Where(o => o != 0).ToList();
        var rbs = Enumerable.Range(0, cs / 8).Select(i => (long)U(rt + i * 8L)).Where(o => o != 0).ToList();
        return new SeedImage(Path.GetFileName(file), b, cs, l1, rt, snaps, l2, rbs);
    }

    /// <summary>One damaged copy of a seed: the shapes of issue 15 and random damage where the metadata lives.</summary>
    private static byte[] Mutate(SeedImage s, Random rnd)
    {
        var b = (byte[])s.Bytes.Clone();
        int cs = s.ClusterSize;
        void Put(long at, ulong v)
        {
            if (at >= 0 && at + 8 <= b.Length)
                BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan((int)at), v);
        }
        long InCluster(long cluster) => cluster + rnd.Next(cs / 8) * 8L;
        ulong Value() => rnd.Next(10) switch
        {
            0 => (ulong)rnd.NextInt64(),                                                    // anything
            1 => (ulong)rnd.NextInt64(b.Length * 2L) & HostileShapes.OffsetMask,            // near the file, aligned to 512
            2 => ((ulong)rnd.NextInt64(b.Length / cs + 2) * (ulong)cs) | (1UL << 63),        // a cluster, COPIED
            3 => (ulong)rnd.NextInt64(b.Length / cs + 2) * (ulong)cs,                        // a cluster
            4 => 1UL << 63,                                                                   // offset 0 (the header), COPIED
            5 => (1UL << 62) | (ulong)rnd.NextInt64(),                                        // compressed, random
            6 => 1UL << rnd.Next(64),                                                         // one bit
            7 => 0,                                                                           // cleared
            8 => 0x8000_0000_0000_0000UL | ((ulong)rnd.NextInt64(b.Length / cs + 1) * (ulong)cs),
            _ => (ulong)rnd.Next(1 << 20),                                                    // small
        };
        int mutations = rnd.Next(1, 4);
        for (int m = 0; m < mutations; m++)
        {
            switch (rnd.Next(12))
            {
                case 0 or 1:
                    Put(s.L1 + rnd.Next(Math.Max(1, s.L2.Count + 1)) * 8L, Value());
                    break;
                case 2 or 3 or 4:
                    if (s.L2.Count > 0)
                    {
                        long l2 = s.L2[rnd.Next(s.L2.Count)];
                        // a few entries, or a whole run of random ones (the 32,768-entry shape in small)
                        int n = rnd.Next(4) == 0 ? rnd.Next(1, cs / 8) : 1;
                        long at = InCluster(l2);
                        for (int i = 0; i < n && at + i * 8L < l2 + cs && at + i * 8L + 8 <= b.Length; i++)
                            Put(at + i * 8L, rnd.Next(3) == 0 ? Value() : BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan((int)(at + i * 8L))) ^ (1UL << rnd.Next(64)));
                    }
                    break;
                case 5:
                    Put(s.Reftable + rnd.Next(Math.Max(1, s.Refblocks.Count + 1)) * 8L, Value());
                    break;
                case 6:
                    if (s.Refblocks.Count > 0)
                    {
                        long rb = (long)((ulong)s.Refblocks[rnd.Next(s.Refblocks.Count)] & ~0x1ffUL);
                        int at = (int)(rb + rnd.Next(cs));
                        if (at < b.Length)
                            b[at] = (byte)rnd.Next(256);
                    }
                    break;
                case 7:
                    if (s.Snapshots != 0)
                        Put(s.Snapshots + rnd.Next(2) * 8L, Value());
                    break;
                case 8:
                    // the truncated shape: cut clusters, or a part of one, off the end
                    Array.Resize(ref b, Math.Max(cs * 4, b.Length - rnd.Next(1, 4 * cs)));
                    break;
                case 9:
                    // a header field that names a table
                    Put(new[] { 40, 48, 64 }[rnd.Next(3)], Value());
                    break;
                case 10:
                    BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(new[] { 36, 56, 60 }[rnd.Next(3)]), (uint)rnd.Next(8));
                    break;
                default:
                    int where = rnd.Next(b.Length);
                    b[where] ^= (byte)(1 << rnd.Next(8));
                    break;
            }
        }
        return b;
    }

    private enum Verdict { Clean = 0, NotCompleted = 1, Corruptions = 2, Leaks = 3, Unsupported = 63, NotOpened = -1 }

    private static Verdict Ours(string file, out string detail)
    {
        detail = "";
        // vzsdk disk check probes the format as qemu-img does: without the magic the file is raw, which has no check
        if (!Qcow2Image.IsQcow2(file))
            return Verdict.Unsupported;
        Qcow2Image img;
        try
        {
            img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
        }
        catch (Qcow2FormatException ex)
        {
            detail = ex.Message;
            return Verdict.NotOpened;
        }
        using (img)
        {
            var r = img.Check();
            detail = string.Join(" | ", r.Messages.Take(4));
            // reading and mapping may refuse a bad image, but only with the format exception
            try
            {
                var buf = new byte[Math.Min(img.Size, 1 << 20)];
                img.Read(0, buf);
                img.GetAllocationMap(0, buf.Length);
            }
            catch (Qcow2FormatException)
            {
            }
            return (Verdict)r.ExitCode;
        }
    }

    /// <summary>Converts the image to raw and back to qcow2: only the format exception may come out.</summary>
    private static void Convert(string file)
    {
        var raw = file + ".raw";
        try
        {
            Qcow2Converter.Convert(file, raw, new Qcow2ConvertOptions { OutputFormat = "raw", SourceFormat = "qcow2" });
            Qcow2Converter.Convert(file, file + ".c.qcow2", new Qcow2ConvertOptions { SourceFormat = "qcow2", Compress = true });
        }
        catch (Qcow2FormatException)
        {
        }
        finally
        {
            File.Delete(raw);
            File.Delete(file + ".c.qcow2");
        }
    }

    private static Qcow2CheckResult? Repair(string file, out string how)
    {
        how = "not opened";
        try
        {
            using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { NoBacking = true });
            var r = img.Check(Qcow2RepairMode.All);
            if (r.IsClean)
            {
                // a repaired image takes writes, and stays clean
                img.Write(0, new byte[8192]);
                img.Write(img.Size / 2, TestData.Pattern(70_000, 1));
                r = img.Check();
            }
            how = string.Join(" | ", r.Messages.Take(3));
            return r;
        }
        catch (Qcow2FormatException ex)
        {
            how = ex.Message;
            return null;
        }
    }

    private static Verdict Theirs(string file, out string detail)
    {
        var r = Qemu.Img("check", "-U", file);
        detail = (r.StdErr + r.StdOut).Replace('\n', ' ');
        if (r.ExitCode == 1 && r.StdErr.Contains("Could not open", StringComparison.Ordinal))
            return Verdict.NotOpened;
        return (Verdict)r.ExitCode;
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Thousands_of_damaged_images_never_crash_hang_or_blow_up_and_check_agrees_with_qemu_img()
    {
        using var dir = new TempDirectory();
        var seeds = new[]
        {
            Load(HostileShapes.Seed(dir.Path, 512, snapshot: false, "s512.qcow2")),
            Load(HostileShapes.Seed(dir.Path, 4096, snapshot: true, "s4k.qcow2")),
            Load(HostileShapes.Seed(dir.Path, 65536, snapshot: true, "s64k.qcow2")),
            Load(HostileShapes.Seed(dir.Path, 65536, snapshot: false, "s64k-plain.qcow2")),
            Load(HostileShapes.Seed(dir.Path, 65536, snapshot: true, "v2.qcow2", ",compat=0.10")),
            Load(HostileShapes.Seed(dir.Path, 65536, snapshot: false, "extl2.qcow2", ",extended_l2=on")),
            Load(HostileShapes.Seed(dir.Path, 4096, snapshot: false, "rc1.qcow2", ",refcount_bits=1")),
            Load(HostileShapes.Seed(dir.Path, 4096, snapshot: false, "bitmaps.qcow2", bitmap: true)),
        };
        var disagreements = new ConcurrentBag<string>();
        var crashes = new ConcurrentBag<string>();
        int compared = 0, notOpenedByQemu = 0;
        var total = Stopwatch.StartNew();
        // QCOW2_FUZZ_CASES and QCOW2_FUZZ_FIRST run a longer or another series by hand
        int cases = int.TryParse(Environment.GetEnvironmentVariable("QCOW2_FUZZ_CASES"), out int c) ? c : Cases;
        int first = int.TryParse(Environment.GetEnvironmentVariable("QCOW2_FUZZ_FIRST"), out int f) ? f : 0;
        Parallel.For(first, first + cases, new ParallelOptions { MaxDegreeOfParallelism = 2 }, n =>
        {
            var seed = seeds[n % seeds.Length];
            var bytes = Mutate(seed, new Random(n));
            var file = Path.Combine(dir.Path, $"fuzz{n}.qcow2");
            File.WriteAllBytes(file, bytes);
            if (Environment.GetEnvironmentVariable("QCOW2_FUZZ_KEEP") is { Length: > 0 } keep && int.TryParse(keep, out int k) && k == n)
                File.WriteAllBytes(Path.Combine(Path.GetTempPath(), $"qcow2-fuzz-{n}.qcow2"), bytes);
            try
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                var sw = Stopwatch.StartNew();
                Verdict ours;
                string our;
                try
                {
                    ours = Ours(file, out our);
                    if (n % 8 == 1)
                        Convert(file);
                }
                catch (Exception ex)
                {
                    crashes.Add($"case {n} ({seed.Name}): {ex.GetType().Name}: {ex.Message}");
                    return;
                }
                sw.Stop();
                long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                if (sw.Elapsed > PerImage)
                    crashes.Add($"case {n} ({seed.Name}): took {sw.Elapsed.TotalSeconds:0.0} s");
                if (allocated > PerImageBytes)
                    crashes.Add($"case {n} ({seed.Name}): allocated {allocated >> 20} MiB");
                var theirs = Theirs(file, out string their);
                if (theirs == Verdict.NotOpened)
                {
                    Interlocked.Increment(ref notOpenedByQemu);
                    return;
                }
                Interlocked.Increment(ref compared);
                // an image the library refuses to open is a check not completed (vzsdk disk check exits 1)
                if ((ours == Verdict.NotOpened ? Verdict.NotCompleted : ours) != theirs)
                    disagreements.Add($"case {n} ({seed.Name}): ours {ours} [{our}], qemu-img {theirs} [{(their.Length > 400 ? their[..400] : their)}]");
                else if (n % 4 == 0 && ours is Verdict.Leaks or Verdict.Corruptions)
                {
                    // repair: whatever it reports as clean, qemu-img must find clean too
                    Qcow2CheckResult? repaired;
                    string how;
                    try
                    {
                        repaired = Repair(file, out how);
                    }
                    catch (Exception ex)
                    {
                        crashes.Add($"case {n} ({seed.Name}): repair: {ex.GetType().Name}: {ex.Message}");
                        return;
                    }
                    if (repaired is { IsClean: true } && Theirs(file, out their) is var after && after != Verdict.Clean)
                        disagreements.Add($"case {n} ({seed.Name}): repair ({how}) called the image clean, qemu-img {after} [{(their.Length > 400 ? their[..400] : their)}]");
                }
            }
            finally
            {
                File.Delete(file);
            }
        });
        total.Stop();
        var report = string.Join("\n", disagreements.Take(30));
        if (Environment.GetEnvironmentVariable("QCOW2_FUZZ_REPORT") is { Length: > 0 } path)
            File.WriteAllLines(path, disagreements.Concat(crashes));
        crashes.Should().BeEmpty("only the format exception or a check result may come out, within the time and memory caps");
        compared.Should().BeGreaterThan(cases / 3, "most damaged images still open in qemu-img");
        disagreements.Should().BeEmpty($"check agrees with qemu-img's exit class ({compared} compared, {notOpenedByQemu} not opened by qemu-img):\n{report}");
        // about 45 s on two idle cores; the bound leaves room for a loaded CI machine
        total.Elapsed.Should().BeLessThan(TimeSpan.FromMinutes(3) * Math.Max(1.0, cases / (double)Cases));
    }
}
