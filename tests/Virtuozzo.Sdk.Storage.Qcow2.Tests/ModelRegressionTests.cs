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

    [Fact]
    public void A_freed_l2_table_reused_for_data_is_not_mistaken_for_metadata()
    {
        var ops = new (int, int, int, int)[] { (6,733625,4162,51680),(0,2665108,3564,95569),(3,606696,2244,58984),(7,73639,46137,64223),(8,1334639,36918,92633),(0,1084268,1262,92076),(0,57793,2129,82244),(0,605993,342,18829),(1,1297971,56926,22684),(2,2870855,31614,72766),(7,991404,2160,54960),(0,3029890,3123,12225),(3,661285,3848,91215),(1,2141613,47166,83929),(1,2313311,2,45485),(0,2920892,219652,90481),(2,1281919,1917,30120),(1,719497,3471,35248),(1,1621660,2920,36539),(1,723550,4254,93243),(0,3008415,265296,48915),(7,191470,285448,86008),(4,1953003,173741,77476),(3,427534,1816,72539),(0,1746737,3946,64831),(3,1105186,3703,32446) };
        ModelTests.RunModel(new ModelTests.ImageConfig(512, 32, 3, false, 972619), ops.Select(o => new ModelTests.Op(o.Item1, o.Item2, o.Item3, o.Item4)).ToArray()).Should().BeTrue();
    }
}
