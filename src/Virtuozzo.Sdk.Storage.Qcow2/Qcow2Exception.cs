namespace Virtuozzo.Sdk.Storage.Qcow2;

/// <summary>The root of every error this package raises about an image (as opposed to a caller mistake, which is a BCL argument exception).</summary>
public class Qcow2Exception : IOException
{
    /// <summary>Creates the exception.</summary>
    public Qcow2Exception() { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What failed and what to do about it.</param>
    public Qcow2Exception(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What failed and what to do about it.</param>
    /// <param name="innerException">The cause.</param>
    public Qcow2Exception(string message, Exception? innerException) : base(message, innerException) { }

    /// <summary>The image file the error is about, when known.</summary>
    public string? ImagePath { get; init; }
}

/// <summary>The image is corrupt, hostile, or not a QCOW2 image at all. Every size and offset read from an image is bounded, so this is the only type a bad image raises.</summary>
public class Qcow2FormatException : Qcow2Exception
{
    /// <summary>Creates the exception.</summary>
    public Qcow2FormatException() { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What is wrong with the image.</param>
    public Qcow2FormatException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What is wrong with the image.</param>
    /// <param name="innerException">The cause.</param>
    public Qcow2FormatException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The image is valid but uses a feature this package (or this system, e.g. without libzstd) does not support, such as encryption.</summary>
public class Qcow2NotSupportedException : Qcow2FormatException
{
    /// <summary>Creates the exception.</summary>
    public Qcow2NotSupportedException() { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">Which feature is not supported.</param>
    public Qcow2NotSupportedException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">Which feature is not supported.</param>
    /// <param name="innerException">The cause.</param>
    public Qcow2NotSupportedException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The image is locked by another process (for example a running QEMU), the same way qemu-img reports "Failed to get write lock".</summary>
public class Qcow2LockedException : Qcow2Exception
{
    /// <summary>Creates the exception.</summary>
    public Qcow2LockedException() { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">Which lock could not be taken.</param>
    public Qcow2LockedException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">Which lock could not be taken.</param>
    /// <param name="innerException">The cause.</param>
    public Qcow2LockedException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>
/// The image names a backing file or an external data file that the open options do not allow
/// (<see cref="Qcow2OpenOptions.AllowedDirectory"/>, <see cref="Qcow2OpenOptions.AllowExternalDataFile"/>).
/// The named file was not opened.
/// </summary>
public class Qcow2UnsafeReferenceException : Qcow2Exception
{
    /// <summary>Creates the exception.</summary>
    public Qcow2UnsafeReferenceException() { }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">Which file the image names and which option refused it.</param>
    public Qcow2UnsafeReferenceException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">Which file the image names and which option refused it.</param>
    /// <param name="innerException">The cause.</param>
    public Qcow2UnsafeReferenceException(string message, Exception? innerException) : base(message, innerException) { }

    /// <summary>The file the image names (as resolved), when known.</summary>
    public string? ReferencedPath { get; init; }
}
