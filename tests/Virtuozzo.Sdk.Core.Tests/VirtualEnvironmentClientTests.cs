using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Core.Tests;

/// <summary>The unified client over test doubles of the runtime seam: routing, merging, naming, events.</summary>
public class VirtualEnvironmentClientTests
{
    private readonly FakeVeWorld _world = new();

    private VirtualEnvironmentClient Client() => new(_world.CreateRuntime());

    [Fact]
    public async Task Containers_and_vms_are_listed_together_by_name_and_only_running_ones_without_all()
    {
        _world.Add("web", VeKind.Container, VeState.Running);
        _world.Add("db", VeKind.Vm, VeState.Running);
        _world.Add("archive", VeKind.Container);
        _world.Add("build", VeKind.Vm, VeState.Paused);

        var all = await Client().ListAsync();
        all.Select(v => (v.Name.Value, v.Kind)).Should().Equal(("archive", VeKind.Container), ("build", VeKind.Vm), ("db", VeKind.Vm), ("web", VeKind.Container));

        var running = await Client().ListAsync(all: false);
        running.Select(v => v.Name.Value).Should().Equal("build", "db", "web");
    }

    [Fact]
    public async Task Each_verb_reaches_the_driver_of_the_ve_kind_whether_named_by_name_uuid_or_braced_uuid()
    {
        var ct = _world.Add("web", VeKind.Container);
        var vm = _world.Add("db", VeKind.Vm);
        var client = Client();

        await client.StartAsync("web");
        await client.StartAsync(vm.Id);
        await client.SuspendAsync(ct.Id.ToBracedString());
        await client.StopAsync(new VeName("db"));

        _world.Calls.Should().Equal("Container.Start web", "Vm.Start db", "Container.Suspend web", "Vm.Stop db");
        (await client.GetAsync("web")).State.Should().Be(VeState.Suspended);
        (await client.GetAsync("db")).State.Should().Be(VeState.Stopped);
    }

    [Fact]
    public async Task A_verb_the_state_does_not_allow_is_refused_with_the_ve_named()
    {
        _world.Add("web", VeKind.Container, VeState.Running);
        var act = () => Client().StartAsync("web");
        (await act.Should().ThrowAsync<InvalidStateException>()).WithMessage("Container web is running; only a stopped container can be started.");

        _world.Add("db", VeKind.Vm);
        var exec = () => Client().ExecAsync("db", new VeExecOptions { Command = ["true"] });
        (await exec.Should().ThrowAsync<InvalidStateException>()).WithMessage("VM db is stopped; start it*");
    }

    [Fact]
    public async Task An_unknown_ve_is_not_found_by_every_verb_but_delete_which_answers_false()
    {
        var client = Client();
        await client.Awaiting(c => c.StartAsync("ghost")).Should().ThrowAsync<NotFoundException>().WithMessage("*'ghost'*");
        await client.Awaiting(c => c.GetUsageAsync("ghost")).Should().ThrowAsync<NotFoundException>();
        (await client.DeleteAsync("ghost")).Should().BeFalse();
        _world.Calls.Should().BeEmpty();
    }

    [Fact]
    public async Task Bad_input_is_refused_before_any_driver_is_called()
    {
        _world.Add("web", VeKind.Container, VeState.Running);
        var client = Client();
        await client.Awaiting(c => c.ExecAsync("web", new VeExecOptions { Command = [] })).Should().ThrowAsync<ArgumentException>();
        await client.Awaiting(c => c.ExecAsync("web", new VeExecOptions { Command = ["ls"], WorkingDirectory = "relative" })).Should().ThrowAsync<ArgumentException>();
        await client.Awaiting(c => c.ExecAsync("web", new VeExecOptions { Command = ["ls"], Environment = new Dictionary<string, string> { ["A=B"] = "x" } })).Should().ThrowAsync<ArgumentException>();
        await client.Awaiting(c => c.StopAsync("web", new VeStopOptions { Timeout = TimeSpan.FromSeconds(-1) })).Should().ThrowAsync<ArgumentOutOfRangeException>();
        await client.Awaiting(c => c.StartAsync("  ")).Should().ThrowAsync<ArgumentException>();
        _world.Calls.Should().BeEmpty();
    }

    [Fact]
    public async Task A_kind_without_a_driver_is_refused_by_name()
    {
        var runtime = VirtuozzoRuntime.ForTesting(_world);
        runtime.GetDriver<IVeDriver>(VeKind.Container, _ => _world.Containers);
        _world.Add("db", VeKind.Vm);
        var act = () => new VirtualEnvironmentClient(runtime).StartAsync("db");
        await act.Should().ThrowAsync<UnsupportedOnHostException>().WithMessage("*VMs are not enabled*AddVirtualMachines*");
    }

    [Fact]
    public async Task Exec_returns_the_program_outcome_and_honours_the_shell_option()
    {
        _world.Add("web", VeKind.Container, VeState.Running);
        var r = await Client().ExecAsync("web", new VeExecOptions { Command = ["echo", "a", "b"], Shell = true });
        r.Should().Be(new VeExecResult(0, "/bin/sh -c echo a b\n", ""));
    }

    [Fact]
    public async Task Watching_reports_creation_state_changes_renames_and_deletion_in_order()
    {
        var web = _world.Add("web", VeKind.Container);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var events = new List<VeEvent>();
        var watcher = Task.Run(async () =>
        {
            await foreach (var e in Client().WatchAsync(new VeWatchOptions { Interval = TimeSpan.FromMilliseconds(20), IncludeExisting = true }, cts.Token))
            {
                lock (events)
                    events.Add(e);
                if (e.Type == VeEventType.Deleted)
                    break;
            }
        });
        async Task Until(Func<List<VeEvent>, bool> seen)
        {
            while (!cts.IsCancellationRequested)
            {
                lock (events)
                    if (seen(events)) return;
                await Task.Delay(10);
            }
        }

        await Until(e => e.Count == 1);
        _world.Set(web.Id, v => v with { State = VeState.Running });
        await Until(e => e.Count == 2);
        _world.Set(web.Id, v => v with { Name = new VeName("www") });
        await Until(e => e.Count == 3);
        var db = _world.Add("db", VeKind.Vm);
        await Until(e => e.Count == 4);
        _world.Remove(web.Id);
        await watcher.WaitAsync(cts.Token);

        events.Select(e => (e.Type, e.Name.Value, e.State, e.PreviousState)).Should().Equal(
            (VeEventType.Created, "web", VeState.Stopped, (VeState?)null),
            (VeEventType.StateChanged, "web", VeState.Running, VeState.Stopped),
            (VeEventType.Renamed, "www", VeState.Running, VeState.Running),
            (VeEventType.Created, "db", VeState.Stopped, null),
            (VeEventType.Deleted, "www", VeState.Running, VeState.Running));
        events[3].Kind.Should().Be(VeKind.Vm);
        events[3].Id.Should().Be(db.Id);
    }

    [Fact]
    public async Task Usage_comes_from_the_driver_of_the_ve_kind()
    {
        var vm = _world.Add("db", VeKind.Vm, VeState.Running);
        var usage = await Client().GetUsageAsync("db");
        usage.Id.Should().Be(vm.Id);
        usage.Kind.Should().Be(VeKind.Vm);
        usage.MemoryUsedBytes.Should().Be(1024);
    }
}

/// <summary>The one transition table every runtime enforces.</summary>
public class VeTransitionTests
{
    [Theory]
    [InlineData(VeKind.Container, VeState.Stopped, "Start", true)]
    [InlineData(VeKind.Container, VeState.Running, "Start", false)]
    [InlineData(VeKind.Container, VeState.Suspended, "Start", false)]
    [InlineData(VeKind.Vm, VeState.Suspended, "Start", true)]
    [InlineData(VeKind.Container, VeState.Mounted, "Start", false)]
    [InlineData(VeKind.Container, VeState.Mounted, "Stop", false)]
    [InlineData(VeKind.Container, VeState.Stopped, "Stop", true)]
    [InlineData(VeKind.Vm, VeState.Busy, "Stop", false)]
    [InlineData(VeKind.Container, VeState.Running, "Suspend", true)]
    [InlineData(VeKind.Container, VeState.Suspended, "Suspend", false)]
    [InlineData(VeKind.Vm, VeState.Paused, "Resume", true)]
    [InlineData(VeKind.Container, VeState.Paused, "Resume", false)]
    [InlineData(VeKind.Container, VeState.Suspended, "Exec", false)]
    [InlineData(VeKind.Vm, VeState.Running, "Exec", true)]
    [InlineData(VeKind.Container, VeState.Running, "Clone", false)]
    [InlineData(VeKind.Container, VeState.Stopped, "Mount", true)]
    [InlineData(VeKind.Container, VeState.Mounted, "Unmount", true)]
    [InlineData(VeKind.Container, VeState.Stopped, "Unmount", false)]
    [InlineData(VeKind.Vm, VeState.Stopped, "Mount", false)]
    public void A_verb_is_allowed_only_in_the_states_its_table_names(VeKind kind, VeState state, string verb, bool allowed)
        => VeTransitions.Allows(kind, state, Enum.Parse<VeVerb>(verb)).Should().Be(allowed);

    [Fact]
    public void A_refusal_names_the_ve_and_what_to_do()
    {
        var act = () => VeTransitions.Require(VeKind.Container, "web", VeState.Stopped, VeVerb.Exec);
        act.Should().Throw<InvalidStateException>().WithMessage("Container web is stopped; start it (or resume it) to run commands in it.");
        var busy = () => VeTransitions.Require(VeKind.Vm, "db", VeState.Busy, VeVerb.Start);
        busy.Should().Throw<InvalidStateException>().WithMessage("VM db is busy*");
        var mountVm = () => VeTransitions.Require(VeKind.Vm, "db", VeState.Stopped, VeVerb.Mount);
        mountVm.Should().Throw<UnsupportedOnHostException>();
    }
}
