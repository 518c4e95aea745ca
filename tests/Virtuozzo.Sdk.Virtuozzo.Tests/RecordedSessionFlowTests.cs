using Microsoft.Extensions.DependencyInjection;
using Virtuozzo.Sdk.Backup;
using Virtuozzo.Sdk.Containers;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Migration;
using Virtuozzo.Sdk.Testing;
using Virtuozzo.Sdk.Vm;
using static Virtuozzo.Sdk.Virtuozzo.Tests.PrlctlFixtures;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// Whole flows through the public clients over <see cref="RecordedSessionHost"/>, a test double of a node that replays
/// the documented output formats and fails on any command it was not given. It proves parsing and sequencing — which
/// commands run, in which order, and what the clients make of the answers — not the behaviour of a live node.
/// </summary>
public sealed class RecordedSessionFlowTests : IAsyncDisposable
{
    private const string U = "ccefa40c-5c72-4e17-94c7-d68034a1c1a5";
    private const string V = "56850624-9fd8-441a-b24f-00131f7f79ca";
    private const string Snap = "{a1b2c3d4-0000-4000-8000-000000000001}";
    private const string Bk = "{b1b2c3d4-0000-4000-8000-000000000009}";
    private const string Configured = "\nThe CT has been successfully configured.\n";

    private static readonly string[] Inventory = ["prlctl", "list", "-a", "-j", "-o", "uuid,status,type,name"];

    private static string[] Info(string id) => ["prlctl", "list", "-i", "-f", "-j", id];

    private readonly RecordedSessionHost _node = new();
    private readonly ServiceProvider _provider;

    public RecordedSessionFlowTests()
    {
        _node.Always(["prlctl", "--version"], "prlctl version 7.0.253\n");
        _node.Always(["readlink", "/etc/localtime"], "../usr/share/zoneinfo/UTC\n"); // backup-list dates: the node's zone (BackupDatesTests)
        var services = new ServiceCollection();
        services.AddVirtuozzoSdk().UseVirtuozzoRuntime(_node).AddContainers().AddVirtualMachines().AddBackup().AddMigration();
        _provider = services.BuildServiceProvider();
        Runtime.Node!.NewId = () => VeId.Parse(U);
    }

    private VirtuozzoRuntime Runtime => _provider.GetRequiredService<VirtuozzoRuntime>();

    public ValueTask DisposeAsync() => _provider.DisposeAsync();

    /// <summary>The commands that changed something on the node, in order (the reads are left out).</summary>
    private List<string> Changes() => _node.Commands
        .Where(c => c[0] != "readlink" && (c[0] != "prlctl" || c[1] is not ("list" or "--version" or "snapshot-list" or "backup-list")))
        .Select(c => string.Join(' ', c)).ToList();

    [Fact]
    public void The_runtime_chosen_on_the_builder_is_the_Virtuozzo_runtime_on_that_host()
    {
        Runtime.Kind.Should().Be(RuntimeKind.Virtuozzo);
        _provider.GetRequiredService<IVirtuozzoHost>().Should().BeSameAs(_node);
    }

    [Fact]
    public void Choosing_the_Virtuozzo_runtime_by_option_alone_says_a_host_is_needed()
    {
        var services = new ServiceCollection();
        services.AddVirtuozzoSdk(o => o.Runtime = RuntimeKind.Virtuozzo);
        using var provider = services.BuildServiceProvider();
        var act = () => provider.GetRequiredService<VirtuozzoRuntime>();
        act.Should().Throw<InvalidOperationException>().WithMessage("*UseVirtuozzoRuntime(host)*");
    }

    [Fact]
    public void UseVirtuozzoRuntime_refuses_a_null_host()
        => ((Action)(() => new ServiceCollection().AddVirtuozzoSdk().UseVirtuozzoRuntime(null!))).Should().Throw<ArgumentNullException>();

    [Fact]
    public async Task A_container_is_created_set_started_run_in_snapshotted_backed_up_stopped_restored_and_deleted()
    {
        var stopped = Ct(U, "web1", "stopped");
        var stopped50 = Ct(U, "web1", "stopped", memoryGuarantee: "\"value\": \"50%\"");
        var running50 = Ct(U, "web1", "running", memoryGuarantee: "\"value\": \"50%\"");
        var row = Rows(Row(U, "running", "CT", "web1"));
        var backupList = $"{"ID",38} {"Backup_ID",-38} {"Node",-20} {"Date",-20} {"Type",4} {"Size",10}\n"
            + $"{"{" + U + "}",38} {Bk + ".1",-38} {"node1",-20} {"03/01/2024 10:20:30",-20} {"i",4} {52428800,10}\n";

        // create: the name is free, then create with --uuid and one set, then read back
        _node.Expect(Inventory, EmptyList)
            .Expect(["prlctl", "create", "web1", "--vmtype", "ct", "--ostemplate", "centos-7-x86_64", "--uuid", U],
                "Creating the Container...\nThe Container has been successfully created.\n", Banner)
            .Expect(["prlctl", "set", U, "--memsize", "1024", "--swap", "0", "--memguarantee", "0", "--cpus", "2", "--cpuunits", "1000",
                "--device-set", "hdd0", "--size", "10240", "--hostname", "web1", "--ipadd", "10.0.0.5", "--autostart", "off"], Configured, Banner)
            .Expect(Info(U), stopped)
            // set the guarantee: the node decides (VCMMD), the SDK passes it on
            .Expect(Info("web1"), stopped)
            .Expect(["prlctl", "set", U, "--memguarantee", "50"], Configured, Banner)
            .Expect(Info(U), stopped50)
            // start
            .Expect(Info(U), stopped50)
            .Expect(["prlctl", "start", U], "Starting the CT...\nThe CT has been successfully started.\n", Banner)
            .Expect(Info(U), running50)
            // exec (the unified client resolves the name through the inventory)
            .Expect(Inventory, row)
            .Expect(Info(U), running50)
            .Expect(["prlctl", "exec", U, "--without-shell", "cat", "/etc/hostname"], "web1\n")
            // snapshot
            .Expect(Info(U), running50)
            .Expect(["prlctl", "snapshot", U, "-n", "s1", "-d", "before backup"], $"Creating the snapshot...\nThe snapshot with id {Snap} has been successfully created.\n", Banner)
            .Expect(["prlctl", "snapshot-list", U, "-i", Snap], $"ID: {Snap}\nName: s1\nDate: 2024-03-01 10:20:30\nCurrent: yes\nState: poweron\nDescription: before backup\n")
            // backup, then read it back from backup-list
            .Expect(Info("web1"), running50)
            .Expect(["prlctl", "backup", U, "-i"], $"Backing up the CT...\nThe CT has been successfully backed up with backup id {Bk}.1.\n", Banner)
            .Expect(["prlctl", "backup-list", U], backupList)
            .Expect(Inventory, row)
            // stop
            .Expect(Info(U), running50)
            .Expect(["prlctl", "stop", U], "Stopping the CT...\nThe CT has been successfully stopped.\n", Banner)
            // restore in place: find the backup among all, check the CT is stopped, restore
            .Expect(["prlctl", "backup-list"], backupList)
            .Expect(Inventory, row)
            .Expect(Info(U), stopped50)
            .Expect(["prlctl", "restore", "-t", Bk + ".1"], "The CT has been successfully restored.\n", Banner)
            // delete
            .Expect(Info(U), stopped50)
            .Expect(["prlctl", "delete", U], "Removing the CT...\nThe CT has been successfully removed.\n", Banner);

        var containers = _provider.GetRequiredService<ContainerClient>();
        var ves = _provider.GetRequiredService<VirtualEnvironmentClient>();
        var backups = _provider.GetRequiredService<BackupClient>();

        var created = await containers.CreateAsync(new ContainerCreateOptions
        {
            Name = new VeName("web1"), Template = "centos-7-x86_64", IpAddresses = ["10.0.0.5"],
            Resources = new ContainerResources { MemorySize = ByteSize.FromGiB(1), Cpus = 2, DiskSpace = ByteSize.FromGiB(10) },
        });
        created.Id.Should().Be(VeId.Parse(U));
        created.State.Should().Be(VeState.Stopped);
        created.IpAddresses.Should().Equal("10.0.0.5");

        (await containers.SetAsync("web1", new ContainerSetOptions { MemoryGuaranteePercent = 50 })).MemoryGuaranteePercent.Should().Be(50);
        (await containers.StartAsync(U)).State.Should().Be(VeState.Running);

        var exec = await ves.ExecAsync("web1", new VeExecOptions { Command = ["cat", "/etc/hostname"] });
        exec.Should().Be(new VeExecResult(0, "web1\n", ""));

        var snapshot = await containers.CreateSnapshotAsync(U, "s1", "before backup");
        snapshot.Should().Be(new ContainerSnapshotInfo(Guid.Parse(Snap), "s1", "before backup",
            new DateTimeOffset(new DateTime(2024, 3, 1, 10, 20, 30, DateTimeKind.Local)), null, IncludesMemory: true, IsCurrent: true));

        var backup = await backups.CreateAsync("web1");
        backup.Backup.Id.Should().Be(Bk + ".1");
        backup.Backup.Type.Should().Be(BackupType.Incremental);
        backup.Backup.ParentId.Should().Be(Bk);
        backup.Backup.VeName.Should().Be("web1");
        backup.Backup.SizeBytes.Should().Be(52428800);

        (await containers.StopAsync(U)).Should().Be(VeStopMethod.Signal);
        (await backups.RestoreAsync(Bk + ".1")).Should().Be(VeId.Parse(U));
        (await containers.DeleteAsync(U)).Should().BeTrue();

        _node.VerifyAllReplayed();
        Changes().Should().Equal(
            $"prlctl create web1 --vmtype ct --ostemplate centos-7-x86_64 --uuid {U}",
            $"prlctl set {U} --memsize 1024 --swap 0 --memguarantee 0 --cpus 2 --cpuunits 1000 --device-set hdd0 --size 10240 --hostname web1 --ipadd 10.0.0.5 --autostart off",
            $"prlctl set {U} --memguarantee 50",
            $"prlctl start {U}",
            $"prlctl exec {U} --without-shell cat /etc/hostname",
            $"prlctl snapshot {U} -n s1 -d before backup",
            $"prlctl backup {U} -i",
            $"prlctl stop {U}",
            $"prlctl restore -t {Bk}.1",
            $"prlctl delete {U}");
    }

    [Fact]
    public async Task A_VM_is_created_with_disks_started_and_migrated_live_to_another_node()
    {
        Runtime.Node!.NewId = () => VeId.Parse(V);
        const string disk = "\n\t\t\t\"hdd0\": {\n\t\t\t\t\"enabled\": true,\n\t\t\t\t\"image\": \"/vz/vmprivate/vm1/harddisk.hdd\",\n\t\t\t\t\"type\": \"expanded\",\n\t\t\t\t\"size\": \"20480Mb\"\n\t\t\t},";
        _node.Expect(Inventory, EmptyList)
            .Expect(["prlctl", "create", "vm1", "--vmtype", "vm", "--uuid", V, "--no-hdd"], "Creating the VM...\n", Banner)
            .Expect(["prlctl", "set", V, "--cpus", "2", "--memsize", "2048", "--memguarantee", "50", "--mem-hotplug", "off", "--cpu-hotplug", "off"], "", Banner)
            .Expect(["prlctl", "set", V, "--device-add", "hdd", "--size", "20480"], "", Banner)
            .Expect(["prlctl", "set", V, "--device-bootorder", "hdd0 net0"], "", Banner)
            .Expect(Info(V), PrlctlFixtures.Vm(V, "vm1", "stopped", disk))
            .Expect(Info(V), PrlctlFixtures.Vm(V, "vm1", "stopped", disk))
            .Expect(["prlctl", "start", V], "", Banner)
            .Expect(Info(V), PrlctlFixtures.Vm(V, "vm1", "running", disk))
            .Expect(Info("vm1"), PrlctlFixtures.Vm(V, "vm1", "running", disk))
            .Expect(["prlctl", "migrate", V, "root@node2.example.com"], "The VM has been successfully migrated.\n", Banner);

        var vms = _provider.GetRequiredService<VirtualMachineClient>();
        var vm = await vms.CreateAsync(new VmCreateOptions
        {
            Name = new VeName("vm1"), Cpus = 2, MemorySize = ByteSize.FromGiB(2), MemoryGuaranteePercent = 50,
            Disks = [new VmDiskOptions { Size = ByteSize.FromGiB(20) }], BootOrder = [VmBootDevice.Disk, VmBootDevice.Network],
        });
        vm.Disks.Should().Equal(new VmDiskInfo("hdd0", "/vz/vmprivate/vm1/harddisk.hdd", ByteSize.FromGiB(20)));
        vm.MemoryGuaranteePercent.Should().Be(50);
        vm.MacAddress.Should().Be("00:1c:42:aa:bb:cc");
        (await vms.StartAsync(V)).State.Should().Be(VeState.Running);

        var progress = new List<MigrationPhase>();
        var result = await _provider.GetRequiredService<MigrationClient>().MigrateAsync("vm1",
            MigrationDestination.ToVirtuozzoNode("node2.example.com"), progress: new SyncProgress<MigrationProgress>(p => progress.Add(p.Phase)));
        result.Mode.Should().Be(MigrationMode.Online);
        result.Kind.Should().Be(VeKind.Vm);
        result.Id.Should().Be(VeId.Parse(V));
        // prlctl migrate prints no downtime or byte counts (reference §3.9): unknown, not zero.
        result.TransferMeasured.Should().BeFalse();
        result.Downtime.Should().Be(TimeSpan.Zero);
        progress.Should().Equal(MigrationPhase.Preparing, MigrationPhase.CleaningUp);
        _node.VerifyAllReplayed();
    }

    [Fact]
    public async Task The_getting_started_listing_prints_the_node_s_containers_and_VMs()
    {
        // The unified client's getting-started logic (samples/GettingStarted) over a node: one list for every VE.
        _node.Expect(["prlctl", "list", "-a", "-i", "-f", "-j", "--vmtype", "ct"], ProvirtedContainer)
            .Expect(["prlctl", "list", "-a", "-i", "-f", "-j", "--vmtype", "vm"], RosplatformaVm);
        var ves = _provider.GetRequiredService<VirtualEnvironmentClient>();
        IReadOnlyList<VeInfo> all = await ves.ListAsync(all: true);
        var lines = all.Select(ve => $"  {ve.Kind} {ve.Name} {ve.State}").ToList();
        lines.Should().Equal("  Container 132694 Running", "  Vm ts-app-stg-nih-01 Running");
        _node.VerifyAllReplayed();
    }

    [Fact]
    public async Task A_start_the_node_refuses_for_the_guarantee_is_insufficient_resources()
    {
        _node.Expect(Info("web1"), Ct(U, "web1", "stopped"))
            .Expect(["prlctl", "start", U], "", Banner + "Failed to start the CT: Unable to start the CT: the memory guarantee cannot be met.\n", 255);
        var act = () => _provider.GetRequiredService<ContainerClient>().StartAsync("web1");
        (await act.Should().ThrowAsync<InsufficientResourcesException>()).Which.Message.Should().Contain("prlctl start " + U);
    }

    [Fact]
    public async Task A_VE_the_node_does_not_know_is_not_found()
    {
        _node.Expect(Info("nope"), "", Banner + "The nope virtual machine does not exist.\n", 255);
        await ((Func<Task>)(() => _provider.GetRequiredService<ContainerClient>().GetAsync("nope"))).Should().ThrowAsync<NotFoundException>();
    }

    [Fact]
    public async Task What_prlctl_cannot_do_is_refused_by_name_before_any_command_runs()
    {
        var containers = _provider.GetRequiredService<ContainerClient>();
        await ((Func<Task>)(() => containers.ListTemplatesAsync())).Should().ThrowAsync<UnsupportedOnHostException>().WithMessage("*OS templates*");
        await ((Func<Task>)(() => containers.ExecAsync("web1", new VeExecOptions { Command = ["env"], Environment = new Dictionary<string, string> { ["A"] = "1" } })))
            .Should().ThrowAsync<UnsupportedOnHostException>().WithMessage("*environment variables*");
        await ((Func<Task>)(() => _provider.GetRequiredService<BackupClient>().VerifyAsync())).Should().ThrowAsync<UnsupportedOnHostException>().WithMessage("*Verifying backups*");
        await ((Func<Task>)(() => _provider.GetRequiredService<VirtualMachineClient>().CreateAsync(new VmCreateOptions { Name = new VeName("k"), KernelPath = "/vmlinuz" })))
            .Should().ThrowAsync<UnsupportedOnHostException>().WithMessage("*kernel boot*");
        _node.Commands.Should().BeEmpty();
    }

    [Fact]
    public async Task A_failed_set_after_create_removes_the_new_container()
    {
        _node.Expect(Inventory, EmptyList)
            .Expect(["prlctl", "create", "web1", "--vmtype", "ct", "--ostemplate", "centos-7-x86_64", "--uuid", U], "", Banner)
            .Expect(["prlctl", "set", U, "--memsize", "512", "--swap", "0", "--memguarantee", "0", "--cpuunits", "1000", "--device-set", "hdd0", "--size", "2048",
                "--hostname", "web1", "--autostart", "off"], "", "Failed to configure the CT: Operation failed.\n", 255)
            .Expect(["prlctl", "delete", U], "", Banner);
        var act = () => _provider.GetRequiredService<ContainerClient>().CreateAsync(new ContainerCreateOptions { Name = new VeName("web1"), Template = "centos-7-x86_64" });
        (await act.Should().ThrowAsync<CommandFailedException>()).Which.ExitCode.Should().Be(255);
        _node.VerifyAllReplayed();
    }

    [Fact]
    public async Task The_recorded_session_fails_on_a_command_it_was_not_given()
        => await ((Func<Task>)(() => _provider.GetRequiredService<ContainerClient>().GetAsync("web1")))
            .Should().ThrowAsync<UnrecordedCommandException>().WithMessage("*'prlctl' 'list' '-i' '-f' '-j' 'web1'*");

    private static string BackupRows(params (string Id, string Type)[] rows)
        => $"{"ID",38} {"Backup_ID",-38} {"Node",-20} {"Date",-20} {"Type",4} {"Size",10}\n"
            + string.Concat(rows.Select((r, i) => $"{"{" + U + "}",38} {r.Id,-38} {"node1",-20} {$"03/0{i + 1}/2024 10:20:30",-20} {r.Type,4} {1000 + i,10}\n"));

    [Fact]
    public async Task Deleting_a_backup_with_later_increments_keeps_the_chain_unless_its_dependents_go_too()
    {
        var all = BackupRows((Bk, "f"), (Bk + ".1", "i"), (Bk + ".2", "i"));
        var row = Rows(Row(U, "stopped", "CT", "web1"));
        // without dependents: --keep-chain, and only that backup is gone
        _node.Expect(["prlctl", "backup-list"], all).Expect(Inventory, row)
            .Expect(["prlctl", "backup-list", U], all).Expect(Inventory, row)
            .Expect(["prlctl", "backup-delete", "-t", Bk + ".1", "--keep-chain"], "", Banner)
            .Expect(["prlctl", "backup-list", U], BackupRows((Bk, "f"), (Bk + ".2", "i"))).Expect(Inventory, row);
        var backups = _provider.GetRequiredService<BackupClient>();
        (await backups.DeleteAsync(Bk + ".1")).Should().Equal(Bk + ".1");

        // with dependents: prlctl's default removes it and every later one
        _node.Expect(["prlctl", "backup-list"], all).Expect(Inventory, row)
            .Expect(["prlctl", "backup-list", U], all).Expect(Inventory, row)
            .Expect(["prlctl", "backup-delete", "-t", Bk + ".1"], "", Banner)
            .Expect(["prlctl", "backup-list", U], BackupRows((Bk, "f"))).Expect(Inventory, row);
        (await backups.DeleteAsync(Bk + ".1", withDependents: true)).Should().Equal(Bk + ".1", Bk + ".2");
        _node.VerifyAllReplayed();
    }

    [Fact]
    public async Task Backups_read_as_chains_of_a_full_and_its_increments()
    {
        _node.Expect(["prlctl", "backup-list"], BackupRows((Bk, "f"), (Bk + ".1", "i"), (Bk + ".2", "i")))
            .Expect(Inventory, Rows(Row(U, "running", "CT", "web1")));
        var chains = await _provider.GetRequiredService<BackupClient>().ListChainsAsync();
        var chain = chains.Should().ContainSingle().Subject;
        chain.VeName.Should().Be("web1");
        chain.Backups.Select(b => (b.Id, b.Type, b.ParentId)).Should().Equal(
            (Bk, BackupType.Full, (string?)null), (Bk + ".1", BackupType.Incremental, Bk), (Bk + ".2", BackupType.Incremental, Bk + ".1"));
    }

    [Fact]
    public async Task Restoring_into_a_running_VE_is_refused_before_prlctl_restore_runs()
    {
        _node.Expect(["prlctl", "backup-list"], BackupRows((Bk, "f"))).Expect(Inventory, Rows(Row(U, "running", "CT", "web1")))
            .Expect(Info(U), Ct(U, "web1", "running"));
        await ((Func<Task>)(() => _provider.GetRequiredService<BackupClient>().RestoreAsync(Bk))).Should().ThrowAsync<InvalidStateException>().WithMessage("*stop it*");
        _node.Commands.Should().NotContain(c => c[1] == "restore");
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
