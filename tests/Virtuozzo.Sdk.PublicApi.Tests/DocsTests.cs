using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.PublicApi.Tests;

/// <summary>
/// DocFX is not served by this environment's registry, so CI checks the docs the way DocFX would fail:
/// every quoted snippet names a file the solution compiles and a region that exists in it, and every
/// table-of-contents entry names a page that exists.
/// </summary>
public partial class DocsTests
{
    private static string Docs => Path.Combine(SdkAssemblies.RepositoryRoot, "docs");

    public static TheoryData<string> Articles()
        => new(Directory.GetFiles(Docs, "*.md", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(Docs, f)));

    [Theory]
    [MemberData(nameof(Articles))]
    public void Every_quoted_snippet_names_an_existing_region_of_a_compiled_sample(string article)
    {
        var path = Path.Combine(Docs, article);
        var solution = File.ReadAllText(Path.Combine(SdkAssemblies.RepositoryRoot, "Virtuozzo.Sdk.sln"));
        foreach (Match m in SnippetRegex().Matches(File.ReadAllText(path)))
        {
            var file = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, m.Groups["file"].Value));
            File.Exists(file).Should().BeTrue($"{article} quotes {file}");
            File.ReadAllText(file).Should().Contain($"#region {m.Groups["region"].Value}", $"{article} quotes that region");
            var project = Directory.GetFiles(Path.GetDirectoryName(file)!, "*.csproj").SingleOrDefault();
            project.Should().NotBeNull($"{file} belongs to a project");
            solution.Should().Contain(Path.GetFileName(project!), "the sample is built (and so compiled) with the solution");
        }
    }

    [Fact]
    public void Getting_started_quotes_compiled_code()
        => SnippetRegex().Matches(File.ReadAllText(Path.Combine(Docs, "articles", "getting-started.md"))).Should().NotBeEmpty();

    [Fact]
    public void Every_table_of_contents_entry_names_an_existing_page()
    {
        foreach (var toc in Directory.GetFiles(Docs, "toc.yml", SearchOption.AllDirectories))
        {
            foreach (Match m in HrefRegex().Matches(File.ReadAllText(toc)))
            {
                var target = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(toc)!, m.Groups[1].Value.Trim()));
                (File.Exists(target) || Directory.Exists(target)).Should().BeTrue($"{toc} links {m.Groups[1].Value}");
            }
        }
    }

    [GeneratedRegex(@"\[!code-csharp\[[^\]]*\]\((?<file>[^)#]+)#(?<region>[^)]+)\)\]")]
    private static partial Regex SnippetRegex();

    [GeneratedRegex(@"href:\s*(\S+)")]
    private static partial Regex HrefRegex();
}
