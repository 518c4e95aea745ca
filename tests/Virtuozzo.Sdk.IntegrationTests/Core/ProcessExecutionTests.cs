using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Core;

public class ProcessExecutionTests
{
    private readonly LocalHost _host = new();

    [Fact]
    public async Task I_can_run_a_program_and_get_its_exit_code_without_validation()
    {
        var r = await _host.ExecuteAsync(TestProgram.Command("exit", "7").WithValidation(CommandResultValidation.None));
        r.ExitCode.Should().Be(7);
        r.IsSuccess.Should().BeFalse();
        r.RunTime.Should().BePositive();
    }

    [Fact]
    public async Task A_non_zero_exit_throws_with_the_command_line_exit_code_and_stderr_tail()
    {
        var act = () => _host.ExecuteAsync(TestProgram.Command("stderr", "disk is on fire", "3"));
        var ex = (await act.Should().ThrowAsync<CommandFailedException>()).Which;
        ex.ExitCode.Should().Be(3);
        ex.StandardErrorTail.Should().Be("disk is on fire");
        ex.CommandLine.Should().Contain("stderr").And.Contain("'disk is on fire'");
        ex.Message.Should().Contain("exit code 3").And.Contain("disk is on fire");
    }

    [Fact]
    public async Task A_missing_program_is_reported_as_a_missing_tool()
    {
        var act = () => _host.ExecuteAsync(new Command("vzsdk-no-such-tool-xyz"));
        (await act.Should().ThrowAsync<ToolNotFoundException>()).Which.Tool.Should().Be("vzsdk-no-such-tool-xyz");
    }

    [Fact]
    public async Task Large_output_is_captured_whole()
    {
        const int size = 20 * 1024 * 1024 + 17;
        var r = await _host.ExecuteBufferedAsync(TestProgram.Command("spew", size.ToString()));
        r.StandardOutput.Length.Should().Be(size);
    }

    [Fact]
    public async Task Standard_input_from_bytes_and_from_a_stream_reaches_the_program()
    {
        var payload = new byte[3 * 1024 * 1024];
        new Random(1).NextBytes(payload);
        using var sink = new MemoryStream();
        await _host.ExecuteAsync(TestProgram.Command("echo-stdin").WithStandardInput(payload).WithStandardOutputPipe(PipeTarget.ToStream(sink)));
        sink.ToArray().Should().Equal(payload);

        var r = await _host.ExecuteBufferedAsync(TestProgram.Command("echo-stdin").WithStandardInput(new MemoryStream(Encoding.UTF8.GetBytes("héllo\n"))));
        r.StandardOutput.Should().Be("héllo\n");
    }

    [Fact]
    public async Task Output_lines_stream_to_a_delegate_as_they_are_produced()
    {
        var lines = new List<string>();
        await _host.ExecuteAsync(TestProgram.Command("lines", "1000").WithStandardOutputPipe(PipeTarget.ToDelegate(lines.Add)));
        lines.Should().HaveCount(1000);
        lines[0].Should().Be("line 1");
        lines[^1].Should().Be("line 1000");
    }

    [Fact]
    public async Task Environment_working_directory_and_arguments_are_passed_exactly()
    {
        using var dir = new TempDirectory();
        var env = await _host.ExecuteBufferedAsync(TestProgram.Command("env", "VZ_TEST").WithEnvironmentVariables(new Dictionary<string, string?> { ["VZ_TEST"] = "a b;c" }));
        env.StandardOutput.Trim().Should().Be("a b;c");
        var removed = await _host.ExecuteBufferedAsync(TestProgram.Command("env", "HOME").WithEnvironmentVariables(new Dictionary<string, string?> { ["HOME"] = null }));
        removed.StandardOutput.Trim().Should().Be("<unset>");
        var pwd = await _host.ExecuteBufferedAsync(TestProgram.Command("pwd").WithWorkingDirectory(dir.Path));
        pwd.StandardOutput.Trim().Should().Be(dir.Path);
        var args = await _host.ExecuteBufferedAsync(TestProgram.Command("args", "$(reboot)", "a b", "", "'q'"));
        args.StandardOutput.Split('\n')[..4].Should().Equal("$(reboot)", "a b", "", "'q'");
    }

    [Fact]
    public async Task A_timeout_terminates_the_program_and_throws_a_transient_timeout_error()
    {
        var sw = Stopwatch.StartNew();
        var act = () => _host.ExecuteAsync(TestProgram.Command("sleep", "60").WithTimeout(TimeSpan.FromMilliseconds(500)));
        var ex = (await act.Should().ThrowAsync<CommandTimeoutException>()).Which;
        ex.IsTransient.Should().BeTrue();
        ex.Timeout.Should().Be(TimeSpan.FromMilliseconds(500));
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task A_program_that_ignores_sigterm_is_killed_after_the_grace_period()
    {
        var ready = new TaskCompletionSource();
        using var cts = new CancellationTokenSource();
        var run = _host.ExecuteAsync(TestProgram.Command("ignore-term", "120")
            .WithGracePeriod(TimeSpan.FromMilliseconds(300))
            .WithStandardOutputPipe(PipeTarget.ToDelegate(l => { if (l == "ready") ready.TrySetResult(); })), cts.Token);
        await ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var sw = Stopwatch.StartNew();
        cts.Cancel();
        await run.Invoking(async r => await r).Should().ThrowAsync<OperationCanceledException>();
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Cancellation_terminates_the_whole_process_tree_and_leaves_no_orphan()
    {
        using var dir = new TempDirectory();
        var pidFile = dir.File("pids");
        using var cts = new CancellationTokenSource();
        var run = _host.ExecuteAsync(TestProgram.Command("spawn-child", pidFile), cts.Token);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!File.Exists(pidFile) || (await File.ReadAllTextAsync(pidFile)).Split(' ').Length < 2)
        {
            DateTime.UtcNow.Should().BeBefore(deadline, "the test program should have started its child");
            await Task.Delay(50);
        }
        var pids = (await File.ReadAllTextAsync(pidFile)).Split(' ').Select(int.Parse).ToArray();
        pids.Should().OnlyContain(p => IsAlive(p));

        cts.Cancel();
        await run.Invoking(async r => await r).Should().ThrowAsync<OperationCanceledException>();
        pids.Should().OnlyContain(p => !IsAlive(p), "neither the program nor its child may outlive the cancellation");
    }

    [Fact]
    public async Task A_shell_that_ignores_sigterm_and_its_child_are_both_dead_after_cancellation()
    {
        // Both the shell and its child inherit the ignored SIGTERM, so only the SIGKILL after the grace period ends them.
        var pids = new TaskCompletionSource<int[]>();
        using var cts = new CancellationTokenSource();
        var run = _host.ExecuteAsync(new Command("sh")
            .WithArguments("-c", "trap '' TERM; sleep 60 & echo \"$$ $!\"; wait")
            .WithGracePeriod(TimeSpan.FromMilliseconds(300))
            .WithStandardOutputPipe(PipeTarget.ToDelegate(l => pids.TrySetResult(l.Split(' ').Select(int.Parse).ToArray()))), cts.Token);
        var tree = await pids.Task.WaitAsync(TimeSpan.FromSeconds(30));
        tree.Should().HaveCount(2);
        tree.Should().OnlyContain(p => IsAlive(p), "the shell and its sleep child run until cancelled");
        // SIGTERM alone must not end them: the trap is in place before the pids are printed.
        foreach (var p in tree)
            Virtuozzo.Sdk.Core.Internal.Native.TrySignal(p, Virtuozzo.Sdk.Core.Internal.Native.SIGTERM).Should().BeTrue();
        await Task.Delay(200);
        tree.Should().OnlyContain(p => IsAlive(p), "both ignore SIGTERM");

        var sw = Stopwatch.StartNew();
        cts.Cancel();
        await run.Invoking(async r => await r).Should().ThrowAsync<OperationCanceledException>();
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(10));
        tree.Should().OnlyContain(p => !IsAlive(p), "the shell and its child must both be killed (/proc/PID gone or a zombie)");
    }

    [Fact]
    public async Task Arguments_with_whitespace_quotes_and_backslashes_reach_the_program_unchanged()
    {
        string[] tricky = ["a\tb", "x\\\"y", "trailing\\", "new\nline", "nbsp\u00a0here", " lead", "\"", "\\\\\""];
        var r = await _host.ExecuteBufferedAsync(new Command("printf").WithArguments(["%s\\0", .. tricky]));
        r.StandardOutput.Split('\0')[..tricky.Length].Should().Equal(tricky);
    }

    [Fact]
    public async Task A_daemon_that_keeps_the_output_pipe_open_does_not_hang_the_command()
    {
        var sw = Stopwatch.StartNew();
        var r = await _host.ExecuteBufferedAsync(new Command("sh").WithArguments("-c", "sleep 20 & echo started"));
        r.StandardOutput.Should().Be("started\n");
        sw.Elapsed.Should().BeLessThan(TimeSpan.FromSeconds(15), "the command exited at once; only its background child holds the pipe");
    }

    [Fact]
    public async Task Output_sent_nowhere_is_read_and_discarded_so_the_program_does_not_fail_writing_it()
    {
        var r = await _host.ExecuteAsync(TestProgram.Command("spew", (8 * 1024 * 1024).ToString()).WithStandardOutputPipe(PipeTarget.Null));
        r.ExitCode.Should().Be(0);
    }

    [Fact]
    public async Task Secrets_are_redacted_from_messages_and_debug_logs()
    {
        var logger = new ListLogger();
        var host = new LocalHost(logger);
        var act = () => host.ExecuteAsync(TestProgram.Command("stderr", "bad password hunter2 for root", "1").WithSecrets("hunter2"));
        var ex = (await act.Should().ThrowAsync<CommandFailedException>()).Which;
        ex.Message.Should().NotContain("hunter2").And.Contain("***");
        ex.CommandLine.Should().NotContain("hunter2");
        ex.StandardErrorTail.Should().Be("bad password *** for root");
        logger.Lines.Should().NotBeEmpty().And.OnlyContain(l => !l.Contains("hunter2"));
        logger.Lines.Should().Contain(l => l.Contains("Running") && l.Contains("***"));
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException) { return false; }
    }

    private sealed class ListLogger : ILogger<LocalHost>
    {
        public List<string> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines)
                Lines.Add(formatter(state, exception));
        }
    }
}
