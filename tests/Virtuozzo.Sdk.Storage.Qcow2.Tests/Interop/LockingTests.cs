using System.Diagnostics;
using System.Runtime.InteropServices;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class LockingTests
{
    [IntegrationFact("qemu-img", "qemu-io")]
    public void The_library_and_qemu_refuse_to_write_an_image_the_other_has_open_for_writing()
    {
        using var dir = new TempDirectory();
        var file = dir.File("l.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "1M").Ok();

        // we hold it read-write: qemu-img info without -U fails, with -U works; qemu-io cannot write
        using (var img = Qcow2Image.Open(file))
        {
            Qemu.Img("info", file).ExitCode.Should().NotBe(0);
            Qemu.Img("info", "-U", file).ExitCode.Should().Be(0);
            Qemu.Io(file, "write 0 4k").ExitCode.Should().NotBe(0);
            var second = () => Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
            second.Should().Throw<Qcow2LockedException>();
        }

        // qemu holds it read-write: we cannot open it, except read-only with force-share
        var psi = new ProcessStartInfo("qemu-io") { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add(file);
        using var qemu = Process.Start(psi)!;
        try
        {
            qemu.StandardInput.WriteLine("write -P 0x31 0 4k");
            qemu.StandardInput.Flush();
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromSeconds(10))
            {
                var line = qemu.StandardOutput.ReadLine();
                if (line is null || line.Contains("wrote"))
                    break;
            }
            var rw = () => Qcow2Image.Open(file);
            rw.Should().Throw<Qcow2LockedException>();
            var ro = () => Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
            ro.Should().Throw<Qcow2LockedException>();
            var create = () => Qcow2Image.Create(file, new Qcow2CreateOptions { Size = 1 << 20 });
            create.Should().Throw<Qcow2LockedException>("creating over an image in use would destroy it");
            using var shared = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true, ForceShare = true });
            var b = new byte[4096];
            shared.Read(0, b);
            b.Should().OnlyContain(x => x == 0x31);
        }
        finally
        {
            qemu.StandardInput.WriteLine("quit");
            qemu.StandardInput.Close();
            if (!qemu.WaitForExit(10_000))
                qemu.Kill();
        }
        using var after = Qcow2Image.Open(file);
        after.Write(0, new byte[1]);
    }

    [DllImport("libc", EntryPoint = "dup", SetLastError = true)]
    private static extern int Dup(int fd);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int fd);

    [IntegrationFact("qemu-img")]
    public void Closing_an_image_releases_its_locks_even_while_a_forked_child_still_shares_the_descriptor()
    {
        using var dir = new TempDirectory();
        var file = dir.File("f.qcow2");
        Qemu.Img("create", "-f", "qcow2", file, "1M").Ok();
        int copy;
        using (var img = Qcow2Image.Open(file))
        {
            // what a child forked by another thread holds until it execs: the same open file description
            copy = Dup((int)img.FileHandle!.DangerousGetHandle());
            copy.Should().BeGreaterThan(0);
        }
        try
        {
            var r = Qemu.Img("info", file);
            r.ExitCode.Should().Be(0, "the image is closed, so QEMU must get its locks: {0}", r.StdErr);
        }
        finally
        {
            Close(copy);
        }
    }
}
