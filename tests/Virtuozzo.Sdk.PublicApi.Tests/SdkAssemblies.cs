using System.Reflection;

namespace Virtuozzo.Sdk.PublicApi.Tests;

internal static class SdkAssemblies
{
    public static readonly string[] Names =
    [
        "Virtuozzo.Sdk.Core", "Virtuozzo.Sdk.Storage.Qcow2", "Virtuozzo.Sdk.Containers", "Virtuozzo.Sdk.Vm",
        "Virtuozzo.Sdk.Backup", "Virtuozzo.Sdk.Migration", "Virtuozzo.Sdk.Memory",
    ];

    public static Assembly Load(string name) => Assembly.Load(name);

    public static IEnumerable<Assembly> All => Names.Select(Load);

    public static IEnumerable<Type> PublicTypes => All.SelectMany(a => a.GetExportedTypes());

    /// <summary>The repository root (where api/ lives), found from the test's output directory.</summary>
    public static string RepositoryRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Virtuozzo.Sdk.sln")))
                dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("Cannot find the repository root from " + AppContext.BaseDirectory);
        }
    }
}
