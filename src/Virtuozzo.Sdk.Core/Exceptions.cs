namespace Virtuozzo.Sdk.Core;

/// <summary>
/// The root of every error the SDK raises for a failed operation (caller mistakes raise the BCL's
/// <see cref="ArgumentException"/> family instead). Catch this to handle any SDK failure.
/// </summary>
public class VirtuozzoException : Exception
{
    /// <summary>Creates the exception.</summary>
    public VirtuozzoException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public VirtuozzoException(string message, Exception? innerException) : base(message, innerException) { }

    /// <summary>
    /// True when retrying the same operation later may succeed (a lock held by another operation, a host
    /// that did not answer), false when the same call will fail the same way.
    /// </summary>
    public virtual bool IsTransient => false;
}

/// <summary>The container, VM, backup or other object named in the call does not exist.</summary>
public class NotFoundException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public NotFoundException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public NotFoundException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The object exists but its state does not allow the operation (for example starting a running container).</summary>
public class InvalidStateException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public InvalidStateException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public InvalidStateException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>A name or id is already taken.</summary>
public class AlreadyExistsException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public AlreadyExistsException(string message) : base(message) { }
}

/// <summary>
/// The host cannot provide what was asked: a memory guarantee the host's RAM cannot cover given the
/// guarantees already admitted, disk space, a free slot.
/// </summary>
public class InsufficientResourcesException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public InsufficientResourcesException(string message, long requestedBytes = 0, long availableBytes = 0) : base(message)
    {
        RequestedBytes = requestedBytes;
        AvailableBytes = availableBytes;
    }

    /// <summary>The amount asked for, in bytes (0 when not a byte quantity).</summary>
    public long RequestedBytes { get; }

    /// <summary>The amount that was available, in bytes (0 when not a byte quantity).</summary>
    public long AvailableBytes { get; }
}

/// <summary>A program the SDK ran failed. Carries the (redacted) command line, exit code and the tail of standard error.</summary>
public class CommandFailedException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public CommandFailedException(string message, string commandLine, int exitCode, string standardErrorTail, Exception? innerException = null)
        : base(message, innerException)
    {
        CommandLine = commandLine;
        ExitCode = exitCode;
        StandardErrorTail = standardErrorTail;
    }

    /// <summary>The command line, with secrets replaced by <c>***</c>.</summary>
    public string CommandLine { get; }

    /// <summary>The exit code; -1 when the process did not exit by itself (killed after a timeout).</summary>
    public int ExitCode { get; }

    /// <summary>The last lines of the program's standard error, redacted.</summary>
    public string StandardErrorTail { get; }
}

/// <summary>A program the SDK ran did not finish within its timeout and was terminated (with its whole process tree).</summary>
public class CommandTimeoutException : CommandFailedException
{
    /// <summary>Creates the exception.</summary>
    public CommandTimeoutException(string message, string commandLine, TimeSpan timeout, string standardErrorTail)
        : base(message, commandLine, -1, standardErrorTail) => Timeout = timeout;

    /// <summary>The timeout that expired.</summary>
    public TimeSpan Timeout { get; }

    /// <inheritdoc />
    public override bool IsTransient => true;
}

/// <summary>A program the SDK needs is not installed on the host.</summary>
public class ToolNotFoundException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public ToolNotFoundException(string tool, string message, Exception? innerException = null) : base(message, innerException) => Tool = tool;

    /// <summary>The program's name or path.</summary>
    public string Tool { get; }
}

/// <summary>The host cannot do this at all (kernel feature, accelerator, cgroup layout, CRIU).</summary>
public class UnsupportedOnHostException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public UnsupportedOnHostException(string message, Exception? innerException = null) : base(message, innerException) { }
}

/// <summary>The SDK's data root or a state file in it is unusable (missing permissions, corrupt, written by a newer version).</summary>
public class StateStoreException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public StateStoreException(string message, Exception? innerException = null) : base(message, innerException) { }
}

/// <summary>A lock on a VE or on the host could not be taken in time because another operation holds it.</summary>
public class LockTimeoutException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public LockTimeoutException(string message) : base(message) { }

    /// <inheritdoc />
    public override bool IsTransient => true;
}

/// <summary>A remote host could not be reached or the SSH connection failed.</summary>
public class HostConnectionException : VirtuozzoException
{
    /// <summary>Creates the exception.</summary>
    public HostConnectionException(string message, Exception? innerException = null) : base(message, innerException) { }

    /// <inheritdoc />
    public override bool IsTransient => true;
}

/// <summary>
/// The remote host's SSH key is unknown or does not match the known-hosts file. Not transient: add the key to the
/// known-hosts file, or opt in to accepting new keys.
/// </summary>
public class HostKeyVerificationException : HostConnectionException
{
    /// <summary>Creates the exception.</summary>
    public HostKeyVerificationException(string message) : base(message) { }

    /// <inheritdoc />
    public override bool IsTransient => false;
}
