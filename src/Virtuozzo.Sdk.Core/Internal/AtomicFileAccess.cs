namespace Virtuozzo.Sdk.Core.Internal;

/// <summary>Atomic whole-file writes for the SDK's other packages.</summary>
internal static class AtomicFileAccess
{
    public static Task WriteTextAsync(string path, string text, CancellationToken ct) => AtomicFile.WriteAsync(path, System.Text.Encoding.UTF8.GetBytes(text), ct);
}
