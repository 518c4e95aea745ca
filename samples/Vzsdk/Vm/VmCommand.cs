using System.CommandLine;
using System.Globalization;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;

namespace Vzsdk.Vm;

/// <summary><c>vzsdk vm …</c>: virtual machines, with prlctl's names and CLI.md's conventions.</summary>
internal static class VmCommand
{
    public static Command Build()
    {
        var vm = new Command("vm", "Create, run and manage virtual machines.");
        vm.Subcommands.Add(Create());
        vm.Subcommands.Add(List());
        vm.Subcommands.Add(Info());
        vm.Subcommands.Add(Simple("start", "Start a VM (a suspended one resumes from its saved state).", async (c, n, ct) => { await c.StartAsync(n, ct); return "started"; }));
        vm.Subcommands.Add(Stop());
        vm.Subcommands.Add(Simple("pause", "Pause a running VM.", async (c, n, ct) => { await c.PauseAsync(n, ct); return "paused"; }));
        vm.Subcommands.Add(Simple("resume", "Continue a paused VM, or start a suspended one from its saved state.", async (c, n, ct) => { await c.ResumeAsync(n, ct); return "resumed"; }));
        vm.Subcommands.Add(Simple("suspend", "Save a running VM's state to a file and stop it.", async (c, n, ct) => { await c.SuspendAsync(n, ct); return "suspended"; }));
        vm.Subcommands.Add(Simple("reset", "Reset a running VM (hardware reset).", async (c, n, ct) => { await c.ResetAsync(n, ct); return "reset"; }));
        vm.Subcommands.Add(Simple("delete", "Delete a stopped VM with its disks.", async (c, n, ct) => { await c.DeleteAsync(n, ct); return "deleted"; }));
        vm.Subcommands.Add(Exec());
        vm.Subcommands.Add(Set());
        vm.Subcommands.Add(Clone());
        vm.Subcommands.Add(Rename());
        vm.Subcommands.Add(Compact());
        foreach (var verb in SnapshotCommands.Build("VM", "with memory when the VM runs", p => new SnapshotCommands.Ops(
            async (n, s, d, ct) => await Client(p).CreateSnapshotAsync(n, s, d, ct) is var v ? (v.Id, v.Name) : default,
            async (n, ct) => (await Client(p).ListSnapshotsAsync(n, ct)).Select(s => new SnapshotCommands.Row(s.Id, s.Name, s.Description, s.ParentId, s.CreatedAt, s.IncludesMemory, s.IsCurrent)).ToList(),
            (n, id, ct) => Client(p).SwitchSnapshotAsync(n, id, ct),
            (n, id, ct) => Client(p).DeleteSnapshotAsync(n, id, ct))))
            vm.Subcommands.Add(verb);
        return vm;
    }

    private static VirtualMachineClient Client(ParseResult parse) => new(Cli.Runtime(parse));

    private static Argument<string> NameArg() => new("NAME") { Description = "The VM's name or UUID." };

    private static Option<bool> Json() => new("--json") { Description = "Print JSON." };

    internal static string StateName(VeState s) => s.ToString().ToLowerInvariant();

    private static int? Guarantee(ParseResult p, Option<string?> option)
        => p.GetValue(option) switch
        {
            null => null,
            "auto" => VmDefaults.MemoryGuaranteePercent,
            var t when int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v is >= 0 and <= 100 => v,
            var t => throw new UsageException($"--memguarantee: '{t}' is not a percentage (0-100) or 'auto'."),
        };

    private static Command Create()
    {
        var name = new Argument<string>("NAME") { Description = "The new VM's name." };
        var memsize = new Option<string?>("--memsize") { Description = "Memory (bare number = MiB; default 1G)." };
        var cpus = new Option<int?>("--cpus") { Description = "Virtual CPUs (default 1)." };
        var disk = new Option<string[]>("--disk") { Description = "Add a new disk of this size (bare number = MiB; repeatable)." };
        var cdrom = new Option<string?>("--cdrom") { Description = "An ISO image for the CD/DVD drive." };
        var kernel = new Option<string?>("--kernel") { Description = "Boot this kernel directly." };
        var initrd = new Option<string?>("--initrd") { Description = "Initial RAM disk for --kernel." };
        var append = new Option<string?>("--append") { Description = "Kernel command line for --kernel." };
        var guarantee = new Option<string?>("--memguarantee") { Description = "Guaranteed memory in percent of memsize, or 'auto' (80)." };
        var hotplug = new Option<string?>("--mem-hotplug") { Description = "on or off: allow memory hotplug (VMs of 1 GiB or more)." };
        var maxmem = new Option<string?>("--maxmem") { Description = "Most memory hotplug may reach (default 4 x memsize, capped at host RAM)." };
        var network = new Option<string?>("--network") { Description = "bridged (tap on vzbr0, default), user (no host setup) or none." };
        var cpumask = new Option<string?>("--cpumask") { Description = "Host CPUs the vCPUs run on, such as 0-1,3." };
        var cpulimit = new Option<int?>("--cpulimit") { Description = "CPU limit in percent, 100 = one CPU." };
        var json = Json();
        var cmd = new Command("create", "Create a virtual machine.") { name, memsize, cpus, disk, cdrom, kernel, initrd, append, guarantee, hotplug, maxmem, network, cpumask, cpulimit, json };
        cmd.SetAction(async (p, ct) =>
        {
            var net = p.GetValue(network) switch
            {
                null or "bridged" => VmNetworkMode.Bridged,
                "user" => VmNetworkMode.User,
                "none" => VmNetworkMode.None,
                var other => throw new UsageException($"--network: '{other}' is not bridged, user or none."),
            };
            var defaults = new VmCreateOptions { Name = new VeName("x") };
            var info = await Client(p).CreateAsync(new VmCreateOptions
            {
                Name = new VeName(p.GetValue(name)!),
                MemorySize = Cli.ResourceSize(p, memsize) ?? defaults.MemorySize,
                Cpus = p.GetValue(cpus) ?? 1,
                Disks = (p.GetValue(disk) ?? []).Select(d => new VmDiskOptions { Size = ParseSize(d, "--disk") }).ToList(),
                CdromImagePath = p.GetValue(cdrom),
                KernelPath = p.GetValue(kernel),
                InitrdPath = p.GetValue(initrd),
                KernelCommandLine = p.GetValue(append),
                MemoryGuaranteePercent = Guarantee(p, guarantee) ?? VmDefaults.MemoryGuaranteePercent,
                MemoryHotplug = Cli.OnOff(p, hotplug) ?? false,
                MaxMemory = Cli.ResourceSize(p, maxmem),
                Network = net,
                CpuMask = p.GetValue(cpumask),
                CpuLimitPercent = p.GetValue(cpulimit) is { } l && l > 0 ? l : null,
            }, ct);
            if (p.GetValue(json))
                Cli.WriteJson(ToJson(info), VzsdkJson.Default.VmInfo);
            else
                Console.Out.WriteLine($"Created VM {info.Name}");
            Console.Out.WriteLine(info.Id.ToString());
            return Cli.Success;
        });
        return cmd;
    }

    private static ByteSize ParseSize(string text, string flag)
        => ByteSize.TryParse(text, SizeUnit.Mebibytes, out var size) ? size : throw new UsageException($"{flag}: '{text}' is not a size (such as 2G or 512).");

    private static Command List()
    {
        var all = new Option<bool>("-a", "--all") { Description = "Include stopped VMs." };
        var json = Json();
        var cmd = new Command("list", "List VMs (running ones unless -a).") { all, json };
        cmd.SetAction(async (p, ct) =>
        {
            var list = (await Client(p).ListAsync(true, ct)).Where(v => p.GetValue(all) || v.State is not VeState.Stopped and not VeState.Suspended).ToList();
            if (p.GetValue(json))
            {
                Cli.WriteJson(list.Select(v => new VmListJson(v.Id.ToString(), v.Name.Value, "vm", StateName(v.State), null)).ToList(), VzsdkJson.Default.VmList);
                return Cli.Success;
            }
            Console.Out.WriteLine(TopLevel.Row([("UUID", 40), ("STATUS", 11), ("IP_ADDR", 17), ("NAME", 0)]));
            foreach (var v in list)
                Console.Out.WriteLine(TopLevel.Row([(v.Id.ToBracedString(), 40), (StateName(v.State), 11), ("-", 17), (v.Name.Value, 0)]));
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Info()
    {
        var name = NameArg();
        var json = Json();
        var cmd = new Command("info", "Show a VM's state and configuration.") { name, json };
        cmd.SetAction(async (p, ct) =>
        {
            var v = await Client(p).GetAsync(p.GetValue(name)!, ct);
            if (p.GetValue(json))
            {
                Cli.WriteJson(ToJson(v), VzsdkJson.Default.VmInfo);
                return Cli.Success;
            }
            Console.Out.WriteLine($"ID: {v.Id.ToBracedString()}");
            Console.Out.WriteLine($"Name: {v.Name}");
            Console.Out.WriteLine($"State: {StateName(v.State)}");
            Console.Out.WriteLine($"CPUs: {v.Cpus} (max {v.MaxCpus}), cpulimit {(v.CpuLimitPercent is { } l ? l + "%" : "none")}, cpumask {v.CpuMask ?? "all"}");
            Console.Out.WriteLine($"Memory: {v.MemorySize} (guarantee {v.MemoryGuaranteePercent}%, hotplug {(v.MemoryHotplug ? "on, max " + v.MaxMemory : "off")})");
            foreach (var d in v.Disks)
                Console.Out.WriteLine($"{d.Name}: {d.Size} {d.ImagePath}");
            if (v.CdromImagePath is { } iso)
                Console.Out.WriteLine($"cdrom0: {iso}");
            Console.Out.WriteLine($"net0: {v.Network.ToString().ToLowerInvariant()}{(v.MacAddress is { } mac ? " mac=" + mac : "")}");
            if (v.KernelPath is { } k)
                Console.Out.WriteLine($"Kernel: {k}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Simple(string verb, string description, Func<VirtualMachineClient, string, CancellationToken, Task<string>> action)
    {
        var name = NameArg();
        var cmd = new Command(verb, description) { name };
        cmd.SetAction(async (p, ct) =>
        {
            var what = await action(Client(p), p.GetValue(name)!, ct);
            Console.Out.WriteLine($"VM {p.GetValue(name)} {what}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Stop()
    {
        var name = NameArg();
        var kill = new Option<bool>("--kill") { Description = "Kill at once." };
        var timeout = new Option<int?>("--timeout") { Description = "Seconds to wait for the guest to power off before killing it (default 60)." };
        var cmd = new Command("stop", "Stop a VM: guest tools shutdown, else ACPI power button; killed after the timeout.") { name, kill, timeout };
        cmd.SetAction(async (p, ct) =>
        {
            if (p.GetValue(timeout) is < 0)
                throw new UsageException("--timeout cannot be negative.");
            var method = await Client(p).StopAsync(p.GetValue(name)!, new VeStopOptions
            {
                Kill = p.GetValue(kill),
                Timeout = p.GetValue(timeout) is { } t ? TimeSpan.FromSeconds(t) : null,
            }, ct);
            Console.Out.WriteLine(method switch
            {
                VeStopMethod.AlreadyStopped => $"VM {p.GetValue(name)} was not running",
                VeStopMethod.Killed => $"VM {p.GetValue(name)} killed",
                _ => $"VM {p.GetValue(name)} stopped",
            });
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Exec()
    {
        var name = NameArg();
        var interactive = new Option<bool>("-i", "--interactive") { Description = "Forward standard input (read to its end first)." };
        var shell = new Option<bool>("--shell") { Description = "Run /bin/sh -c with the joined arguments." };
        var timeout = new Option<int?>("--timeout") { Description = "Seconds the command may run (default 300)." };
        var command = new Argument<string[]>("COMMAND") { Description = "The program and its arguments (after --).", Arity = ArgumentArity.OneOrMore };
        var cmd = new Command("exec", "Run a command in a running VM through its guest tools; its exit code is passed through.") { name, interactive, shell, timeout, command };
        cmd.SetAction(async (p, ct) =>
        {
            try
            {
                byte[]? input = null;
                if (p.GetValue(interactive))
                {
                    using var ms = new MemoryStream();
                    await using var stdin = Console.OpenStandardInput();
                    await stdin.CopyToAsync(ms, ct);
                    input = ms.ToArray();
                }
                await using var stdout = Console.OpenStandardOutput();
                await using var stderr = Console.OpenStandardError();
                var r = await Client(p).ExecAsync(p.GetValue(name)!, new VeExecOptions
                {
                    Command = p.GetValue(command)!,
                    Shell = p.GetValue(shell),
                    StandardInput = input is null ? null : new MemoryStream(input),
                    Timeout = TimeSpan.FromSeconds(p.GetValue(timeout) ?? 300),
                    StandardOutput = stdout,
                    StandardError = stderr,
                }, ct);
                return r.ExitCode;
            }
            catch (Exception ex) when (ex is VirtuozzoException or ArgumentException or TimeoutException)
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
        var memsize = new Option<string?>("--memsize") { Description = "Memory (bare number = MiB); live through balloon and DIMM hotplug." };
        var cpus = new Option<int?>("--cpus") { Description = "Virtual CPUs; a live increase hotplugs them." };
        var cpumask = new Option<string?>("--cpumask") { Description = "Host CPUs the vCPUs run on, such as 0-1,3 ('all' clears)." };
        var cpulimit = new Option<int?>("--cpulimit") { Description = "CPU limit in percent, 100 = one CPU (0 = none)." };
        var guarantee = new Option<string?>("--memguarantee") { Description = "Guaranteed memory in percent, or 'auto' (80)." };
        var hotplug = new Option<string?>("--mem-hotplug") { Description = "on or off (applies at the next start)." };
        var cdrom = new Option<string?>("--cdrom") { Description = "An ISO for the CD/DVD drive ('' detaches)." };
        var userpasswd = new Option<string?>("--userpasswd") { Description = "USER (password read from standard input) or USER:PASSWORD." };
        var userpasswdFile = new Option<string?>("--userpasswd-file") { Description = "Read the password for --userpasswd USER from this file." };
        var deviceAdd = new Option<string?>("--device-add") { Description = "hdd: add a new disk of --size." };
        var deviceSet = new Option<string?>("--device-set") { Description = "hddN: grow the disk to --size." };
        var deviceDel = new Option<string?>("--device-del") { Description = "hddN: remove the disk and delete its image." };
        var size = new Option<string?>("--size") { Description = "Size for --device-add / --device-set (bare number = MiB)." };
        var cmd = new Command("set", "Change a VM's settings (persisted; live where the running VM allows).")
            { name, memsize, cpus, cpumask, cpulimit, guarantee, hotplug, cdrom, userpasswd, userpasswdFile, deviceAdd, deviceSet, deviceDel, size };
        cmd.SetAction(async (p, ct) =>
        {
            var client = Client(p);
            var vm = p.GetValue(name)!;
            var options = new VmSetOptions
            {
                MemorySize = Cli.ResourceSize(p, memsize),
                Cpus = p.GetValue(cpus),
                CpuMask = p.GetValue(cpumask) is "all" ? string.Empty : p.GetValue(cpumask),
                CpuLimitPercent = p.GetValue(cpulimit),
                MemoryGuaranteePercent = Guarantee(p, guarantee),
                MemoryHotplug = Cli.OnOff(p, hotplug),
                CdromImagePath = p.GetValue(cdrom),
            };
            if (options != new VmSetOptions())
                await client.SetAsync(vm, options, ct);
            if (p.GetValue(deviceAdd) is { } add)
            {
                if (add != "hdd")
                    throw new UsageException($"--device-add: only 'hdd' can be added (got '{add}').");
                var d = await client.AddDiskAsync(vm, new VmDiskOptions { Size = ParseSize(p.GetValue(size) ?? throw new UsageException("--device-add hdd needs --size."), "--size") }, ct);
                Console.Out.WriteLine($"Added {d.Name} ({d.Size})");
            }
            if (p.GetValue(deviceSet) is { } setDisk)
                await client.ResizeDiskAsync(vm, setDisk, ParseSize(p.GetValue(size) ?? throw new UsageException("--device-set needs --size."), "--size"), ct);
            if (p.GetValue(deviceDel) is { } del)
                await client.RemoveDiskAsync(vm, del, ct);
            if (p.GetValue(userpasswd) is { } up)
            {
                var (user, password) = await ReadUserPasswordAsync(up, p.GetValue(userpasswdFile), ct);
                await client.SetUserPasswordAsync(vm, user, password, ct);
                Console.Out.WriteLine($"Password of {user} set");
            }
            Console.Out.WriteLine($"VM {vm} updated");
            return Cli.Success;
        });
        return cmd;
    }

    /// <summary>CLI.md: the password comes from standard input (or a file); <c>user:pass</c> is accepted for prlctl compatibility.</summary>
    private static async Task<(string User, string Password)> ReadUserPasswordAsync(string value, string? file, CancellationToken ct)
    {
        var colon = value.IndexOf(':', StringComparison.Ordinal);
        if (colon > 0)
            return (value[..colon], value[(colon + 1)..]);
        string text;
        if (file is not null)
            text = await File.ReadAllTextAsync(file, ct);
        else
            text = await Console.In.ReadToEndAsync(ct);
        var password = text.Split('\n')[0].TrimEnd('\r');
        if (password.Length == 0)
            throw new UsageException("--userpasswd: no password was given on standard input (or in --userpasswd-file).");
        return (value, password);
    }

    private static Command Clone()
    {
        var name = NameArg();
        var newName = new Option<string>("--name") { Description = "The clone's name.", Required = true };
        var linked = new Option<bool>("--linked") { Description = "Make a linked clone (thin overlays on shared read-only bases)." };
        var cmd = new Command("clone", "Copy a stopped VM under a new name.") { name, newName, linked };
        cmd.SetAction(async (p, ct) =>
        {
            var v = await Client(p).CloneAsync(p.GetValue(name)!, new VmCloneOptions { Name = new VeName(p.GetValue(newName)!), Linked = p.GetValue(linked) }, ct);
            Console.Out.WriteLine($"Created VM {v.Name}");
            Console.Out.WriteLine(v.Id.ToString());
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Rename()
    {
        var name = NameArg();
        var newName = new Argument<string>("NEWNAME") { Description = "The new name." };
        var cmd = new Command("rename", "Rename a VM.") { name, newName };
        cmd.SetAction(async (p, ct) =>
        {
            var v = await Client(p).RenameAsync(p.GetValue(name)!, new VeName(p.GetValue(newName)!), ct);
            Console.Out.WriteLine($"VM renamed to {v.Name}");
            return Cli.Success;
        });
        return cmd;
    }

    private static Command Compact()
    {
        var name = NameArg();
        var disk = new Argument<string>("DISK") { Description = "The disk (hdd0, hdd1…)." };
        var cmd = new Command("compact", "Give the unused blocks of a stopped VM's disk back to the host (prl_disk_tool compact; Virtuozzo nodes only).") { name, disk };
        cmd.SetAction(async (p, ct) =>
        {
            var d = await Client(p).CompactDiskAsync(p.GetValue(name)!, p.GetValue(disk)!, ct);
            Console.Out.WriteLine($"VM {p.GetValue(name)}: disk {d.Name} compacted ({d.ImagePath})");
            return Cli.Success;
        });
        return cmd;
    }

    private static VmInfoJson ToJson(VmInfo v)
        => new(v.Id.ToString(), v.Name.Value, "vm", StateName(v.State), null, v.Cpus ?? 1, v.MaxCpus, v.MemorySize.Bytes, v.MemoryGuaranteePercent, v.MemoryHotplug, v.MaxMemory.Bytes,
            v.CpuMask, v.CpuLimitPercent, v.Disks.Select(d => new VmDiskJson(d.Name, d.ImagePath, d.Size.Bytes)).ToList(), v.CdromImagePath,
            v.Network.ToString().ToLowerInvariant(), v.MacAddress, v.KernelPath,
            v.CreatedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture));

    internal sealed record VmListJson(string Uuid, string Name, string Type, string Status, string? IpConfigured);

    internal sealed record VmDiskJson(string Name, string Image, long Size);

    internal sealed record VmInfoJson(string Uuid, string Name, string Type, string Status, string? IpConfigured, int Cpus, int MaxCpus, long Memsize, int Memguarantee,
        bool MemHotplug, long Maxmem, string? Cpumask, int? Cpulimit, List<VmDiskJson> Disks, string? Cdrom, string Network, string? Mac, string? Kernel, string CreatedAt);
}
