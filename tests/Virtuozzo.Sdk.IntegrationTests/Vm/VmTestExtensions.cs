using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Resources;
using Virtuozzo.Sdk.Vm;
using Virtuozzo.Sdk.Vm.Runtime.Local;

namespace Virtuozzo.Sdk.IntegrationTests.Vm;

/// <summary>What the tests look at below the public API: the emulator process and the runtime's ledger.</summary>
internal static class VmTestExtensions
{
    extension(VmInfo vm)
    {
        /// <summary>The emulator process running this VM now (found by the UUID QEMU is started with), or null.</summary>
        public int? ProcessId => FindEmulator(vm.Id);
    }

    extension(VirtualMachineClient client)
    {
        /// <summary>The ledger of the client's runtime.</summary>
        public ResourceLedger Ledger => ((LocalVmDriver)client.DriverForTests).Ledger;

        /// <summary>The VM's serial console log.</summary>
        public string ConsoleLogPathOf(VeId id) => ((LocalVmDriver)client.DriverForTests).ConsoleLogPath(id);
    }

    private static int? FindEmulator(VeId id)
    {
        var needle = "\0-uuid\0" + id + "\0";
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
                continue;
            try
            {
                var cmdline = "\0" + File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.Contains(needle, StringComparison.Ordinal) && !File.ReadAllText(Path.Combine(dir, "stat")).Contains(") Z ", StringComparison.Ordinal))
                    return pid;
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return null;
    }
}
