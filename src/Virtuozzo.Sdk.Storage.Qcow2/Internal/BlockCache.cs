namespace Virtuozzo.Sdk.Storage.Qcow2.Internal;

/// <summary>A small LRU of metadata clusters keyed by host offset. Write-through: entries are never dirty.</summary>
internal sealed class BlockCache(int capacity)
{
    private readonly Dictionary<long, LinkedListNode<(long Key, byte[] Data)>> _map = [];
    private readonly LinkedList<(long Key, byte[] Data)> _lru = new();

    public int Count => _map.Count;

    public bool Contains(long key) => _map.ContainsKey(key);

    public int Capacity => Math.Max(2, capacity);

    public bool TryGet(long key, out byte[] data)
    {
        if (_map.TryGetValue(key, out var node))
        {
            if (node != _lru.First)
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
            }
            data = node.Value.Data;
            return true;
        }
        data = null!;
        return false;
    }

    public void Put(long key, byte[] data)
    {
        if (_map.TryGetValue(key, out var node))
        {
            _lru.Remove(node);
            _map.Remove(key);
        }
        while (_map.Count >= Math.Max(2, capacity))
        {
            var last = _lru.Last!;
            _lru.RemoveLast();
            _map.Remove(last.Value.Key);
        }
        _map[key] = _lru.AddFirst((key, data));
    }

    public void Remove(long key)
    {
        if (_map.Remove(key, out var node))
            _lru.Remove(node);
    }

    public void Clear()
    {
        _map.Clear();
        _lru.Clear();
    }
}
