using System.ComponentModel.DataAnnotations;

namespace Virtuozzo.Sdk.Core.Hosts;

/// <summary>How to reach a remote host over SSH (the system <c>ssh</c> client, in batch mode).</summary>
public sealed record SshHostOptions
{
    /// <summary>The host name or address.</summary>
    [Required]
    public string HostName { get; init; } = string.Empty;

    /// <summary>The SSH port. Default 22.</summary>
    [Range(1, 65535)]
    public int Port { get; init; } = 22;

    /// <summary>The remote user. Default <c>root</c> (managing containers and VMs needs it).</summary>
    public string User { get; init; } = "root";

    /// <summary>The private key to authenticate with; null uses the ssh client's defaults (agent, ~/.ssh).</summary>
    public string? IdentityFile { get; init; }

    /// <summary>
    /// The known-hosts file the host key is checked against (strict checking). The caller owns it:
    /// an unknown or changed key is refused unless <see cref="AcceptNewHostKey"/> is set.
    /// </summary>
    [Required]
    public string KnownHostsFile { get; init; } = string.Empty;

    /// <summary>Accept and record the key of a host not yet in <see cref="KnownHostsFile"/> (a changed key is still refused).</summary>
    public bool AcceptNewHostKey { get; init; }

    /// <summary>How long to wait for the connection. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long an idle multiplexed master connection stays open. Default 60 s.</summary>
    public TimeSpan ControlPersist { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The longest <see cref="ControlDirectory"/> that leaves room for ssh's socket name (40 hex digits and a 17-character temporary suffix).</summary>
    public const int MaxControlDirectoryLength = 49;

    /// <summary>Directory for multiplexing control sockets (at most 49 characters); null uses <c>/tmp/vzsdk-ssh-UID</c>.</summary>
    public string? ControlDirectory { get; init; }

    /// <summary>The ssh client program. Default <c>ssh</c>.</summary>
    public string SshPath { get; init; } = "ssh";

    /// <summary>Throws <see cref="ArgumentException"/> when the options cannot work.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(HostName) || HostName.StartsWith('-') || HostName.Any(c => char.IsWhiteSpace(c) || char.IsControl(c) || c is '@' or '/' or '\''))
            throw new ArgumentException($"'{HostName}' is not a valid SSH host name.", nameof(HostName));
        if (string.IsNullOrWhiteSpace(User) || User.StartsWith('-') || User.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')))
            throw new ArgumentException($"'{User}' is not a valid SSH user name.", nameof(User));
        if (Port is < 1 or > 65535)
            throw new ArgumentOutOfRangeException(nameof(Port), Port, "The SSH port must be between 1 and 65535.");
        if (string.IsNullOrWhiteSpace(KnownHostsFile))
            throw new ArgumentException("A known-hosts file is required: the SDK never connects without checking the host key.", nameof(KnownHostsFile));
        if (ControlDirectory is { Length: > MaxControlDirectoryLength })
            throw new ArgumentException($"The control directory '{ControlDirectory}' is longer than {MaxControlDirectoryLength} characters: the multiplexing socket path inside it would exceed the UNIX socket limit of 107 bytes. Choose a shorter directory.", nameof(ControlDirectory));
        if (ConnectTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "The connect timeout must be positive.");
    }
}
