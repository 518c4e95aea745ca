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
    public Task<byte[]> ReadFileAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return File.ReadAllBytesAsync(path, cancellationToken);
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
