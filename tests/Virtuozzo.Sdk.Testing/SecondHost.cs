using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;

namespace Virtuozzo.Sdk.Testing;

/// <summary>
/// A second host on this machine, for migrations: its own network namespace (reached through a veth pair, 10.214.N.2
/// from 10.214.N.1, N a subnet no other second host on this machine uses, so that test assemblies run side by side), its own mount namespace in which the hidden paths (the source's data root) are covered by an empty
/// tmpfs and its own sysfs shows its own network, its own data root, and an sshd inside both, which runs the SDK's tool
/// for the source. Nothing can pass from source to destination through the file system: disks and memory travel over
/// the veth.
/// </summary>
public sealed class SecondHost : IAsyncDisposable
{
    /// <summary>This machine's end of the veth pair.</summary>
    public string SourceAddress => $"10.214.{_subnet}.1";

    /// <summary>The second host's address (its sshd listens there).</summary>
    public string Address => $"10.214.{_subnet}.2";

    private int _subnet;

    /// <summary>
    /// Test classes of one process take turns: a second host is a whole machine's worth of namespaces, sshd and emulator
    /// load, and the migration tests time their transfers. (Second hosts of different processes, such as the panel's and
    /// the integration tests' assemblies, run side by side on subnets of their own: <see cref="ClaimSubnet"/>.)
    /// </summary>
    private static readonly SemaphoreSlim OneAtATime = new(1, 1);

    private readonly TempDirectory _dir = new("vzsdk-host2");
    private bool _holdsTurn;
    private readonly string _suffix = Guid.NewGuid().ToString("N")[..6];
    private Process? _sshd;

    private SecondHost()
    {
    }

    public string Namespace => "vzsdk-h2-" + _suffix;

    private string HostLink => "vzh2" + _suffix + "a";

    private string PeerLink => "vzh2" + _suffix + "b";

    /// <summary>The second host's data root (visible to the test, as a second machine's disk would be to its admin).</summary>
    /// <remarks>Short: UNIX socket paths under it must stay below 108 bytes.</remarks>
    public string DataRoot => "/tmp/vzh2-" + _suffix;

    public string ClientKey => _dir.File("client_ed25519");

    public string KnownHosts => _dir.File("known_hosts");

    /// <summary>The SDK's tool on the second host (a wrapper that runs the tool this test run built).</summary>
    public string Vzsdk => _dir.File("vzsdk");

    /// <summary>Runs a program on the second host, as its administrator would over SSH.</summary>
    public async Task<BufferedCommandResult> RunAsync(string program, params string[] args)
    {
        await using var ssh = new SshHost(Ssh);
        return await ssh.ExecuteBufferedAsync(new Command(program).WithArguments(args).WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromMinutes(2)));
    }

    /// <summary>Runs a program in the second host's network namespace from this machine (to test reachability there).</summary>
    public static int RunInNetwork(string ns, string program, params string[] args)
    {
        var psi = new ProcessStartInfo("nsenter") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--net=/var/run/netns/" + ns, program }.Concat(args))
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode;
    }

    public SshHostOptions Ssh => new()
    {
        HostName = Address,
        User = "root",
        IdentityFile = ClientKey,
        KnownHostsFile = KnownHosts,
        ControlDirectory = "/tmp/vzs-" + _suffix,
        ConnectTimeout = TimeSpan.FromSeconds(10),
    };

    /// <summary>Sets the host up; <paramref name="hidden"/> are paths of this machine the second host must not see.</summary>
    /// <param name="vzsdk">The command line that starts the SDK's tool (program first), which the second host runs.</param>
    /// <param name="hidden">Paths of this machine the second host must not see.</param>
    public static async Task<SecondHost> StartAsync(string[] vzsdk, params string[] hidden)
    {
        await OneAtATime.WaitAsync();
        var h = new SecondHost { _holdsTurn = true };
        try
        {
            await h.SetUpAsync(vzsdk, hidden);
            return h;
        }
        catch
        {
            await h.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Picks a 10.214.N.0/24 that no interface on this machine uses and puts this machine's end on it, under a host-wide
    /// lock, so that second hosts made at the same time by several test processes never share a subnet.
    /// </summary>
    private void ClaimSubnet()
    {
        using var gate = new FileStream("/run/vzsdk-second-host.lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite);
        while (true)
        {
            try
            {
                gate.Lock(0, 1);
                break;
            }
            catch (IOException)
            {
                Thread.Sleep(50);
            }
        }
        try
        {
            var used = Capture("ip", "-4", "-o", "addr", "show");
            foreach (var n in Enumerable.Range(7, 240).OrderBy(n => n == 7 ? -1 : Random.Shared.Next()))
            {
                if (used.Contains($" 10.214.{n}.", StringComparison.Ordinal))
                    continue;
                _subnet = n;
                Run("ip", "addr", "add", SourceAddress + "/24", "dev", HostLink);
                return;
            }
            throw new InvalidOperationException("No free 10.214.N.0/24 subnet for a second host.");
        }
        finally
        {
            gate.Unlock(0, 1);
        }
    }

    private static string Capture(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return output;
    }

    private async Task SetUpAsync(string[] line, string[] hidden)
    {
        Directory.CreateDirectory(DataRoot);
        Run("ip", "netns", "add", Namespace);
        Run("ip", "link", "add", HostLink, "type", "veth", "peer", "name", PeerLink);
        Run("ip", "link", "set", PeerLink, "netns", Namespace);
        ClaimSubnet();
        Run("ip", "link", "set", HostLink, "up");
        Run("ip", "-n", Namespace, "addr", "add", Address + "/24", "dev", PeerLink);
        Run("ip", "-n", Namespace, "link", "set", PeerLink, "up");
        Run("ip", "-n", Namespace, "link", "set", "lo", "up");

        Run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", _dir.File("host_ed25519"));
        Run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ClientKey);
        var hostKey = string.Join(' ', File.ReadAllText(_dir.File("host_ed25519.pub")).Trim().Split(' ').Take(2));
        File.WriteAllText(KnownHosts, $"{Address} {hostKey}\n");
        File.Copy(ClientKey + ".pub", _dir.File("authorized_keys"));
        File.WriteAllText(_dir.File("sshd_config"), $"""
            Port 22
            ListenAddress {Address}
            HostKey {_dir.File("host_ed25519")}
            AuthorizedKeysFile {_dir.File("authorized_keys")}
            PidFile {_dir.File("sshd.pid")}
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            MaxStartups 100
            MaxSessions 100
            SetEnv VZSDK_DATA_ROOT={DataRoot}
            """);
        // The same tool the source's tests run (the published one under ./build.sh test), by absolute path.
        var program = line[0].Contains('/', StringComparison.Ordinal) ? line[0] : "/usr/bin/" + line[0];
        File.WriteAllText(Vzsdk, $"#!/bin/sh\nexec {string.Join(' ', new[] { program }.Concat(line.Skip(1)).Select(a => "'" + a + "'"))} \"$@\"\n");
        File.SetUnixFileMode(Vzsdk, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        // In the host's network namespace and a private mount namespace: a sysfs of its own (with the cgroup
        // hierarchies bound back in), the hidden paths covered, then sshd.
        var script = """
            set -e
            cg=$1/cg; mkdir -p "$cg"
            mount --rbind /sys/fs/cgroup "$cg"
            mount -t sysfs sysfs /sys
            mount --rbind "$cg" /sys/fs/cgroup
            umount -l "$cg"
            shift
            cfg=$1; shift
            for p in "$@"; do mount -t tmpfs -o size=1m,mode=0700 vzsdk-hidden "$p"; done
            mkdir -p /run/netns /run/sshd
            mount -t tmpfs -o size=1m vzsdk-netns /run/netns
            
            exec /usr/sbin/sshd -D -e -f "$cfg"
            """;
        var psi = new ProcessStartInfo("nsenter") { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in new[] { "--net=/var/run/netns/" + Namespace, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", _dir.Path, _dir.File("sshd_config") }.Concat(hidden))
            psi.ArgumentList.Add(a);
        _sshd = Process.Start(psi)!;
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            if (_sshd.HasExited)
                throw new InvalidOperationException("The second host's sshd exited: " + await _sshd.StandardError.ReadToEndAsync());
            try
            {
                using var c = new TcpClient();
                await c.ConnectAsync(IPAddress.Parse(Address), 22);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        try { _sshd?.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { }
        _sshd?.WaitForExit(5000);
        _sshd?.Dispose();
        Run("ip", false, "link", "del", HostLink);
        Run("ip", false, "netns", "del", Namespace);
        _dir.Dispose();
        foreach (var d in new[] { "/tmp/vzs-" + _suffix, DataRoot })
        {
            try { Directory.Delete(d, recursive: true); }
            catch (IOException) { }
        }
        if (_holdsTurn)
        {
            _holdsTurn = false;
            OneAtATime.Release();
        }
        return ValueTask.CompletedTask;
    }

    private static void Run(string tool, params string[] args) => Run(tool, true, args);

    private static void Run(string tool, bool check, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (check && p.ExitCode != 0)
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)} failed ({p.ExitCode}): {err}");
    }
}
