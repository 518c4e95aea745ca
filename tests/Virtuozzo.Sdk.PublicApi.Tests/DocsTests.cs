using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.PublicApi.Tests;

/// <summary>
/// The checks that keep the articles true to the code: every snippet in an article is the current text of a region of
/// a sample the solution compiles (so the markdown reads the same on a code-hosting site and in DocFX), and every
/// table-of-contents entry names a page that exists. <c>./build.sh docs</c> builds the site itself with warnings
/// as errors.
/// </summary>
public partial class DocsTests
{
    private static string Docs => Path.Combine(SdkAssemblies.RepositoryRoot, "docs");

    /// <summary>The articles (not DocFX's output or its generated API pages).</summary>
    private static IEnumerable<string> ArticleFiles => Directory.GetFiles(Docs, "*.md", SearchOption.AllDirectories)
        .Where(f => !Path.GetRelativePath(Docs, f).StartsWith("_site", StringComparison.Ordinal) && !Path.GetRelativePath(Docs, f).StartsWith("api" + Path.DirectorySeparatorChar + "Virtuozzo", StringComparison.Ordinal));

    public static TheoryData<string> Articles() => new(ArticleFiles.Select(f => Path.GetRelativePath(Docs, f)));

    [Theory]
    [MemberData(nameof(Articles))]
    public void Every_snippet_is_the_current_text_of_a_region_of_a_compiled_sample(string article)
    {
        var path = Path.Combine(Docs, article);
        var solution = File.ReadAllText(Path.Combine(SdkAssemblies.RepositoryRoot, "Virtuozzo.Sdk.sln"));
        foreach (var snippet in Snippets.Parse(File.ReadAllText(path), Path.GetDirectoryName(path)!))
        {
            File.Exists(snippet.File).Should().BeTrue($"{article} quotes {snippet.File}");
            var project = Directory.GetFiles(Path.GetDirectoryName(snippet.File)!, "*.csproj").SingleOrDefault();
            project.Should().NotBeNull($"{snippet.File} belongs to a project");
            solution.Should().Contain(Path.GetFileName(project!), "the sample is built (and so compiled) with the solution");
            snippet.Block.Should().Be(Snippets.Expected(snippet.File, snippet.Region),
                $"{article} shows {snippet.Region} of {snippet.File} as it is now (run ./build.sh snippets to copy it over)");
        }
    }

    [Theory]
    [MemberData(nameof(Articles))]
    public void No_article_uses_a_DocFX_include_that_a_code_hosting_site_shows_as_nothing(string article)
        => File.ReadAllText(Path.Combine(Docs, article)).Should().NotContain("[!code-", "code appears inline, between <!-- snippet: --> markers");

    [Fact]
    public void Getting_started_quotes_compiled_code()
        => Snippets.Parse(File.ReadAllText(Path.Combine(Docs, "articles", "getting-started.md")), Path.Combine(Docs, "articles")).Should().NotBeEmpty();

    [Fact]
    public void A_snippet_that_no_longer_matches_its_region_is_caught()
    {
        var dir = Directory.CreateTempSubdirectory("vzsdk-snippets");
        try
        {
            var sample = Path.Combine(dir.FullName, "Sample.cs");
            File.WriteAllText(sample, "class C\n{\n    #region Snippet:Demo\n    int x = 1;\n\n        int y = 2;\n    #endregion\n}\n");
            var markdown = "Intro\n<!-- snippet: Sample.cs#Snippet:Demo -->\n```csharp\nint x = 1;\n\n    int y = 2;\n```\n<!-- endsnippet -->\n";
            var snippet = Snippets.Parse(markdown, dir.FullName).Should().ContainSingle().Subject;
            snippet.Block.Should().Be(Snippets.Expected(sample, "Snippet:Demo"), "the block is the region, dedented");
            File.WriteAllText(sample, File.ReadAllText(sample).Replace("int x = 1;", "int x = 3;", StringComparison.Ordinal));
            snippet.Block.Should().NotBe(Snippets.Expected(sample, "Snippet:Demo"), "an edit of the sample makes the article stale");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Every_table_of_contents_entry_names_an_existing_page()
    {
        foreach (var toc in Directory.GetFiles(Docs, "toc.yml", SearchOption.AllDirectories).Where(t => !Path.GetRelativePath(Docs, t).StartsWith("_site", StringComparison.Ordinal) && Path.GetRelativePath(Docs, t) != Path.Combine("api", "toc.yml")))
        {
            foreach (Match m in HrefRegex().Matches(File.ReadAllText(toc)))
            {
                var target = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(toc)!, m.Groups[1].Value.Trim()));
                (File.Exists(target) || Directory.Exists(target)).Should().BeTrue($"{toc} links {m.Groups[1].Value}");
            }
        }
    }

    [GeneratedRegex(@"href:\s*(\S+)")]
    private static partial Regex HrefRegex();
}
