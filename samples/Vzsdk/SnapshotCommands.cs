using System.CommandLine;
using System.Globalization;

namespace Vzsdk;

/// <summary><c>snapshot</c>, <c>snapshot-list</c>, <c>snapshot-switch</c>, <c>snapshot-delete</c>: the same verbs for VMs and containers, as prlctl has.</summary>
internal static class SnapshotCommands
{
    /// <summary>A snapshot as the verbs print it.</summary>
    internal sealed record Row(Guid Id, string Name, string? Description, Guid? ParentId, DateTimeOffset CreatedAt, bool IncludesMemory, bool IsCurrent);

    /// <summary>What a VE kind's client does for the verbs.</summary>
    internal sealed record Ops(
        Func<string, string, string?, CancellationToken, Task<(Guid Id, string Name)>> Create,
        Func<string, CancellationToken, Task<List<Row>>> List,
        Func<string, string, CancellationToken, Task> Switch,
        Func<string, string, CancellationToken, Task> Delete);

    internal sealed record SnapshotJson(string Id, string Name, string? Description, string? Parent, string CreatedAt, bool Memory, bool Current);

    public static IEnumerable<Command> Build(string noun, string whatIsSaved, Func<ParseResult, Ops> ops)
    {
        Argument<string> NameArg() => new("NAME") { Description = $"The {noun}'s name or UUID." };

        var name = NameArg();
        var snapName = new Option<string?>("--name", "-n") { Description = "The snapshot's name (default: the time)." };
        var description = new Option<string?>("--description", "-d") { Description = "A description." };
        var create = new Command("snapshot", $"Take a snapshot ({whatIsSaved}).") { name, snapName, description };
        create.SetAction(async (p, ct) =>
        {
            var (id, created) = await ops(p).Create(p.GetValue(name)!,
                p.GetValue(snapName) ?? DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture), p.GetValue(description), ct);
            Console.Out.WriteLine($"Snapshot {created} created");
            Console.Out.WriteLine(id.ToString());
            return Cli.Success;
        });
        yield return create;

        var listName = NameArg();
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var list = new Command("snapshot-list", $"List a {noun}'s snapshots as a tree.") { listName, json };
        list.SetAction(async (p, ct) =>
        {
            var rows = await ops(p).List(p.GetValue(listName)!, ct);
            if (p.GetValue(json))
            {
                Cli.WriteJson(rows.Select(s => new SnapshotJson(s.Id.ToString(), s.Name, s.Description, s.ParentId?.ToString(),
                    s.CreatedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture), s.IncludesMemory, s.IsCurrent)).ToList(), VzsdkJson.Default.SnapshotList);
                return Cli.Success;
            }
            void Print(Guid? parent, int depth)
            {
                foreach (var s in rows.Where(x => x.ParentId == parent))
                {
                    Console.Out.WriteLine($"{new string(' ', depth * 2)}{(s.IsCurrent ? "*" : " ")}{{{s.Id}}} {s.Name}{(s.IncludesMemory ? " (with memory)" : "")}");
                    Print(s.Id, depth + 1);
                }
            }
            Print(null, 0);
            return Cli.Success;
        });
        yield return list;

        yield return Verb("snapshot-switch", $"Revert a {noun} to a snapshot.", "switched to", (o, n, id, ct) => o.Switch(n, id, ct));
        yield return Verb("snapshot-delete", "Delete a snapshot.", "deleted", (o, n, id, ct) => o.Delete(n, id, ct));

        Command Verb(string verb, string text, string done, Func<Ops, string, string, CancellationToken, Task> action)
        {
            var n = NameArg();
            var id = new Option<string>("--id", "-i") { Description = "The snapshot's UUID or name.", Required = true };
            var cmd = new Command(verb, text) { n, id };
            cmd.SetAction(async (p, ct) =>
            {
                await action(ops(p), p.GetValue(n)!, p.GetValue(id)!, ct);
                Console.Out.WriteLine($"Snapshot {p.GetValue(id)} {done}");
                return Cli.Success;
            });
            return cmd;
        }
    }
}
