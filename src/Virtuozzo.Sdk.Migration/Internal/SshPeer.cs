using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Containers.Runtime;
using Virtuozzo.Sdk.Vm.Runtime;

namespace Virtuozzo.Sdk.Migration.Internal;

/// <summary>
/// The destination of a VM migration on a remote host: the SDK there, run as <c>vzsdk migrate-agent</c> through SSH,
/// answering one JSON request per line. Disks and memory do not pass through SSH: they go straight to the addresses the
/// destination's emulator listens on.
/// </summary>
internal sealed class SshPeer : IVmOfflineMigrationPeer, IContainerMigrationPeer, IAsyncDisposable
{
    private readonly SshHost _host;
    private readonly string _listenAddress;
    private readonly string _description;
    private readonly ILogger _logger;
    private readonly Pipe _toAgent = new();
    private readonly Pipe _fromAgent = new();
    private readonly Task<CommandResult> _agent;
    private readonly StreamReader _responses;
    private readonly Stream _requests;
    private readonly StringBuilder _agentErrors = new();

    public SshPeer(SshHost host, string remoteVzsdk, string? remoteDataRoot, string listenAddress, ILogger logger)
    {
        _host = host;
        _listenAddress = listenAddress;
        _description = $"the destination {host.Name}";
        _logger = logger;
        List<string> args = remoteDataRoot is null ? [] : ["--data-root", remoteDataRoot];
        args.Add("migrate-agent");
        var command = new Command(remoteVzsdk).WithArguments(args)
            .WithStandardInput(_toAgent.Reader.AsStream())
            .WithStandardOutputPipe(PipeTarget.ToStream(_fromAgent.Writer.AsStream()))
            .WithStandardErrorPipe(PipeTarget.ToStringBuilder(_agentErrors))
            .WithTimeout(TimeSpan.FromHours(24))
            .WithValidation(CommandResultValidation.None);
        _agent = Task.Run(async () =>
        {
            try
            {
                return await _host.ExecuteAsync(command).ConfigureAwait(false);
            }
            finally
            {
                await _fromAgent.Writer.CompleteAsync().ConfigureAwait(false);
            }
        });
        _responses = new StreamReader(_fromAgent.Reader.AsStream(), Encoding.UTF8);
        _requests = _toAgent.Writer.AsStream();
    }

    private async Task<AgentResponse> CallAsync(AgentRequest request, CancellationToken ct)
    {
        var line = JsonSerializer.Serialize(request, AgentJson.Default.AgentRequest) + "\n";
        await _requests.WriteAsync(Encoding.UTF8.GetBytes(line), ct).ConfigureAwait(false);
        await _requests.FlushAsync(ct).ConfigureAwait(false);
        var answer = await _responses.ReadLineAsync(ct).ConfigureAwait(false);
        if (answer is null)
        {
            var result = await _agent.ConfigureAwait(false);
            var why = _agentErrors.ToString().Trim();
            throw new InvalidStateException($"The migration agent on {_host.Name} ended (exit code {result.ExitCode}){(why.Length > 0 ? ": " + why : "")}. Is the SDK's vzsdk tool installed there?");
        }
        var response = JsonSerializer.Deserialize(answer, AgentJson.Default.AgentResponse) ?? throw new InvalidStateException($"The migration agent on {_host.Name} answered nothing.");
        if (response.ProtocolVersion != AgentProtocol.Version)
            throw new UnsupportedOnHostException($"The SDK on {_host.Name} speaks migration protocol {response.ProtocolVersion}, this one {AgentProtocol.Version}: install the same SDK version on both hosts.");
        return response.Ok ? response : throw response.ToException(_description);
    }

    public Task HelloAsync(CancellationToken ct) => CallAsync(new AgentRequest { Op = "hello" }, ct);

    public async Task<VmIncomingEndpoint> PrepareAsync(VmMigrationOffer offer, CancellationToken cancellationToken)
        => (await CallAsync(new AgentRequest { Op = "prepare-vm", Offer = offer, ListenAddress = _listenAddress }, cancellationToken).ConfigureAwait(false)).Endpoint
            ?? throw new InvalidStateException($"The migration agent on {_host.Name} gave no address to migrate to.");

    public Task CompleteAsync(VeId id, CancellationToken cancellationToken) => CallAsync(new AgentRequest { Op = "complete-vm", Id = id.Value }, cancellationToken);

    public Task AbortAsync(VeId id, CancellationToken cancellationToken) => CallAsync(new AgentRequest { Op = "abort-vm", Id = id.Value }, cancellationToken);

    public async Task<VmOfflineEndpoint> PrepareOfflineAsync(VmOfflineOffer offer, CancellationToken cancellationToken)
        => (await CallAsync(new AgentRequest { Op = "prepare-vm-offline", OfflineOffer = offer, ListenAddress = _listenAddress }, cancellationToken).ConfigureAwait(false)).OfflineEndpoint
            ?? throw new InvalidStateException($"The migration agent on {_host.Name} gave no address to send the disks to.");

    public Task CompleteOfflineAsync(VeId id, CancellationToken cancellationToken) => CallAsync(new AgentRequest { Op = "complete-vm-offline", Id = id.Value }, cancellationToken);

    public async Task<ContainerIncomingEndpoint> PrepareContainerAsync(ContainerMigrationOffer offer, CancellationToken cancellationToken)
        => (await CallAsync(new AgentRequest { Op = "prepare-ct", ContainerOffer = offer, ListenAddress = _listenAddress }, cancellationToken).ConfigureAwait(false)).ContainerEndpoint
            ?? throw new InvalidStateException($"The migration agent on {_host.Name} gave no address to send the disk to.");

    public Task CompleteContainerAsync(VeId id, bool live, bool start, CancellationToken cancellationToken) => CallAsync(new AgentRequest { Op = "complete-ct", Id = id.Value, Live = live, Start = start }, cancellationToken);

    public Task CommitContainerAsync(VeId id, CancellationToken cancellationToken) => CallAsync(new AgentRequest { Op = "commit-ct", Id = id.Value }, cancellationToken);

    public Task AbortContainerAsync(VeId id, CancellationToken cancellationToken) => CallAsync(new AgentRequest { Op = "abort-ct", Id = id.Value }, cancellationToken);

    /// <summary>Streams the directory (or one entry of it) as a tar archive into <c>tar -x</c> on the destination, over SSH.</summary>
    public async Task<long> SendImagesAsync(string localDirectory, string remoteDirectory, CancellationToken cancellationToken, string? member = null)
    {
        var pipe = new Pipe();
        var counter = new CountingStream(pipe.Writer.AsStream());
        var pack = Task.Run(async () =>
        {
            try
            {
                await _local.ExecuteAsync(new Command("tar").WithArguments("-C", localDirectory, "-cf", "-", "--", member ?? ".").WithStandardOutputPipe(PipeTarget.ToStream(counter)).WithTimeout(TimeSpan.FromHours(1)), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                await pipe.Writer.CompleteAsync().ConfigureAwait(false);
            }
        }, cancellationToken);
        var unpack = _host.ExecuteAsync(new Command("tar").WithArguments("-C", remoteDirectory, "-xf", "-").WithStandardInput(pipe.Reader.AsStream()).WithTimeout(TimeSpan.FromHours(1)), cancellationToken);
        await Task.WhenAll(pack, unpack).ConfigureAwait(false);
        return counter.Written;
    }

    private readonly LocalHost _local = new();

    public async ValueTask DisposeAsync()
    {
        // Closing the agent's input ends it; it removes whatever it was receiving and had not completed.
        await _toAgent.Writer.CompleteAsync().ConfigureAwait(false);
        try
        {
            await _agent.WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or VirtuozzoException)
        {
            _logger.LogWarning("The migration agent on {Host} did not end cleanly: {Error}", _host.Name, ex.Message);
        }
        _responses.Dispose();
        await _host.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>A write-only stream that counts what passes through it.</summary>
internal sealed class CountingStream(Stream inner) : Stream
{
    public long Written { get; private set; }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count)
    {
        inner.Write(buffer, offset, count);
        Written += count;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        Written += buffer.Length;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
}
