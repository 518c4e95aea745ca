namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

/// <summary>
/// The test assembly's entry point. With <c>crash-writer FILE SEED</c> it becomes a process that writes to
/// an image until it is killed (see <c>ProcessKillTests</c>); otherwise it does nothing, like the entry
/// point the test SDK would generate.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 3 && args[0] == "crash-writer")
            return CrashWriter(args[1], int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture));
        return 0;
    }

    private static int CrashWriter(string path, int seed)
    {
        var rnd = new Random(seed);
        using var img = Qcow2Image.Create(path, new Qcow2CreateOptions { Size = 8 << 20, ClusterSize = rnd.Next(2) == 0 ? 4096 : 65536, RefcountBits = 16 });
        img.Flush();
        Console.Out.WriteLine("ready");
        Console.Out.Flush();
        long size = img.Size;
        int cs = img.ClusterSize;
        for (int i = 0; ; i++)
        {
            long off = rnd.NextInt64(size - 1);
            int len = (int)Math.Min(size - off, rnd.Next(1, 300_000));
            switch (rnd.Next(8))
            {
                case 0 or 1 or 2:
                    img.Write(off, TestData.Pattern(len, i));
                    break;
                case 3:
                    img.WriteZeroes(off, len, unmap: rnd.Next(2) == 0);
                    break;
                case 4:
                    img.Discard(off, len);
                    break;
                case 5:
                    long co = off / cs * cs;
                    img.WriteCompressed(co, TestData.Compressible((int)Math.Min(size - co, cs * 4), i));
                    break;
                case 6:
                    if (i % 50 == 0)
                        img.CreateSnapshot("s" + i);
                    break;
                default:
                    img.Flush();
                    break;
            }
        }
    }
}
