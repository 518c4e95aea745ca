using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class DirtyImageTests
{
    [IntegrationFact("qemu-img", "qemu-io")]
    public void An_image_left_dirty_by_a_killed_qemu_reads_as_is_and_a_read_write_open_rebuilds_its_refcounts()
    {
        using var dir = new TempDirectory();
        var file = dir.File("l.qcow2");
        Qemu.Img("create", "-f", "qcow2", "-o", "lazy_refcounts=on", file, "4M").Ok();
        Qemu.Io(file, "write -P 0x41 0 1M", "sigraise 9");
        Qemu.Json("info", "--output=json", "-U", file).GetProperty("dirty-flag").GetBoolean().Should().BeTrue();
        Qemu.Img("check", file).ExitCode.Should().Be(2, "qemu-img check sees the stale refcounts");

        using (var ro = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true }))
        {
            ro.GetInfo().Dirty.Should().BeTrue();
            var b = new byte[1 << 20];
            ro.Read(0, b);
            b.Should().OnlyContain(x => x == 0x41);
        }
        using (var rw = Qcow2Image.Open(file))
        {
            rw.GetInfo().Dirty.Should().BeFalse();
            rw.Write(2 << 20, new byte[4096]);
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0);
        Qemu.Json("info", "--output=json", file).GetProperty("dirty-flag").GetBoolean().Should().BeFalse();
        Qemu.Io(file, "read -P 0x41 0 1M").StdOut.Should().NotContain("verification failed");
    }

    [IntegrationFact("qemu-img", "qemu-io")]
    public void Repairing_leaks_gives_an_image_qemu_img_check_calls_clean()
    {
        using var dir = new TempDirectory();
        var file = dir.File("k.qcow2");
        Qemu.Img("create", "-f", "qcow2", "-o", "cluster_size=4096", file, "4M").Ok();
        Qemu.Io(file, "write -P 1 0 64k", "write -P 2 1M 64k", "discard 0 64k").Ok();
        // leak: a refcount on a cluster nothing references (the header cluster count is raised to 2 in place)
        using (var fs = new FileStream(file, FileMode.Open))
        {
            var b = new byte[8];
            fs.Position = 48;
            fs.ReadExactly(b);
            long rt = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(b);
            fs.Position = rt;
            fs.ReadExactly(b);
            long rb = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(b);
            fs.Position = rb;
            fs.Write(new byte[] { 0, 2 });
        }
        Qemu.Img("check", file).ExitCode.Should().Be(3);
        using (var img = Qcow2Image.Open(file))
        {
            var before = img.Check();
            before.Leaks.Should().Be(1);
            before.ExitCode.Should().Be(3);
            var after = img.Check(Qcow2RepairMode.Leaks);
            after.LeaksFixed.Should().Be(1);
            after.IsClean.Should().BeTrue();
        }
        Qemu.Img("check", file).ExitCode.Should().Be(0);
    }
}
