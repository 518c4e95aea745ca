namespace Virtuozzo.Sdk.PublicApi.Tests;

public class PublicApiApprovalTests
{
    public static TheoryData<string> Assemblies() => new(SdkAssemblies.Names);

    /// <summary>
    /// The public surface must equal the approved file api/ASSEMBLY.txt. The test never rewrites that file: on a
    /// difference it writes api/ASSEMBLY.received.txt (ignored by git) for a person to review and copy over in the
    /// same commit as the API change.
    /// </summary>
    [Theory]
    [MemberData(nameof(Assemblies))]
    public void The_public_api_matches_the_approved_file(string assemblyName)
    {
        var actual = ApiDump.Of(SdkAssemblies.Load(assemblyName));
        var approvedPath = Path.Combine(SdkAssemblies.RepositoryRoot, "api", assemblyName + ".txt");
        var receivedPath = Path.Combine(SdkAssemblies.RepositoryRoot, "api", assemblyName + ".received.txt");
        var approved = File.Exists(approvedPath) ? File.ReadAllText(approvedPath).ReplaceLineEndings("\n") : "<no approved file>";
        if (approved != actual)
            File.WriteAllText(receivedPath, actual);
        else if (File.Exists(receivedPath))
            File.Delete(receivedPath);
        actual.Should().Be(approved, $"the public API of {assemblyName} changed: review {receivedPath} and, if the change is intended, copy it over {approvedPath} in the same commit");
    }
}
