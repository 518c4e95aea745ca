using System.Text;
using System.Text.RegularExpressions;

namespace Virtuozzo.Sdk.PublicApi.Tests;

/// <summary>
/// Code in the articles is inline, so that it reads on a code-hosting site, and is copied from the compiled samples:
/// <code>
/// &lt;!-- snippet: ../../samples/QuickStart/Program.cs#Snippet:Registration --&gt;
/// ```csharp
/// (the lines between #region Snippet:Registration and the next #endregion, without their common indentation)
/// ```
/// &lt;!-- endsnippet --&gt;
/// </code>
/// This is the rule <c>docs/tools/snippets.awk</c> (<c>./build.sh snippets</c>) applies to rewrite the blocks.
/// </summary>
internal static partial class Snippets
{
    /// <summary>One snippet of an article: the sample file and region it names, and the code block it holds.</summary>
    public sealed record Snippet(string File, string Region, string Block);

    /// <summary>The snippets of a markdown text; <paramref name="directory"/> is the article's folder.</summary>
    public static IReadOnlyList<Snippet> Parse(string markdown, string directory)
    {
        var list = new List<Snippet>();
        foreach (Match m in SnippetRegex().Matches(markdown.ReplaceLineEndings("\n")))
            list.Add(new Snippet(Path.GetFullPath(Path.Combine(directory, m.Groups["file"].Value)), m.Groups["region"].Value, m.Groups["block"].Value));
        return list;
    }

    /// <summary>The code block a snippet must hold: the region of the sample, dedented, in a csharp fence.</summary>
    public static string Expected(string sampleFile, string region)
    {
        var lines = File.ReadAllLines(sampleFile);
        var start = Array.FindIndex(lines, l => l.Trim() == "#region " + region);
        if (start < 0)
            throw new InvalidOperationException($"{sampleFile} has no #region {region}");
        var body = lines.Skip(start + 1).TakeWhile(l => !l.TrimStart().StartsWith("#endregion", StringComparison.Ordinal)).ToList();
        var indent = body.Where(l => !string.IsNullOrWhiteSpace(l)).Select(l => l.Length - l.TrimStart(' ').Length).DefaultIfEmpty(0).Min();
        var sb = new StringBuilder("```csharp\n");
        foreach (var l in body)
            sb.Append(string.IsNullOrWhiteSpace(l) ? "" : l[indent..]).Append('\n');
        return sb.Append("```\n").ToString();
    }

    [GeneratedRegex(@"^<!-- snippet: (?<file>[^#\s]+)#(?<region>\S+) -->\n(?<block>.*?)<!-- endsnippet -->", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex SnippetRegex();
}
