using FsCheck;
using FsCheck.Fluent;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

/// <summary>Random operation sequences against an in-memory byte-array model.</summary>
public class ModelTests
{
    public sealed record Op(int Kind, int Offset, int Length, int Seed)
    {
        public override string ToString() => $"{Kind}@{Offset}+{Length}#{Seed}";
    }

    public sealed record ImageConfig(int ClusterSize, int RefcountBits, int Version, bool ExtendedL2, int Size, bool TinyCache = false)
    {
        public override string ToString() => $"cs={ClusterSize} rb={RefcountBits} v{Version} ext={ExtendedL2} size={Size} tiny={TinyCache}";
    }

    private static readonly Gen<ImageConfig> Configs =
        from cs in Gen.Elements(512, 1024, 4096, 16384, 65536)
        from rb in Gen.Elements(1, 2, 4, 8, 16, 32, 64)
        from v in Gen.Elements(2, 3)
        from ext in Gen.Elements(false, true)
        from size in Gen.Choose(1, 3 << 20)
        from tiny in Gen.Elements(false, false, true)
        select new ImageConfig(cs, v == 2 ? 16 : rb, v, ext && v == 3 && cs >= 16384, size, tiny);

    private static readonly Gen<Op> Ops =
        from kind in Gen.Frequency((6, Gen.Constant(0)), (2, Gen.Constant(1)), (2, Gen.Constant(2)), (2, Gen.Constant(3)), (1, Gen.Constant(4)), (1, Gen.Constant(5)), (1, Gen.Constant(6)), (1, Gen.Constant(7)), (1, Gen.Constant(8)))
        from off in Gen.Choose(0, 3 << 20)
        from len in Gen.Frequency((3, Gen.Choose(1, 5000)), (2, Gen.Choose(1, 300_000)))
        from seed in Gen.Choose(0, 100_000)
        select new Op(kind, off, len, seed);

    [Fact]
    public void Random_operation_sequences_read_back_like_a_byte_array_and_leave_a_clean_image()
    {
        var arb = Arb.From(from c in Configs from ops in Ops.ArrayOf() select (c, ops));
        var prop = Prop.ForAll(arb, t => RunModel(t.c, t.ops));
        Check.One(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(250).WithEndSize(80), prop);
    }

    internal static bool RunModel(ImageConfig c, Op[] ops)
    {
        var storage = new MemoryStorage();
        long size = (c.Size + 511) & ~511L; // qemu-img rounds sizes up to whole sectors
        var model = new byte[size];
        var snapshots = new List<(string Name, byte[] Data)>();
        int snapshotLimit = c.RefcountBits switch { 1 => 0, 2 => 2, _ => 4 };
        // a tiny L2 cache forces evictions, so delayed metadata is flushed mid-operation
        var open = new Qcow2OpenOptions { L2CacheSize = c.TinyCache ? 2L * c.ClusterSize : 32L << 20 };
        var img = Qcow2Image.Create(storage, new Qcow2CreateOptions { Size = size, ClusterSize = c.ClusterSize, RefcountBits = c.RefcountBits, Version = c.Version, ExtendedL2 = c.ExtendedL2 }, open);
        try
        {
            foreach (var op in ops)
            {
                long off = size == 0 ? 0 : op.Offset % size;
                int len = (int)Math.Min(size - off, op.Length);
                switch (op.Kind)
                {
                    case 0:
                        var d = TestData.Pattern(len, op.Seed);
                        img.Write(off, d);
                        d.CopyTo(model, off);
                        break;
                    case 1:
                        img.WriteZeroes(off, len, unmap: op.Seed % 2 == 0);
                        Array.Clear(model, (int)off, len);
                        break;
                    case 2:
                        img.Discard(off, len);
                        long ds = (off + c.ClusterSize - 1) / c.ClusterSize * c.ClusterSize;
                        long de = off + len == size ? size : (off + len) / c.ClusterSize * c.ClusterSize;
                        if (de > ds)
                            Array.Clear(model, (int)ds, (int)(de - ds));
                        break;
                    case 3:
                        long co = off / c.ClusterSize * c.ClusterSize;
                        long ce = Math.Min(size, Math.Max(co + c.ClusterSize, (off + len) / c.ClusterSize * c.ClusterSize));
                        var cd = op.Seed % 3 == 0 ? TestData.Pattern((int)(ce - co), op.Seed) : TestData.Compressible((int)(ce - co), op.Seed);
                        img.WriteCompressed(co, cd);
                        cd.CopyTo(model, co);
                        break;
                    case 4 when snapshots.Count > 0:
                        break;
                    case 6 when snapshots.Count < snapshotLimit && c.Version == 3:
                        var name = "s" + op.Seed;
                        if (snapshots.Any(x => x.Name == name))
                            break;
                        try
                        {
                            img.CreateSnapshot(name);
                        }
                        catch (Qcow2Exception) when (c.RefcountBits <= 4)
                        {
                            break; // compressed clusters already share host clusters up to the refcount limit
                        }
                        snapshots.Add((name, (byte[])model.Clone()));
                        var view = new byte[model.Length];
                        img.ReadSnapshot(name, 0, view);
                        if (!view.AsSpan().SequenceEqual(model))
                            throw new InvalidOperationException($"{c}: a new snapshot differs from the disk");
                        break;
                    case 7 when snapshots.Count > 0:
                        var (sn, data) = snapshots[op.Seed % snapshots.Count];
                        try
                        {
                            img.ApplySnapshot(sn);
                        }
                        catch (Qcow2Exception) when (c.RefcountBits <= 4)
                        {
                            break; // refcount overflow, refused before any change
                        }
                        model = (byte[])data.Clone();
                        size = model.Length;
                        break;
                    case 8 when snapshots.Count > 0:
                        var victim = snapshots[op.Seed % snapshots.Count];
                        var check1 = new byte[victim.Data.Length];
                        img.ReadSnapshot(victim.Name, 0, check1);
                        if (!check1.AsSpan().SequenceEqual(victim.Data))
                            throw new InvalidOperationException($"{c}: snapshot {victim.Name} changed after later writes");
                        img.DeleteSnapshot(victim.Name);
                        snapshots.Remove(victim);
                        break;
                    case 6 or 7 or 8:
                        break;
                    case 4:
                        long newSize = (Math.Max(1, op.Offset % (4 << 20)) + 511) & ~511L;
                        img.Resize(newSize, allowShrink: true);
                        var m2 = new byte[newSize];
                        Array.Copy(model, m2, Math.Min(newSize, size));
                        model = m2;
                        size = newSize;
                        break;
                    default:
                        img.Dispose();
                        img = Qcow2Image.Open(storage, open);
                        break;
                }
            }
            var all = TestData.ReadAll(img);
            if (!all.AsSpan().SequenceEqual(model))
            {
                int i = all.AsSpan().CommonPrefixLength(model);
                throw new InvalidOperationException($"{c}: contents differ from the model at byte {i}");
            }
            var check = img.Check();
            if (!check.IsClean)
                throw new InvalidOperationException($"{c}: check not clean: {check.Corruptions} corruptions, {check.Leaks} leaks: {string.Join("; ", check.Messages.Take(5))}");
            return true;
        }
        finally
        {
            img.Dispose();
        }
    }

    [Fact]
    public void Concurrent_writers_on_disjoint_ranges_do_not_lose_data()
    {
        var storage = new MemoryStorage();
        using var img = Qcow2Image.Create(storage, new Qcow2CreateOptions { Size = 8 << 20, ClusterSize = 4096 });
        Parallel.For(0, 8, t =>
        {
            for (int i = 0; i < 64; i++)
                img.Write((long)t * (1 << 20) + i * 16384 + 100, TestData.Pattern(9000, t * 1000 + i));
        });
        for (int t = 0; t < 8; t++)
            for (int i = 0; i < 64; i++)
            {
                var b = new byte[9000];
                img.Read((long)t * (1 << 20) + i * 16384 + 100, b);
                b.Should().Equal(TestData.Pattern(9000, t * 1000 + i));
            }
        img.Check().IsClean.Should().BeTrue();
    }

    [Fact]
    public void Concurrent_overlapping_writes_discards_and_reads_keep_the_metadata_consistent()
    {
        var storage = new MemoryStorage();
        using var img = Qcow2Image.Create(storage, new Qcow2CreateOptions { Size = 4 << 20, ClusterSize = 4096 }, new Qcow2OpenOptions { L2CacheSize = 8 * 4096 });
        Parallel.For(0, 4, t =>
        {
            var rnd = new Random(t);
            var buf = new byte[20_000];
            for (int i = 0; i < 300; i++)
            {
                long off = rnd.NextInt64((4 << 20) - buf.Length);
                switch (rnd.Next(5))
                {
                    case 0: img.Write(off, TestData.Pattern(rnd.Next(1, buf.Length), i)); break;
                    case 1: img.Discard(off, rnd.Next(1, 100_000) is var n && off + n <= (4 << 20) ? n : 1); break;
                    case 2: img.WriteZeroes(off, rnd.Next(1, buf.Length)); break;
                    case 3: img.WriteCompressed(off / 4096 * 4096, TestData.Compressible(8192, i)); break;
                    default: img.Read(off, buf); break;
                }
            }
        });
        var check = img.Check();
        check.IsClean.Should().BeTrue(string.Join("; ", check.Messages.Take(5)));
    }

    [Fact]
    public void The_stream_view_reads_and_writes_the_virtual_disk()
    {
        var storage = new MemoryStorage();
        using var img = Qcow2Image.Create(storage, new Qcow2CreateOptions { Size = 1 << 20 });
        using var s = img.AsStream();
        s.Length.Should().Be(1 << 20);
        s.Seek(1000, SeekOrigin.Begin);
        s.Write(TestData.Pattern(70000, 5));
        s.Position.Should().Be(71000);
        s.Position = 1000;
        var b = new byte[70000];
        s.ReadExactly(b);
        b.Should().Equal(TestData.Pattern(70000, 5));
        s.Position = (1 << 20) - 10;
        s.Read(new byte[100]).Should().Be(10);
    }

    [Fact]
    public void Caller_mistakes_throw_argument_exceptions()
    {
        using var img = Qcow2Image.Create(new MemoryStorage(), new Qcow2CreateOptions { Size = 1 << 20 });
        img.Invoking(i => i.Read(-1, new byte[1])).Should().Throw<ArgumentOutOfRangeException>();
        img.Invoking(i => i.Write((1 << 20) - 1, new byte[2])).Should().Throw<ArgumentOutOfRangeException>();
        img.Invoking(i => i.WriteCompressed(100, new byte[65536])).Should().Throw<ArgumentException>();
        img.Invoking(i => i.Resize(1000)).Should().Throw<ArgumentException>();
        var act = () => Qcow2Image.Create(new MemoryStorage(), new Qcow2CreateOptions { Size = 1, ClusterSize = 1000 });
        act.Should().Throw<ArgumentOutOfRangeException>();
        var act2 = () => Qcow2Image.Create(new MemoryStorage(), new Qcow2CreateOptions { Size = 1, Version = 2, RefcountBits = 8 });
        act2.Should().Throw<ArgumentException>();
    }
}
