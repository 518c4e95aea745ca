using System.Diagnostics;
using System.Text.Json;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

/// <summary>Runs qemu-img / qemu-io, the oracle.</summary>
internal static class Qemu
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr)
    {
        public Result Ok()
        {
            ExitCode.Should().Be(0, $"the command should succeed; stderr: {StdErr}; stdout: {StdOut}");
            return this;
        }
    }

    public static Result Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(true);
            throw new TimeoutException($"{tool} {string.Join(' ', args)} timed out");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    public static Result Img(params string[] args) => Run("qemu-img", args);

    public static Result Io(string file, params string[] commands)
    {
        var args = new List<string>();
        foreach (var c in commands)
        {
            args.Add("-c");
            args.Add(c);
        }
        args.Add(file);
        return Run("qemu-io", [.. args]);
    }

    public static byte[] ToRaw(string image, string dir)
    {
        var raw = Path.Combine(dir, $"raw-{Guid.NewGuid():N}.raw");
        Img("convert", "-U", "-O", "raw", image, raw).Ok();
        var bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    public static JsonElement CheckJson(string image, out int exitCode)
    {
        var r = Img("check", "--output=json", image);
        exitCode = r.ExitCode;
        return JsonDocument.Parse(r.StdOut).RootElement.Clone();
    }

    public static JsonElement Json(params string[] args) => JsonDocument.Parse(Img(args).Ok().StdOut).RootElement.Clone();
}
