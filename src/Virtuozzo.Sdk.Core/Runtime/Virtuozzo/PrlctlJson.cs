using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

/// <summary>
/// Reads <c>prlctl … -j</c> output tolerantly. prlctl's formatter writes one key per line, tab-indented; before 7.0.190
/// it copied user text (descriptions, hostnames) into strings without escaping quotes, backslashes or newlines, and even
/// after that it lets control characters other than <c>\n</c> and <c>\t</c> through raw
/// (<c>../shared/reference/virtuozzo-cli-and-sdk.md</c> §6). This reader repairs those strings before parsing: control
/// characters are always escaped; on the old versions a quote closes a string only where the JSON structure allows it
/// (after a key, a <c>:</c>; after a value, a line end, a <c>,</c> that ends the line or starts the next key, or a closing
/// bracket), and a backslash is literal.
/// </summary>
internal static class PrlctlJson
{
    /// <summary>
    /// Parses the output as a list of objects: an array (what <c>list -j</c> and <c>list -i -j</c> print), or one object
    /// (taken as a one-element list). Text before the first bracket (a banner that reached standard output) is ignored;
    /// empty output is an empty list.
    /// </summary>
    /// <param name="output">prlctl's standard output.</param>
    /// <param name="version">prlctl's version; null when unknown (then the legacy repair is tried only if the strict read fails).</param>
    /// <exception cref="VirtuozzoException">The output is not JSON even after repair; the message quotes where.</exception>
    public static IReadOnlyList<JsonObject> ParseObjects(string output, PrlctlVersion? version)
    {
        ArgumentNullException.ThrowIfNull(output);
        var start = output.IndexOfAny(['[', '{']);
        if (start < 0)
        {
            if (string.IsNullOrWhiteSpace(output))
                return [];
            throw new VirtuozzoException($"prlctl printed no JSON where JSON was expected: '{Excerpt(output, 0)}'.");
        }

        JsonNode? node;
        if (version is { EscapesJson: true })
            node = Parse(Repair(output, start, legacy: false));
        else if (version is not null)
            node = Parse(Repair(output, start, legacy: true));
        else
        {
            // Unknown version: the strict reading first, the legacy one when that fails.
            try { node = JsonNode.Parse(Repair(output, start, legacy: false), documentOptions: Options); }
            catch (JsonException) { node = Parse(Repair(output, start, legacy: true)); }
        }

        return node switch
        {
            JsonArray array => array.Select(n => n as JsonObject ?? throw new VirtuozzoException(
                $"prlctl printed a JSON array whose items are not objects: '{Excerpt(output, start)}'.")).ToList(),
            JsonObject obj => [obj],
            _ => throw new VirtuozzoException($"prlctl printed JSON that is neither an array nor an object: '{Excerpt(output, start)}'."),
        };
    }

    private static readonly JsonDocumentOptions Options = new() { AllowTrailingCommas = true, MaxDepth = 32 };

    private static JsonNode? Parse(string json)
    {
        try
        {
            return JsonNode.Parse(json, documentOptions: Options);
        }
        catch (JsonException ex)
        {
            var at = (int)Math.Min(json.Length, Math.Max(0, ex.BytePositionInLine ?? 0));
            throw new VirtuozzoException(
                $"prlctl printed JSON the SDK cannot read (line {ex.LineNumber + 1}): {ex.Message} Near: '{Excerpt(json, LineStart(json, ex.LineNumber ?? 0) + at)}'.", ex);
        }
    }

    /// <summary>Rewrites the strings of prlctl's JSON into valid JSON strings (see the type's remarks).</summary>
    internal static string Repair(string text, int start, bool legacy)
    {
        var sb = new StringBuilder(text.Length + 16);
        var inString = false;
        var isKey = false;
        var stack = new Stack<char>();
        var last = '\0';
        for (var i = start; i < text.Length; i++)
        {
            var c = text[i];
            if (!inString)
            {
                switch (c)
                {
                    case '"':
                        inString = true;
                        isKey = stack.Count > 0 && stack.Peek() == '{' && last is '{' or ',';
                        break;
                    case '[' or '{':
                        stack.Push(c);
                        break;
                    case ']' or '}':
                        if (stack.Count > 0)
                            stack.Pop();
                        break;
                }

                sb.Append(c);
                if (!char.IsWhiteSpace(c))
                    last = c;
                if (stack.Count == 0 && last is ']' or '}')
                    break; // the document ends here; whatever follows is not prlctl's JSON
                continue;
            }

            if (c == '\\')
            {
                if (legacy || i + 1 >= text.Length)
                {
                    sb.Append(@"\\");
                }
                else
                {
                    sb.Append(c).Append(text[i + 1]);
                    i++;
                }
                continue;
            }

            if (c == '"')
            {
                if (!legacy || ClosesString(text, i + 1, isKey))
                {
                    inString = false;
                    last = '"';
                    sb.Append(c);
                }
                else
                {
                    sb.Append("\\\"");
                }
                continue;
            }

            if (c < 0x20 || c == 0x7f)
            {
                sb.Append(c switch
                {
                    '\n' => @"\n",
                    '\r' => @"\r",
                    '\t' => @"\t",
                    _ => $"\\u{(int)c:x4}",
                });
                continue;
            }

            sb.Append(c);
        }

        return sb.ToString();
    }

    // Where an unescaped quote may end a string in prlctl's layout.
    private static bool ClosesString(string text, int i, bool isKey)
    {
        i = SkipBlanks(text, i);
        if (isKey)
            return i < text.Length && text[i] == ':';
        if (i >= text.Length)
            return true;
        switch (text[i])
        {
            case '}' or ']':
                return true;
            case '\r' or '\n':
                // one key per line: what follows a value's end is a closing bracket or the next key
                return NextLineIsStructure(text, i);
            case ',':
                var j = SkipBlanks(text, i + 1);
                if (j >= text.Length)
                    return true;
                if (text[j] is '\r' or '\n')
                    return NextLineIsStructure(text, j);
                // compact output: the next key follows on the same line ("a","b": …)
                return text[j] == '"' && KeyAt(text, j);
            default:
                return false;
        }
    }

    // After a line end: the rest is empty, or the next line starts with a bracket or a "key":.
    private static bool NextLineIsStructure(string text, int i)
    {
        while (i < text.Length && char.IsWhiteSpace(text[i]))
            i++;
        return i >= text.Length || text[i] is '}' or ']' or '{' or '[' || (text[i] == '"' && KeyAt(text, i));
    }

    // A quoted key on one line followed by a colon, starting at the quote at i.
    private static bool KeyAt(string text, int i)
    {
        var close = text.IndexOf('"', i + 1);
        if (close < 0)
            return false;
        var newline = text.IndexOf('\n', i + 1);
        if (newline >= 0 && newline < close)
            return false;
        var k = SkipBlanks(text, close + 1);
        return k < text.Length && text[k] == ':';
    }

    private static int SkipBlanks(string text, int i)
    {
        while (i < text.Length && text[i] is ' ' or '\t')
            i++;
        return i;
    }

    private static int LineStart(string text, long line)
    {
        var pos = 0;
        for (var n = 0; n < line && pos >= 0; n++)
        {
            pos = text.IndexOf('\n', pos);
            if (pos < 0)
                return 0;
            pos++;
        }
        return pos;
    }

    internal static string Excerpt(string text, int at)
    {
        at = Math.Clamp(at, 0, text.Length);
        var from = Math.Max(0, at - 40);
        var len = Math.Min(80, text.Length - from);
        return string.Concat(text.AsSpan(from, len).ToString().Select(ch => char.IsControl(ch) ? ' ' : ch)).Trim();
    }
}
