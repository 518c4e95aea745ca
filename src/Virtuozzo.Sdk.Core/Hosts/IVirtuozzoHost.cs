using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Core.Hosts;

/// <summary>
/// A machine the SDK manages: the local machine (<see cref="LocalHost"/>) or a remote one over SSH
/// (<see cref="SshHost"/>). Everything the SDK does on a host goes through this abstraction: running
/// programs, reading and writing files, and reporting what the host can do.
/// </summary>
public interface IVirtuozzoHost
{
    /// <summary>A name for messages and logs (<c>localhost</c>, or <c>user@host:port</c>).</summary>
    string Name { get; }

    /// <summary>True when this is the machine the SDK runs on.</summary>
    bool IsLocal { get; }

    /// <summary>Runs a command to its end, streaming output to the command's pipes.</summary>
    /// <exception cref="CommandFailedException">The exit code was not zero and the command validates it.</exception>
    /// <exception cref="CommandTimeoutException">The command's timeout expired; its process tree was terminated.</exception>
    /// <exception cref="ToolNotFoundException">The program is not installed.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the process tree was terminated.</exception>
    Task<CommandResult> ExecuteAsync(Command command, CancellationToken cancellationToken = default);

    /// <summary>Runs a command to its end and returns its output as text.</summary>
    /// <inheritdoc cref="ExecuteAsync" path="/exception"/>
    Task<BufferedCommandResult> ExecuteBufferedAsync(Command command, CancellationToken cancellationToken = default);

    /// <summary>Reads a whole file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    Task<byte[]> ReadFileAsync(string path, CancellationToken cancellationToken = default);

    /// <summary>Writes a whole file atomically: readers see the old content or the new, never a mix.</summary>
    Task WriteFileAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken = default);

    /// <summary>True when a file (or directory) exists at the path.</summary>
    Task<bool> FileExistsAsync(string path, CancellationToken cancellationToken = default);

    /// <summary>Deletes a file; nothing happens when it does not exist.</summary>
    Task DeleteFileAsync(string path, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reports what the host is and can do: kernel, cgroup layout, RAM, CPUs, tools and their versions,
    /// whether CRIU and KVM are usable. KVM is probed by booting a tiny guest (cached per boot).
    /// </summary>
    /// <remarks>The equivalent of <c>prlsrvctl info</c> and <c>vzsdk host info</c>.</remarks>
    Task<HostCapabilities> GetCapabilitiesAsync(CapabilityProbeOptions? options = null, CancellationToken cancellationToken = default);
}
