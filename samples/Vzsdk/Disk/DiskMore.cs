using System.CommandLine;
using Virtuozzo.Sdk.Storage.Qcow2;

namespace Vzsdk.Disk;

internal static partial class DiskCommand
{
    // ---------------------------------------------------------------- measure
    private static Command Measure()
    {
        var fmt = FormatOption();
        var outFmt = new Option<string>("-O") { Description = "Output format (qcow2).", DefaultValueFactory = _ => "qcow2" };
        var o = OOption();
        var size = new Option<string?>("--size") { Description = "Measure an empty image of this size instead of a source file." };
        var output = OutputOption();
        var file = new Argument<string?>("FILE") { Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("measure", "Compute the file size a new image needs (qemu-img measure).") { fmt, outFmt, o, size, output, file };
        cmd.SetAction(pr =>
        {
            bool json = IsJson(pr.GetValue(output)!);
            if (pr.GetValue(outFmt) != "qcow2")
                throw new UsageException("Only -O qcow2 can be measured.");
            var co = DiskArgs.ApplyCreateOptions(new Qcow2CreateOptions(), DiskArgs.ParseOptions(pr.GetValue(o)));
            var path = pr.GetValue(file);
            if ((path is null) == (pr.GetValue(size) is null))
                throw new UsageException("Give either --size SIZE or a FILE.");
            if (pr.GetValue(size) is { } s)
                co = co with { Size = DiskArgs.ParseSize(s) };
            var m = Qcow2Image.Measure(co, path);
            if (json)
                WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteNumber("bitmaps", 0);
                    w.WriteNumber("required", m.Required);
                    w.WriteNumber("fully-allocated", m.FullyAllocated);
                    w.WriteEndObject();
                });
            else
            {
                Console.Out.WriteLine($"required size: {m.Required}");
                Console.Out.WriteLine($"fully allocated size: {m.FullyAllocated}");
            }
            return Cli.Success;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- snapshot
    private static Command Snapshot()
    {
        var list = new Option<bool>("-l") { Description = "List snapshots." };
        var create = new Option<string?>("-c") { Description = "Create a snapshot with this name." };
        var apply = new Option<string?>("-a") { Description = "Revert the disk to this snapshot." };
        var delete = new Option<string?>("-d") { Description = "Delete this snapshot." };
        var force = ForceShareOption();
        var file = new Argument<string>("FILE");
        var cmd = new Command("snapshot", "List, create, apply or delete internal snapshots (qemu-img snapshot).") { list, create, apply, delete, force, file };
        cmd.SetAction(pr =>
        {
            int actions = (pr.GetValue(list) ? 1 : 0) + (pr.GetValue(create) is null ? 0 : 1) + (pr.GetValue(apply) is null ? 0 : 1) + (pr.GetValue(delete) is null ? 0 : 1);
            if (actions != 1)
                throw new UsageException("Give exactly one of -l, -c NAME, -a NAME, -d NAME.");
            var path = pr.GetValue(file)!;
            bool ro = pr.GetValue(list);
            using var img = Qcow2Image.Open(path, new Qcow2OpenOptions { ReadOnly = ro, ForceShare = ro && pr.GetValue(force), NoBacking = true });
            if (ro)
            {
                var snaps = img.Snapshots;
                if (snaps.Count > 0)
                {
                    Console.Out.WriteLine("Snapshot list:");
                    WriteSnapshotTable(snaps);
                }
            }
            else if (pr.GetValue(create) is { } c)
                img.CreateSnapshot(c);
            else if (pr.GetValue(apply) is { } a)
                img.ApplySnapshot(RequireSnapshot(img, a));
            else
                img.DeleteSnapshot(RequireSnapshot(img, pr.GetValue(delete)!));
            return Cli.Success;
        });
        return cmd;
    }

    /// <summary>Like qemu-img, a snapshot that is not there is a failed operation (exit 1), not a usage error.</summary>
    private static string RequireSnapshot(Qcow2Image img, string idOrName)
        => img.Snapshots.Any(s => s.Id == idOrName || s.Name == idOrName) ? idOrName : throw new OperationFailedException($"The image has no snapshot '{idOrName}'.");

    // ---------------------------------------------------------------- rebase
    private static Command Rebase()
    {
        var unsafeMode = new Option<bool>("-u") { Description = "Unsafe: only rewrite the backing file name." };
        var backing = new Option<string?>("-b") { Description = "The new backing file; empty to remove it." };
        var backingFmt = new Option<string?>("-F") { Description = "The new backing file's format." };
        var file = new Argument<string>("FILE");
        var cmd = new Command("rebase", "Change the backing file of an image (qemu-img rebase).") { unsafeMode, backing, backingFmt, file };
        cmd.SetAction(pr =>
        {
            if (pr.GetResult(backing) is null)
                throw new UsageException("rebase needs -b BACKING (use -b \"\" to remove the backing file).");
            using var img = Qcow2Image.Open(pr.GetValue(file)!);
            img.Rebase(pr.GetValue(backing), pr.GetValue(backingFmt), pr.GetValue(unsafeMode));
            return Cli.Success;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- commit
    private static Command Commit()
    {
        var keep = new Option<bool>("-d") { Description = "Do not empty the image after committing." };
        var file = new Argument<string>("FILE");
        var cmd = new Command("commit", "Write an image's data into its backing file (qemu-img commit).") { keep, file };
        cmd.SetAction(pr =>
        {
            using var img = Qcow2Image.Open(pr.GetValue(file)!);
            img.Commit(emptyTop: !pr.GetValue(keep));
            Console.Out.WriteLine("Image committed.");
            return Cli.Success;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- amend
    private static Command Amend()
    {
        var o = OOption();
        var file = new Argument<string>("FILE");
        var cmd = new Command("amend", "Change image options in place: compat, lazy_refcounts, refcount_bits (qemu-img amend).") { o, file };
        cmd.SetAction(pr =>
        {
            var opts = DiskArgs.ParseOptions(pr.GetValue(o));
            if (opts.Count == 0)
                throw new UsageException("amend needs -o options.");
            var a = new Qcow2AmendOptions();
            foreach (var (k, v) in opts)
                a = k switch
                {
                    "compat" => a with { Version = v switch { "0.10" or "v2" => 2, "1.1" or "v3" => 3, _ => throw new UsageException($"Invalid compat '{v}'.") } },
                    "lazy_refcounts" => a with { LazyRefcounts = DiskArgs.ParseBool(k, v) },
                    "refcount_bits" => a with { RefcountBits = int.Parse(v, System.Globalization.CultureInfo.InvariantCulture) },
                    _ => throw new UsageException($"Option '{k}' cannot be amended here (compat, lazy_refcounts, refcount_bits)."),
                };
            using var img = Qcow2Image.Open(pr.GetValue(file)!);
            img.Amend(a);
            return Cli.Success;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- bitmap
    private static Command Bitmap()
    {
        var add = new Option<bool>("--add") { Description = "Add the bitmap." };
        var remove = new Option<bool>("--remove") { Description = "Remove the bitmap." };
        var clear = new Option<bool>("--clear") { Description = "Clear every bit." };
        var enable = new Option<bool>("--enable") { Description = "Track writes." };
        var disable = new Option<bool>("--disable") { Description = "Stop tracking writes (with --add: add it disabled)." };
        var merge = new Option<string?>("--merge") { Description = "Merge this source bitmap into BITMAP." };
        var gran = new Option<string?>("-g") { Description = "Granularity for --add (default 64k)." };
        var sourceFile = new Option<string?>("-b") { Description = "With --merge: the image that holds the source bitmap." };
        var list = new Option<bool>("--list") { Description = "List the dirty extents of BITMAP (vzsdk extension; JSON with --output=json)." };
        var output = OutputOption();
        var file = new Argument<string>("FILE");
        var name = new Argument<string>("BITMAP");
        var cmd = new Command("bitmap", "Manage persistent dirty bitmaps (qemu-img bitmap).") { add, remove, clear, enable, disable, merge, gran, sourceFile, list, output, file, name };
        cmd.SetAction(pr =>
        {
            var bitmap = pr.GetValue(name)!;
            bool json = IsJson(pr.GetValue(output)!);
            if (!(pr.GetValue(add) || pr.GetValue(remove) || pr.GetValue(clear) || pr.GetValue(enable) || pr.GetValue(disable) || pr.GetValue(merge) is not null || pr.GetValue(list)))
                throw new UsageException("Give at least one of --add, --remove, --clear, --enable, --disable, --merge SOURCE, --list.");
            bool readOnly = pr.GetValue(list) && !(pr.GetValue(add) || pr.GetValue(remove) || pr.GetValue(clear) || pr.GetValue(enable) || pr.GetValue(disable) || pr.GetValue(merge) is not null);
            using var img = Qcow2Image.Open(pr.GetValue(file)!, new Qcow2OpenOptions { ReadOnly = readOnly, NoBacking = true });
            if (!pr.GetValue(add) && img.Bitmaps.All(b => b.Name != bitmap))
                throw new OperationFailedException($"The image has no bitmap '{bitmap}'.");
            if (pr.GetValue(add))
                img.AddBitmap(bitmap, pr.GetValue(gran) is { } g ? DiskArgs.ParseSize(g) : 65536, enabled: !pr.GetValue(disable));
            else if (pr.GetValue(disable))
                img.SetBitmapEnabled(bitmap, false);
            if (pr.GetValue(enable))
                img.SetBitmapEnabled(bitmap, true);
            if (pr.GetValue(clear))
                img.ClearBitmap(bitmap);
            if (pr.GetValue(merge) is { } src)
            {
                if (pr.GetValue(sourceFile) is { } other)
                {
                    using var from = Qcow2Image.Open(other, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
                    img.MergeBitmap(from, src, bitmap);
                }
                else
                    img.MergeBitmap(src, bitmap);
            }
            if (pr.GetValue(list))
            {
                var extents = img.GetDirtyExtents(bitmap);
                if (json)
                    WriteJson(w =>
                    {
                        w.WriteStartArray();
                        foreach (var e in extents)
                        {
                            w.WriteStartObject();
                            w.WriteNumber("start", e.Start);
                            w.WriteNumber("length", e.Length);
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    });
                else
                    foreach (var e in extents)
                        Console.Out.WriteLine($"{e.Start} {e.Length}");
            }
            if (pr.GetValue(remove))
                img.RemoveBitmap(bitmap);
            return Cli.Success;
        });
        return cmd;
    }
}
