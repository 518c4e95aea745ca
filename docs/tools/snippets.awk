# Rewrites the code of every snippet in a markdown file from the compiled sample it names (./build.sh snippets).
# A snippet is
#   <!-- snippet: RELATIVE/PATH/Program.cs#Snippet:Name -->
#   ```csharp
#   ...the lines between `#region Snippet:Name` and the next `#endregion`, without their common indentation...
#   ```
#   <!-- endsnippet -->
# so that the code reads on a code-hosting site as well as in DocFX. A DocFX include line
# `[!code-csharp[](PATH#Snippet:Name)]` is turned into such a block. Tests/DocsTests checks the same rule.
# Usage: awk -v mddir=DIR_OF_THE_MARKDOWN -f snippets.awk FILE.md > OUT
function region(file, name,    line, inside, found, n, i, min, l, out, lines) {
  n = 0; inside = 0; found = 0
  while ((getline line < file) > 0) {
    sub(/\r$/, "", line)
    if (!inside && line ~ ("^[ \t]*#region " name "[ \t]*$")) { inside = 1; found = 1; continue }
    if (inside && line ~ /^[ \t]*#endregion/) break
    if (inside) lines[++n] = line
  }
  close(file)
  if (!found) { printf "snippets: %s names %s#%s, which has no such region\n", FILENAME, file, name > "/dev/stderr"; failed = 1; return "" }
  min = -1
  for (i = 1; i <= n; i++)
    if (lines[i] ~ /[^ \t]/) { match(lines[i], /^ */); if (min < 0 || RLENGTH < min) min = RLENGTH }
  out = ""
  for (i = 1; i <= n; i++) { l = lines[i]; l = (l ~ /^[ \t]*$/) ? "" : substr(l, min + 1); out = out l "\n" }
  return out
}
function emit(spec,    file, name) {
  file = spec; sub(/#.*/, "", file)
  name = spec; sub(/^[^#]*#/, "", name)
  print "<!-- snippet: " spec " -->"
  printf "```csharp\n%s```\n", region(mddir "/" file, name)
  print "<!-- endsnippet -->"
}
skipping { if ($0 ~ /^<!-- endsnippet -->/) skipping = 0; next }
/^<!-- snippet: [^ ]+#[^ ]+ -->/ { spec = $0; sub(/^<!-- snippet: /, "", spec); sub(/ -->.*$/, "", spec); emit(spec); skipping = 1; next }
/^\[!code-csharp\[[^]]*\]\([^)]+#[^)]+\)\][ \t]*$/ { spec = $0; sub(/^\[!code-csharp\[[^]]*\]\(/, "", spec); sub(/\)\][ \t]*$/, "", spec); emit(spec); next }
{ print }
END { if (skipping) { printf "snippets: %s: a snippet has no <!-- endsnippet -->\n", FILENAME > "/dev/stderr"; exit 1 } if (failed) exit 1 }
