using System.Runtime.InteropServices;
using Virtuozzo.Sdk.Core.Internal;

namespace Virtuozzo.Sdk.Core.State;

/// <summary>
/// An exclusive advisory lock (<c>flock</c>) on a lock file: held across processes and across threads of one
/// process (each acquisition opens its own file description), released on dispose or when the process dies.
/// </summary>
internal sealed class FileLock : IDisposable
{
    private int _fd;

    private FileLock(int fd, string path)
    {
        _fd = fd;
        Path = path;
    }

    /// <summary>The lock file.</summary>
    public string Path { get; }

    /// <summary>Waits for the lock, polling without blocking a thread, up to <paramref name="timeout"/>.</summary>
    /// <exception cref="LockTimeoutException">Another operation held the lock for the whole timeout.</exception>
    public static async Task<FileLock> AcquireAsync(string path, string what, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var fd = Native.Open(path, Native.O_RDWR | Native.O_CREAT | Native.O_CLOEXEC, Convert.ToInt32("600", 8));
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new StateStoreException($"Cannot open the lock file '{path}' for {what}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}). Check that the SDK's data root is writable.");
        }
        var deadline = DateTime.UtcNow + timeout;
        var delay = 5;
        try
        {
            while (true)
            {
                if (Native.Flock(fd, Native.LOCK_EX | Native.LOCK_NB) == 0)
                    return new FileLock(fd, path);
                var errno = Marshal.GetLastPInvokeError();
                if (errno != Native.EWOULDBLOCK && errno != Native.EINTR)
                    throw new StateStoreException($"Cannot lock '{path}' for {what}: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");
                if (DateTime.UtcNow >= deadline)
                    throw new LockTimeoutException($"Timed out after {timeout.TotalSeconds:0.#} s waiting for {what}: another operation holds it. Retry when it has finished.");
                await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
                delay = Math.Min(delay * 2, 100);
            }
        }
        catch
        {
            _ = Native.Close(fd);
            throw;
        }
    }

    /// <summary>True when an operation (in any process) holds the lock at <paramref name="path"/> right now; false when it is free or missing.</summary>
    public static bool IsHeld(string path)
    {
        var fd = Native.Open(path, Native.O_RDONLY | Native.O_CLOEXEC, 0);
        if (fd < 0)
            return false;
        try
        {
            // A shared lock is refused only while someone holds the exclusive one; closing the descriptor drops ours.
            return Native.Flock(fd, Native.LOCK_SH | Native.LOCK_NB) != 0 && Marshal.GetLastPInvokeError() == Native.EWOULDBLOCK;
        }
        finally
        {
            _ = Native.Close(fd);
        }
    }

    /// <summary>Releases the lock.</summary>
    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
            _ = Native.Close(fd); // closing the last descriptor releases the flock
    }
}
