using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Internal;
using Virtuozzo.Sdk.Core.Runtime.Local;
using Virtuozzo.Sdk.Vm.Internal;

namespace Virtuozzo.Sdk.Vm.Runtime.Local;

// Offline migration of a stopped VM between two local runtimes, with no shared storage:
//   source:      under the VM's lock (nothing can start it meanwhile), offers its config and the sizes of its disk image
//                files; nothing on the source changes until the destination has confirmed;
//   destination: checks the offer (UUID and name free, the files the VM boots from present, hardware acceleration where
//                the VM requires it, the memory guarantee and the disk space), registers the VM without a config (so it
//                is listed nowhere and cannot be started) and listens on one TCP port for a connection that opens with
//                a one-off token;
//   source:      streams each QCOW2 image file as it is (internal snapshots, with their saved memory, travel inside the
//                files) and then a SHA-256 of everything sent;
//   destination: checks the digest, moves the images into place, drops their change-tracking bitmaps (the next backup
//                there is a full one, and says why), writes the config: the VM is registered, stopped;
//   source:      deletes its copy (or keeps it, stopped).
// A failure or cancellation before the destination confirms has the destination remove everything it made; the source
// only read its files.
internal sealed partial class LocalVmDriver
{
    private const string PartialSuffix = ".partial";
    private const int TokenBytes = 32;
    private const int TransferBuffer = 1 << 20;

    /// <summary>Stopped VMs being received (by UUID), with the task that receives their disk images.</summary>
    private readonly ConcurrentDictionary<Guid, OfflineReceive> _offlineIncoming = new();

    private sealed record OfflineReceive(VmConfig Config, VmPaths Paths, TcpListener Listener, CancellationTokenSource Cancel, Task Receiving);

    // ------------------------------------------------------------------ source

    /// <summary>
    /// Sends the stopped VM to <paramref name="peer"/>; once the destination has it, the source's copy is deleted (or
    /// kept). <paramref name="maxBytesPerSecond"/> limits the rate the images are sent at (null: none).
    /// </summary>
    internal Task<VmMigrationOutcome> MigrateOfflineOutAsync(string nameOrId, IVmOfflineMigrationPeer peer, bool keepSource, long? maxBytesPerSecond, Action<VmMigrationSample>? progress, CancellationToken cancellationToken)
        => WithVmAsync(nameOrId, s => MigrateOfflineOutCoreAsync(s, peer, keepSource, maxBytesPerSecond, progress, cancellationToken), cancellationToken);

    private async Task<VmMigrationOutcome> MigrateOfflineOutCoreAsync(VmSession s, IVmOfflineMigrationPeer peer, bool keepSource, long? maxBytesPerSecond, Action<VmMigrationSample>? progress, CancellationToken ct)
    {
        if (maxBytesPerSecond is <= 0)
            throw new ArgumentOutOfRangeException(nameof(maxBytesPerSecond), maxBytesPerSecond, "The bandwidth limit must be positive.");
        var c = s.Config;
        var sw = Stopwatch.StartNew();
        if (s.Runtime is not null)
            throw new InvalidStateException($"The VM '{c.Name}' is running: an offline migration moves a stopped VM. Stop it first, or migrate it live (Mode = Online or Auto).");
        if (c.SuspendedStateFile is not null)
            throw new InvalidStateException($"The VM '{c.Name}' is suspended: an offline migration does not carry its saved memory. Resume it and migrate it live, or resume and stop it first.");
        var sizes = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var d in c.Disks)
        {
            var path = s.Paths.DiskPath(d);
            if (!File.Exists(path))
                throw new InvalidStateException($"The VM '{c.Name}' cannot migrate: its disk {d.Name} ('{path}') is missing.");
            if (await _disks.GetBackingFileAsync(path, ct).ConfigureAwait(false) is { } backing)
                throw new InvalidStateException($"The VM '{c.Name}' is a linked clone: its disk {d.Name} is based on '{backing}', which stays on this host. Make it a full copy first (clone it with Linked = false), then migrate the copy.");
            sizes[d.Name] = new FileInfo(path).Length;
        }
        if (!keepSource)
            await EnsureNoCloneDependsOnAsync(s, ct).ConfigureAwait(false);
        var total = sizes.Values.Sum();

        progress?.Invoke(new VmMigrationSample("preparing", 0, total, null, null));
        var offer = new VmOfflineOffer(JsonSerializer.Serialize(c, VmJsonContext.Default.VmConfig), sizes, Guarantee(c, c.MemoryBytes));
        var endpoint = await peer.PrepareOfflineAsync(offer, ct).ConfigureAwait(false);
        long sent = 0;
        try
        {
            using var client = new TcpClient { NoDelay = true };
            await client.ConnectAsync(IPAddress.Parse(endpoint.Host), endpoint.Port, ct).ConfigureAwait(false);
            var net = client.GetStream();
            await net.WriteAsync(Convert.FromHexString(endpoint.Token), ct).ConfigureAwait(false);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            // With a limit, chunks of about a tenth of a second's worth, so that the rate stays even.
            var buffer = new byte[maxBytesPerSecond is { } cap ? (int)Math.Clamp(cap / 10, 4096, TransferBuffer) : TransferBuffer];
            var lastReport = Stopwatch.StartNew();
            var pace = Stopwatch.StartNew();
            progress?.Invoke(new VmMigrationSample("copying-disks", 0, total, null, null));
            foreach (var d in c.Disks)
            {
                var file = new FileStream(s.Paths.DiskPath(d), FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
                await using (file.ConfigureAwait(false))
                {
                    var left = sizes[d.Name];
                    while (left > 0)
                    {
                        var n = await file.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), ct).ConfigureAwait(false);
                        if (n == 0)
                            throw new InvalidStateException($"The disk {d.Name} of '{c.Name}' shrank while it was being sent.");
                        hash.AppendData(buffer, 0, n);
                        await net.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                        left -= n;
                        sent += n;
                        if (maxBytesPerSecond is { } limit && TimeSpan.FromSeconds((double)sent / limit) - pace.Elapsed is { Ticks: > 0 } ahead)
                            await Task.Delay(ahead, ct).ConfigureAwait(false);
                        if (lastReport.ElapsedMilliseconds >= 100)
                        {
                            progress?.Invoke(new VmMigrationSample("copying-disks", sent, total - sent, null, null));
                            lastReport.Restart();
                        }
                    }
                }
            }
            await net.WriteAsync(hash.GetHashAndReset(), ct).ConfigureAwait(false);
            await net.FlushAsync(ct).ConfigureAwait(false);
            client.Client.Shutdown(SocketShutdown.Send);
            progress?.Invoke(new VmMigrationSample("copying-disks", sent, 0, null, null));
            progress?.Invoke(new VmMigrationSample("switching", sent, 0, null, null));
            await peer.CompleteOfflineAsync(s.Id, ct).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogWarning("Offline migration of VM {Name} failed: {Error}; it stays here", c.Name, ex.Message);
            try
            {
                await peer.AbortAsync(s.Id, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception abortError)
            {
                _logger.LogWarning("Offline migration of VM {Name}: the destination could not clean up: {Error}", c.Name, abortError.Message);
            }
            if (ex is SocketException or IOException)
                throw new InvalidStateException($"Sending the disks of '{c.Name}' to {endpoint.Host}:{endpoint.Port} failed: {ex.Message}. The VM stays on this host, unchanged.", ex);
            throw;
        }

        // The destination has the VM, registered and stopped: the source's copy goes (or stays, stopped).
        progress?.Invoke(new VmMigrationSample("cleaning-up", sent, 0, null, null));
        if (!keepSource)
        {
            await _registry.UnregisterAsync(s.Id, CancellationToken.None).ConfigureAwait(false);
            await _ledger.ReleaseAsync(s.Id, CancellationToken.None).ConfigureAwait(false);
        }
        return new VmMigrationOutcome(s.Id, new VeName(c.Name), TimeSpan.Zero, sw.Elapsed, sent, 0, false);
    }

    // ------------------------------------------------------------------ destination

    /// <summary>
    /// Receives a stopped VM: checks the offer, registers the VM (without a config: it is not usable until it is
    /// complete) and listens on <paramref name="listenAddress"/> for its disk images.
    /// </summary>
    internal async Task<VmOfflineEndpoint> PrepareOfflineIncomingAsync(VmOfflineOffer offer, string listenAddress, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(offer);
        var address = IPAddress.Parse(listenAddress);
        var config = JsonSerializer.Deserialize(offer.ConfigJson, VmJsonContext.Default.VmConfig)
            ?? throw new ArgumentException("The migration offer carries no VM configuration.", nameof(offer));
        var id = new VeId(config.Id);
        foreach (var d in config.Disks)
        {
            // The file names come from the other host: each must be a plain name inside the VM's directory.
            if (d.File != Path.GetFileName(d.File) || d.File is "" or "." or ".." || d.File == VmConfig.FileName || d.File.EndsWith(PartialSuffix, StringComparison.Ordinal))
                throw new ArgumentException($"The migration offer names the disk file '{d.File}', which is not a plain file name.", nameof(offer));
            if (!offer.DiskFiles.TryGetValue(d.Name, out var size) || size < 0)
                throw new ArgumentException($"The migration offer gives no size for the disk {d.Name}.", nameof(offer));
        }
        if (config.Disks.Select(d => d.File).Distinct(StringComparer.Ordinal).Count() != config.Disks.Count)
            throw new ArgumentException("The migration offer names one disk file twice.", nameof(offer));
        if (config.SuspendedStateFile is not null)
            throw new InvalidStateException($"The VM '{config.Name}' is suspended: an offline migration does not carry its saved memory.");
        if (await _registry.FindAsync(config.Id.ToString(), ct).ConfigureAwait(false) is { } sameId)
            throw new AlreadyExistsException($"The destination already has a {(sameId.Kind == VeKind.Vm ? "VM" : "container")} with the UUID {config.Id} ('{sameId.Name}').");
        foreach (var (what, file) in new[] { ("kernel", config.KernelPath), ("initial RAM disk", config.InitrdPath), ("CD image", config.CdromImagePath) })
        {
            if (file is not null && !File.Exists(file))
                throw new InvalidStateException($"The VM '{config.Name}' boots from the {what} '{file}', which this host does not have. Copy it to the same path here first{(what == "CD image" ? ", or eject the CD on the source" : "")}.");
        }
        // A VM that requires hardware virtualisation needs it here too (UseSoftwareAsync refuses when it does not work).
        await UseSoftwareAsync(config.Acceleration, ct).ConfigureAwait(false);
        var needed = offer.DiskFiles.Values.Sum();
        var dataRoot = _runtime.Options.DataRoot;
        Directory.CreateDirectory(dataRoot);
        var free = new DriveInfo(Path.GetFullPath(dataRoot)).AvailableFreeSpace;
        if (needed > free)
            throw new InsufficientResourcesException($"The VM '{config.Name}' needs {new ByteSize(needed).ToHumanString()} for its disks, and the destination's data root '{dataRoot}' has {new ByteSize(free).ToHumanString()} free. Free some space there first.");

        var paths = PathsOf(config.Id);
        await _registry.RegisterAsync(id, new VeName(config.Name), VeKind.Vm, ct).ConfigureAwait(false); // refuses a taken name
        TcpListener? listener = null;
        try
        {
            // Until the VM is complete it has no configuration: this marker says which process receives it, so that a
            // reconcile elsewhere leaves it alone while that process lives and removes it once it died (ReconcileAsync).
            await OwnerMarker.WriteAsync(IncomingMarker(paths), ct).ConfigureAwait(false);
            // The guarantee is admitted (held until the VM is complete, so that the memory is still there to start it).
            await _ledger.ReserveAsync(id, VeKind.Vm, offer.GuaranteeBytes, Overhead(config.MemoryBytes), ct).ConfigureAwait(false);
            listener = new TcpListener(address, 0);
            listener.Start(1);
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            var token = RandomNumberGenerator.GetBytes(TokenBytes);
            var cancel = new CancellationTokenSource();
            var receiving = Task.Run(() => ReceiveDisksAsync(listener, token, config, paths, offer.DiskFiles, cancel.Token), CancellationToken.None);
            _offlineIncoming[config.Id] = new OfflineReceive(config, paths, listener, cancel, receiving);
            _logger.LogDebug("VM {Name} waits for its disks at {Address}:{Port}", config.Name, listenAddress, port);
            return new VmOfflineEndpoint(listenAddress, port, Convert.ToHexString(token));
        }
        catch
        {
            listener?.Stop();
            await _ledger.ReleaseAsync(id, CancellationToken.None).ConfigureAwait(false);
            await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Accepts the one connection that presents the token and writes the disk images it carries (sparsely).</summary>
    private async Task ReceiveDisksAsync(TcpListener listener, byte[] token, VmConfig config, VmPaths paths, Dictionary<string, long> sizes, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                using var client = await listener.AcceptTcpClientAsync(ct).ConfigureAwait(false);
                var net = client.GetStream();
                var presented = new byte[TokenBytes];
                try
                {
                    using var tokenTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    tokenTimeout.CancelAfter(TimeSpan.FromSeconds(30));
                    await net.ReadExactlyAsync(presented, tokenTimeout.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is IOException or EndOfStreamException or SocketException || (ex is OperationCanceledException && !ct.IsCancellationRequested))
                {
                    continue;
                }
                if (!CryptographicOperations.FixedTimeEquals(presented, token))
                {
                    _logger.LogWarning("VM {Name}: a connection to its migration port from {Peer} did not present the token; closed", config.Name, client.Client.RemoteEndPoint);
                    continue;
                }
                listener.Stop();
                using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                var buffer = new byte[TransferBuffer];
                foreach (var d in config.Disks)
                {
                    var size = sizes[d.Name];
                    var file = new FileStream(paths.DiskPath(d) + PartialSuffix, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous);
                    await using (file.ConfigureAwait(false))
                    {
                        var left = size;
                        while (left > 0)
                        {
                            var n = await net.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), ct).ConfigureAwait(false);
                            if (n == 0)
                                throw new IOException($"The source closed the connection with {new ByteSize(left).ToHumanString()} of disk {d.Name} unsent.");
                            hash.AppendData(buffer, 0, n);
                            // Runs of zeros stay holes, as they mostly were on the source.
                            if (buffer.AsSpan(0, n).IndexOfAnyExcept((byte)0) < 0)
                                file.Seek(n, SeekOrigin.Current);
                            else
                                await file.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                            left -= n;
                        }
                        file.SetLength(size);
                        file.Flush(flushToDisk: true);
                    }
                }
                var digest = new byte[32];
                await net.ReadExactlyAsync(digest, ct).ConfigureAwait(false);
                if (!CryptographicOperations.FixedTimeEquals(digest, hash.GetHashAndReset()))
                    throw new InvalidStateException($"The disks of '{config.Name}' arrived damaged (their SHA-256 differs from the source's).");
                return;
            }
        }
        finally
        {
            listener.Stop();
        }
    }

    /// <summary>The disk images have been sent: checks them, puts them in place and registers the VM, stopped.</summary>
    internal async Task CompleteOfflineIncomingAsync(VeId id, CancellationToken ct)
    {
        if (!_offlineIncoming.TryGetValue(id.Value, out var r))
            throw new InvalidStateException($"This host is not receiving the VM {id}.");
        var c = r.Config;
        using var veLock = await _store.LockVeAsync(id, ct).ConfigureAwait(false);
        try
        {
            await r.Receiving.WaitAsync(TimeSpan.FromMinutes(5), ct).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            throw new InvalidStateException($"The disks of '{c.Name}' did not finish arriving within 5 minutes after the source sent them.", ex);
        }
        catch (Exception ex) when (ex is IOException or SocketException)
        {
            throw new InvalidStateException($"The disks of '{c.Name}' did not arrive: {ex.Message}", ex);
        }
        foreach (var d in c.Disks)
        {
            var path = r.Paths.DiskPath(d);
            File.Move(path + PartialSuffix, path, overwrite: true);
            try
            {
                // The source's change tracking means nothing to this host's backups; the images' snapshots stay.
                RemoveTrackingBitmaps(path);
            }
            catch (Storage.Qcow2.Qcow2Exception ex)
            {
                throw new InvalidStateException($"The disk {d.Name} of '{c.Name}' is not a usable image after the migration: {ex.Message}", ex);
            }
        }
        var config = c with
        {
            SuspendedStateFile = null,
            SuspendedHardware = null,
            TrackingResets = c.Disks.ToDictionary(d => d.Name, _ => "the VM was migrated to this host", StringComparer.Ordinal),
        };
        await WriteConfigAsync(r.Paths, config, ct).ConfigureAwait(false);
        File.Delete(IncomingMarker(r.Paths));
        _offlineIncoming.TryRemove(id.Value, out _);
        r.Cancel.Dispose();
        await _ledger.ReleaseAsync(id, CancellationToken.None).ConfigureAwait(false);
        _logger.LogDebug("VM {Name} received (stopped)", c.Name);
    }

    /// <summary>The marker of a VM being received by a process of this host (its pid and start time), in the VM's directory.</summary>
    private static string IncomingMarker(VmPaths paths) => Path.Combine(paths.PrivateDirectory, ".incoming");

    /// <summary>
    /// Removes registrations without a configuration that nothing is completing any more: a VM whose receiving process
    /// was killed (its marker names a dead process), or one older than <paramref name="grace"/> that no operation holds
    /// (a create killed between registering and writing its configuration). Releases their ledger reservations and
    /// removes what they received. Returns how many.
    /// </summary>
    internal async Task<int> RemoveOrphanRegistrationsAsync(TimeSpan grace, CancellationToken ct)
    {
        var removed = 0;
        foreach (var identity in await _registry.ListAsync(ct, VeKind.Vm).ConfigureAwait(false))
        {
            var id = identity.VeId;
            var paths = PathsOf(id.Value);
            if (_offlineIncoming.ContainsKey(id.Value) || _store.IsVeLocked(id) || await ReadConfigAsync(paths, ct).ConfigureAwait(false) is not null)
                continue;
            var marked = File.Exists(IncomingMarker(paths));
            if (marked ? OwnerMarker.IsOwnerAlive(IncomingMarker(paths)) : DateTimeOffset.UtcNow - identity.CreatedAt < grace)
                continue;
            Core.State.FileLock veLock;
            try
            {
                veLock = await _store.LockVeAsync(id, ct, TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            }
            catch (LockTimeoutException)
            {
                continue; // an operation took it meanwhile: not an orphan now
            }
            using var held = veLock;
            if (await ReadConfigAsync(paths, ct).ConfigureAwait(false) is not null)
                continue; // completed meanwhile
            _logger.LogWarning("Removing VM {Name} ({Id}): registered without a configuration by an operation that did not finish ({Why})",
                identity.Name, id, marked ? "its receiving process is gone" : "older than " + grace);
            await _ledger.ReleaseAsync(id, CancellationToken.None).ConfigureAwait(false);
            await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
            if (Directory.Exists(paths.RunDirectory))
                Directory.Delete(paths.RunDirectory, recursive: true);
            removed++;
        }
        return removed;
    }

    /// <summary>Stops receiving a stopped VM and removes what was received; false when none was being received.</summary>
    private async Task<bool> AbortOfflineIncomingAsync(VeId id)
    {
        if (!_offlineIncoming.TryRemove(id.Value, out var r))
            return false;
        await r.Cancel.CancelAsync().ConfigureAwait(false);
        r.Listener.Stop();
        try
        {
            await r.Receiving.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogDebug("VM {Name}: receiving its disks ended: {Error}", r.Config.Name, ex.Message);
        }
        r.Cancel.Dispose();
        using var veLock = await _store.LockVeAsync(id, CancellationToken.None).ConfigureAwait(false);
        // Completed meanwhile (its config written): the caller's abort still removes it, as a refusal to keep it.
        await _ledger.ReleaseAsync(id, CancellationToken.None).ConfigureAwait(false);
        await _registry.UnregisterAsync(id, CancellationToken.None).ConfigureAwait(false);
        return true;
    }
}
