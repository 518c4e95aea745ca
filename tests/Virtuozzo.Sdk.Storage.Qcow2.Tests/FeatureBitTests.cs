using System.Buffers.Binary;
using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

public class FeatureBitTests
{
    private static byte[] Image(out int cs)
    {
        var s = new MemoryStorage();
        using (var img = Qcow2Image.Create(s, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 4096 }))
        {
            img.Write(0, TestData.Pattern(20_000, 1));
            cs = img.ClusterSize;
        }
        return s.ToArray();
    }

    private static ulong U64(byte[] b, int off) => BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(off));

    private static void SetU64(byte[] b, int off, ulong v) => BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(off), v);

    [Fact]
    public void An_unknown_incompatible_feature_bit_is_refused()
    {
        var b = Image(out _);
        SetU64(b, 72, U64(b, 72) | (1UL << 40));
        var act = () => Qcow2Image.Open(new MemoryStorage(b), new Qcow2OpenOptions { ReadOnly = true });
        act.Should().Throw<Qcow2NotSupportedException>().WithMessage("*incompatible*");
    }

    [Fact]
    public void An_encrypted_image_is_refused_as_not_supported()
    {
        var b = Image(out _);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(32), 2);
        var act = () => Qcow2Image.Open(new MemoryStorage(b), new Qcow2OpenOptions { ReadOnly = true });
        act.Should().Throw<Qcow2NotSupportedException>().WithMessage("*ncrypt*");
    }

    [Fact]
    public void A_corrupt_image_opens_only_read_only()
    {
        var b = Image(out _);
        SetU64(b, 72, U64(b, 72) | 2);
        var act = () => Qcow2Image.Open(new MemoryStorage(b));
        act.Should().Throw<Qcow2FormatException>().WithMessage("*corrupt*");
        using var img = Qcow2Image.Open(new MemoryStorage(b), new Qcow2OpenOptions { ReadOnly = true });
        var data = new byte[20_000];
        img.Read(0, data);
        data.Should().Equal(TestData.Pattern(20_000, 1));
        img.GetInfo().Corrupt.Should().BeTrue();
    }

    [Fact]
    public void A_dirty_image_opens_read_only_as_is_and_read_write_with_rebuilt_refcounts()
    {
        var b = Image(out int cs);
        // wipe the first refblock (stale refcounts) and set the dirty bit
        long rt = (long)U64(b, 48);
        long rb = (long)U64(b, (int)rt);
        Array.Clear(b, (int)rb, cs);
        SetU64(b, 72, U64(b, 72) | 1);
        using (var ro = Qcow2Image.Open(new MemoryStorage(b), new Qcow2OpenOptions { ReadOnly = true }))
        {
            ro.GetInfo().Dirty.Should().BeTrue();
            ro.Check().Corruptions.Should().BeGreaterThan(0);
        }
        var s = new MemoryStorage(b);
        using (var rw = Qcow2Image.Open(s))
        {
            rw.GetInfo().Dirty.Should().BeFalse();
            rw.Check().IsClean.Should().BeTrue();
            rw.Write(50_000, TestData.Pattern(9000, 2));
        }
        (U64(s.ToArray(), 72) & 1).Should().Be(0);
        using var again = Qcow2Image.Open(s, new Qcow2OpenOptions { ReadOnly = true });
        var d = new byte[20_000];
        again.Read(0, d);
        d.Should().Equal(TestData.Pattern(20_000, 1));
        again.Check().IsClean.Should().BeTrue();
    }

    [Fact]
    public void Unknown_autoclear_bits_are_cleared_by_a_read_write_open_only()
    {
        var b = Image(out _);
        SetU64(b, 88, 1UL << 33);
        var s = new MemoryStorage(b);
        using (Qcow2Image.Open(s, new Qcow2OpenOptions { ReadOnly = true })) { }
        U64(s.ToArray(), 88).Should().Be(1UL << 33);
        using (Qcow2Image.Open(s)) { }
        U64(s.ToArray(), 88).Should().Be(0);
    }

    [Fact]
    public void Unknown_header_fields_and_extensions_survive_writes_and_repairs()
    {
        var b = Image(out int cs);
        var h = Header.Parse(b);
        h.Extensions.Add((0x12345678u, [1, 2, 3, 4, 5]));
        h.HeaderLength = 120;
        h.Tail = new byte[15];
        h.Tail[7] = 0x42; // an unknown optional field at 112
        h.Serialize().CopyTo(b, 0);
        var s = new MemoryStorage(b);
        using (var img = Qcow2Image.Open(s))
        {
            img.Write(0, TestData.Pattern(100_000, 3));
            img.Resize(4 << 20);
            img.Check(Qcow2RepairMode.All);
        }
        var after = Header.Parse(s.ToArray());
        after.HeaderLength.Should().Be(120);
        after.Tail[7].Should().Be(0x42);
        after.Extensions.Should().Contain(e => e.Type == 0x12345678u && e.Data.SequenceEqual(new byte[] { 1, 2, 3, 4, 5 }));
    }

    [Fact]
    public void Check_repairs_leaks_and_wrong_copied_flags()
    {
        var b = Image(out int cs);
        var s = new MemoryStorage(b);
        long leakCluster;
        using (var img = Qcow2Image.Open(s))
        {
            img.Check().IsClean.Should().BeTrue();
            leakCluster = s.Length / cs - 1;
        }
        b = s.ToArray();
        // clear COPIED on the first L2 entry and leak the last cluster twice over
        long l1 = (long)U64(b, 40);
        long l2 = (long)(U64(b, (int)l1) & 0x00ff_ffff_ffff_fe00UL);
        SetU64(b, (int)l2, U64(b, (int)l2) & ~(1UL << 63));
        s = new MemoryStorage(b);
        using (var img = Qcow2Image.Open(s))
        {
            var r = img.Check();
            r.Corruptions.Should().Be(1);
            r.ExitCode.Should().Be(2);
            var fixedResult = img.Check(Qcow2RepairMode.All);
            fixedResult.IsClean.Should().BeTrue();
            fixedResult.CorruptionsFixed.Should().Be(1);
        }
        _ = leakCluster;
    }

    [Fact]
    public void A_data_cluster_pointing_at_metadata_is_never_written_over()
    {
        var b = Image(out int cs);
        long l1 = (long)U64(b, 40);
        long l2 = (long)(U64(b, (int)l1) & 0x00ff_ffff_ffff_fe00UL);
        // make guest cluster 0 point at the L1 table itself
        SetU64(b, (int)l2, (1UL << 63) | (ulong)l1);
        var s = new MemoryStorage(b);
        using (var img = Qcow2Image.Open(s))
        {
            img.Invoking(i => i.Write(10, new byte[] { 1, 2, 3 })).Should().Throw<Qcow2FormatException>().WithMessage("*metadata*");
        }
        s.ToArray().AsSpan((int)l1, cs).SequenceEqual(b.AsSpan((int)l1, cs)).Should().BeTrue("the L1 table is untouched");
    }
}
