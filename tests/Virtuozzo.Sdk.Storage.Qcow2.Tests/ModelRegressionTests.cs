namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;
/// <summary>Sequences the property tests once found failing, kept as regressions.</summary>
public class ModelRegressionTests
{
    [Fact]
    public void A_compressed_range_freed_by_a_shrink_and_reused_reads_the_new_data()
    {
        var ops = new (int, int, int, int)[] { (1,2062930,3988,64260),(3,3013411,7939,12919),(3,2087549,175800,28160),(4,2645806,15531,92592),(4,1407145,32220,89120),(1,441679,99504,80801),(0,2961261,183747,51553),(3,1434049,123246,78917),(2,1229983,119643,79750) };
        for (int n = 1; n <= ops.Length; n++)
        {
            try { ModelTests.RunModel(new ModelTests.ImageConfig(65536, 2, 3, false, 2666925), ops.Take(n).Select(o => new ModelTests.Op(o.Item1, o.Item2, o.Item3, o.Item4)).ToArray()); }
            catch (InvalidOperationException ex) { throw new InvalidOperationException($"fails after {n} ops: {ex.Message}", ex); }
        }
    }
}
