namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>
/// How long the local runtime waits for the tools and control channels it drives, in one place: each is a bound on a
/// step that should finish far sooner, so that a wedged tool fails the operation with a typed timeout instead of
/// hanging it. Raise one here (and say why) rather than writing a literal at the call.
/// </summary>
internal static class LocalTimeouts
{
    /// <summary>Building a file system from a template (unpacking a tarball, <c>mkfs.ext4 -d</c>): minutes on a large template.</summary>
    public static readonly TimeSpan FileSystemBuild = TimeSpan.FromMinutes(20);

    /// <summary>Checking or growing a file system (<c>e2fsck</c>, <c>resize2fs</c>).</summary>
    public static readonly TimeSpan FileSystemRepair = TimeSpan.FromMinutes(10);

    /// <summary>One command of the OCI runtime (<c>runc state|kill|delete|pause|resume|run -d</c>).</summary>
    public static readonly TimeSpan OciRuntimeCommand = TimeSpan.FromSeconds(60);

    /// <summary>How long a start waits for a systemd container to finish booting (running or degraded) before it returns anyway.</summary>
    public static readonly TimeSpan SystemdBoot = TimeSpan.FromSeconds(60);

    /// <summary>Building an OS template from a distribution's packages (debootstrap downloads and installs them).</summary>
    public static readonly TimeSpan TemplateBuild = TimeSpan.FromMinutes(30);

    /// <summary>A CRIU checkpoint or restore of a container (through <c>runc checkpoint|restore</c>): seconds per GiB of memory.</summary>
    public static readonly TimeSpan Checkpoint = TimeSpan.FromMinutes(5);

    /// <summary>One step of probing CRIU (<c>criu check</c>, a test dump of a sleeping process that hangs where hardware breakpoints do not fire).</summary>
    public static readonly TimeSpan CriuProbe = TimeSpan.FromSeconds(8);

    /// <summary>Starting the disk daemon of a container until its export is ready.</summary>
    public static readonly TimeSpan StorageDaemonStart = TimeSpan.FromSeconds(60);

    /// <summary>Connecting to a QMP monitor (an emulator's or a disk daemon's).</summary>
    public static readonly TimeSpan MonitorConnect = TimeSpan.FromSeconds(10);

    /// <summary>A quick monitor command (<c>query-status</c>, <c>quit</c>, <c>system_powerdown</c>).</summary>
    public static readonly TimeSpan MonitorQuickCommand = TimeSpan.FromSeconds(5);

    /// <summary>A block-layer monitor command (bitmaps, resize, node queries), which may wait for in-flight I/O.</summary>
    public static readonly TimeSpan MonitorBlockCommand = TimeSpan.FromSeconds(30);

    /// <summary>Saving or loading an internal snapshot with the VM's memory.</summary>
    public static readonly TimeSpan Snapshot = TimeSpan.FromMinutes(10);

    /// <summary>Freezing a guest's file systems through its tools (they flush first).</summary>
    public static readonly TimeSpan GuestFreeze = TimeSpan.FromSeconds(60);

    /// <summary>Thawing a guest's file systems through its tools.</summary>
    public static readonly TimeSpan GuestThaw = TimeSpan.FromSeconds(30);

    /// <summary>Waiting for another operation's use of a VM's guest-tools channel before giving up on it.</summary>
    public static readonly TimeSpan GuestToolsLock = TimeSpan.FromSeconds(5);
}
