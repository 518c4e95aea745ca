namespace Virtuozzo.Sdk.Core.Runtime;

/// <summary>The verbs whose preconditions on a VE's state every runtime enforces the same way.</summary>
internal enum VeVerb
{
    Start,
    Stop,
    Restart,
    Suspend,
    Resume,
    Exec,
    Clone,
    Mount,
    Unmount,
}

/// <summary>
/// Which states each verb accepts, and the error that names the VE and says what to do otherwise. One table for every
/// runtime and both kinds, so that the same request meets the same answer whichever runtime serves it.
/// </summary>
internal static class VeTransitions
{
    /// <summary>True when <paramref name="verb"/> may act on a VE of <paramref name="kind"/> in <paramref name="state"/>.</summary>
    public static bool Allows(VeKind kind, VeState state, VeVerb verb) => (verb, state) switch
    {
        (_, VeState.Busy) => false,
        (VeVerb.Start, VeState.Stopped) => true,
        (VeVerb.Start, VeState.Suspended) => kind == VeKind.Vm, // a suspended VM starts from its saved state
        (VeVerb.Stop or VeVerb.Restart, VeState.Mounted) => false,
        (VeVerb.Stop or VeVerb.Restart, _) => true, // stopping a stopped VE does nothing
        (VeVerb.Suspend, VeState.Running) => true,
        (VeVerb.Suspend, VeState.Paused) => kind == VeKind.Vm,
        (VeVerb.Resume, VeState.Suspended) => true,
        (VeVerb.Resume, VeState.Paused) => kind == VeKind.Vm,
        (VeVerb.Exec, VeState.Running) => true,
        (VeVerb.Clone, VeState.Stopped) => true,
        (VeVerb.Mount, VeState.Stopped) => kind == VeKind.Container,
        (VeVerb.Unmount, VeState.Mounted) => kind == VeKind.Container,
        _ => false,
    };

    /// <summary>Throws <see cref="InvalidStateException"/> (or <see cref="UnsupportedOnHostException"/> for a verb the kind does not have) unless the verb is allowed.</summary>
    public static void Require(VeKind kind, string name, VeState state, VeVerb verb)
    {
        if (Allows(kind, state, verb))
            return;
        var what = kind == VeKind.Container ? "Container" : "VM";
        if (verb is VeVerb.Mount or VeVerb.Unmount && kind == VeKind.Vm)
            throw new UnsupportedOnHostException($"VM {name} has no container disk to mount; mount and unmount apply to containers.");
        var now = state.ToString().ToLowerInvariant();
        throw new InvalidStateException(verb switch
        {
            _ when state == VeState.Busy => $"{what} {name} is busy with another operation; try again when it is done.",
            VeVerb.Start => $"{what} {name} is {now}; only a stopped {what.ToLowerInvariant()} can be started.",
            VeVerb.Stop or VeVerb.Restart => $"{what} {name} is mounted, not running: unmount it instead.",
            VeVerb.Suspend => $"{what} {name} is {now}; only a running {what.ToLowerInvariant()} can be suspended.",
            VeVerb.Resume => $"{what} {name} is {now}, not suspended.",
            VeVerb.Exec => $"{what} {name} is {now}; start it (or resume it) to run commands in it.",
            VeVerb.Clone => $"{what} {name} is {now}; stop it to clone it.",
            VeVerb.Mount => $"{what} {name} is {now}; only a stopped container can be mounted.",
            VeVerb.Unmount => $"{what} {name} is {now}, not mounted.",
            _ => $"{what} {name} is {now}.",
        });
    }
}
