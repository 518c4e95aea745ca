using Virtuozzo.Sdk.Storage.Qcow2.Internal;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

/// <summary>
/// Storage that "loses power" after a set number of writes: what was flushed survives, and of the
/// writes after the last flush any subset survives (the disk may reorder them).
/// </summary>
internal sealed class PowerLossStorage : ImageStorage
{
    private readonly MemoryStorage _live = new();
    private byte[] _durable = [];
    private readonly List<(long Offset, byte[] Data, long? Length)> _pending = [];

    public int WritesBeforePowerLoss { get; set; } = int.MaxValue;

    public int Writes { get; private set; }

    public sealed class PowerLostException : Exception;

    public override long Length => _live.Length;

    public override int Read(long offset, Span<byte> buffer) => _live.Read(offset, buffer);

    public override void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (Writes++ >= WritesBeforePowerLoss)
            throw new PowerLostException();
        _live.Write(offset, data);
        _pending.Add((offset, data.ToArray(), null));
    }

    public override void SetLength(long length)
    {
        if (Writes++ >= WritesBeforePowerLoss)
            throw new PowerLostException();
        _live.SetLength(length);
        _pending.Add((0, [], length));
    }

    public override void Flush()
    {
        if (Writes >= WritesBeforePowerLoss)
            throw new PowerLostException();
        _durable = _live.ToArray();
        _pending.Clear();
    }

    /// <summary>The bytes that survive the power loss: the flushed state plus a random subset of later writes.</summary>
    /// <param name="rnd">Chooses which unflushed writes survive.</param>
    /// <param name="processKill">Keep every issued write, as when only the process dies (the page cache survives).</param>
    public byte[] Survivors(Random rnd, bool processKill = false)
    {
        var m = new MemoryStorage(_durable);
        foreach (var (off, data, len) in _pending)
        {
            if (!processKill && rnd.Next(2) == 0)
                continue;
            if (len is { } l)
                m.SetLength(Math.Max(l, m.Length));
            else
                m.Write(off, data);
        }
        return m.ToArray();
    }
}
