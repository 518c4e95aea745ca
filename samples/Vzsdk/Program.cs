using Vzsdk;

// vzsdk: the Virtuozzo.Sdk command-line tool. Conventions (exit codes, JSON, sizes): docs/articles/cli.md.
return await Cli.RunAsync(args, Cli.BuildRoot(
    HostCommand.Build(),
    Vzsdk.Disk.DiskCommand.Build(),
    Vzsdk.Ct.CtCommand.Build(),
    Vzsdk.Vm.VmCommand.Build(),
    Vzsdk.Backup.BackupCommand.Build()));
