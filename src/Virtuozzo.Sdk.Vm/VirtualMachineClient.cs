using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Vm.Runtime;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.Vm;

/// <summary>
/// Creates and runs virtual machines: lifecycle (create, start, stop, pause, suspend, delete), live changes (memory,
/// CPU and disk hotplug, disk resize), guest operations through the guest tools (exec, passwords, network information),
/// snapshots and clones. Memory guarantees are admitted by the runtime's ledger, the same account containers use.
/// </summary>
/// <remarks>
/// The equivalent of <c>prlctl</c> for VMs. The runtime chosen for the SDK does the work (<see cref="VirtuozzoRuntime"/>;
/// the local runtime by default). The verbs every VE has (start, stop, exec…) have the same names, options and results
/// here as on <see cref="VirtualEnvironmentClient"/> and the container client. Every operation on one VM holds that VM's
/// lock. Every member is virtual so that SDK users can mock the client in their tests.
/// </remarks>
public class VirtualMachineClient
{
    private readonly IVmDriver? _driver;

    /// <summary>Creates a client over an SDK runtime, sharing its state, ledger and drivers with every other client of that runtime.</summary>
    /// <param name="runtime">The SDK's runtime.</param>
    /// <param name="options">Timeouts of the runtime's VM driver; the first VM client created on a runtime sets them. Null for the defaults.</param>
    /// <exception cref="UnsupportedOnHostException">The runtime cannot run VMs.</exception>
    public VirtualMachineClient(VirtuozzoRuntime runtime, VirtualMachineClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        var o = options ?? new VirtualMachineClientOptions();
        _driver = runtime.GetDriver<IVmDriver>(VeKind.Vm, rt => CreateDriver(rt, o));
    }

    /// <summary>For mocking frameworks: a client with no runtime behind it.</summary>
    protected VirtualMachineClient()
    {
    }

    internal VirtualMachineClient(IVmDriver driver) => _driver = driver;

    internal static IVmDriver CreateDriver(VirtuozzoRuntime runtime, VirtualMachineClientOptions options) => runtime.Kind switch
    {
        RuntimeKind.Local => new LocalVmDriver(runtime, options),
        RuntimeKind.Virtuozzo => new Runtime.Virtuozzo.VirtuozzoVmDriver(runtime),
        RuntimeKind.Libvirt => new Runtime.Libvirt.LibvirtVmDriver(runtime),
        _ => throw new UnsupportedOnHostException($"VMs are not available on the {runtime.Kind} runtime yet."),
    };

    private IVmDriver Driver => _driver ?? throw new InvalidOperationException("This VirtualMachineClient was made for mocking and has no runtime.");

    internal IVmDriver DriverForTests => Driver;

    /// <summary>Creates a VM (stopped) with its disks.</summary>
    /// <remarks>The equivalent of <c>prlctl create NAME --vmtype vm</c>.</remarks>
    /// <exception cref="ArgumentException">The name or a setting is invalid.</exception>
    /// <exception cref="AlreadyExistsException">A container or VM with that name exists.</exception>
    public virtual Task<VmInfo> CreateAsync(VmCreateOptions options, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.CreateOperation, VeKind.Vm, options?.Name.ToString(), _ => Driver.CreateAsync(options!, cancellationToken));

    /// <summary>Lists VMs with their state: all of them, or only the running (or paused) ones.</summary>
    /// <remarks>The equivalent of <c>prlctl list [-a] --vmtype vm</c>.</remarks>
    public virtual async Task<IReadOnlyList<VmInfo>> ListAsync(bool all = true, CancellationToken cancellationToken = default)
    {
        var list = await Driver.ListAsync(cancellationToken).ConfigureAwait(false);
        return all ? list : list.Where(v => v.IsRunning).ToList();
    }

    /// <summary>Returns one VM's configuration and state.</summary>
    /// <remarks>The equivalent of <c>prlctl list -i NAME</c>.</remarks>
    /// <exception cref="NotFoundException">No VM has this name or UUID.</exception>
    public virtual Task<VmInfo> GetAsync(VeRef vm, CancellationToken cancellationToken = default)
        => Driver.GetAsync(vm.Value, cancellationToken);

    /// <summary>
    /// Cleans up after VMs whose emulator is gone (a crash, a kill, a host reboot): removes their sockets and pid files,
    /// taps and cgroups, and releases their memory guarantees. Returns how many VMs were cleaned. Other operations do
    /// the same lazily for the VM they touch; call this at service start to settle the ledger at once.
    /// </summary>
    public virtual Task<int> ReconcileAsync(CancellationToken cancellationToken = default)
        => Driver.ReconcileAsync(cancellationToken);

    /// <summary>
    /// Starts a VM (or resumes a suspended one from its saved state). Its memory guarantee is admitted by the ledger
    /// first; a start that fails leaves no process, socket or reservation behind.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl start NAME</c>.</remarks>
    /// <exception cref="InvalidStateException">The VM is already running.</exception>
    /// <exception cref="InsufficientResourcesException">The host cannot guarantee the VM's memory.</exception>
    /// <exception cref="UnsupportedOnHostException">Hardware acceleration was required but does not work here.</exception>
    public virtual Task<VmInfo> StartAsync(VeRef vm, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.StartOperation, VeKind.Vm, vm.Value, _ => Driver.StartAsync(vm.Value, cancellationToken));

    /// <summary>
    /// Stops a VM: asks the guest to power off through its guest tools when they answer, otherwise (and again when the
    /// guest tools' request goes unheeded) presses the ACPI power button; waits up to the timeout (default 60 s) and
    /// then kills it. Releases the VM's memory guarantee.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME [--kill]</c>.</remarks>
    public virtual Task<VeStopMethod> StopAsync(VeRef vm, VeStopOptions? options = null, CancellationToken cancellationToken = default)
        => SdkTelemetry.TraceAsync(VirtuozzoSdkTelemetry.StopOperation, VeKind.Vm, vm.Value, _ => Driver.StopAsync(vm.Value, options, cancellationToken));

    /// <summary>Stops the VM (politely first, as <see cref="StopAsync"/>) if it runs, and starts it again.</summary>
    /// <remarks>The equivalent of <c>prlctl restart NAME</c>.</remarks>
    /// <returns>The VM afterwards.</returns>
    public virtual async Task<VmInfo> RestartAsync(VeRef vm, VeStopOptions? options = null, CancellationToken cancellationToken = default)
    {
        options?.Validate();
        await Driver.StopAsync(vm.Value, options, cancellationToken).ConfigureAwait(false);
        return await Driver.StartAsync(vm.Value, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Kills a running VM at once (its guest gets no chance to shut down) and releases its memory guarantee.</summary>
    /// <remarks>The equivalent of <c>prlctl stop NAME --kill</c>.</remarks>
    /// <returns>The VM afterwards.</returns>
    public virtual async Task<VmInfo> KillAsync(VeRef vm, CancellationToken cancellationToken = default)
    {
        await Driver.KillAsync(vm.Value, cancellationToken).ConfigureAwait(false);
        return await Driver.GetAsync(vm.Value, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Pauses a running VM (its vCPUs stop; memory stays allocated).</summary>
    /// <remarks>The equivalent of <c>prlctl pause NAME</c>.</remarks>
    /// <returns>The VM afterwards.</returns>
    public virtual async Task<VmInfo> PauseAsync(VeRef vm, CancellationToken cancellationToken = default)
    {
        await Driver.PauseAsync(vm.Value, cancellationToken).ConfigureAwait(false);
        return await Driver.GetAsync(vm.Value, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Resumes a paused VM, or starts a suspended one from its saved state.</summary>
    /// <remarks>The equivalent of <c>prlctl resume NAME</c>.</remarks>
    /// <returns>The VM afterwards.</returns>
    public virtual async Task<VmInfo> ResumeAsync(VeRef vm, CancellationToken cancellationToken = default)
    {
        await Driver.ResumeAsync(vm.Value, cancellationToken).ConfigureAwait(false);
        return await Driver.GetAsync(vm.Value, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Resets a running VM (a hardware reset: the guest reboots without shutting down).</summary>
    /// <remarks>The equivalent of <c>prlctl reset NAME</c>.</remarks>
    /// <returns>The VM afterwards.</returns>
    public virtual async Task<VmInfo> ResetAsync(VeRef vm, CancellationToken cancellationToken = default)
    {
        await Driver.ResetAsync(vm.Value, cancellationToken).ConfigureAwait(false);
        return await Driver.GetAsync(vm.Value, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes a stopped VM with its disks and saved state.</summary>
    /// <remarks>The equivalent of <c>prlctl delete NAME</c>.</remarks>
    /// <exception cref="InvalidStateException">The VM is running.</exception>
    public virtual Task<bool> DeleteAsync(VeRef vm, CancellationToken cancellationToken = default)
        => Driver.DeleteAsync(vm.Value, cancellationToken);

    /// <summary>Renames a VM (running or not).</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --name NEW</c>.</remarks>
    /// <exception cref="AlreadyExistsException">The new name is taken.</exception>
    public virtual Task<VmInfo> RenameAsync(VeRef vm, VeName newName, CancellationToken cancellationToken = default)
        => Driver.RenameAsync(vm.Value, newName, cancellationToken);

    /// <summary>Waits until the guest tools in a running VM answer (the guest has booted far enough to be managed).</summary>
    /// <exception cref="TimeoutException">They did not answer within <paramref name="timeout"/>.</exception>
    public virtual Task WaitForGuestToolsAsync(VeRef vm, TimeSpan timeout, CancellationToken cancellationToken = default)
        => Driver.WaitForGuestToolsAsync(vm.Value, timeout, cancellationToken);

    /// <summary>Runs a program in a running guest through its guest tools and returns its exit code and output.</summary>
    /// <remarks>The equivalent of <c>prlctl exec NAME CMD</c>.</remarks>
    /// <exception cref="InvalidStateException">The VM is not running, or its guest tools do not answer.</exception>
    /// <exception cref="TimeoutException">The program ran longer than <see cref="VeExecOptions.Timeout"/>.</exception>
    public virtual Task<VeExecResult> ExecAsync(VeRef vm, VeExecOptions options, CancellationToken cancellationToken = default)
        => Driver.ExecAsync(vm.Value, options, cancellationToken);

    /// <summary>Sets the password of a user in a running guest through its guest tools.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --userpasswd USER:PASSWORD</c>. The password is never logged.</remarks>
    public virtual Task SetUserPasswordAsync(VeRef vm, string user, string password, CancellationToken cancellationToken = default)
        => Driver.SetUserPasswordAsync(vm.Value, user, password, cancellationToken);

    /// <summary>Reads the guest's network interfaces and addresses through its guest tools.</summary>
    public virtual Task<IReadOnlyList<VmGuestInterface>> GetGuestNetworkAsync(VeRef vm, CancellationToken cancellationToken = default)
        => Driver.GetGuestNetworkAsync(vm.Value, cancellationToken);

    /// <summary>
    /// Changes a VM's settings. They are persisted, and applied to a running VM where it allows: memory through the
    /// balloon and DIMM hotplug (growing deflates the balloon first, then plugs a DIMM that is a multiple of 128 MiB;
    /// shrinking inflates the balloon), vCPUs through CPU hotplug (brought online by the guest tools), the CPU mask by
    /// pinning the vCPU threads. A raised guarantee is admitted by the resource ledger first.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --memsize … --cpus … --cpumask …</c>.</remarks>
    /// <exception cref="InvalidStateException">The change cannot be made live (memory hotplug off), or the VM is suspended.</exception>
    /// <exception cref="InsufficientResourcesException">The host cannot guarantee the new memory, or no DIMM slot is free.</exception>
    public virtual Task<VmInfo> SetAsync(VeRef vm, VmSetOptions options, CancellationToken cancellationToken = default)
        => Driver.SetAsync(vm.Value, options, cancellationToken);

    /// <summary>Adds a new (or copied) QCOW2 disk to a VM; a running VM gets it hotplugged.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --device-add hdd --size SIZE</c>.</remarks>
    public virtual Task<VmDiskInfo> AddDiskAsync(VeRef vm, VmDiskOptions disk, CancellationToken cancellationToken = default)
        => Driver.AddDiskAsync(vm.Value, disk, cancellationToken);

    /// <summary>Removes a disk from a VM (unplugging it from a running VM) and deletes its image.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --device-del hddN</c>.</remarks>
    public virtual Task RemoveDiskAsync(VeRef vm, string diskName, CancellationToken cancellationToken = default)
        => Driver.RemoveDiskAsync(vm.Value, diskName, cancellationToken);

    /// <summary>Grows a disk of a VM, online (the guest sees the new size at once) or offline. Shrinking is refused.</summary>
    /// <remarks>The equivalent of <c>prlctl set NAME --device-set hddN --size SIZE</c> and <c>prl_disk_tool resize</c>.</remarks>
    public virtual Task<VmDiskInfo> ResizeDiskAsync(VeRef vm, string diskName, ByteSize newSize, CancellationToken cancellationToken = default)
        => Driver.ResizeDiskAsync(vm.Value, diskName, newSize, cancellationToken);

    /// <summary>
    /// Compacts a stopped VM's disk: blocks the guest no longer uses are given back to the host, so the image file
    /// shrinks; the disk's virtual size does not change.
    /// </summary>
    /// <remarks>
    /// The equivalent of <c>prl_disk_tool compact --hdd IMAGE</c> on a Virtuozzo node. The local runtime does not compact
    /// disks and refuses with <see cref="UnsupportedOnHostException"/> (see <c>HostCapabilities.Features["disk_compaction"]</c>).
    /// </remarks>
    /// <returns>The disk afterwards.</returns>
    /// <exception cref="ArgumentException"><paramref name="diskName"/> is empty or not a disk name (<c>hdd0</c>…).</exception>
    /// <exception cref="NotFoundException">No such VM, or the VM has no such disk.</exception>
    /// <exception cref="InvalidStateException">The VM is not stopped.</exception>
    /// <exception cref="UnsupportedOnHostException">The runtime cannot compact disks (the local runtime).</exception>
    public virtual Task<VmDiskInfo> CompactDiskAsync(VeRef vm, string diskName, CancellationToken cancellationToken = default)
        => Driver.CompactDiskAsync(vm.Value, diskName, cancellationToken);

    /// <summary>
    /// Suspends a running VM to a state file in its private directory and ends its process; the next start (or
    /// <see cref="ResumeAsync"/>) continues the guest where it was. Releases the memory guarantee meanwhile.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl suspend NAME</c>.</remarks>
    /// <returns>The VM afterwards.</returns>
    public virtual async Task<VmInfo> SuspendAsync(VeRef vm, CancellationToken cancellationToken = default)
    {
        await Driver.SuspendAsync(vm.Value, cancellationToken).ConfigureAwait(false);
        return await Driver.GetAsync(vm.Value, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes a snapshot of a VM's disks — and, for a running VM, of its memory and devices, so that switching to it
    /// resumes the guest where it was.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl snapshot NAME --name SNAP</c>.</remarks>
    public virtual Task<VmSnapshotInfo> CreateSnapshotAsync(VeRef vm, string snapshotName, string? description = null, CancellationToken cancellationToken = default)
        => Driver.CreateSnapshotAsync(vm.Value, snapshotName, description, cancellationToken);

    /// <summary>Lists a VM's snapshots; <see cref="VmSnapshotInfo.ParentId"/> links them into a tree.</summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-list NAME</c>.</remarks>
    public virtual Task<IReadOnlyList<VmSnapshotInfo>> ListSnapshotsAsync(VeRef vm, CancellationToken cancellationToken = default)
        => Driver.ListSnapshotsAsync(vm.Value, cancellationToken);

    /// <summary>
    /// Reverts a VM to a snapshot. A snapshot with memory resumes the guest where it was (a stopped VM is started);
    /// a disk-only snapshot can only be switched to while the VM is stopped.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-switch NAME --id ID</c>.</remarks>
    public virtual Task SwitchSnapshotAsync(VeRef vm, string snapshotIdOrName, CancellationToken cancellationToken = default)
        => Driver.SwitchSnapshotAsync(vm.Value, snapshotIdOrName, cancellationToken);

    /// <summary>Deletes a snapshot; its children are attached to its parent.</summary>
    /// <remarks>The equivalent of <c>prlctl snapshot-delete NAME --id ID</c>.</remarks>
    public virtual Task DeleteSnapshotAsync(VeRef vm, string snapshotIdOrName, CancellationToken cancellationToken = default)
        => Driver.DeleteSnapshotAsync(vm.Value, snapshotIdOrName, cancellationToken);

    /// <summary>
    /// Clones a stopped VM under a new name, UUID and MAC address. A full clone copies the disks; a linked clone turns
    /// the source's disks into read-only bases shared by the source and the clone, each writing to its own overlay.
    /// </summary>
    /// <remarks>The equivalent of <c>prlctl clone NAME --name NEW [--linked]</c>.</remarks>
    public virtual Task<VmInfo> CloneAsync(VeRef vm, VmCloneOptions options, CancellationToken cancellationToken = default)
        => Driver.CloneAsync(vm.Value, options, cancellationToken);
}
