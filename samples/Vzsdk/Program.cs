using Vzsdk;

// vzsdk: the Virtuozzo.Sdk command-line tool. Conventions (exit codes, JSON, sizes): docs/articles/cli.md.
// `vzsdk disk …` (the qemu-img counterpart, which scripts call once per image) builds only the disk verbs:
// the other command trees load the container, VM and backup assemblies, tens of milliseconds of start-up.
return await Cli.RunAsync(args, args is ["disk", ..]
    ? Cli.BuildRoot(Vzsdk.Disk.DiskCommand.Build())
    : Cli.BuildRoot(
        HostCommand.Build(),
        Vzsdk.Disk.DiskCommand.Build(),
        Vzsdk.Ct.CtCommand.Build(),
        Vzsdk.Vm.VmCommand.Build(),
        Vzsdk.Backup.BackupCommand.Build()));
