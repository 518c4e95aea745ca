using System.Diagnostics;
using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Qemu;

public class QmpClientTests
{
    private static Process StartDaemon(string socket)
    {
        var psi = new ProcessStartInfo(Prerequisites.FindTool("qemu-storage-daemon") ?? "qemu-storage-daemon") { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in new[] { "--chardev", $"socket,id=m0,path={socket},server=on,wait=off", "--monitor", "chardev=m0", "--blockdev", "driver=null-co,node-name=n0,size=1048576" })
            psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    [IntegrationFact("qemu-storage-daemon")]
    public async Task I_can_negotiate_run_commands_and_get_typed_errors_from_a_real_monitor()
    {
        using var dir = new TempDirectory();
        var socket = dir.File("qmp.sock");
        using var daemon = StartDaemon(socket);
        try
        {
            await using var qmp = await QmpClient.ConnectAsync(socket, TimeSpan.FromSeconds(10), CancellationToken.None);
            qmp.ServerVersion.Should().MatchRegex(@"^\d+\.\d+\.\d+$");

            var nodes = (await qmp.ExecuteAsync("query-named-block-nodes", null, TimeSpan.FromSeconds(5), CancellationToken.None))!.AsArray();
            nodes.Select(n => n!["node-name"]!.GetValue<string>()).Should().Contain("n0");

            var bad = () => qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = "no-such-node" }, TimeSpan.FromSeconds(5), CancellationToken.None);
            var ex = (await bad.Should().ThrowAsync<QmpException>()).Which;
            ex.ErrorClass.Should().Be("GenericError");
            ex.Message.Should().Contain("no-such-node");

            var unknown = () => qmp.ExecuteAsync("no-such-command", null, TimeSpan.FromSeconds(5), CancellationToken.None);
            (await unknown.Should().ThrowAsync<QmpException>()).Which.ErrorClass.Should().Be("CommandNotFound");

            // Concurrent callers are serialised, each gets its own answer.
            var many = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => qmp.ExecuteAsync("query-version", null, TimeSpan.FromSeconds(5), CancellationToken.None)));
            many.Should().OnlyContain(r => r!["qemu"]!["major"]!.GetValue<int>() >= 6);

            await qmp.ExecuteAsync("quit", null, TimeSpan.FromSeconds(5), CancellationToken.None);
            (await daemon.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token).ContinueWith(t => t.IsCompletedSuccessfully)).Should().BeTrue();
        }
        finally
        {
            if (!daemon.HasExited)
                daemon.Kill();
        }
    }

    [IntegrationFact("qemu-storage-daemon")]
    public async Task Connecting_to_a_socket_nobody_serves_fails_within_the_timeout()
    {
        using var dir = new TempDirectory();
        var sw = Stopwatch.StartNew();
        var act = () => QmpClient.ConnectAsync(dir.File("absent.sock"), TimeSpan.FromMilliseconds(500), CancellationToken.None);
        await act.Should().ThrowAsync<QmpException>().WithMessage("*No QMP monitor answered*");
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(5));
    }

    [IntegrationFact("qemu-storage-daemon")]
    public async Task A_command_fails_cleanly_when_the_daemon_dies()
    {
        using var dir = new TempDirectory();
        var socket = dir.File("qmp.sock");
        using var daemon = StartDaemon(socket);
        await using var qmp = await QmpClient.ConnectAsync(socket, TimeSpan.FromSeconds(10), CancellationToken.None);
        daemon.Kill();
        await daemon.WaitForExitAsync();
        await Task.Delay(100);
        var act = () => qmp.ExecuteAsync("query-version", null, TimeSpan.FromSeconds(5), CancellationToken.None);
        await act.Should().ThrowAsync<Exception>().Where(e => e is QmpException || e is IOException);
    }

    [Fact]
    public async Task A_reply_left_for_a_previous_connection_is_not_taken_for_this_ones_answer()
    {
        // QEMU's monitor belongs to its socket: when a client is killed mid-command, the reply can arrive on the next
        // connection, carrying the dead client's id (ids start at 1 in every client). This monitor sends such a reply
        // before each real one.
        var dir = Directory.CreateTempSubdirectory("qmp-stale");
        try
        {
            var path = Path.Combine(dir.FullName, "qmp");
            using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            var server = Task.Run(async () =>
            {
                using var socket = await listener.AcceptAsync();
                await using var stream = new System.Net.Sockets.NetworkStream(socket);
                using var reader = new StreamReader(stream);
                await using var writer = new StreamWriter(stream) { AutoFlush = true, NewLine = "\n" };
                await writer.WriteLineAsync("""{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}""");
                var stale = 0;
                while (await reader.ReadLineAsync() is { } line)
                {
                    var request = JsonNode.Parse(line)!;
                    await writer.WriteLineAsync($$"""{"return": {}, "id": "{{++stale}}"}""");
                    var result = request["execute"]!.GetValue<string>() == "query-status" ? """{"status": "running", "singlestep": false, "running": true}""" : "{}";
                    await writer.WriteLineAsync($$"""{"return": {{result}}, "id": {{request["id"]!.ToJsonString()}}}""");
                }
            });
            await using (var qmp = await QmpClient.ConnectAsync(path, TimeSpan.FromSeconds(10), CancellationToken.None))
            {
                for (var i = 0; i < 3; i++)
                {
                    var status = (await qmp.ExecuteAsync("query-status", null, TimeSpan.FromSeconds(10), CancellationToken.None))?["status"]?.GetValue<string>();
                    status.Should().Be("running", "the answer to this connection's query-status is taken, not an older reply (round {0})", i);
                }
            }
            await server.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
