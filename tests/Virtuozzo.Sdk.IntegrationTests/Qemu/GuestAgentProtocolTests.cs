using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.IntegrationTests.Qemu;

/// <summary>The guest agent client against a scripted agent, for orderings a real guest produces only under load.</summary>
public class GuestAgentProtocolTests
{
    [Fact]
    public async Task The_late_answer_to_a_resent_sync_is_not_taken_for_the_next_commands_reply()
    {
        // A slow agent answers the client's second sync request first and its first one after it; that late answer
        // (a bare number, without an id) must not become the reply to the next command.
        var dir = Directory.CreateTempSubdirectory("ga-sync");
        try
        {
            var path = Path.Combine(dir.FullName, "ga");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            var agent = Task.Run(async () =>
            {
                using var socket = await listener.AcceptAsync();
                await using var stream = new NetworkStream(socket);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                var held = new List<long>();
                while (await reader.ReadLineAsync() is { } line)
                {
                    var request = JsonNode.Parse(line.TrimStart('\uFFFD', '\u00FF'))!;
                    var command = request["execute"]!.GetValue<string>();
                    if (command == "guest-sync-delimited")
                    {
                        held.Add(request["arguments"]!["id"]!.GetValue<long>());
                        if (held.Count < 2)
                            continue; // the first sync goes unanswered until the client sends another
                        foreach (var id in held.AsEnumerable().Reverse())
                            await stream.WriteAsync(new byte[] { 0xFF }.Concat(Encoding.UTF8.GetBytes($$"""{"return": {{id}}}""" + "\n")).ToArray());
                        continue;
                    }
                    var reply = new JsonObject { ["return"] = new JsonObject() };
                    if (request["id"] is { } rid)
                        reply["id"] = rid.DeepClone();
                    await stream.WriteAsync(Encoding.UTF8.GetBytes(reply.ToJsonString() + "\n"));
                }
            });
            await using (var client = await GuestAgentClient.ConnectAsync(path, TimeSpan.FromSeconds(10), CancellationToken.None))
            {
                var ping = await client.ExecuteAsync("guest-ping", null, TimeSpan.FromSeconds(10), CancellationToken.None);
                ping.Should().BeOfType<JsonObject>("guest-ping answers {{}}; the first sync's late answer ({0}) is not it", ping?.ToJsonString());
            }
            await agent.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
