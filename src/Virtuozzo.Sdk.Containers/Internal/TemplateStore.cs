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

    private async Task CommitAsync(string name, string stagedTarball, string ext, List<string> init, string stopSignal, CancellationToken ct, TemplateRecipe? recipe = null)
    {
        foreach (var old in new[] { ".tar.gz", ".tar.xz", ".tar" }.Where(e => e != ext))
            File.Delete(Path.Combine(Dir, name + old));
        File.Move(stagedTarball, Path.Combine(Dir, name + ext), overwrite: true);
        await store.WriteDocumentAsync(ManifestPath(name), new TemplateManifest(1, name, init, stopSignal) { Recipe = recipe }, ContainersJson.Default.TemplateManifest, ct).ConfigureAwait(false);
    }

    /// <summary>The packages every template built from a distribution has: systemd as init, networking, logins, ping, ps.</summary>
    internal static readonly string[] BasePackages = ["systemd-sysv", "dbus", "iproute2", "iputils-ping", "procps", "login", "passwd"];

    /// <summary>The Debian suite a template name stands for (<c>debian-12</c> → bookworm, <c>debian-13</c> → trixie).</summary>
    internal static string? SuiteOf(string name) => name switch
    {
        "debian-12" => "bookworm",
        "debian-13" => "trixie",
        _ => null,
    };

    /// <summary>
    /// Builds a template from Debian's packages: debootstrap (minbase, the base packages and the caller's), then made fit
    /// to boot as a container (the console getty masked, no machine id so that each container makes its own, no host
    /// name, no package cache), packed and committed in place of any template of that name only when all of it worked.
    /// </summary>
    public async Task<ContainerTemplate> BuildAsync(ContainerTemplateCreateOptions options, CancellationToken ct)
    {
        ValidateName(options.Name);
        var suite = options.Suite ?? SuiteOf(options.Name)
            ?? throw new ArgumentException($"Which distribution is '{options.Name}'? Name it debian-12 or debian-13, or set Suite.", nameof(options));
        if (!System.Text.RegularExpressions.Regex.IsMatch(suite, "^[a-z][a-z0-9-]{1,30}$"))
            throw new ArgumentException($"'{suite}' is not a Debian suite name such as bookworm.", nameof(options));
        foreach (var p in options.Packages)
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(p, "^[a-z0-9][a-z0-9+.-]{0,100}$"))
                throw new ArgumentException($"'{p}' is not a Debian package name.", nameof(options));
        }
        if (options.Mirror is not { IsAbsoluteUri: true, Scheme: "http" or "https" or "file" })
            throw new ArgumentException("Mirror must be an absolute http, https or file URI.", nameof(options));
        var recipe = new TemplateRecipe("debian", suite, options.Mirror.ToString(), [.. options.Packages.Distinct(StringComparer.Ordinal)], DateTimeOffset.UtcNow);
        return await BuildAsync(options.Name, recipe, ct).ConfigureAwait(false);
    }

    /// <summary>Rebuilds a template from its recipe.</summary>
    public async Task<ContainerTemplate> UpdateAsync(string name, CancellationToken ct)
    {
        ValidateName(name);
        var manifest = await store.ReadDocumentAsync(ManifestPath(name), ContainersJson.Default.TemplateManifest, 1, ct).ConfigureAwait(false)
            ?? throw new NotFoundException($"There is no template '{name}'.");
        if (manifest.Recipe is not { } recipe)
            throw new InvalidStateException($"Template '{name}' was imported from a tarball, not built from packages: import the new tarball instead.");
        return await BuildAsync(name, recipe with { BuiltAt = DateTimeOffset.UtcNow }, ct).ConfigureAwait(false);
    }

    private async Task<ContainerTemplate> BuildAsync(string name, TemplateRecipe recipe, CancellationToken ct)
    {
        store.EnsureUsable();
        Directory.CreateDirectory(Dir);
        var work = Path.Combine(Dir, $".build-{Guid.NewGuid():N}");
        var rootfs = Path.Combine(work, "rootfs");
        try
        {
            Directory.CreateDirectory(work);
            var include = string.Join(',', BasePackages.Concat(recipe.Packages).Distinct(StringComparer.Ordinal));
            await host.ExecuteAsync(new Command("debootstrap").WithArguments("--variant=minbase", "--include=" + include, recipe.Suite, rootfs, recipe.Mirror)
                .WithTimeout(LocalTimeouts.TemplateBuild), ct).ConfigureAwait(false);
            PrepareForContainers(rootfs);
            var staged = Path.Combine(Dir, $".import-{Guid.NewGuid():N}.tar.gz");
            await host.ExecuteAsync(new Command("tar").WithArguments("--numeric-owner", "--xattrs", "-C", rootfs, "-czf", staged, ".").WithTimeout(LocalTimeouts.TemplateBuild), ct).ConfigureAwait(false);
            await CommitAsync(name, staged, ".tar.gz", ["/sbin/init"], "SIGRTMIN+3", ct, recipe).ConfigureAwait(false);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); }
            catch (IOException) { }
        }
        return (await ListAsync(ct).ConfigureAwait(false)).Single(t => t.Name == name);
    }

    /// <summary>What a freshly bootstrapped Debian needs to boot well as a container.</summary>
    private static void PrepareForContainers(string rootfs)
    {
        // No console getty: a container has no console device; the unit would only fail and leave the boot degraded.
        var masks = Path.Combine(rootfs, "etc/systemd/system");
        Directory.CreateDirectory(masks);
        foreach (var unit in new[] { "console-getty.service", "getty@tty1.service", "systemd-udevd.service", "systemd-modules-load.service" })
        {
            var link = Path.Combine(masks, unit);
            if (!File.Exists(link) && new FileInfo(link).LinkTarget is null)
                File.CreateSymbolicLink(link, "/dev/null");
        }
        // Each container makes its own machine id at its first boot.
        File.WriteAllText(Path.Combine(rootfs, "etc/machine-id"), string.Empty);
        File.Delete(Path.Combine(rootfs, "var/lib/dbus/machine-id"));
        File.Delete(Path.Combine(rootfs, "etc/hostname"));
        foreach (var deb in Directory.EnumerateFiles(Path.Combine(rootfs, "var/cache/apt/archives"), "*.deb"))
            File.Delete(deb);
    }

    /// <summary>True when <paramref name="init"/>, resolved inside <paramref name="rootfs"/> (symlinks followed there, never on the host), is systemd.</summary>
    public static bool IsSystemd(string rootfs, string init)
    {
        var path = init;
        for (var hop = 0; hop < 16; hop++)
        {
            if (Path.GetFileName(path) == "systemd")
                return true;
            var full = Path.Combine(rootfs, path.TrimStart('/'));
            string? target;
            try { target = new FileInfo(full).LinkTarget; }
            catch (IOException) { return false; }
            if (target is null)
                return false;
            path = target.StartsWith('/') ? target : Path.GetFullPath(Path.Combine("/", Path.GetDirectoryName(path.TrimStart('/')) ?? "", target));
        }
        return false;
    }

    /// <summary>Unpacks a template into a directory (owners and modes preserved).</summary>
    public Task ExtractAsync(string tarball, string destination, CancellationToken ct)
    {
        Directory.CreateDirectory(destination);
        return host.ExecuteAsync(new Command("tar").WithArguments("--numeric-owner", "-xpf", tarball, "-C", destination).WithTimeout(LocalTimeouts.FileSystemBuild), ct);
    }
}
