using Vzsdk;

// vzsdk: the Virtuozzo.Sdk command-line tool. Conventions (exit codes, JSON, sizes): docs/articles/cli.md.
// `vzsdk disk …` (the qemu-img counterpart, which scripts call once per image) builds only the disk verbs:
// the other command trees load the container, VM and backup assemblies, tens of milliseconds of start-up.
// `vzsdk disk VERB …` builds only that verb.
return await Cli.RunAsync(args, args is ["disk", .. var rest]
    ? Cli.BuildRoot(lean: !Cli.AsksForHelp(args), Vzsdk.Disk.DiskCommand.Build(rest is [var verb, ..] ? verb : null))
    : Cli.BuildRoot(
        [.. TopLevel.Build(),
        HostCommand.Build(),
        Vzsdk.Disk.DiskCommand.Build(),
        Vzsdk.Ct.CtCommand.Build(),
        Vzsdk.Vm.VmCommand.Build(),
        Vzsdk.Backup.BackupCommand.Build(),
        MemCommand.Build(),
        .. MigrateCommand.Build()]));
