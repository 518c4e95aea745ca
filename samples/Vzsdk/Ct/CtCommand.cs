using System.CommandLine;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;

namespace Vzsdk.Ct;

/// <summary><c>vzsdk ct …</c>: containers, with prlctl's names and CLI.md's conventions.</summary>
internal static class CtCommand
{
    public static Command Build()
    {
        var ct = new Command("ct", "Create, run and manage system containers.");
        ct.Subcommands.Add(Create());
        ct.Subcommands.Add(List());
        ct.Subcommands.Add(Info());
        ct.Subcommands.Add(Simple("start", "Start a stopped container.", (c, n, ct) => c.StartAsync(n, ct)));
        ct.Subcommands.Add(Stop());
        ct.Subcommands.Add(Restart());
        ct.Subcommands.Add(Suspend());
        ct.Subcommands.Add(Simple("resume", "Continue a suspended container (restores one suspended to disk).", (c, n, ct) => c.ResumeAsync(n, ct)));
        ct.Subcommands.Add(Exec());
        ct.Subcommands.Add(Set());
        ct.Subcommands.Add(Clone());
        ct.Subcommands.Add(Rename());
        ct.Subcommands.Add(Delete());
        ct.Subcommands.Add(Mount());
        ct.Subcommands.Add(Umount());
        ct.Subcommands.Add(Compact());
        ct.Subcommands.Add(Template());
        foreach (var verb in SnapshotCommands.Build("container", "with its processes when it runs", p => new SnapshotCommands.Ops(
            async (n, s, d, ct) => await Client(p).CreateSnapshotAsync(n, s, d, ct) is var c ? (c.Id, c.Name) : default,
            async (n, ct) => (await Client(p).ListSnapshotsAsync(n, ct)).Select(s => new SnapshotCommands.Row(s.Id, s.Name, s.Description, s.ParentId, s.CreatedAt, s.IncludesMemory, s.IsCurrent)).ToList(),
            (n, id, ct) => Client(p).SwitchSnapshotAsync(n, id, ct),
            (n, id, ct) => Client(p).DeleteSnapshotAsync(n, id, ct))))
            ct.Subcommands.Add(verb);
        return ct;
    }

    private static ContainerClient Client(ParseResult parse) => new(Cli.Runtime(parse));

    private static Argument<string> NameArg() => new("NAME") { Description = "The container's name or UUID." };

    private static Option<bool> Json() => new("--json") { Description = "Print JSON." };

    // Resource flags shared by create and set (bare sizes are MiB, as prlctl).
    private sealed class ResourceFlags
    {
        public readonly Option<string?> MemorySize = new("--memsize") { Description = "Memory limit (bare number = MiB)." };
        public readonly Option<string?> Swap = new("--swap") { Description = "Swap (bare number = MiB)." };
        public readonly Option<string?> MemGuarantee = new("--memguarantee") { Description = "Guaranteed memory in percent of memsize, or 'auto' (0 for containers)." };
        public readonly Option<int?> Cpus = new("--cpus") { Description = "CPUs' worth of time (0 = all)." };
        public readonly Option<int?> CpuLimitPercent = new("--cpulimit") { Description = "CPU limit in percent, 100 = one CPU (0 = none)." };
        public readonly Option<int?> CpuUnits = new("--cpuunits") { Description = "CPU weight (default 1000)." };
        public readonly Option<string?> CpuMask = new("--cpumask") { Description = "CPUs to run on, such as 0-1,3." };
        public readonly Option<string?> DiskSpace = new("--diskspace") { Description = "Disk size (bare number = MiB)." };
        public readonly Option<long?> MaxProcesses = new("--pids") { Description = "Most processes." };
        public readonly Option<string?> Hostname = new("--hostname") { Description = "Host name." };
        public readonly Option<string?> Autostart = new("--autostart") { Description = "on or off: start at boot (vzsdk host autostart)." };

        public void AddTo(Command c)
        {
            foreach (var o in new Option[] { MemorySize, Swap, MemGuarantee, Cpus, CpuLimitPercent, CpuUnits, CpuMask, DiskSpace, MaxProcesses, Hostname, Autostart })
                c.Options.Add(o);
        }

        public int? Guarantee(ParseResult p)
            => p.GetValue(MemGuarantee) switch
            {
                null => null,
                "auto" => 0,
                var t when int.TryParse(t, out var v) && v is >= 0 and <= 100 => v,
                var t => throw new UsageException($"--memguarantee: '{t}' is not a percentage (0-100) or 'auto'."),
            };
    }

    private static Command Create()
    {
        var name = new Argument<string>("NAME") { Description = "The new container's name." };
        var template = new Option<string>("--template", "--ostemplate") { Description = "OS template (default busybox).", DefaultValueFactory = _ => ContainerClient.BusyboxTemplate };
        var ip = new Option<string[]>("--ipadd") { Description = "ADDRESS/PREFIX on eth0 (repeatable).", AllowMultipleArgumentsPerToken = false };
        var ns = new Option<string[]>("--nameserver") { Description = "DNS server (repeatable)." };
        var privileged = new Option<bool>("--privileged") { Description = "No user namespace: the container's root is the host's root (default: an unprivileged id range of its own)." };
        var filter = new Option<string>("--syscall-filter") { Description = "default (an allow-list at least as strict as Docker's) or unconfined.", DefaultValueFactory = _ => "default" };
        filter.AcceptOnlyFromAmong("default", "unconfined");
        var allow = new Option<string[]>("--allow-syscall") { Description = "A system call to allow beyond the default filter (repeatable)." };
        var json = Json();
        var r = new ResourceFlags();
        var cmd = new Command("create", "Create a container from an OS template.") { name, template, ip, ns, privileged, filter, allow, json };
        r.AddTo(cmd);
        cmd.SetAction(async (p, ct) =>
        {
            var defaults = new ContainerResources();
            var resources = new ContainerResources
            {
                MemorySize = Cli.ResourceSize(p, r.MemorySize) ?? defaults.MemorySize,
                Swap = Cli.ResourceSize(p, r.Swap) ?? defaults.Swap,
                MemoryGuaranteePercent = r.Guarantee(p) ?? 0,
                Cpus = p.GetValue(r.Cpus) is { } c && c > 0 ? c : null,
                CpuLimitPercent = p.GetValue(r.CpuLimitPercent) is { } l && l > 0 ? l : null,
                CpuUnits = p.GetValue(r.CpuUnits) ?? defaults.CpuUnits,
                CpuMask = p.GetValue(r.CpuMask),
                DiskSpace = Cli.ResourceSize(p, r.DiskSpace) ?? defaults.DiskSpace,
                MaxProcesses = p.GetValue(r.MaxProcesses) ?? defaults.MaxProcesses,
            };
            var info = await Client(p).CreateAsync(new ContainerCreateOptions
            {
                Name = new VeName(p.GetValue(name)!),
                Template = p.GetValue(template)!,
                Resources = resources,
                Hostname = p.GetValue(r.Hostname),
                IpAddresses = p.GetValue(ip) ?? [],
                Nameservers = p.GetValue(ns) ?? [],
                Autostart = Cli.OnOff(p, r.Autostart) ?? false,
                Security = new ContainerSecurityOptions
                {
                    Privileged = p.GetValue(privileged),
                    SyscallFilter = p.GetValue(filter) == "unconfined" ? ContainerSyscallFilter.Unconfined : ContainerSyscallFilter.Default,
                    AllowedSyscalls = p.GetValue(allow) ?? [],
                },
            }, ct);
            if (p.GetValue(json))
                Cli.WriteJson(ToJson(info), VzsdkJson.Default.ContainerInfo);
            else
                Console.Out.WriteLine($"Created container {info.Name}");
            Console.Out.WriteLine(info.Id.ToString());
            return Cli.Success;
        });
        return cmd;
    }

    private static Command List()
    {
        var all = new Option<bool>("-a", "--all") { Description = "Include stopped containers." };
        var json = Json();
        var cmd = new Command("list", "List containers (running ones unless -a).") { all, json };
        cmd.SetAction(async (p, ct) =>
        {
            var list = await Client(p).ListAsync(p.GetValue(all), ct);
            if (p.GetValue(json))
            {
                Cli.WriteJson(list.Select(ToListJson).ToList(), VzsdkJson.Default.ContainerList);
                return Cli.Success;
            }
            Console.Out.WriteLine(TopLevel.Row([("UUID", 40), ("STATUS", 11), ("IP_ADDR", 17), ("NAME", 0)]));
            foreach (var c in list)
                Console.Out.WriteLine(TopLevel.Row([(c.Id.ToBracedString(), 40), (StateName(c.State), 11), (c.IpAddresses.Count > 0 ? c.IpAddresses[0].Split('/')[0] : "-", 17), (c.Name.Value, 0)]));
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Info()
    {
        var name = NameArg();
        var json = Json();
        var cmd = new Command("info", "Show a container's state and configuration.") { name, json };
        cmd.SetAction(async (p, ct) =>
        {
            var c = await Client(p).GetAsync(p.GetValue(name)!, ct);
            if (p.GetValue(json))
            {
                Cli.WriteJson(ToJson(c), VzsdkJson.Default.ContainerInfo);
                return Cli.Success;
            }
            var r = c.Resources;
            Console.Out.WriteLine($"ID: {c.Id.ToBracedString()}");
            Console.Out.WriteLine($"Name: {c.Name}");
            Console.Out.WriteLine($"State: {StateName(c.State)}");
            Console.Out.WriteLine($"OS template: {c.Template}");
            Console.Out.WriteLine($"Hostname: {c.Hostname}");
            Console.Out.WriteLine($"IP addresses: {(c.IpAddresses.Count > 0 ? string.Join(' ', c.IpAddresses) : "-")}");
            Console.Out.WriteLine($"Memory: {r.MemorySize} (swap {r.Swap}, guarantee {r.MemoryGuaranteePercent}%)");
            Console.Out.WriteLine($"CPUs: {(r.Cpus?.ToString() ?? "all")}, cpulimit {(r.CpuLimitPercent is { } l ? l + "%" : "none")}, cpuunits {r.CpuUnits}, cpumask {r.CpuMask ?? "all"}");
            Console.Out.WriteLine($"Disk: {r.DiskSpace}, pids {r.MaxProcesses}");
            Console.Out.WriteLine($"Autostart: {(c.Autostart ? "on" : "off")}");
            Console.Out.WriteLine($"Root: {(c.HostIdStart is { } start ? $"unprivileged (host ids {start}-{start + 65535})" : "privileged (the host's root)")}");
            Console.Out.WriteLine($"System-call filter: {(c.Security.SyscallFilter == ContainerSyscallFilter.Unconfined ? "unconfined" : "default")}{(c.Security.AllowedSyscalls.Count > 0 ? " + " + string.Join(',', c.Security.AllowedSyscalls) : "")}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Simple(string verb, string description, Func<ContainerClient, string, CancellationToken, Task<ContainerInfo>> action)
    {
        var name = NameArg();
        var cmd = new Command(verb, description) { name };
        cmd.SetAction(async (p, ct) =>
        {
            var c = await action(Client(p), p.GetValue(name)!, ct);
            Console.Out.WriteLine($"Container {c.Name} is {StateName(c.State)}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Suspend()
    {
        var name = NameArg();
        var toDisk = new Option<bool>("--to-disk") { Description = "Save the processes to disk with CRIU and stop the container (as prlctl suspend does); resume or start restores them." };
        var cmd = new Command("suspend", "Freeze a running container, or with --to-disk save it to disk.") { name, toDisk };
        cmd.SetAction(async (p, ct) =>
        {
            var client = Client(p);
            var c = p.GetValue(toDisk) ? await client.SuspendToDiskAsync(p.GetValue(name)!, ct) : await client.SuspendAsync(p.GetValue(name)!, ct);
            Console.Out.WriteLine($"Container {c.Name} is {StateName(c.State)}{(p.GetValue(toDisk) ? " (saved to disk)" : "")}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Stop()
    {
        var name = NameArg();
        var f = TopLevel.StopFlags();
        var cmd = new Command("stop", "Stop a container: its stop signal, then kill after the timeout.") { name, f.Kill, f.Timeout };
        cmd.SetAction(async (p, ct) =>
        {
            var how = await Client(p).StopAsync(p.GetValue(name)!, TopLevel.StopOptions(p, f), ct);
            var c = await Client(p).GetAsync(p.GetValue(name)!, ct);
            Console.Out.WriteLine(how == VeStopMethod.AlreadyStopped ? $"Container {c.Name} was not running" : $"Container {c.Name} is {StateName(c.State)}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Restart()
    {
        var name = NameArg();
        var f = TopLevel.StopFlags();
        var cmd = new Command("restart", "Stop and start a container.") { name, f.Kill, f.Timeout };
        cmd.SetAction(async (p, ct) =>
        {
            var c = await Client(p).RestartAsync(p.GetValue(name)!, TopLevel.StopOptions(p, f), ct);
            Console.Out.WriteLine($"Container {c.Name} is {StateName(c.State)}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Exec()
    {
        var name = NameArg();
        var interactive = new Option<bool>("-i", "--interactive") { Description = "Forward standard input." };
        var shell = new Option<bool>("--shell") { Description = "Run /bin/sh -c with the joined arguments." };
        var command = new Argument<string[]>("COMMAND") { Description = "The program and its arguments (after --).", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("exec", "Run a command in a running container; its exit code is passed through.") { name, interactive, shell, command };
        cmd.SetAction(async (p, ct) =>
        {
            try
            {
                var argv = p.GetValue(command)!;
                await using var stdout = Console.OpenStandardOutput();
                await using var stderr = Console.OpenStandardError();
                var result = await Client(p).ExecAsync(p.GetValue(name)!, new VeExecOptions
                {
                    Command = argv,
                    Shell = p.GetValue(shell),
                    StandardInput = p.GetValue(interactive) ? Console.OpenStandardInput() : null,
                    StandardOutput = stdout,
                    StandardError = stderr,
                }, ct);
                return result.ExitCode;
            }
            catch (Exception ex) when (ex is VirtuozzoException or ArgumentException)
            {
                Cli.ReportError(ex, p.GetValue(Cli.Verbose));
                return 125; // the tool itself failed, as docker exec
            }
        });
        return cmd;
    }

    private static Command Set()
    {
        var name = NameArg();
        var r = new ResourceFlags();
        var userpasswd = new Option<string?>("--userpasswd") { Description = "USER (the password is read from standard input) or USER:PASSWORD: set a user's password inside the running container." };
        var userpasswdFile = new Option<string?>("--userpasswd-file") { Description = "Read the password for --userpasswd USER from this file." };
        var cmd = new Command("set", "Change a container's resources (live where possible, persisted always).") { name, userpasswd, userpasswdFile };
        r.AddTo(cmd);
        cmd.SetAction(async (p, ct) =>
        {
            if (p.GetValue(userpasswd) is { } spec)
            {
                var colon = spec.IndexOf(':', StringComparison.Ordinal);
                var user = colon < 0 ? spec : spec[..colon];
                var password = colon >= 0 ? spec[(colon + 1)..]
                    : p.GetValue(userpasswdFile) is { } file ? File.ReadAllText(file).TrimEnd('\n', '\r')
                    : (Console.In.ReadLine() ?? string.Empty);
                await Client(p).SetUserPasswordAsync(p.GetValue(name)!, user, password, ct);
                Console.Out.WriteLine($"Password of {user} set");
            }
            var c = await Client(p).SetAsync(p.GetValue(name)!, new ContainerSetOptions
            {
                MemorySize = Cli.ResourceSize(p, r.MemorySize),
                Swap = Cli.ResourceSize(p, r.Swap),
                MemoryGuaranteePercent = r.Guarantee(p),
                Cpus = p.GetValue(r.Cpus),
                CpuLimitPercent = p.GetValue(r.CpuLimitPercent),
                CpuUnits = p.GetValue(r.CpuUnits),
                CpuMask = p.GetValue(r.CpuMask),
                DiskSpace = Cli.ResourceSize(p, r.DiskSpace),
                MaxProcesses = p.GetValue(r.MaxProcesses),
                Hostname = p.GetValue(r.Hostname),
                Autostart = Cli.OnOff(p, r.Autostart),
            }, ct);
            Console.Out.WriteLine($"Container {c.Name} updated");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Clone()
    {
        var name = NameArg();
        var newName = new Option<string>("--name") { Description = "The clone's name.", Required = true };
        var cmd = new Command("clone", "Copy a stopped container under a new name.") { name, newName };
        cmd.SetAction(async (p, ct) =>
        {
            var c = await Client(p).CloneAsync(p.GetValue(name)!, new VeName(p.GetValue(newName)!), ct);
            Console.Out.WriteLine($"Created container {c.Name}");
            Console.Out.WriteLine(c.Id.ToString());
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Rename()
    {
        var name = NameArg();
        var newName = new Argument<string>("NEWNAME") { Description = "The new name." };
        var cmd = new Command("rename", "Rename a container.") { name, newName };
        cmd.SetAction(async (p, ct) =>
        {
            var c = await Client(p).RenameAsync(p.GetValue(name)!, new VeName(p.GetValue(newName)!), ct);
            Console.Out.WriteLine($"Container renamed to {c.Name}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Delete()
    {
        var name = NameArg();
        var cmd = new Command("delete", "Delete a container and its disk (a running one is killed first).") { name };
        cmd.SetAction(async (p, ct) =>
        {
            var deleted = await Client(p).DeleteAsync(p.GetValue(name)!, ct);
            Console.Out.WriteLine(deleted ? $"Container {p.GetValue(name)} deleted" : $"There was no container {p.GetValue(name)}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Mount()
    {
        var name = NameArg();
        var cmd = new Command("mount", "Mount a stopped container's disk on the host; prints the mount point.") { name };
        cmd.SetAction(async (p, ct) =>
        {
            Console.Out.WriteLine(await Client(p).MountAsync(p.GetValue(name)!, ct));
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Umount()
    {
        var name = NameArg();
        var cmd = new Command("umount", "Unmount a mounted container's disk.") { name };
        cmd.SetAction(async (p, ct) =>
        {
            await Client(p).UnmountAsync(p.GetValue(name)!, ct);
            Console.Out.WriteLine($"Container {p.GetValue(name)} unmounted");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Compact()
    {
        var name = NameArg();
        var cmd = new Command("compact", "Give the unused blocks of a container's disk back to the host (vzctl compact; Virtuozzo nodes only).") { name };
        cmd.SetAction(async (p, ct) =>
        {
            await Client(p).CompactDiskAsync(p.GetValue(name)!, ct);
            Console.Out.WriteLine($"Container {p.GetValue(name)}: disk compacted");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Template()
    {
        var template = new Command("template", "OS templates.");
        var json = Json();
        var list = new Command("list", "List OS templates.") { json };
        list.SetAction(async (p, ct) =>
        {
            var all = await Client(p).ListTemplatesAsync(ct);
            if (p.GetValue(json))
                Cli.WriteJson(all.Select(t => new TemplateJson(t.Name, t.Init, t.StopSignal, t.SizeBytes)).ToList(), VzsdkJson.Default.TemplateList);
            else
                foreach (var t in all)
                    Console.Out.WriteLine($"{t.Name,-20}{new ByteSize(t.SizeBytes).ToHumanString(),-12}{string.Join(' ', t.Init)}");
            return Cli.Success;
        });
        var name = new Argument<string>("NAME") { Description = "The template's name." };
        var tarball = new Argument<string>("TARBALL") { Description = "A root file system tarball." };
        var init = new Option<string?>("--init") { Description = "The init command (default /sbin/init)." };
        var stop = new Option<string?>("--stop-signal") { Description = "The signal that stops the init (default SIGTERM)." };
        var import = new Command("import", "Import a root file system tarball as an OS template.") { name, tarball, init, stop };
        import.SetAction(async (p, ct) =>
        {
            var t = await Client(p).ImportTemplateAsync(new ContainerTemplateImportOptions
            {
                Name = p.GetValue(name)!,
                TarballPath = Path.GetFullPath(p.GetValue(tarball)!),
                Init = p.GetValue(init) is { } i ? i.Split(' ', StringSplitOptions.RemoveEmptyEntries) : ["/sbin/init"],
                StopSignal = p.GetValue(stop) ?? "SIGTERM",
            }, ct);
            Console.Out.WriteLine($"Imported template {t.Name}");
            Console.Out.WriteLine(t.Name);
            return Cli.Success;
        });
        var buildName = new Argument<string>("NAME") { Description = "debian-12 or debian-13 (or any name with --suite)." };
        var suite = new Option<string?>("--suite") { Description = "The Debian suite (default: from the name)." };
        var packages = new Option<string[]>("--packages") { Description = "Packages to add (repeatable, or comma-separated).", AllowMultipleArgumentsPerToken = true };
        var mirror = new Option<string?>("--mirror") { Description = "The package mirror (default http://deb.debian.org/debian)." };
        var create = new Command("create", "Build an OS template from Debian's packages (debootstrap), with systemd as init, and cache it.") { buildName, suite, packages, mirror };
        create.SetAction(async (p, ct) =>
        {
            var t = await Client(p).CreateTemplateAsync(new ContainerTemplateCreateOptions
            {
                Name = p.GetValue(buildName)!,
                Suite = p.GetValue(suite),
                Packages = (p.GetValue(packages) ?? []).SelectMany(x => x.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList(),
                Mirror = p.GetValue(mirror) is { } m ? new Uri(m) : new Uri("http://deb.debian.org/debian"),
            }, ct);
            Console.Out.WriteLine($"Built template {t.Name} ({new ByteSize(t.SizeBytes).ToHumanString()})");
            Console.Out.WriteLine(t.Name);
            return Cli.Success;
        });
        var updateName = new Argument<string>("NAME") { Description = "A template built with template create." };
        var update = new Command("update", "Rebuild a template from the distribution's current packages.") { updateName };
        update.SetAction(async (p, ct) =>
        {
            var t = await Client(p).UpdateTemplateAsync(p.GetValue(updateName)!, ct);
            Console.Out.WriteLine($"Updated template {t.Name} ({new ByteSize(t.SizeBytes).ToHumanString()})");
            return Cli.Success;
        });
        template.Subcommands.Add(list);
        template.Subcommands.Add(import);
        template.Subcommands.Add(create);
        template.Subcommands.Add(update);
        return template;
    }

    internal static string StateName(VeState s) => s.ToString().ToLowerInvariant();

    private static CtListJson ToListJson(ContainerInfo c)
        => new(c.Id.ToString(), c.Name.Value, "container", StateName(c.State), c.IpAddresses.Count > 0 ? string.Join(' ', c.IpAddresses.Select(a => a.Split('/')[0])) : null, c.Hostname ?? c.Name.Value);

    private static CtInfoJson ToJson(ContainerInfo c)
    {
        var r = c.Resources;
        return new CtInfoJson(c.Id.ToString(), c.Name.Value, "container", StateName(c.State), c.IpAddresses.Count > 0 ? string.Join(' ', c.IpAddresses.Select(a => a.Split('/')[0])) : null,
            c.Hostname ?? c.Name.Value, c.Template, c.IpAddresses.ToList(), r.MemorySize.Bytes, r.Swap.Bytes, r.MemoryGuaranteePercent, r.Cpus, r.CpuLimitPercent, r.CpuUnits, r.CpuMask, r.DiskSpace.Bytes, r.MaxProcesses,
            c.Autostart, c.CreatedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
            c.HostIdStart is null, c.HostIdStart, c.Security.SyscallFilter == ContainerSyscallFilter.Unconfined ? "unconfined" : "default", [.. c.Security.AllowedSyscalls]);
    }

    internal sealed record CtListJson(string Uuid, string Name, string Type, string Status, string? IpConfigured, string Hostname);

    internal sealed record CtInfoJson(string Uuid, string Name, string Type, string Status, string? IpConfigured, string Hostname, string Template, List<string> IpAddresses,
        long Memsize, long Swap, int Memguarantee, int? Cpus, int? Cpulimit, int Cpuunits, string? Cpumask, long Diskspace, long MaxProcesses, bool Autostart, string CreatedAt,
        bool Privileged, long? HostIdStart, string SyscallFilter, List<string> AllowedSyscalls);

    internal sealed record TemplateJson(string Name, IReadOnlyList<string> Init, string StopSignal, long Size);
}
