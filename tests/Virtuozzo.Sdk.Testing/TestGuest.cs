using System.Diagnostics;

namespace Virtuozzo.Sdk.Testing;

/// <summary>
/// The small Linux guest the VM tests boot: a Debian cloud kernel and a busybox initramfs with qemu-guest-agent, built
/// by <c>tests/guest/build-guest.sh</c> from Debian packages and cached (under <c>/var/cache/vzsdk-test-guest</c>, or
/// <c>$VZSDK_TEST_GUEST_CACHE</c>) by package versions, so only the first run downloads anything.
/// </summary>
public sealed record TestGuest(string Directory, string KernelPath, string InitrdPath)
{
    /// <summary>The kernel command line the guest expects (serial console, hotplugged memory online).</summary>
    public const string CommandLine = "console=ttyS0 memhp_default_state=online panic=-1";

    /// <summary>The command line for a guest that ignores guest-tools shutdown requests and ACPI power-down.</summary>
    public const string DeafCommandLine = CommandLine + " vzsdk.deaf=1";

    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static TestGuest? _cached;

    /// <summary>Tools the builder needs besides the emulator.</summary>
    public static readonly string[] BuilderTools = ["apt-get", "dpkg", "cpio", "busybox"];

    /// <summary>Builds the guest (or finds it in the cache) and returns its files.</summary>
    public static async Task<TestGuest> GetAsync()
    {
        await Gate.WaitAsync();
        try
        {
            if (_cached is not null)
                return _cached;
            var script = FindScript();
            var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(script);
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            await p.WaitForExitAsync(cts.Token);
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"build-guest.sh failed ({p.ExitCode}): {await stderr}");
            var dir = (await stdout).Trim().Split('\n')[^1].Trim();
            _cached = new TestGuest(dir, Path.Combine(dir, "VMLINUZ"), Path.Combine(dir, "INITRD"));
            return _cached;
        }
        finally
        {
            Gate.Release();
        }
    }

    private static string FindScript()
        => FindInRepository("tests/guest/build-guest.sh") ?? throw new FileNotFoundException("tests/guest/build-guest.sh was not found above " + AppContext.BaseDirectory);

    /// <summary>A file of the repository (<paramref name="relativePath"/> from its root), looked for above the test's directory; null when absent.</summary>
    public static string? FindInRepository(string relativePath)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, relativePath);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }

    /// <summary>
    /// Makes a QCOW2 image holding an ext4 file system with the given files (name → content), with the host's
    /// <c>mkfs.ext4 -d</c> and <c>qemu-img convert</c> (test tooling only).
    /// </summary>
    public static async Task<string> MakeExt4DiskAsync(string directory, string name, long sizeMiB, IReadOnlyDictionary<string, string> files)
    {
        var content = Path.Combine(directory, name + ".content");
        System.IO.Directory.CreateDirectory(content);
        foreach (var (file, text) in files)
            await File.WriteAllTextAsync(Path.Combine(content, file), text);
        return await MakeExt4DiskFromDirectoryAsync(directory, name, sizeMiB, content);
    }

    /// <summary>
    /// Makes a QCOW2 image holding an ext4 file system with a copy of <paramref name="content"/> (files keep their modes,
    /// so executables stay executable in the guest's <c>/mnt/data</c>).
    /// </summary>
    public static async Task<string> MakeExt4DiskFromDirectoryAsync(string directory, string name, long sizeMiB, string content)
    {
        var raw = Path.Combine(directory, name + ".raw");
        await using (var fs = File.Create(raw))
            fs.SetLength(sizeMiB * 1024 * 1024);
        await RunAsync("mkfs.ext4", "-q", "-F", "-d", content, raw);
        var qcow = Path.Combine(directory, name + ".qcow2");
        await RunAsync("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow);
        File.Delete(raw);
        return qcow;
    }

    /// <summary>Runs a program and fails with its standard error when it fails.</summary>
    public static async Task<string> RunAsync(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed ({p.ExitCode}): {await stderr}");
        return await stdout;
    }
}
