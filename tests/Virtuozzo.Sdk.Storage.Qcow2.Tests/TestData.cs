namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

internal static class TestData
{
    /// <summary>Bytes that differ by position and seed, so misplaced data is noticed.</summary>
    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        var r = new Random(seed);
        r.NextBytes(b);
        return b;
    }

    /// <summary>Half-compressible bytes: text-like runs.</summary>
    public static byte[] Compressible(int length, int seed)
    {
        var b = new byte[length];
        var r = new Random(seed);
        for (int i = 0; i < length; i++)
            b[i] = (byte)('a' + (i / 7 + r.Next(3)) % 26);
        return b;
    }

    public static byte[] ReadAll(Qcow2Image img)
    {
        var b = new byte[img.Size];
        img.Read(0, b);
        return b;
    }
}
