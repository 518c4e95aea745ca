using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.Core.State;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Containers.Internal;

/// <summary>OS template caches: <c>templates/&lt;name&gt;.tar[.gz|.xz]</c> plus <c>&lt;name&gt;.json</c>.</summary>
internal sealed class TemplateStore(IVirtuozzoHost host, StateStore store)
{
    private string Dir => store.TemplatesDirectory;

    /// <summary>The init of the busybox template: a shell that exits at once on SIGTERM.</summary>
    internal const string BusyboxInit = "#!/bin/sh\ntrap 'exit 0' TERM INT\nwhile :; do sleep 3600 & wait $!; done\n";

    public static string ValidateName(string name)
    {
        if (VeName.Validate(name) is { } error)
            throw new ArgumentException("Invalid template name: " + error, nameof(name));
        return name;
    }

    private string ManifestPath(string name) => Path.Combine(Dir, name + ".json");

    private string? TarballPath(string name)
        => new[] { ".tar.gz", ".tar.xz", ".tar" }.Select(ext => Path.Combine(Dir, name + ext)).FirstOrDefault(File.Exists);

    public async Task<IReadOnlyList<ContainerTemplate>> ListAsync(CancellationToken ct)
    {
        store.EnsureUsable();
        var list = new List<ContainerTemplate>();
        foreach (var manifestPath in Directory.EnumerateFiles(Dir, "*.json"))
        {
            var m = await store.ReadDocumentAsync(manifestPath, ContainersJson.Default.TemplateManifest, 1, ct).ConfigureAwait(false);
            if (m is not null && TarballPath(m.Name) is { } tar)
                list.Add(new ContainerTemplate(m.Name, m.Init, m.StopSignal, new FileInfo(tar).Length));
        }
        return list.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
    }

    public async Task<(TemplateManifest Manifest, string Tarball)> GetAsync(string name, CancellationToken ct)
    {
        ValidateName(name);
        if (name == ContainerClient.BusyboxTemplate)
            await EnsureBusyboxAsync(ct).ConfigureAwait(false);
        var m = await store.ReadDocumentAsync(ManifestPath(name), ContainersJson.Default.TemplateManifest, 1, ct).ConfigureAwait(false);
        var tar = TarballPath(name);
        if (m is null || tar is null)
            throw new NotFoundException($"There is no OS template '{name}'. Import one with ContainerClient.ImportTemplateAsync, or use the built-in 'busybox'.");
        return (m, tar);
    }

    /// <summary>Builds the busybox template from the host's busybox-static, once.</summary>
    public async Task EnsureBusyboxAsync(CancellationToken ct)
    {
        store.EnsureUsable();
        if (File.Exists(ManifestPath(ContainerClient.BusyboxTemplate)) && TarballPath(ContainerClient.BusyboxTemplate) is not null)
            return;
        var busybox = new[] { "/bin/busybox", "/usr/bin/busybox" }.FirstOrDefault(File.Exists)
            ?? throw new ToolNotFoundException("busybox", "The busybox template is built from the host's static busybox: install the busybox-static package.");
        var work = Path.Combine(Dir, $".busybox-build-{Guid.NewGuid():N}");
        try
        {
            var root = Path.Combine(work, "rootfs");
            foreach (var d in new[] { "bin", "sbin", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "tmp", "root", "run", "var/log", "home" })
                Directory.CreateDirectory(Path.Combine(root, d));
            File.Copy(busybox, Path.Combine(root, "bin/busybox"));
            File.SetUnixFileMode(Path.Combine(root, "bin/busybox"), (UnixFileMode)Convert.ToInt32("755", 8));
            var list = await host.ExecuteBufferedAsync(new Command(busybox).WithArguments("--list-full"), ct).ConfigureAwait(false);
            foreach (var applet in list.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var link = Path.Combine(root, applet);
                if (applet == "bin/busybox" || File.Exists(link) || applet.Contains("..", StringComparison.Ordinal))
                    continue;
                Directory.CreateDirectory(Path.GetDirectoryName(link)!);
                File.CreateSymbolicLink(link, "/bin/busybox");
            }
            File.SetUnixFileMode(Path.Combine(root, "tmp"), (UnixFileMode)Convert.ToInt32("1777", 8));
            await File.WriteAllTextAsync(Path.Combine(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", ct).ConfigureAwait(false);
            await File.WriteAllTextAsync(Path.Combine(root, "etc/group"), "root:x:0:\nnogroup:x:65534:\n", ct).ConfigureAwait(false);
            await File.WriteAllTextAsync(Path.Combine(root, "etc/hosts"), "127.0.0.1 localhost\n", ct).ConfigureAwait(false);
            var init = Path.Combine(root, "sbin/vzinit");
            await File.WriteAllTextAsync(init, BusyboxInit, ct).ConfigureAwait(false);
            File.SetUnixFileMode(init, (UnixFileMode)Convert.ToInt32("755", 8));
            var tarball = Path.Combine(work, "busybox.tar.gz");
            await host.ExecuteAsync(new Command("tar").WithArguments("--numeric-owner", "-C", root, "-czf", tarball, "."), ct).ConfigureAwait(false);
            await CommitAsync(ContainerClient.BusyboxTemplate, tarball, ".tar.gz", ["/sbin/vzinit"], "SIGTERM", ct).ConfigureAwait(false);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); }
            catch (IOException) { }
        }
    }

    public async Task<ContainerTemplate> ImportAsync(ContainerTemplateImportOptions options, CancellationToken ct)
    {
        ValidateName(options.Name);
        OciSpec.ValidateSignal(options.StopSignal);
        if (options.Init.Count == 0 || string.IsNullOrEmpty(options.Init[0]))
            throw new ArgumentException("A template needs an init command.", nameof(options));
        if (!File.Exists(options.TarballPath))
            throw new FileNotFoundException($"The template tarball '{options.TarballPath}' does not exist.", options.TarballPath);
        store.EnsureUsable();
        // Check it is a readable tarball before it becomes a template.
        await host.ExecuteAsync(new Command("tar").WithArguments("-tf", options.TarballPath).WithStandardOutputPipe(PipeTarget.Null).WithTimeout(TimeSpan.FromMinutes(10)), ct).ConfigureAwait(false);
        var ext = options.TarballPath.EndsWith(".xz", StringComparison.Ordinal) || options.TarballPath.EndsWith(".txz", StringComparison.Ordinal) ? ".tar.xz"
            : options.TarballPath.EndsWith(".gz", StringComparison.Ordinal) || options.TarballPath.EndsWith(".tgz", StringComparison.Ordinal) ? ".tar.gz" : ".tar";
        var staged = Path.Combine(Dir, $".import-{Guid.NewGuid():N}{ext}");
        File.Copy(options.TarballPath, staged);
        await CommitAsync(options.Name, staged, ext, options.Init.ToList(), options.StopSignal, ct).ConfigureAwait(false);
        return (await ListAsync(ct).ConfigureAwait(false)).Single(t => t.Name == options.Name);
    }

    private async Task CommitAsync(string name, string stagedTarball, string ext, List<string> init, string stopSignal, CancellationToken ct)
    {
        foreach (var old in new[] { ".tar.gz", ".tar.xz", ".tar" }.Where(e => e != ext))
            File.Delete(Path.Combine(Dir, name + old));
        File.Move(stagedTarball, Path.Combine(Dir, name + ext), overwrite: true);
        await store.WriteDocumentAsync(ManifestPath(name), new TemplateManifest(1, name, init, stopSignal), ContainersJson.Default.TemplateManifest, ct).ConfigureAwait(false);
    }

    /// <summary>Unpacks a template into a directory (owners and modes preserved).</summary>
    public Task ExtractAsync(string tarball, string destination, CancellationToken ct)
    {
        Directory.CreateDirectory(destination);
        return host.ExecuteAsync(new Command("tar").WithArguments("--numeric-owner", "-xpf", tarball, "-C", destination).WithTimeout(LocalTimeouts.FileSystemBuild), ct);
    }
}
