using System.Diagnostics;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

public class ProcessKillTests
{
    [IntegrationFact("qemu-img", "qemu-io")]
    public void Killing_a_writer_process_at_random_moments_leaves_images_qemu_img_check_accepts()
    {
        using var dir = new TempDirectory();
        var host = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        var assembly = typeof(ProcessKillTests).Assembly.Location;
        var rnd = new Random(11);
        for (int round = 0; round < 8; round++)
        {
            var file = dir.File($"kill{round}.qcow2");
            var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("exec");
            psi.ArgumentList.Add(assembly);
            psi.ArgumentList.Add("crash-writer");
            psi.ArgumentList.Add(file);
            psi.ArgumentList.Add(round.ToString(System.Globalization.CultureInfo.InvariantCulture));
            using var writer = Process.Start(psi)!;
            try
            {
                var ready = writer.StandardOutput.ReadLineAsync();
                ready.Wait(TimeSpan.FromSeconds(60)).Should().BeTrue("the writer starts");
                ready.Result.Should().Be("ready", writer.HasExited ? writer.StandardError.ReadToEnd() : "");
                Thread.Sleep(rnd.Next(20, 600));
                writer.HasExited.Should().BeFalse("the writer runs until it is killed");
            }
            finally
            {
                writer.Kill();
                writer.WaitForExit();
            }
            bool dirty = Qemu.Json("info", "--output=json", "-U", file).GetProperty("dirty-flag").GetBoolean();
            if (dirty)
            {
                // killed inside a snapshot operation: the next read-write open repairs it
                using (Qcow2Image.Open(file)) { }
            }
            var check = Qemu.Img("check", file);
            check.ExitCode.Should().BeOneOf([0, 3], $"round {round}: a killed writer leaves at most leaks:\n{check.StdOut}{check.StdErr}");
            using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
            img.Check().Corruptions.Should().Be(0);
            TestData.ReadAll(img).Length.Should().Be(8 << 20);
        }
    }
}
