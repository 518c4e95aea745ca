using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;

namespace Virtuozzo.Sdk.Backup.Internal;

/// <summary>
/// The digest of the guest data a backup file stores: for every stored cluster, SHA-256 over (offset, length, bytes),
/// and the digest is the sum of those hashes modulo 2^256. The sum does not depend on the order clusters are
/// added in, so clusters can be hashed in parallel and as an emulator writes them, out of order; a single changed
/// byte changes the digest. Thread-safe.
/// </summary>
internal sealed class ClusterDigest
{
    private static readonly BigInteger Modulus = BigInteger.One << 256;
    private readonly object _lock = new();
    private BigInteger _sum;

    /// <summary>Adds every cluster of a cluster-aligned run (the image's last cluster may be short).</summary>
    public void AddRun(long offset, ReadOnlySpan<byte> data, int clusterSize)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var local = BigInteger.Zero;
        for (var at = 0; at < data.Length; at += clusterSize)
            local += Hash(sha, offset + at, data.Slice(at, Math.Min(clusterSize, data.Length - at)));
        lock (_lock)
            _sum = (_sum + local) % Modulus;
    }

    /// <summary>Adds <paramref name="length"/> bytes of zeroes at <paramref name="offset"/>, cluster by cluster.</summary>
    public void AddZeroes(long offset, long length, int clusterSize)
    {
        var zeroes = new byte[clusterSize];
        for (long at = 0; at < length; at += clusterSize)
            AddRun(offset + at, zeroes.AsSpan(0, (int)Math.Min(clusterSize, length - at)), clusterSize);
    }

    /// <summary>Lower-case hex of the 32-byte sum.</summary>
    public string Result()
    {
        byte[] raw;
        lock (_lock)
            raw = _sum.ToByteArray(isUnsigned: true, isBigEndian: true);
        var bytes = new byte[32];
        raw.AsSpan(Math.Max(0, raw.Length - 32)).CopyTo(bytes.AsSpan(32 - Math.Min(32, raw.Length)));
        return Convert.ToHexStringLower(bytes);
    }

    private static BigInteger Hash(IncrementalHash sha, long offset, ReadOnlySpan<byte> cluster)
    {
        Span<byte> header = stackalloc byte[16];
        BinaryPrimitives.WriteInt64LittleEndian(header, offset);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], cluster.Length);
        sha.AppendData(header);
        sha.AppendData(cluster);
        Span<byte> h = stackalloc byte[32];
        sha.GetHashAndReset(h);
        return new BigInteger(h, isUnsigned: true, isBigEndian: true);
    }
}
