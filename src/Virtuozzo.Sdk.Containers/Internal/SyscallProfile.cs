using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace Virtuozzo.Sdk.Containers.Internal;

/// <summary>
/// The SDK's default system-call filter for containers (seccomp, written into the OCI configuration): an allow-list of
/// the calls ordinary programs make, everything else refused with <c>EPERM</c>. It is written from the Linux system-call
/// table, call by call, to be at least as strict as Docker's default profile: what Docker refuses is refused here
/// (<see cref="DockerRefuses"/>, checked by a test), and a few calls Docker allows are refused too (<c>io_uring</c>).
/// </summary>
/// <remarks>
/// As in Docker's profile, <c>clone</c> is allowed only without namespace flags (a container cannot make namespaces of
/// its own), <c>clone3</c> answers <c>ENOSYS</c> so that the C library falls back to <c>clone</c>, and
/// <c>personality</c> takes only the harmless personas. Calls that need a capability the container does not hold
/// (CAP_SYS_ADMIN's mount, unshare, setns, bpf…) are refused even when the kernel would refuse them anyway: the filter is
/// the second wall. A container's <c>AllowedSyscalls</c> adds calls to the list; <c>Unconfined</c> applies no filter.
/// </remarks>
internal static class SyscallProfile
{
    private const int EPERM = 1;
    private const int ENOSYS = 38;

    /// <summary>The namespace flags of <c>clone</c>: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.</summary>
    internal const long CloneNamespaceFlags = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

    /// <summary>The personas <c>personality</c> may select: Linux, its 32-bit flavours, and the query (0xffffffff).</summary>
    internal static readonly long[] AllowedPersonalities = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

    /// <summary>Calls every program may make: files, memory, processes, signals, time, sockets, IPC.</summary>
    internal static readonly string[] Allowed =
    [
        // files and directories
        "access", "faccessat", "faccessat2", "chdir", "fchdir", "getcwd", "chmod", "fchmod", "fchmodat", "fchmodat2",
        "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32", "chroot", "close", "close_range",
        "creat", "open", "openat", "openat2", "read", "readv", "pread64", "preadv", "preadv2", "write", "writev",
        "pwrite64", "pwritev", "pwritev2", "lseek", "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock",
        "fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "truncate", "truncate64", "ftruncate", "ftruncate64",
        "fallocate", "fadvise64", "fadvise64_64", "readahead", "copy_file_range", "sendfile", "sendfile64", "splice", "tee",
        "vmsplice", "getdents", "getdents64", "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "rename",
        "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "mknod", "mknodat", "readlink", "readlinkat", "stat",
        "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64", "newfstatat", "statx", "statfs", "statfs64",
        "fstatfs", "fstatfs64", "umask", "utime", "utimes", "utimensat", "utimensat_time64", "futimesat", "getxattr",
        "lgetxattr", "fgetxattr", "getxattrat", "setxattr", "lsetxattr", "fsetxattr", "setxattrat", "listxattr",
        "llistxattr", "flistxattr", "listxattrat", "removexattr", "lremovexattr", "fremovexattr", "removexattrat", "ioctl",
        "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "memfd_create",
        "memfd_secret", "pipe", "pipe2", "cachestat",
        // waiting on descriptors
        "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64", "epoll_create",
        "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old", "epoll_pwait", "epoll_pwait2",
        "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "timerfd_settime", "timerfd_settime64",
        "timerfd_gettime", "timerfd_gettime64",
        // asynchronous I/O (not io_uring)
        "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        // memory
        "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock", "mlock2",
        "mlockall", "munlock", "munlockall", "remap_file_pages", "pkey_alloc", "pkey_free", "pkey_mprotect", "membarrier",
        "map_shadow_stack", "mseal",
        // processes and threads
        "execve", "execveat", "fork", "vfork", "exit", "exit_group", "wait4", "waitid", "waitpid", "getpid", "getppid",
        "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address", "set_robust_list",
        "get_robust_list", "futex", "futex_time64", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "rseq",
        "arch_prctl", "prctl", "set_thread_area", "get_thread_area", "capget", "capset", "getrlimit", "ugetrlimit",
        "setrlimit", "prlimit64", "getrusage", "times", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr", "sched_getparam",
        "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "getcpu", "pidfd_open", "pidfd_send_signal",
        "process_mrelease", "ptrace", "process_vm_readv", "process_vm_writev", "seccomp", "landlock_create_ruleset",
        "landlock_add_rule", "landlock_restrict_self", "restart_syscall",
        // credentials
        "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32", "getresuid",
        "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32", "setuid", "setuid32", "setgid", "setgid32",
        "setreuid", "setreuid32", "setregid", "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32",
        "setfsuid", "setfsuid32", "setfsgid", "setfsgid32", "setgroups", "setgroups32",
        // signals
        "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigpending", "rt_sigqueueinfo",
        "rt_tgsigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "sigaltstack",
        "sigprocmask", "sigreturn", "pause", "alarm", "getitimer", "setitimer",
        // time
        "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
        "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "timer_create", "timer_delete", "timer_settime",
        "timer_settime64", "timer_gettime", "timer_gettime64", "timer_getoverrun",
        // system information
        "uname", "sysinfo", "getrandom",
        // sockets
        "socket", "socketpair", "socketcall", "bind", "connect", "listen", "accept", "accept4", "getsockname",
        "getpeername", "getsockopt", "setsockopt", "shutdown", "send", "sendto", "sendmsg", "sendmmsg", "recv", "recvfrom",
        "recvmsg", "recvmmsg", "recvmmsg_time64",
        // System V and POSIX IPC
        "ipc", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semtimedop_time64", "semctl",
        "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64",
        "mq_timedreceive", "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
    ];

    /// <summary>
    /// Calls Docker's default profile refuses to a container without extra capabilities (from its documentation's list of
    /// significant blocked calls). None of them may be in <see cref="Allowed"/>; <c>clone</c> with namespace flags is
    /// refused by its argument rule.
    /// </summary>
    internal static readonly string[] DockerRefuses =
    [
        "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "clone3", "create_module", "delete_module",
        "finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load",
        "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl",
        "open_by_handle_at", "perf_event_open", "pivot_root", "query_module", "quotactl", "reboot", "request_key",
        "set_mempolicy", "setns", "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl", "umount", "umount2",
        "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old", "fsopen", "fsconfig", "fsmount", "fspick",
        "move_mount", "open_tree", "mount_setattr", "syslog", "vhangup", "sethostname", "setdomainname",
        "io_uring_setup", "io_uring_enter", "io_uring_register",
    ];

    /// <summary>
    /// What systemd as a container's init needs beyond <see cref="Allowed"/> (Docker allows the same to a container that
    /// holds CAP_SYS_ADMIN): mounts, namespaces for its sandboxed services, host names and file handles. The capability
    /// they need is the container's user namespace's, never the host's.
    /// </summary>
    internal static readonly string[] SystemdAllowed =
    [
        "mount", "umount", "umount2", "unshare", "setns", "clone", "clone3", "pivot_root", "sethostname", "setdomainname",
        "name_to_handle_at", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    ];

    /// <summary>The OCI <c>linux.seccomp</c> object for a container; null when the container runs unconfined.</summary>
    public static JsonObject? Build(ContainerConfig config)
    {
        if (config.SyscallFilter == ContainerConfig.UnconfinedFilter)
            return null;
        var allowed = Allowed.Concat(config.Systemd ? SystemdAllowed : []).Concat(config.AllowedSyscalls).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var rules = new JsonArray(Rule([.. allowed], "SCMP_ACT_ALLOW"));
        // The calls allowed only with some arguments, unless the container's own list allows them outright.
        if (!allowed.Contains("clone"))
            rules.Add((JsonNode)Rule(["clone"], "SCMP_ACT_ALLOW", new JsonObject { ["index"] = 0, ["value"] = CloneNamespaceFlags, ["valueTwo"] = 0, ["op"] = "SCMP_CMP_MASKED_EQ" }));
        if (!allowed.Contains("clone3"))
        {
            var clone3 = Rule(["clone3"], "SCMP_ACT_ERRNO");
            clone3["errnoRet"] = ENOSYS;
            rules.Add((JsonNode)clone3);
        }
        if (!allowed.Contains("personality"))
        {
            foreach (var persona in AllowedPersonalities)
                rules.Add((JsonNode)Rule(["personality"], "SCMP_ACT_ALLOW", new JsonObject { ["index"] = 0, ["value"] = persona, ["op"] = "SCMP_CMP_EQ" }));
        }
        return new JsonObject
        {
            ["defaultAction"] = "SCMP_ACT_ERRNO",
            ["defaultErrnoRet"] = EPERM,
            ["architectures"] = new JsonArray(Architectures().Select(a => (JsonNode)a).ToArray()),
            ["syscalls"] = rules,
        };
    }

    /// <summary>The architectures whose calls are filtered: the host's and the ones its processes can also run.</summary>
    private static string[] Architectures() => RuntimeInformation.OSArchitecture switch
    {
        Architecture.Arm64 => ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    };

    private static JsonObject Rule(string[] names, string action, params JsonObject[] args)
    {
        var rule = new JsonObject { ["names"] = new JsonArray(names.Select(n => (JsonNode)n).ToArray()), ["action"] = action };
        if (args.Length > 0)
            rule["args"] = new JsonArray(args.Select(a => (JsonNode)a).ToArray());
        return rule;
    }

    /// <summary>Validates the names of calls a container may make beyond the default list.</summary>
    public static IReadOnlyList<string> ValidateNames(IReadOnlyList<string> names)
    {
        foreach (var n in names)
        {
            if (string.IsNullOrEmpty(n) || n.Length > 40 || !n.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_'))
                throw new ArgumentException($"'{n}' is not a system call name such as keyctl or io_uring_setup.", nameof(names));
        }
        return names;
    }
}
