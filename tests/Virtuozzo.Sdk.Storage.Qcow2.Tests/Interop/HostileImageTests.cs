using System.Diagnostics;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

/// <summary>The crafted images of issue 15 (Hardening, Storage.Qcow2), with qemu-img check as the oracle.</summary>
[Collection(AllocationMeasured.Name)]
public class HostileImageTests
{
    private static Qcow2CheckResult CheckReadOnly(string file)
    {
        using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true, NoBacking = true });
        return img.Check();
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Checking_an_L2_table_of_random_entries_stays_small_and_fast_and_agrees_with_qemu_img()
    {
        using var dir = new TempDirectory();
        var file = HostileShapes.RandomL2(dir.Path, 32_768);
        int qemu = Qemu.Img("check", file).ExitCode;

        GC.Collect();
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var sw = Stopwatch.StartNew();
        var r = CheckReadOnly(file);
        sw.Stop();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;

        r.ExitCode.Should().Be(qemu, "the verdict is qemu-img's");
        allocated.Should().BeLessThan(64L << 20, "memory follows the image's metadata, not what bad entries claim");
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(5), "qemu-img takes a fraction of a second");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Mapping_converting_and_repairing_an_L2_table_of_random_entries_stay_small_and_fast()
    {
        using var dir = new TempDirectory();
        var file = HostileShapes.RandomL2(dir.Path, 32_768);
        void Bounded(string what, Action act)
        {
            GC.Collect();
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var sw = Stopwatch.StartNew();
            try
            {
                act();
            }
            catch (Qcow2FormatException)
            {
                // refusing the image is fine; only the bounds matter here
            }
            sw.Stop();
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            allocated.Should().BeLessThan(256L << 20, $"{what} allocates in proportion to the metadata");
            sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(20), $"{what} takes time in proportion to the metadata");
        }
        Bounded("map", () =>
        {
            using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
            img.GetAllocationMap();
        });
        Bounded("convert", () => Qcow2Converter.Convert(file, Path.Combine(dir.Path, "out.qcow2")));
        Bounded("repairing leaks", () =>
        {
            using var img = Qcow2Image.Open(file);
            img.Check(Qcow2RepairMode.Leaks).IsClean.Should().BeFalse("random entries are corruptions, not leaks");
        });
        Bounded("repair", () =>
        {
            using var img = Qcow2Image.Open(file);
            img.Check(Qcow2RepairMode.All).IsClean.Should().BeFalse("random entries cannot all be repaired");
        });
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Checking_grows_about_linearly_with_the_number_of_bad_entries()
    {
        using var dir = new TempDirectory();
        long Allocated(int entries)
        {
            var file = HostileShapes.RandomL2(dir.Path, entries, seed: entries, name: $"r{entries}.qcow2");
            GC.Collect();
            long before = GC.GetTotalAllocatedBytes(precise: true);
            CheckReadOnly(file);
            return GC.GetTotalAllocatedBytes(precise: true) - before;
        }
        long small = Allocated(4096);
        long large = Allocated(65_536);
        large.Should().BeLessThan(Math.Max(small, 1 << 20) * 32, "sixteen times the bad entries may cost at most about sixteen times the memory");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void A_truncated_image_is_not_called_clean_and_does_not_convert_silently()
    {
        using var dir = new TempDirectory();
        var file = HostileShapes.Truncated(dir.Path);
        Qemu.Img("check", file).ExitCode.Should().Be(2, "qemu-img reports references past the end of the file");

        var r = CheckReadOnly(file);
        r.ExitCode.Should().Be(2);
        r.Corruptions.Should().BeGreaterThan(0);
        r.Messages.Should().Contain(m => m.Contains("exceeding the end of the file"));

        var act = () => Qcow2Converter.Convert(file, Path.Combine(dir.Path, "out.raw"), new Qcow2ConvertOptions { OutputFormat = "raw" });
        act.Should().Throw<Qcow2FormatException>().WithMessage("*0x1*past the end*");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void L2_entries_with_reserved_bits_set_are_corruptions_as_qemu_img_says()
    {
        using var dir = new TempDirectory();
        foreach (var bits in new[] { 0x2UL, 0x100UL, 0x0100_0000_0000_0000UL, 0x2000_0000_0000_0000UL })
        {
            var file = HostileShapes.ReservedL2Bits(dir.Path, bits, $"reserved-{bits:x}.qcow2");
            Qemu.Img("check", file).ExitCode.Should().Be(2);
            var r = CheckReadOnly(file);
            r.ExitCode.Should().Be(2, $"reserved bits 0x{bits:x} are a corruption");
            r.Messages.Should().Contain(m => m.Contains("reserved bits set"));
        }
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void An_L1_entry_pointing_at_the_header_is_a_corruption_and_repair_does_not_call_it_clean()
    {
        using var dir = new TempDirectory();
        var file = HostileShapes.L1PointsAtHeader(dir.Path);
        int qemu = Qemu.Img("check", file).ExitCode;
        qemu.Should().Be(2);
        CheckReadOnly(file).ExitCode.Should().Be(qemu);

        Qcow2CheckResult repaired;
        using (var img = Qcow2Image.Open(file, new Qcow2OpenOptions { NoBacking = true }))
        {
            try
            {
                repaired = img.Check(Qcow2RepairMode.All);
            }
            catch (Qcow2FormatException)
            {
                // refusing to repair is honest too
                repaired = new Qcow2CheckResult { CheckErrors = 1 };
            }
        }
        int after = Qemu.Img("check", file).ExitCode;
        if (after != 0)
            repaired.IsClean.Should().BeFalse($"qemu-img still finds the image unclean (exit {after})");
        CheckReadOnly(file).ExitCode.Should().Be(after, "after the repair our verdict is still qemu-img's");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void A_refcount_table_entry_with_bit_63_set_gives_qemu_img_s_exit_class_and_a_clear_message()
    {
        using var dir = new TempDirectory();
        var file = HostileShapes.ReftableTopBit(dir.Path);
        int qemu = Qemu.Img("check", file).ExitCode;

        var r = CheckReadOnly(file);
        r.ExitCode.Should().Be(qemu);
        r.Messages.Should().NotContain(m => m.Contains("Parameter"), "internal exceptions are not check results");
        r.Messages.Should().Contain(m => m.Contains("refcount", StringComparison.OrdinalIgnoreCase));
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Writing_and_repairing_with_a_refcount_table_entry_with_bit_63_set_fail_only_with_the_format_exception()
    {
        using var dir = new TempDirectory();
        var file = HostileShapes.ReftableTopBit(dir.Path);
        var act = () =>
        {
            using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { NoBacking = true });
            img.Write(1 << 20, new byte[65536]);
            img.Check(Qcow2RepairMode.Leaks);
            img.Check(Qcow2RepairMode.All);
        };
        act.Should().Throw<Qcow2FormatException>();
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void An_image_whose_L1_table_overlaps_its_snapshot_table_is_not_opened_for_writing()
    {
        using var dir = new TempDirectory();
        var file = Path.Combine(dir.Path, "overlap.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", file, "1M").Ok();
        Qemu.Io(file, "write -P 1 0 64k").Ok();
        Qemu.Img("snapshot", "-c", "s1", file).Ok();
        // the header's L1 table pointer names the snapshot table (found by the fuzz test)
        HostileShapes.Poke(file, 40, HostileShapes.U64(file, 64));
        var before = File.ReadAllBytes(file);

        var act = () =>
        {
            using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { NoBacking = true });
            img.Write(0, new byte[8192]);
            img.Write(512 << 10, new byte[8192]);
        };
        act.Should().Throw<Qcow2FormatException>().WithMessage("*overlap*");
        File.ReadAllBytes(file).Should().Equal(before, "nothing was written over the snapshot table");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Millions_of_bad_entries_do_not_cost_an_allocation_each()
    {
        using var dir = new TempDirectory();
        var file = Path.Combine(dir.Path, "repeated.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", file, "128G").Ok();
        Qemu.Io(file, "write -P 1 0 64k").Ok();
        long l1 = HostileShapes.L1Offset(file);
        ulong first = HostileShapes.U64(file, l1);
        long l2 = (long)(first & HostileShapes.OffsetMask);
        using (var fs = new FileStream(file, FileMode.Open))
        {
            var b = new byte[8];
            // 256 L1 entries name one L2 table whose 8192 entries all have reserved bits set: 2 million corruptions
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(b, first);
            for (int i = 0; i < 256; i++)
            {
                fs.Position = l1 + i * 8L;
                fs.Write(b);
            }
            var table = new byte[65536];
            for (int i = 0; i < 8192; i++)
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(i * 8), 0x0100_0000_0000_0000UL);
            fs.Position = l2;
            fs.Write(table);
        }

        GC.Collect();
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var r = CheckReadOnly(file);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        r.ExitCode.Should().Be(2);
        r.Corruptions.Should().BeGreaterThan(2_000_000);
        r.Messages.Should().HaveCountLessThanOrEqualTo(10_000);
        allocated.Should().BeLessThan(32L << 20, "messages past the kept ones are not even formatted");
    }
}

/// <summary>
/// The allocation bounds read the process-wide allocation counter; tests of other classes running in parallel
/// would add their own allocations to it. Classes in this collection run alone, after the parallel ones.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationMeasured
{
    public const string Name = "allocation-measured";
}
