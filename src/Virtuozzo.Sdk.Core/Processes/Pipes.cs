using System.Text;

namespace Virtuozzo.Sdk.Core.Processes;

/// <summary>Where a command's standard input comes from.</summary>
public abstract class PipeSource
{
    private protected PipeSource() { }

    /// <summary>No input: standard input is closed at once.</summary>
    public static PipeSource Null { get; } = new BytesSource(ReadOnlyMemory<byte>.Empty);

    /// <summary>Input from bytes.</summary>
    public static PipeSource FromBytes(ReadOnlyMemory<byte> bytes) => new BytesSource(bytes);

    /// <summary>Input from UTF-8 text.</summary>
    public static PipeSource FromString(string text) => new BytesSource(Encoding.UTF8.GetBytes(text ?? throw new ArgumentNullException(nameof(text))));

    /// <summary>Input copied from a stream (the stream is not disposed).</summary>
    public static PipeSource FromStream(Stream stream) => new StreamSource(stream ?? throw new ArgumentNullException(nameof(stream)));

    /// <summary>Copies the input into the process's standard input.</summary>
    public abstract Task CopyToAsync(Stream destination, CancellationToken cancellationToken = default);

    private sealed class BytesSource(ReadOnlyMemory<byte> bytes) : PipeSource
    {
        public override async Task CopyToAsync(Stream destination, CancellationToken cancellationToken = default)
        {
            if (!bytes.IsEmpty)
                await destination.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
    }

    private sealed class StreamSource(Stream stream) : PipeSource
    {
        public override Task CopyToAsync(Stream destination, CancellationToken cancellationToken = default)
            => stream.CopyToAsync(destination, cancellationToken);
    }
}

/// <summary>Where a command's standard output or error goes, as it is produced.</summary>
/// <remarks>
/// The SDK runs commands with CliWrap; each target maps to a CliWrap pipe target when the command runs, and the
/// SDK's own type stays the public one so that CliWrap is not part of the SDK's public API.
/// </remarks>
public abstract class PipeTarget
{
    private protected PipeTarget() { }

    /// <summary>Discards the data.</summary>
    public static PipeTarget Null { get; } = new NullTarget();

    /// <summary>Copies raw bytes to a stream (not disposed).</summary>
    public static PipeTarget ToStream(Stream stream) => new StreamTarget(stream ?? throw new ArgumentNullException(nameof(stream)));

    /// <summary>Calls <paramref name="onLine"/> for each line (UTF-8, without the line ending) as it is produced.</summary>
    public static PipeTarget ToDelegate(Action<string> onLine) => new LineTarget(onLine ?? throw new ArgumentNullException(nameof(onLine)));

    /// <summary>Appends the text to a <see cref="StringBuilder"/>.</summary>
    public static PipeTarget ToStringBuilder(StringBuilder builder) => new BuilderTarget(builder ?? throw new ArgumentNullException(nameof(builder)));

    /// <summary>Sends the data to every target.</summary>
    public static PipeTarget Merge(params PipeTarget[] targets) => new MergedTarget(targets.Where(t => !t.IsNull).ToArray());

    /// <summary>The CliWrap pipe target that does this target's work for one execution (fresh state each call).</summary>
    internal abstract CliWrap.PipeTarget ToCliWrap();

    internal virtual bool IsNull => false;

    private sealed class NullTarget : PipeTarget
    {
        // Read and discard: CliWrap's own Null target closes the pipe unread, and the program then fails with
        // EPIPE on its next write ("tar: stdout: write error").
        internal override CliWrap.PipeTarget ToCliWrap() => CliWrap.PipeTarget.ToStream(Stream.Null, autoFlush: false);

        internal override bool IsNull => true;
    }

    private sealed class StreamTarget(Stream stream) : PipeTarget
    {
        internal override CliWrap.PipeTarget ToCliWrap() => CliWrap.PipeTarget.ToStream(stream);
    }

    private sealed class BuilderTarget(StringBuilder builder) : PipeTarget
    {
        internal override CliWrap.PipeTarget ToCliWrap() => CliWrap.PipeTarget.Create(async (source, ct) =>
        {
            var decoder = Encoding.UTF8.GetDecoder();
            var buffer = new byte[81920];
            var chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
            int n;
            while ((n = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
            {
                var c = decoder.GetChars(buffer, 0, n, chars, 0, flush: false);
                lock (builder)
                    builder.Append(chars, 0, c);
            }
            var last = decoder.GetChars(buffer, 0, 0, chars, 0, flush: true);
            lock (builder)
                builder.Append(chars, 0, last);
        });
    }

    /// <summary>Splits on '\n' only (a trailing '\r' is dropped), so that progress output written with '\r' stays one line.</summary>
    private sealed class LineTarget(Action<string> onLine) : PipeTarget
    {
        internal override CliWrap.PipeTarget ToCliWrap() => CliWrap.PipeTarget.Create(async (source, ct) =>
        {
            var decoder = Encoding.UTF8.GetDecoder();
            var pending = new StringBuilder();
            var buffer = new byte[16384];
            var chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
            int n;
            while ((n = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
            {
                var count = decoder.GetChars(buffer, 0, n, chars, 0, flush: false);
                var start = 0;
                for (var i = 0; i < count; i++)
                {
                    if (chars[i] != '\n')
                        continue;
                    pending.Append(chars, start, i - start);
                    Emit(pending);
                    start = i + 1;
                }
                pending.Append(chars, start, count - start);
            }
            if (pending.Length > 0)
                Emit(pending);
        });

        private void Emit(StringBuilder pending)
        {
            if (pending.Length > 0 && pending[^1] == '\r')
                pending.Length--;
            var line = pending.ToString();
            pending.Clear();
            onLine(line);
        }
    }

    private sealed class MergedTarget(PipeTarget[] targets) : PipeTarget
    {
        internal override CliWrap.PipeTarget ToCliWrap() => CliWrap.PipeTarget.Merge(targets.Select(t => t.ToCliWrap()).ToArray());

        internal override bool IsNull => targets.Length == 0;
    }
}
