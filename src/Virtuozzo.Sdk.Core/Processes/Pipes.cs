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
    public static PipeTarget Merge(params PipeTarget[] targets) => new MergedTarget(targets.Where(t => t is not NullTarget).ToArray());

    internal abstract ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    internal virtual ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    internal virtual bool IsNull => false;

    private sealed class NullTarget : PipeTarget
    {
        internal override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        internal override bool IsNull => true;
    }

    private sealed class StreamTarget(Stream stream) : PipeTarget
    {
        internal override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken) => stream.WriteAsync(data, cancellationToken);

        internal override async ValueTask CompleteAsync(CancellationToken cancellationToken) => await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private sealed class BuilderTarget(StringBuilder builder) : PipeTarget
    {
        private readonly Decoder _decoder = Encoding.UTF8.GetDecoder();

        internal override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            var chars = new char[Encoding.UTF8.GetMaxCharCount(data.Length)];
            var n = _decoder.GetChars(data.Span, chars, flush: false);
            lock (builder)
                builder.Append(chars, 0, n);
            return ValueTask.CompletedTask;
        }
    }

    private sealed class LineTarget(Action<string> onLine) : PipeTarget
    {
        private readonly Decoder _decoder = Encoding.UTF8.GetDecoder();
        private readonly StringBuilder _pending = new();

        internal override ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            var chars = new char[Encoding.UTF8.GetMaxCharCount(data.Length)];
            var n = _decoder.GetChars(data.Span, chars, flush: false);
            var start = 0;
            for (var i = 0; i < n; i++)
            {
                if (chars[i] != '\n')
                    continue;
                _pending.Append(chars, start, i - start);
                Emit();
                start = i + 1;
            }
            _pending.Append(chars, start, n - start);
            return ValueTask.CompletedTask;
        }

        internal override ValueTask CompleteAsync(CancellationToken cancellationToken)
        {
            if (_pending.Length > 0)
                Emit();
            return ValueTask.CompletedTask;
        }

        private void Emit()
        {
            if (_pending.Length > 0 && _pending[^1] == '\r')
                _pending.Length--;
            var line = _pending.ToString();
            _pending.Clear();
            onLine(line);
        }
    }

    private sealed class MergedTarget(PipeTarget[] targets) : PipeTarget
    {
        internal override async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            foreach (var t in targets)
                await t.WriteAsync(data, cancellationToken).ConfigureAwait(false);
        }

        internal override async ValueTask CompleteAsync(CancellationToken cancellationToken)
        {
            foreach (var t in targets)
                await t.CompleteAsync(cancellationToken).ConfigureAwait(false);
        }

        internal override bool IsNull => targets.Length == 0;
    }
}
