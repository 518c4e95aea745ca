namespace Virtuozzo.Sdk.Containers.Runtime.Local;

/// <summary>Recognises the OCI runtime's own failure to start a program in a container (not the program's exit code).</summary>
internal static class ExecFailure
{
    /// <summary>The exit code the OCI runtime uses when it could not run the program at all.</summary>
    private const int RuntimeFailure = 255;

    /// <summary>
    /// Returns the shell's exit code (127 not found, 126 not executable) and a plain reason when <paramref name="standardError"/>
    /// is the runtime's report that it could not start the program; null when the program itself ran.
    /// </summary>
    public static (int ExitCode, string Reason)? Classify(int exitCode, string standardError)
    {
        if (exitCode != RuntimeFailure || !standardError.Contains("exec failed", StringComparison.Ordinal))
            return null;
        if (standardError.Contains("no such file or directory", StringComparison.OrdinalIgnoreCase)
            || standardError.Contains("not found", StringComparison.OrdinalIgnoreCase))
            return (127, "command not found");
        if (standardError.Contains("permission denied", StringComparison.OrdinalIgnoreCase))
            return (126, "permission denied (not executable)");
        if (standardError.Contains("exec format error", StringComparison.OrdinalIgnoreCase))
            return (126, "cannot execute (not a program for this machine)");
        return null;
    }

    /// <summary>True for a line the OCI runtime writes when it cannot start the program (its own log, not the program's output).</summary>
    internal static bool IsRuntimeLogLine(string line)
        => line.Contains("exec failed", StringComparison.Ordinal) && (line.Contains("level=error", StringComparison.Ordinal) || line.StartsWith("exec failed", StringComparison.Ordinal) || line.StartsWith("runc exec failed", StringComparison.Ordinal));

    /// <summary>
    /// Passes a program's standard error through line by line, holding back the OCI runtime's own failure lines, so that
    /// a caller streaming standard error sees the SDK's plain report instead of the runtime's log.
    /// </summary>
    internal sealed class FilterStream(Stream inner) : Stream
    {
        private readonly MemoryStream _line = new();

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count)
        {
            for (var i = offset; i < offset + count; i++)
            {
                _line.WriteByte(buffer[i]);
                if (buffer[i] == (byte)'\n')
                    Release();
            }
        }

        /// <summary>Writes out a pending partial line too (the program's last line may have no newline).</summary>
        public override void Flush()
        {
            Release();
            inner.Flush();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                Release();
            base.Dispose(disposing);
        }

        private void Release()
        {
            if (_line.Length == 0)
                return;
            var bytes = _line.ToArray();
            _line.SetLength(0);
            if (!IsRuntimeLogLine(System.Text.Encoding.UTF8.GetString(bytes)))
            {
                inner.Write(bytes);
                inner.Flush();
            }
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
