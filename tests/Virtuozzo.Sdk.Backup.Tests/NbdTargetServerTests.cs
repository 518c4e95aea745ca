using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Backup.Internal;
using Virtuozzo.Sdk.Storage.Qcow2;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Backup.Tests;

/// <summary>
/// The running-VE backup target: an NBD client writing many requests at once (qemu-img, out of order) into a compressed
/// target. What the target stores must be the client's bytes, compressed, and the digest it computes while storing must
/// be the digest of what the file holds — with the target compressing each request on its own thread and starting
/// writeback of the file (past 32 MiB) while it stores.
/// </summary>
public class NbdTargetServerTests
{
    [IntegrationFact("qemu-img")]
    public async Task Out_of_order_parallel_writes_are_stored_compressed_exactly_and_hashed_as_stored()
    {
        using var dir = new TempDirectory();
        const int size = 64 << 20;
        var source = new byte[size];
        new Random(21).NextBytes(source.AsSpan(1 << 20, 40 << 20)); // incompressible: the file passes a writeback step
        var text = "line: the quick brown fox jumps over the lazy dog 12345\n"u8;
        for (var at = 48 << 20; at < 56 << 20; at += text.Length)
            text[..Math.Min(text.Length, (56 << 20) - at)].CopyTo(source.AsSpan(at));
        var raw = dir.File("source.raw");
        File.WriteAllBytes(raw, source);
        var file = dir.File("target.qcow2");
        var target = BackupClient.CreateTarget(file, null, "root.qcow2", BackupCompression.Zstd, size);
        string digest;
        try
        {
            var server = new NbdTargetServer(dir.File("nbd.sock"), target, compress: true, NullLogger.Instance);
            try
            {
                var psi = new ProcessStartInfo("qemu-img") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var a in new[] { "convert", "-n", "-W", "-m", "8", "-f", "raw", "-O", "raw", raw, $"nbd+unix:///?socket={server.SocketPath}" })
                    psi.ArgumentList.Add(a);
                using var process = Process.Start(psi)!;
                var output = await process.StandardError.ReadToEndAsync();
                await process.WaitForExitAsync();
                process.ExitCode.Should().Be(0, output);
                digest = await server.CompleteAsync(CancellationToken.None);
            }
            finally
            {
                await server.DisposeAsync();
            }
            DiskCopier.DigestOfOwnData(target, CancellationToken.None).Should().Be(digest, "the digest taken while storing is the digest of what the file holds");
        }
        finally
        {
            target.Dispose();
        }
        using var image = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
        var back = new byte[size];
        image.Read(0, back);
        back.AsSpan().SequenceEqual(source).Should().BeTrue("the target holds exactly the client's bytes");
        image.GetAllocationMap().Should().Contain(e => e.Kind == Qcow2ExtentKind.Compressed, "the text is stored compressed");
        image.Check().IsClean.Should().BeTrue();
    }
}
