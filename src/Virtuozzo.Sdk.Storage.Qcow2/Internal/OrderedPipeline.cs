namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>
/// Runs <c>produce(i)</c> for i = 0..count-1 on worker threads and hands the results to the calling thread
/// in index order. At most <c>depth</c> items are in flight (produced or being produced, and not yet
/// released by the consumer), so a producer may use slot <c>i % depth</c> for its buffers: the item that
/// used the slot before has been consumed by then.
/// </summary>
/// <remarks>
/// Used by the converter to overlap reading, zero detection and compression (workers) with writing
/// (the caller, which owns the destination image). An exception in a producer stops the pipeline and is
/// rethrown to the consumer; disposing stops and joins the workers.
/// </remarks>
internal sealed class OrderedPipeline<T> : IDisposable where T : class
{
    private readonly Func<long, int, T> _produce;
    private readonly long _count;
    private readonly int _depth;
    private readonly T?[] _ready;
    private readonly Thread[] _workers;
    private readonly object _lock = new();
    private readonly CancellationToken _ct;
    private long _next;
    private long _released;
    private Exception? _error;
    private bool _stopped;

    /// <param name="count">How many items.</param>
    /// <param name="workers">Worker threads.</param>
    /// <param name="depth">Items in flight at most (at least <paramref name="workers"/>).</param>
    /// <param name="produce">Makes item i in slot (i % depth); runs on a worker thread.</param>
    /// <param name="ct">Stops the workers.</param>
    public OrderedPipeline(long count, int workers, int depth, Func<long, int, T> produce, CancellationToken ct)
    {
        _count = count;
        _depth = Math.Max(depth, workers);
        _produce = produce;
        _ct = ct;
        _ready = new T?[_depth];
        workers = (int)Math.Max(1, Math.Min(workers, count));
        _workers = new Thread[count == 0 ? 0 : workers];
        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Thread(Work) { IsBackground = true, Name = "qcow2 convert" };
            _workers[i].Start();
        }
    }

    private void Work()
    {
        try
        {
            while (true)
            {
                long i;
                lock (_lock)
                {
                    if (_stopped || _next >= _count)
                        return;
                    i = _next++;
                    while (i >= _released + _depth && !_stopped)
                        Monitor.Wait(_lock);
                    if (_stopped)
                        return;
                }
                _ct.ThrowIfCancellationRequested();
                var item = _produce(i, (int)(i % _depth));
                lock (_lock)
                {
                    _ready[i % _depth] = item;
                    Monitor.PulseAll(_lock);
                }
            }
        }
        catch (Exception ex)
        {
            lock (_lock)
            {
                _error ??= ex;
                _stopped = true;
                Monitor.PulseAll(_lock);
            }
        }
    }

    /// <summary>The items in order. Each is released (its slot reused) when the enumeration moves past it.</summary>
    public IEnumerable<T> Consume()
    {
        for (long i = 0; i < _count; i++)
        {
            T item;
            int slot = (int)(i % _depth);
            lock (_lock)
            {
                while (_ready[slot] is null && _error is null)
                    Monitor.Wait(_lock);
                if (_error is not null)
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(_error);
                item = _ready[slot]!;
                _ready[slot] = null;
            }
            yield return item;
            lock (_lock)
            {
                _released = i + 1;
                Monitor.PulseAll(_lock);
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _stopped = true;
            Monitor.PulseAll(_lock);
        }
        foreach (var t in _workers)
            t.Join();
    }
}
