using System.Net;
using System.Net.Sockets;

namespace Virtuozzo.Sdk.Core.Runtime.Local;

/// <summary>TCP ports for the servers the local runtime starts (NBD exports and migration streams of a migration's destination).</summary>
internal static class LocalPorts
{
    /// <summary>A port free on <paramref name="address"/> now (the kernel's choice; the server binds it right after).</summary>
    public static int Free(IPAddress address)
    {
        var listener = new TcpListener(address, 0);
        listener.Start();
        try
        {
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        finally
        {
            listener.Stop();
        }
    }

    /// <summary>The host part of a QEMU socket address (<c>[v6]</c> in brackets).</summary>
    public static string FormatHost(IPAddress address) => address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
}
