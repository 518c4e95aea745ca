using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Vm.Internal;

/// <summary>What the VM drivers of the runtimes that keep QCOW2 disks and speak to the guest agent do the same way.</summary>
internal static class VmShared
{
    /// <summary>How long a program in a guest may run when <see cref="VeExecOptions.Timeout"/> does not say.</summary>
    public static readonly TimeSpan DefaultExecTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The most standard input the guest tools carry (they take it in one message).</summary>
    public const int MaxExecInputBytes = 16 * 1024 * 1024;

    /// <summary>
    /// Makes a VM's disk <paramref name="name"/> in <paramref name="directory"/>: a copy of a source image (checked, and
    /// grown to the size asked) or a new empty QCOW2 image.
    /// </summary>
    public static async Task<VmDiskConfig> MakeDiskAsync(IDiskImages disks, string directory, string name, VmDiskOptions d, CancellationToken ct)
    {
        var file = name + ".qcow2";
        var path = Path.Combine(directory, file);
        if (d.SourceImagePath is { } source)
        {
            if (!File.Exists(source))
                throw new ArgumentException($"The disk image '{source}' does not exist.", nameof(d));
            Runtime.Local.LocalVmDriver.RefuseUnsafeImage(source);
            File.Copy(source, path);
            var size = await disks.GetVirtualSizeAsync(path, ct).ConfigureAwait(false);
            if (d.Size is { } wanted && wanted.Bytes > size)
            {
                await disks.ResizeAsync(path, wanted.Bytes, ct).ConfigureAwait(false);
                size = wanted.Bytes;
            }
            return new VmDiskConfig(name, file, size);
        }
        var bytes = d.Size?.Bytes ?? throw new ArgumentException("A new disk needs a size.", nameof(d));
        if (bytes <= 0 || bytes % ByteSize.MiB != 0)
            throw new ArgumentException($"A disk's size must be a positive whole number of MiB (got {bytes} bytes).", nameof(d));
        await disks.CreateAsync(path, bytes, null, ct).ConfigureAwait(false);
        return new VmDiskConfig(name, file, bytes);
    }

    /// <summary>Checks a settings change before anything is read or locked.</summary>
    public static void ValidateSet(VmSetOptions options, bool cdromMustExistHere = true)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.MemorySize is { } m)
            VmConfigRules.ValidateMemory(m.Bytes, nameof(options));
        if (options.MemoryGuaranteePercent is { } g)
            VmConfigRules.ValidateGuarantee(g, nameof(options));
        if (options.Cpus is < 1 or > VmConfigRules.MaxVcpus)
            throw new ArgumentOutOfRangeException(nameof(options), options.Cpus, $"Cpus must be between 1 and {VmConfigRules.MaxVcpus}.");
        if (options.CpuMask is { Length: > 0 } mask)
            VmConfigRules.ParseCpuList(mask);
        if (options.CpuLimitPercent is { } lim and not 0)
            VmConfigRules.ValidateCpuLimit(lim, nameof(options));
        if (options.CdromImagePath is { Length: > 0 } iso && cdromMustExistHere && !File.Exists(iso))
            throw new ArgumentException($"The file '{iso}' does not exist.", nameof(options));
    }

    /// <summary>The program and arguments a guest runs for <paramref name="options"/> (the guest tools have no working directory of their own).</summary>
    public static IReadOnlyList<string> GuestArgv(VeExecOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        IReadOnlyList<string> argv = options.EffectiveCommand;
        if (options.WorkingDirectory is { } cwd)
            argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", cwd, .. argv];
        return argv;
    }

    /// <summary>Runs a program in the guest through its agent, with the options' input, output streams and timeout.</summary>
    public static async Task<VeExecResult> ExecAsync(IGuestAgentChannel agent, IReadOnlyList<string> argv, VeExecOptions options, CancellationToken ct)
    {
        var input = options.StandardInput is null ? null : await ReadInputAsync(options.StandardInput, ct).ConfigureAwait(false);
        var r = await agent.ExecAsync(argv[0], argv.Skip(1).ToList(), options.Environment, input, options.Timeout ?? DefaultExecTimeout, ct).ConfigureAwait(false);
        if (options.StandardOutput is not null)
            await options.StandardOutput.WriteAsync(r.StandardOutput, ct).ConfigureAwait(false);
        if (options.StandardError is not null)
            await options.StandardError.WriteAsync(r.StandardError, ct).ConfigureAwait(false);
        return new VeExecResult(r.ExitCode,
            options.StandardOutput is null ? System.Text.Encoding.UTF8.GetString(r.StandardOutput) : string.Empty,
            options.StandardError is null ? System.Text.Encoding.UTF8.GetString(r.StandardError) : string.Empty)
        { OutputTruncated = r.OutputTruncated };
    }

    private static async Task<byte[]> ReadInputAsync(Stream input, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int n;
        while ((n = await input.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + n > MaxExecInputBytes)
                throw new ArgumentException($"A VM's guest tools take at most {MaxExecInputBytes / (1024 * 1024)} MiB of standard input.", nameof(input));
            buffer.Write(chunk, 0, n);
        }
        return buffer.ToArray();
    }
}
