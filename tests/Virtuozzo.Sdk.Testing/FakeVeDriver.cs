using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime;
using Virtuozzo.Sdk.Core.State;

namespace Virtuozzo.Sdk.Testing;

/// <summary>
/// A test double of a runtime's VE inventory and of one kind's driver: VEs live in memory, verbs follow the SDK's one
/// transition table (<see cref="VeTransitions"/>), and every call is recorded. Unit tests run the public clients over it
/// without root, runc or QEMU.
/// </summary>
internal sealed class FakeVeWorld : IVeInventory
{
    private readonly object _gate = new();
    private readonly Dictionary<VeId, VeInfo> _ves = [];

    /// <summary>The calls drivers received, as "Kind.Verb name".</summary>
    public List<string> Calls { get; } = [];

    public FakeVeDriver Containers => field ??= new FakeVeDriver(this, VeKind.Container);

    public FakeVeDriver Vms => field ??= new FakeVeDriver(this, VeKind.Vm);

    /// <summary>Adds a VE in the given state.</summary>
    public VeInfo Add(string name, VeKind kind, VeState state = VeState.Stopped)
    {
        var ve = new VeInfo
        {
            Id = VeId.New(), Name = new VeName(name), Kind = kind, State = state, MemorySize = ByteSize.FromMiB(512),
            CreatedAt = DateTimeOffset.UtcNow,
        };
        lock (_gate)
            _ves[ve.Id] = ve;
        return ve;
    }

    /// <summary>Changes a VE behind the SDK's back (as another process or the VE itself would).</summary>
    public void Set(VeId id, Func<VeInfo, VeInfo> change)
    {
        lock (_gate)
            _ves[id] = change(_ves[id]);
    }

    public void Remove(VeId id)
    {
        lock (_gate)
            _ves.Remove(id);
    }

    public IReadOnlyList<VeInfo> Snapshot(VeKind kind)
    {
        lock (_gate)
            return _ves.Values.Where(v => v.Kind == kind).ToList();
    }

    public VeInfo Get(VeId id)
    {
        lock (_gate)
            return _ves.TryGetValue(id, out var v) ? v : throw new NotFoundException($"There is no VE {id}.");
    }

    public Task<IReadOnlyList<VeIdentity>> ListAsync(CancellationToken cancellationToken, VeKind? kind = null)
    {
        lock (_gate)
        {
            IReadOnlyList<VeIdentity> list = _ves.Values.Where(v => kind is null || v.Kind == kind).OrderBy(v => v.Name.Value, StringComparer.Ordinal)
                .Select(v => new VeIdentity(1, v.Id.ToString(), v.Name.Value, v.Kind, v.CreatedAt)).ToList();
            return Task.FromResult(list);
        }
    }

    public Task<VeIdentity?> FindAsync(string nameOrId, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            var v = VeId.TryParse(nameOrId, out var id) ? _ves.GetValueOrDefault(id) : _ves.Values.FirstOrDefault(x => x.Name.Value == nameOrId);
            return Task.FromResult(v is null ? null : new VeIdentity(1, v.Id.ToString(), v.Name.Value, v.Kind, v.CreatedAt));
        }
    }

    /// <summary>A runtime over this world with both kinds' drivers registered.</summary>
    public VirtuozzoRuntime CreateRuntime()
    {
        var runtime = VirtuozzoRuntime.ForTesting(this);
        runtime.GetDriver<IVeDriver>(VeKind.Container, _ => Containers);
        runtime.GetDriver<IVeDriver>(VeKind.Vm, _ => Vms);
        return runtime;
    }
}

/// <summary>One kind's driver over a <see cref="FakeVeWorld"/>.</summary>
internal sealed class FakeVeDriver(FakeVeWorld world, VeKind kind) : IVeDriver
{
    public VeKind Kind => kind;

    /// <summary>What <see cref="ExecVeAsync"/> answers; by default exit 0 with the command line echoed.</summary>
    public Func<VeInfo, VeExecOptions, VeExecResult> Exec { get; set; } = (_, o) => new VeExecResult(0, string.Join(' ', o.EffectiveCommand) + "\n", "");

    private VeInfo Verb(VeId id, VeVerb verb, VeState? to)
    {
        var ve = world.Get(id);
        world.Calls.Add($"{kind}.{verb} {ve.Name}");
        VeTransitions.Require(kind, ve.Name.Value, ve.State, verb);
        if (to is { } s)
            world.Set(id, v => v with { State = s });
        return world.Get(id);
    }

    public Task<IReadOnlyList<VeInfo>> ListVesAsync(CancellationToken cancellationToken) => Task.FromResult(world.Snapshot(kind));

    public Task<VeInfo> GetVeAsync(VeId id, CancellationToken cancellationToken) => Task.FromResult(world.Get(id));

    public Task<VeInfo> StartVeAsync(VeId id, CancellationToken cancellationToken) => Task.FromResult(Verb(id, VeVerb.Start, VeState.Running));

    public Task<VeStopMethod> StopVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken)
    {
        var was = world.Get(id).State;
        Verb(id, VeVerb.Stop, VeState.Stopped);
        return Task.FromResult(was == VeState.Stopped ? VeStopMethod.AlreadyStopped : options.Kill ? VeStopMethod.Killed : kind == VeKind.Container ? VeStopMethod.Signal : VeStopMethod.GuestTools);
    }

    public Task<VeInfo> RestartVeAsync(VeId id, VeStopOptions options, CancellationToken cancellationToken) => Task.FromResult(Verb(id, VeVerb.Restart, VeState.Running));

    public Task<VeInfo> SuspendVeAsync(VeId id, CancellationToken cancellationToken) => Task.FromResult(Verb(id, VeVerb.Suspend, VeState.Suspended));

    public Task<VeInfo> ResumeVeAsync(VeId id, CancellationToken cancellationToken) => Task.FromResult(Verb(id, VeVerb.Resume, VeState.Running));

    public Task<bool> DeleteVeAsync(VeId id, CancellationToken cancellationToken)
    {
        world.Calls.Add($"{kind}.Delete {world.Get(id).Name}");
        world.Remove(id);
        return Task.FromResult(true);
    }

    public Task<VeInfo> RenameVeAsync(VeId id, VeName newName, CancellationToken cancellationToken)
    {
        world.Calls.Add($"{kind}.Rename {world.Get(id).Name}");
        world.Set(id, v => v with { Name = newName });
        return Task.FromResult(world.Get(id));
    }

    public Task<VeExecResult> ExecVeAsync(VeId id, VeExecOptions options, CancellationToken cancellationToken)
    {
        var ve = Verb(id, VeVerb.Exec, null);
        return Task.FromResult(Exec(ve, options));
    }

    public Task<VeUsage> GetVeUsageAsync(VeId id, CancellationToken cancellationToken)
    {
        var ve = world.Get(id);
        return Task.FromResult(new VeUsage(id, kind, ve.State, TimeSpan.FromSeconds(1), ve.State == VeState.Stopped ? null : 1024, 2048, ve.DiskSize.Bytes, 10, 20, DateTimeOffset.UtcNow));
    }
}
