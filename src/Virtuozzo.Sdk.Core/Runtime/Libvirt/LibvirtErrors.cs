namespace Virtuozzo.Sdk.Core.Runtime.Libvirt;

/// <summary>
/// Maps libvirt's <c>virError</c> (code, domain, message) to the SDK's exceptions. Codes are libvirt's
/// <c>virErrorNumber</c> (include/libvirt/virterror.h); only the ones a caller branches on get their own type, the rest keep
/// libvirt's message with the code and the operation that failed.
/// </summary>
internal static class LibvirtErrors
{
    internal const int InternalError = 1;
    internal const int NoSupport = 3;
    internal const int NoConnect = 5;
    internal const int InvalidArg = 8;
    internal const int OperationFailed = 9;
    internal const int XmlError = 27;
    internal const int DomainExists = 28;
    internal const int OperationDenied = 29;
    internal const int XmlDetail = 35;
    internal const int SystemError = 38;
    internal const int Rpc = 39;
    internal const int NoDomain = 42;
    internal const int AuthFailed = 45;
    internal const int OperationInvalid = 55;
    internal const int ConfigUnsupported = 67;
    internal const int OperationTimeout = 68;
    internal const int NoDomainSnapshot = 72;
    internal const int ArgumentUnsupported = 74;
    internal const int OperationAborted = 78;
    internal const int AuthCancelled = 79;
    internal const int OperationUnsupported = 84;
    internal const int Ssh = 85;
    internal const int AgentUnresponsive = 86;
    internal const int ResourceBusy = 87;
    internal const int AccessDenied = 88;
    internal const int CpuIncompatible = 91;
    internal const int AuthUnavailable = 94;
    internal const int AgentUnsynced = 97;
    internal const int LibSsh = 98;
    internal const int DeviceMissing = 99;
    internal const int NoDomainCheckpoint = 103;
    internal const int NoDomainBackup = 104;

    /// <summary>
    /// The SDK exception for a libvirt error. <paramref name="operation"/> says what the SDK was doing ("starting the VM
    /// web1"); the message ends with libvirt's own text and code so that an operator can look it up.
    /// </summary>
    internal static Exception Map(int code, int domain, string? message, string operation)
    {
        var text = $"{operation} failed: {message ?? "libvirt reported no message"} (libvirt error {code}, domain {domain}).";
        Exception e = code switch
        {
            NoDomain or NoDomainSnapshot or NoDomainCheckpoint or NoDomainBackup or DeviceMissing => new NotFoundException(text),
            DomainExists => new AlreadyExistsException(text),
            OperationInvalid or ResourceBusy => new InvalidStateException(text),
            NoSupport or ConfigUnsupported or ArgumentUnsupported or OperationUnsupported or CpuIncompatible => new UnsupportedOnHostException(text),
            NoConnect or Rpc or AuthFailed or AuthCancelled or AuthUnavailable or Ssh or LibSsh => new HostConnectionException(text),
            AgentUnresponsive or AgentUnsynced => new InvalidStateException(text + " The guest tools (qemu-guest-agent) do not answer; they may not be installed or running in the guest."),
            OperationTimeout => new TimeoutException(text),
            OperationAborted => new OperationCanceledException(text),
            _ => new VirtuozzoException(text),
        };
        e.Data["libvirt.code"] = code;
        e.Data["libvirt.domain"] = domain;
        return e;
    }

    /// <summary>The SDK exception for the calling thread's last libvirt error (call right after the failing call, on the same thread).</summary>
    internal static unsafe Exception Last(string operation)
    {
        var err = LibvirtNative.virGetLastError();
        if (err is null)
            return new VirtuozzoException($"{operation} failed, and libvirt reported no error.");
        var mapped = Map(err->Code, err->Domain, LibvirtNative.Borrowed(err->Message), operation);
        LibvirtNative.virResetLastError();
        return mapped;
    }

    /// <summary>True when the thread's last libvirt error has <paramref name="code"/> (read before <see cref="Last"/>).</summary>
    internal static unsafe bool LastIs(int code)
    {
        var err = LibvirtNative.virGetLastError();
        return err is not null && err->Code == code;
    }
}
