using System.Text.Json;
using Virtuozzo.Sdk.Core.Hosts;
using Virtuozzo.Sdk.Core.Processes;
using Virtuozzo.Sdk.IntegrationTests.Cli;
using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.IntegrationTests.Vm;

/// <summary><c>vzsdk vm</c> as a user runs it: exit codes, JSON, exec pass-through, the password from standard input.</summary>
public sealed class VmCliTests
{
    private static async Task<BufferedCommandResult> VmAsync(string root, string? stdin, params string[] args)
    {
        var cmd = VzsdkTool.Command(["--data-root", root, "vm", .. args]).WithTimeout(TimeSpan.FromMinutes(3));
        if (stdin is not null)
            cmd = cmd.WithStandardInput(stdin);
        return await new LocalHost().ExecuteBufferedAsync(cmd);
    }

    [IntegrationFact("qemu-system-x86_64")]
    public async Task The_vm_verbs_create_run_exec_set_a_password_from_stdin_and_delete_a_guest()
    {
        var guest = await TestGuest.GetAsync();
        using var dir = new TempDirectory("vzsdk-vmcli");
        var root = dir.Path;
        try
        {
            var create = await VmAsync(root, null, "create", "cli1", "--memsize", "512", "--network", "user",
                "--kernel", guest.KernelPath, "--initrd", guest.InitrdPath, "--append", TestGuest.CommandLine, "--disk", "64M");
            create.ExitCode.Should().Be(0, create.StandardError);
            var id = create.StandardOutput.Trim().Split('\n')[^1];
            Guid.TryParse(id, out _).Should().BeTrue("the id is the last line of a create");

            var list = await VmAsync(root, null, "list", "-a", "--json");
            using (var doc = JsonDocument.Parse(list.StandardOutput))
            {
                var row = doc.RootElement.EnumerateArray().Single();
                row.GetProperty("uuid").GetString().Should().Be(id);
                row.GetProperty("name").GetString().Should().Be("cli1");
                row.GetProperty("type").GetString().Should().Be("vm");
                row.GetProperty("status").GetString().Should().Be("stopped");
                row.GetProperty("ip_configured").ValueKind.Should().Be(JsonValueKind.Null);
            }
            (await VmAsync(root, null, "list", "--json")).StandardOutput.Trim().Should().Be("[]", "stopped VMs are listed only with -a");

            (await VmAsync(root, null, "exec", "cli1", "--", "/bin/true")).ExitCode.Should().Be(125, "the VM is not running");
            (await VmAsync(root, null, "start", "cli1")).ExitCode.Should().Be(0);
            var info = await VmAsync(root, null, "info", "cli1", "--json");
            using (var doc = JsonDocument.Parse(info.StandardOutput))
            {
                doc.RootElement.GetProperty("status").GetString().Should().Be("running");
                doc.RootElement.GetProperty("memsize").GetInt64().Should().Be(512L << 20);
                doc.RootElement.GetProperty("disks")[0].GetProperty("size").GetInt64().Should().Be(64L << 20);
            }

            // The guest tools need a moment after start; exec fails with 125 until they answer.
            BufferedCommandResult exec = null!;
            for (var i = 0; i < 60; i++)
            {
                exec = await VmAsync(root, null, "exec", "cli1", "--shell", "--", "echo", "out;", "exit", "3");
                if (exec.ExitCode != 125)
                    break;
                await Task.Delay(500);
            }
            exec.ExitCode.Should().Be(3, exec.StandardError);
            exec.StandardOutput.Should().Be("out\n");

            var passwd = await VmAsync(root, "n3w-secret\n", "set", "cli1", "--userpasswd", "guest");
            passwd.ExitCode.Should().Be(0, passwd.StandardError);
            passwd.StandardOutput.Should().NotContain("n3w-secret");
            var shadow = await VmAsync(root, null, "exec", "cli1", "--", "/bin/grep", "^guest:", "/etc/shadow");
            shadow.StandardOutput.Split(':')[1].Should().StartWith("$6$");

            (await VmAsync(root, null, "set", "cli1", "--memsize", "lots")).ExitCode.Should().Be(2);
            (await VmAsync(root, null, "stop", "cli1", "--no-such-flag")).ExitCode.Should().Be(2);
            (await VmAsync(root, null, "delete", "cli1")).ExitCode.Should().Be(1, "a running VM is not deleted");
            var stop = await VmAsync(root, null, "stop", "cli1", "--timeout", "20");
            stop.ExitCode.Should().Be(0, stop.StandardError);
            (await VmAsync(root, null, "delete", "cli1")).ExitCode.Should().Be(0);
            var gone = await VmAsync(root, null, "info", "cli1");
            gone.ExitCode.Should().Be(1);
            gone.StandardError.Should().Contain("no VM named 'cli1'");
        }
        finally
        {
            await VmAsync(root, null, "stop", "cli1", "--kill");
        }
    }
}

public sealed class VmSampleTests
{
    [IntegrationFact("qemu-system-x86_64")]
    public async Task The_vm_sample_boots_execs_hotplugs_memory_backs_up_and_deletes_its_vm()
    {
        var guest = await TestGuest.GetAsync();
        using var dir = new TempDirectory("vzsdk-vmsample");
        var r = await new LocalHost().ExecuteBufferedAsync(new Command("dotnet")
            .WithArguments(Path.Combine(AppContext.BaseDirectory, "VmSample.dll"), dir.Path, guest.Directory)
            .WithValidation(CommandResultValidation.None).WithTimeout(TimeSpan.FromMinutes(3)));
        r.ExitCode.Should().Be(0, r.StandardError);
        r.StandardOutput.Should().Contain("The guest runs Linux 6.").And.Contain("(exit code 0)").And.Contain("Deleted demo-vm");
        r.StandardOutput.Should().MatchRegex(@"Backed up: \{[0-9a-f-]{36}\} \(Full, 1 disk\); running: ", "the running VM is backed up");
        var m = System.Text.RegularExpressions.Regex.Match(r.StandardOutput, @"Guest memory: (\d+) MiB before the hotplug, (\d+) MiB after");
        m.Success.Should().BeTrue(r.StandardOutput);
        (long.Parse(m.Groups[2].Value) - long.Parse(m.Groups[1].Value)).Should().BeGreaterThan(400);
        Directory.GetDirectories(Path.Combine(dir.Path, "private")).Should().BeEmpty();
    }
}
