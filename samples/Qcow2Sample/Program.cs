using Virtuozzo.Sdk.Storage.Qcow2;

// Runs every snippet of docs/articles/storage/qcow2.md in a scratch directory.
var dir = Directory.CreateTempSubdirectory("qcow2-sample").FullName;
try
{
    await Samples.RunAsync(dir);
    Console.WriteLine("All QCOW2 samples ran.");
}
finally
{
    Directory.Delete(dir, recursive: true);
}

internal static class Samples
{
    public static async Task RunAsync(string dir)
    {
        string disk = Path.Combine(dir, "disk.qcow2");
        string raw = Path.Combine(dir, "disk.raw");
        string compressed = Path.Combine(dir, "backup.qcow2");
        string overlay = Path.Combine(dir, "overlay.qcow2");

        Create(disk);
        await OpenAndReadAsync(disk);
        await ConvertAsync(disk, raw, compressed);
        BackingChain(disk, overlay);
        Snapshots(disk);
        Bitmaps(disk);
        Check(disk);
        OpenUntrusted(overlay, dir);
    }

    private static void Create(string path)
    {
        #region Snippet:Create
        // qemu-img create -f qcow2 -o cluster_size=64k,compression_type=zstd disk.qcow2 1G
        using var image = Qcow2Image.Create(path, new Qcow2CreateOptions
        {
            Size = 1L << 30,
            ClusterSize = 64 * 1024,
            CompressionType = Qcow2CompressionType.Zstd,
        });
        image.Write(0, "hello, qcow2"u8);
        image.WriteZeroes(1 << 20, 4 << 20);
        #endregion
    }

    private static async Task OpenAndReadAsync(string path)
    {
        #region Snippet:OpenAndRead
        // Read-only with force-share, like qemu-img -U: safe on a disk a running VM uses.
        await using var image = await Qcow2Image.OpenAsync(path, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
        var buffer = new byte[12];
        await image.ReadAsync(0, buffer);
        Console.WriteLine(System.Text.Encoding.ASCII.GetString(buffer));

        // Where the data lives, like qemu-img map.
        foreach (var extent in image.GetAllocationMap())
            Console.WriteLine($"{extent.Start,12} {extent.Length,12} {extent.Kind} depth={extent.Depth}");

        // A Stream view for APIs that take streams.
        using var stream = image.AsStream();
        Console.WriteLine($"virtual size {stream.Length} bytes");
        #endregion
    }

    private static async Task ConvertAsync(string disk, string raw, string compressed)
    {
        #region Snippet:Convert
        // qemu-img convert -O raw disk.qcow2 disk.raw
        await Qcow2Converter.ConvertAsync(disk, raw, new Qcow2ConvertOptions { OutputFormat = "raw" });

        // qemu-img convert -c -O qcow2 -o compression_type=zstd disk.raw backup.qcow2, with progress
        var progress = new Progress<Qcow2ConvertProgress>(p => Console.Error.Write($"\r{100.0 * p.BytesDone / p.TotalBytes:0}%"));
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        await Qcow2Converter.ConvertAsync(raw, compressed, new Qcow2ConvertOptions
        {
            Compress = true,
            Create = new Qcow2CreateOptions { CompressionType = Qcow2CompressionType.Zstd },
        }, progress, cts.Token);
        Console.Error.WriteLine();
        #endregion
    }

    private static void BackingChain(string disk, string overlay)
    {
        #region Snippet:BackingChain
        // qemu-img create -f qcow2 -b disk.qcow2 -F qcow2 overlay.qcow2
        // A relative backing name resolves against the overlay's directory.
        using (var top = Qcow2Image.Create(overlay, new Qcow2CreateOptions { BackingFile = "disk.qcow2", BackingFormat = "qcow2" }))
        {
            top.Write(4096, new byte[] { 1, 2, 3 }); // copy-on-write: disk.qcow2 is not touched
            Console.WriteLine($"backing: {top.GetInfo().FullBackingFile}");
        }

        // qemu-img commit overlay.qcow2: fold the overlay into its base and empty it.
        using (var top = Qcow2Image.Open(overlay))
            top.Commit();
        #endregion
    }

    private static void Snapshots(string disk)
    {
        #region Snippet:Snapshots
        using var image = Qcow2Image.Open(disk);
        image.CreateSnapshot("before-upgrade");               // qemu-img snapshot -c
        image.Write(0, "changed"u8);
        var old = new byte[5];
        image.ReadSnapshot("before-upgrade", 0, old);          // read the snapshot's view
        foreach (var s in image.Snapshots)                     // qemu-img snapshot -l
            Console.WriteLine($"{s.Id} {s.Name} {s.Date:u}");
        image.ApplySnapshot("before-upgrade");                 // qemu-img snapshot -a
        image.DeleteSnapshot("before-upgrade");                // qemu-img snapshot -d
        #endregion
    }

    private static void Bitmaps(string disk)
    {
        #region Snippet:Bitmaps
        using var image = Qcow2Image.Open(disk);
        image.AddBitmap("backup-1", granularity: 64 * 1024);  // qemu-img bitmap --add
        image.Write(10 << 20, new byte[8192]);                 // writes set the bits of enabled bitmaps
        foreach (var dirty in image.GetDirtyExtents("backup-1"))
            Console.WriteLine($"dirty: {dirty.Start}+{dirty.Length}"); // what an incremental backup copies
        image.ClearBitmap("backup-1");                         // after the backup
        #endregion
    }

    private static void Check(string disk)
    {
        #region Snippet:Check
        // qemu-img check [-r all] disk.qcow2
        using var image = Qcow2Image.Open(disk);
        var result = image.Check();
        Console.WriteLine($"corruptions={result.Corruptions} leaks={result.Leaks} end={result.ImageEndOffset}");
        if (!result.IsClean)
            result = image.Check(Qcow2RepairMode.All);
        Console.WriteLine($"exit code qemu-img would give: {result.ExitCode}");
        #endregion
    }

    private static void OpenUntrusted(string upload, string uploads)
    {
        #region Snippet:OpenUntrusted
        // an image from an untrusted source: its header may name any file on the host
        var options = new Qcow2OpenOptions
        {
            ReadOnly = true,
            AllowExternalDataFile = false,  // no data_file=/etc/shadow
            AllowedDirectory = uploads,     // backing files only from the upload directory
        };
        try
        {
            using var image = Qcow2Image.Open(upload, options);
            var verdict = image.Check();  // bounded memory and time, qemu-img's exit class
            Console.WriteLine($"check: exit {verdict.ExitCode}");
        }
        catch (Qcow2UnsafeReferenceException ex)
        {
            Console.WriteLine($"refused: {ex.ReferencedPath}");
        }
        catch (Qcow2FormatException ex)
        {
            Console.WriteLine($"not a usable image: {ex.Message}");
        }
        #endregion
    }
}
