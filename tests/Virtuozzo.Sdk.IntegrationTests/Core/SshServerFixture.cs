using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Core;

/// <summary>A real sshd on 127.0.0.1 with generated host and client keys, for the current user.</summary>
public sealed class SshServerFixture : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("vzsdk-sshd");
    private Process? _sshd;

    public int Port { get; private set; }

    public string ClientKey => _dir.File("client_ed25519");

    public string HostPublicKey { get; private set; } = string.Empty;

    public string Directory => _dir.Path;

    public string? StartError { get; private set; }

    /// <summary>A short directory for ssh's control sockets (UNIX socket paths are limited to 107 bytes).</summary>
    public string ControlDirectory { get; } = $"/tmp/vzs-{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>A known-hosts file that trusts this server's key.</summary>
    public string WriteTrustingKnownHosts()
    {
        var path = _dir.File($"known_hosts_{Guid.NewGuid():N}");
        File.WriteAllText(path, $"[127.0.0.1]:{Port} {HostPublicKey}\n");
        return path;
    }

    public SshHostOptions Options(string knownHosts, bool acceptNew = false) => new()
    {
        HostName = "127.0.0.1",
        Port = Port,
        User = Environment.UserName,
        IdentityFile = ClientKey,
        KnownHostsFile = knownHosts,
        AcceptNewHostKey = acceptNew,
        ControlDirectory = ControlDirectory,
        ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    public async Task InitializeAsync()
    {
        if (Prerequisites.MissingReason(false, ["sshd", "ssh", "ssh-keygen"]) is { } missing)
        {
            StartError = missing;
            return;
        }
        Run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", _dir.File("host_ed25519"));
        Run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ClientKey);
        HostPublicKey = string.Join(' ', File.ReadAllText(_dir.File("host_ed25519.pub")).Trim().Split(' ').Take(2));
        File.Copy(ClientKey + ".pub", _dir.File("authorized_keys"));
        System.IO.Directory.CreateDirectory("/run/sshd");
        Port = FreePort();
        File.WriteAllText(_dir.File("sshd_config"), $"""
            Port {Port}
            ListenAddress 127.0.0.1
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
            """);
        var psi = new ProcessStartInfo(Prerequisites.FindTool("sshd")!) { UseShellExecute = false, RedirectStandardError = true };
        foreach (var a in new[] { "-D", "-e", "-f", _dir.File("sshd_config") })
            psi.ArgumentList.Add(a);
        _sshd = Process.Start(psi)!;
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            if (_sshd.HasExited)
            {
                StartError = "sshd exited: " + await _sshd.StandardError.ReadToEndAsync();
                return;
            }
            try
            {
                using var c = new TcpClient();
                await c.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }
        StartError = "sshd did not listen within 15 s";
    }

    public Task DisposeAsync()
    {
        try { _sshd?.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { }
        _sshd?.Dispose();
        _dir.Dispose();
        try { System.IO.Directory.Delete(ControlDirectory, recursive: true); }
        catch (IOException) { }
        return Task.CompletedTask;
    }

    private static void Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { UseShellExecute = false };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{tool} failed with {p.ExitCode}");
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}
