using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Containers.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// Every operation → the exact argument vector prlctl documents (reference §3.4–§3.9; <c>man/prlctl.8</c>): operation
/// and options in, argv out, compared word for word.
/// </summary>
public class CommandTests
{
    private const string U = "ccefa40c-5c72-4e17-94c7-d68034a1c1a5";
    private static readonly Guid S = Guid.Parse("a1b2c3d4-0000-4000-8000-000000000001");
    private const string SB = "{a1b2c3d4-0000-4000-8000-000000000001}";

    public static TheoryData<string, object, string> Verbs() => new()
    {
        { "version", Prlctl.Version(), "prlctl --version" },
        { "vzctl version", Prlctl.VzctlVersion(), "vzctl --version" },
        { "inventory", Prlctl.ListAll(), "prlctl list -a -j -o uuid,status,type,name" },
        { "inventory of CTs", Prlctl.ListAll(VeKind.Container), "prlctl list -a -j -o uuid,status,type,name --vmtype ct" },
        { "info", Prlctl.Info(U), $"prlctl list -i -f -j {U}" },
        { "info of every VM", Prlctl.InfoAll(VeKind.Vm), "prlctl list -a -i -f -j --vmtype vm" },
        { "start", Prlctl.Start(U), $"prlctl start {U}" },
        { "stop", Prlctl.Stop(U, kill: false), $"prlctl stop {U}" },
        { "kill", Prlctl.Stop(U, kill: true), $"prlctl stop {U} --kill" },
        { "restart", Prlctl.Restart(U), $"prlctl restart {U}" },
        { "reset", Prlctl.Reset(U), $"prlctl reset {U}" },
        { "suspend", Prlctl.Suspend(U), $"prlctl suspend {U}" },
        { "resume", Prlctl.Resume(U), $"prlctl resume {U}" },
        { "pause", Prlctl.Pause(U), $"prlctl pause {U}" },
        { "delete", Prlctl.Delete(U), $"prlctl delete {U}" },
        { "mount", Prlctl.Mount(U), $"prlctl mount {U}" },
        { "umount", Prlctl.Umount(U), $"prlctl umount {U}" },
        { "rename", Prlctl.Rename(U, "web2"), $"prlctl set {U} --name web2" },
        { "clone", Prlctl.Clone(U, "web2"), $"prlctl clone {U} --name web2" },
        { "linked clone", Prlctl.Clone(U, "web2", linked: true), $"prlctl clone {U} --name web2 --linked" },
        { "snapshot", Prlctl.CreateSnapshot(U, "s1", null), $"prlctl snapshot {U} -n s1" },
        { "snapshot with description", Prlctl.CreateSnapshot(U, "s1", "before upgrade"), $"prlctl snapshot {U} -n s1 -d before upgrade" },
        { "snapshot list", Prlctl.ListSnapshots(U), $"prlctl snapshot-list {U}" },
        { "snapshot details", Prlctl.SnapshotDetails(U, S), $"prlctl snapshot-list {U} -i {SB}" },
        { "snapshot switch", Prlctl.SwitchSnapshot(U, S), $"prlctl snapshot-switch {U} -i {SB}" },
        { "snapshot delete", Prlctl.DeleteSnapshot(U, S), $"prlctl snapshot-delete {U} -i {SB}" },
        { "full backup", Prlctl.Backup(U, full: true, null), $"prlctl backup {U} -f" },
        { "incremental backup", Prlctl.Backup(U, full: false, "nightly"), $"prlctl backup {U} -i --description nightly" },
        { "backup list", Prlctl.ListBackups(U), $"prlctl backup-list {U}" },
        { "every backup", Prlctl.ListBackups(null), "prlctl backup-list" },
        { "restore in place", Prlctl.Restore(SB + ".2", null), $"prlctl restore -t {SB}.2" },
        { "restore to a copy", Prlctl.Restore(SB, "web1-copy"), $"prlctl restore -t {SB} -n web1-copy" },
        { "backup delete", Prlctl.DeleteBackup(SB, keepChain: false), $"prlctl backup-delete -t {SB}" },
        { "backup delete keeping the chain", Prlctl.DeleteBackup(SB + ".1", keepChain: true), $"prlctl backup-delete -t {SB}.1 --keep-chain" },
        { "migrate", Prlctl.Migrate(U, "root@node2", keepSource: false, compress: true), $"prlctl migrate {U} root@node2" },
        { "migrate keeping the source, uncompressed", Prlctl.Migrate(U, "node2:2222", keepSource: true, compress: false), $"prlctl migrate {U} node2:2222 --keep-src --no-compression" },
        { "exec", Prlctl.Exec(U, ["ls", "-l", "/tmp dir"]), $"prlctl exec {U} --without-shell ls -l /tmp dir" },
    };

    [Theory]
    [MemberData(nameof(Verbs))]
    public void Each_verb_builds_the_documented_argument_vector(string operation, object command, string expected)
        => string.Join(' ', ((PrlctlCommand)command).Argv).Should().Be(expected, operation);

    [Fact]
    public void Arguments_stay_separate_words_never_a_shell_string()
    {
        Prlctl.Exec(U, ["sh", "-c", "echo a; rm -rf /"]).Argv.Should().Equal("prlctl", "exec", U, "--without-shell", "sh", "-c", "echo a; rm -rf /");
        Prlctl.CreateSnapshot(U, "s1", "it's \"quoted\"").Argv.Should().Equal("prlctl", "snapshot", U, "-n", "s1", "-d", "it's \"quoted\"");
    }

    [Fact]
    public void The_SDK_shell_mode_runs_sh_minus_c_through_exec_without_prlctl_s_own_shell()
        => Prlctl.Exec(U, new VeExecOptions { Command = ["echo", "$HOME"], Shell = true }.EffectiveCommand).Argv
            .Should().Equal("prlctl", "exec", U, "--without-shell", "/bin/sh", "-c", "echo $HOME");

    [Fact]
    public void A_password_is_a_separate_word_and_redacted_from_the_command_line()
    {
        var c = Prlctl.SetUserPassword(U, "root", "s3cr3t");
        c.Argv.Should().Equal("prlctl", "set", U, "--userpasswd", "root:s3cr3t");
        c.ToString().Should().NotContain("s3cr3t");
    }

    [Theory]
    [InlineData(1L, "1")]
    [InlineData(1048576L, "1")]
    [InlineData(1048577L, "2")]
    [InlineData(1073741824L, "1024")]
    public void Sizes_are_whole_MiB_rounded_up(long bytes, string mib) => Prlctl.Mib(ByteSize.FromBytes(bytes)).Should().Be(mib);

    // --- containers

    [Fact]
    public void A_container_is_created_with_the_UUID_the_SDK_chose()
        => VirtuozzoContainerCommands.Create(new ContainerCreateOptions { Name = new VeName("web1"), Template = "centos-7-x86_64" }, VeId.Parse(U)).Argv
            .Should().Equal("prlctl", "create", "web1", "--vmtype", "ct", "--ostemplate", "centos-7-x86_64", "--uuid", U);

    [Fact]
    public void A_new_container_s_resources_addresses_and_name_servers_are_set_in_one_command()
    {
        var o = new ContainerCreateOptions
        {
            Name = new VeName("web1"),
            Template = "centos-7-x86_64",
            Resources = new ContainerResources
            {
                MemorySize = ByteSize.FromGiB(2), Swap = ByteSize.FromMiB(512), MemoryGuaranteePercent = 25, Cpus = 2, CpuLimitPercent = 150,
                CpuUnits = 2000, CpuMask = "0-1", DiskSpace = ByteSize.FromGiB(20),
            },
            Hostname = "web1.example.com",
            IpAddresses = ["10.0.0.5", "10.0.0.6/24"],
            Nameservers = ["8.8.8.8"],
            Autostart = true,
        };
        VirtuozzoContainerCommands.CreateSettings(o).Should().Equal(
            "--memsize", "2048", "--swap", "536870912", "--memguarantee", "25", "--cpus", "2", "--cpulimit", "150", "--cpuunits", "2000",
            "--cpumask", "0-1", "--device-set", "hdd0", "--size", "20480", "--hostname", "web1.example.com",
            "--ipadd", "10.0.0.5", "--ipadd", "10.0.0.6/24", "--nameserver", "8.8.8.8", "--autostart", "on");
    }

    [Fact]
    public void A_new_container_s_defaults_are_spelled_out()
        => VirtuozzoContainerCommands.CreateSettings(new ContainerCreateOptions { Name = new VeName("web1") }).Should().Equal(
            "--memsize", "512", "--swap", "0", "--memguarantee", "0", "--cpuunits", "1000", "--device-set", "hdd0", "--size", "2048",
            "--hostname", "web1", "--autostart", "off");

    public static TheoryData<string, ContainerSetOptions, string[]> ContainerSets() => new()
    {
        { "nothing", new ContainerSetOptions(), [] },
        { "memory", new ContainerSetOptions { MemorySize = ByteSize.FromGiB(1) }, ["--memsize", "1024"] },
        { "swap", new ContainerSetOptions { Swap = ByteSize.FromMiB(256) }, ["--swap", "268435456"] },
        { "guarantee", new ContainerSetOptions { MemoryGuaranteePercent = 40 }, ["--memguarantee", "40"] },
        { "cpus", new ContainerSetOptions { Cpus = 4 }, ["--cpus", "4"] },
        { "no cpu limit", new ContainerSetOptions { CpuLimitPercent = 0 }, ["--cpulimit", "0"] },
        { "cpu units", new ContainerSetOptions { CpuUnits = 500 }, ["--cpuunits", "500"] },
        { "cpu mask", new ContainerSetOptions { CpuMask = "0,2-3" }, ["--cpumask", "0,2-3"] },
        { "no cpu mask", new ContainerSetOptions { CpuMask = "" }, ["--cpumask", "all"] },
        { "disk", new ContainerSetOptions { DiskSpace = ByteSize.FromGiB(30) }, ["--device-set", "hdd0", "--size", "30720"] },
        { "hostname", new ContainerSetOptions { Hostname = "a.example" }, ["--hostname", "a.example"] },
        { "autostart", new ContainerSetOptions { Autostart = false }, ["--autostart", "off"] },
        { "several", new ContainerSetOptions { MemorySize = ByteSize.FromMiB(768), MemoryGuaranteePercent = 100, Autostart = true },
            ["--memsize", "768", "--memguarantee", "100", "--autostart", "on"] },
    };

    [Theory]
    [MemberData(nameof(ContainerSets))]
    public void A_container_change_maps_to_prlctl_set_options(string change, ContainerSetOptions options, string[] expected)
        => VirtuozzoContainerCommands.Set(options).Should().Equal(expected, change);

    [Fact]
    public void A_container_process_limit_has_no_prlctl_option_and_is_refused_by_name()
    {
        ((Action)(() => VirtuozzoContainerCommands.Set(new ContainerSetOptions { MaxProcesses = 100 }))).Should().Throw<UnsupportedOnHostException>().WithMessage("*MaxProcesses*");
        ((Action)(() => VirtuozzoContainerCommands.CreateSettings(new ContainerCreateOptions { Name = new VeName("a"), Resources = new ContainerResources { MaxProcesses = 100 } })))
            .Should().Throw<UnsupportedOnHostException>().WithMessage("*MaxProcesses*");
    }

    [Theory]
    [InlineData(101)]
    [InlineData(-1)]
    public void An_out_of_range_guarantee_is_refused_before_anything_runs(int percent)
        => ((Action)(() => VirtuozzoContainerCommands.Set(new ContainerSetOptions { MemoryGuaranteePercent = percent }))).Should().Throw<ArgumentOutOfRangeException>();

    [Fact]
    public void Bad_addresses_masks_and_host_names_are_refused_before_anything_runs()
    {
        ((Action)(() => VirtuozzoContainerCommands.CreateSettings(new ContainerCreateOptions { Name = new VeName("a"), IpAddresses = ["10.0.0.300"] }))).Should().Throw<ArgumentException>().WithMessage("*10.0.0.300*");
        ((Action)(() => VirtuozzoContainerCommands.Set(new ContainerSetOptions { CpuMask = "0;rm" }))).Should().Throw<ArgumentException>();
        ((Action)(() => VirtuozzoContainerCommands.Set(new ContainerSetOptions { Hostname = "-bad" }))).Should().Throw<ArgumentException>();
    }

    // --- VMs

    [Fact]
    public void A_VM_is_created_with_its_UUID_resources_disks_ISO_and_boot_order_in_order()
    {
        var o = new VmCreateOptions
        {
            Name = new VeName("vm1"), Cpus = 2, MaxCpus = 4, MemorySize = ByteSize.FromGiB(4), MemoryGuaranteePercent = 50, MemoryHotplug = true,
            Disks = [new VmDiskOptions { Size = ByteSize.FromGiB(20) }, new VmDiskOptions { Size = ByteSize.FromGiB(100) }],
            CdromImagePath = "/vz/iso/debian.iso", CpuMask = "0-3", CpuLimitPercent = 200,
            BootOrder = [VmBootDevice.Cdrom, VmBootDevice.Disk, VmBootDevice.Network],
        };
        VirtuozzoVmCommands.Create(o, VeId.Parse(U)).Select(c => string.Join(' ', c.Argv)).Should().Equal(
            $"prlctl create vm1 --vmtype vm --uuid {U} --no-hdd",
            $"prlctl set {U} --cpus 2 --memsize 4096 --memguarantee 50 --mem-hotplug on --cpu-hotplug on --cpumask 0-3 --cpulimit 200",
            $"prlctl set {U} --device-add hdd --size 20480",
            $"prlctl set {U} --device-add hdd --size 102400",
            $"prlctl set {U} --device-add cdrom --image /vz/iso/debian.iso",
            $"prlctl set {U} --device-bootorder cdrom0 hdd0 net0");
    }

    [Fact]
    public void A_VM_without_network_loses_the_default_adapter()
        => VirtuozzoVmCommands.Create(new VmCreateOptions { Name = new VeName("vm1"), Network = VmNetworkMode.None }, VeId.Parse(U))
            .Last().Argv.Should().Equal("prlctl", "set", U, "--device-del", "net0");

    public static TheoryData<string, VmCreateOptions, string> VmRefusals() => new()
    {
        { "direct kernel boot", new VmCreateOptions { Name = new VeName("a"), KernelPath = "/boot/vmlinuz" }, "*kernel boot*" },
        { "user networking", new VmCreateOptions { Name = new VeName("a"), Network = VmNetworkMode.User }, "*User-mode networking*" },
        { "software emulation", new VmCreateOptions { Name = new VeName("a"), Acceleration = VmAcceleration.Software }, "*Software emulation*" },
        { "hotplug ceiling", new VmCreateOptions { Name = new VeName("a"), MaxMemory = ByteSize.FromGiB(8) }, "*MaxMemory*" },
        { "disk from image", new VmCreateOptions { Name = new VeName("a"), Disks = [new VmDiskOptions { SourceImagePath = "/x.qcow2" }] }, "*SourceImagePath*" },
    };

    [Theory]
    [MemberData(nameof(VmRefusals))]
    public void What_prlctl_cannot_express_for_a_new_VM_is_refused_by_name(string feature, VmCreateOptions options, string message)
        => ((Action)(() => VirtuozzoVmCommands.Create(options, VeId.Parse(U)))).Should().Throw<UnsupportedOnHostException>(feature).WithMessage(message);

    public static TheoryData<string, VmSetOptions, string[]> VmSets() => new()
    {
        { "nothing", new VmSetOptions(), [] },
        { "memory", new VmSetOptions { MemorySize = ByteSize.FromGiB(8) }, ["--memsize", "8192"] },
        { "cpus", new VmSetOptions { Cpus = 6 }, ["--cpus", "6"] },
        { "guarantee", new VmSetOptions { MemoryGuaranteePercent = 0 }, ["--memguarantee", "0"] },
        { "hotplug", new VmSetOptions { MemoryHotplug = true }, ["--mem-hotplug", "on"] },
        { "mask", new VmSetOptions { CpuMask = "1" }, ["--cpumask", "1"] },
        { "no mask", new VmSetOptions { CpuMask = "" }, ["--cpumask", "all"] },
        { "limit", new VmSetOptions { CpuLimitPercent = 50 }, ["--cpulimit", "50"] },
        { "no limit", new VmSetOptions { CpuLimitPercent = 0 }, ["--cpulimit", "0"] },
        { "iso", new VmSetOptions { CdromImagePath = "/vz/iso/x.iso" }, ["--device-set", "cdrom0", "--image", "/vz/iso/x.iso"] },
    };

    [Theory]
    [MemberData(nameof(VmSets))]
    public void A_VM_change_maps_to_prlctl_set_options(string change, VmSetOptions options, string[] expected)
        => VirtuozzoVmCommands.Set(options).Should().Equal(expected, change);

    [Fact]
    public void VM_disks_are_added_resized_and_removed_by_name()
    {
        VirtuozzoVmCommands.AddDisk(U, new VmDiskOptions { Size = ByteSize.FromGiB(10) }).Argv.Should().Equal("prlctl", "set", U, "--device-add", "hdd", "--size", "10240");
        VirtuozzoVmCommands.ResizeDisk(U, "hdd1", ByteSize.FromGiB(50)).Argv.Should().Equal("prlctl", "set", U, "--device-set", "hdd1", "--size", "51200");
        VirtuozzoVmCommands.RemoveDisk(U, "hdd1").Argv.Should().Equal("prlctl", "set", U, "--device-del", "hdd1", "--destroy-image");
    }

    [Theory]
    [InlineData("cdrom0")]
    [InlineData("hdd0 --destroy-image-force")]
    [InlineData("")]
    public void A_disk_name_that_is_not_hddN_is_refused(string name)
        => ((Action)(() => VirtuozzoVmCommands.RemoveDisk(U, name))).Should().Throw<ArgumentException>();
}

/// <summary>Migration to another node: the destination's validation and what prlctl migrate cannot honour.</summary>
public class MigrationCommandTests
{
    private const string U = "ccefa40c-5c72-4e17-94c7-d68034a1c1a5";

    private static Core.Runtime.Virtuozzo.PrlctlVeConfig Ve(string state)
        => Core.Runtime.Virtuozzo.PrlctlVeConfig.Parse(Core.Runtime.Virtuozzo.PrlctlJson.ParseObjects(PrlctlFixtures.Ct(U, "web1", state), null)[0]);

    [Theory]
    [InlineData("-oProxyCommand=x", "root")]
    [InlineData("node2 --force", "root")]
    [InlineData("node2", "root@evil")]
    [InlineData("", "root")]
    public void A_destination_node_that_is_not_a_plain_name_is_refused(string host, string user)
        => ((Action)(() => Migration.MigrationDestination.ToVirtuozzoNode(host, user))).Should().Throw<ArgumentException>();

    [Fact]
    public void A_running_VE_migrates_live_with_prlctl_migrate_and_can_keep_its_source()
    {
        Migration.Runtime.Virtuozzo.VirtuozzoMigration.Command(Ve("running"), "root@node2", new Migration.MigrationOptions()).Argv
            .Should().Equal("prlctl", "migrate", U, "root@node2");
        Migration.Runtime.Virtuozzo.VirtuozzoMigration.Command(Ve("stopped"), "root@node2", new Migration.MigrationOptions { KeepSource = true }).Argv
            .Should().Equal("prlctl", "migrate", U, "root@node2", "--keep-src");
    }

    [Fact]
    public void Tuning_prlctl_migrate_has_no_option_for_is_refused_by_name()
    {
        ((Action)(() => Migration.Runtime.Virtuozzo.VirtuozzoMigration.Command(Ve("running"), "n", new Migration.MigrationOptions { PostCopy = true })))
            .Should().Throw<UnsupportedOnHostException>().WithMessage("*PostCopy*");
        ((Action)(() => Migration.Runtime.Virtuozzo.VirtuozzoMigration.Command(Ve("running"), "n", new Migration.MigrationOptions { MaxBandwidthPerSecond = ByteSize.FromMiB(10) })))
            .Should().Throw<UnsupportedOnHostException>().WithMessage("*MaxBandwidthPerSecond*");
        ((Action)(() => Migration.Runtime.Virtuozzo.VirtuozzoMigration.Command(Ve("running"), "n", new Migration.MigrationOptions { Mode = Migration.MigrationMode.Offline })))
            .Should().Throw<UnsupportedOnHostException>().WithMessage("*Offline*");
    }

    [Fact]
    public void A_live_migration_of_a_stopped_VE_is_an_invalid_state()
        => ((Action)(() => Migration.Runtime.Virtuozzo.VirtuozzoMigration.Command(Ve("stopped"), "n", new Migration.MigrationOptions { Mode = Migration.MigrationMode.Online })))
            .Should().Throw<InvalidStateException>();
}
