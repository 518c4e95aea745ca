using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests;

public class DocsTests
{
    private static string RepoFile(string relative)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Directory.Packages.props")))
            dir = dir.Parent;
        return Path.Combine(dir!.FullName, relative);
    }

    [Fact]
    public void Every_snippet_in_the_qcow2_article_matches_its_region_in_the_compiled_sample()
    {
        var article = File.ReadAllText(RepoFile("docs/articles/storage/qcow2.md"));
        var sample = File.ReadAllText(RepoFile("samples/Qcow2Sample/Program.cs"));
        var quoted = Regex.Matches(article, @"Snippet `Snippet:(\w+)`.*?```csharp\n(.*?)\n```", RegexOptions.Singleline);
        quoted.Should().HaveCountGreaterThanOrEqualTo(7);
        foreach (Match q in quoted)
        {
            var region = Regex.Match(sample, @"#region Snippet:" + q.Groups[1].Value + @"\n(.*?)\n\s*#endregion", RegexOptions.Singleline);
            region.Success.Should().BeTrue($"the sample has a region Snippet:{q.Groups[1].Value}");
            var lines = region.Groups[1].Value.Split('\n');
            int indent = lines.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
            var dedented = string.Join('\n', lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
            q.Groups[2].Value.Should().Be(dedented, $"Snippet:{q.Groups[1].Value} in the article must be the sample's code");
        }
    }
}
