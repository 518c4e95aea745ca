using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Hosts;

/// <summary>The machine the SDK runs on.</summary>
public sealed class LocalHost : IVirtuozzoHost
{
    private readonly CommandExecutor _executor;

    /// <summary>Creates the local host.</summary>
    /// <param name="logger">Receives each command line (redacted) and its exit code at Debug level.</param>
    public LocalHost(ILogger<LocalHost>? logger = null)
        => _executor = new CommandExecutor(logger ?? (ILogger)NullLogger.Instance);

    /// <inheritdoc />
    public string Name => "localhost";

    /// <inheritdoc />
    public bool IsLocal => true;

    /// <inheritdoc />
    public Task<CommandResult> ExecuteAsync(Command command, CancellationToken cancellationToken = default)
        => _executor.ExecuteAsync(command, cancellationToken);

    /// <inheritdoc />
    public Task<BufferedCommandResult> ExecuteBufferedAsync(Command command, CancellationToken cancellationToken = default)
        => _executor.ExecuteBufferedAsync(command, cancellationToken);

    /// <inheritdoc />
    public async Task<byte[]> ReadFileAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        // Read to end-of-file rather than trusting the size: /proc and /sys files report sizes they do not have.
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 4096, FileOptions.Asynchronous);
        await using (fs.ConfigureAwait(false))
        {
            using var ms = new MemoryStream();
            await fs.CopyToAsync(ms, cancellationToken).ConfigureAwait(false);
            return ms.ToArray();
        }
    }

    /// <inheritdoc />
    public Task WriteFileAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return AtomicFile.WriteAsync(path, content, cancellationToken);
    }

    /// <inheritdoc />
    public Task<bool> FileExistsAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Task.FromResult(File.Exists(path) || Directory.Exists(path));
    }

    /// <inheritdoc />
    public Task DeleteFileAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        File.Delete(path);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task<HostCapabilities> GetCapabilitiesAsync(CapabilityProbeOptions? options = null, CancellationToken cancellationToken = default)
        => HostProber.ProbeAsync(this, options ?? new CapabilityProbeOptions(), cancellationToken);
}
