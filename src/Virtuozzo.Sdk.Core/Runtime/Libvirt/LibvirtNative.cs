using System.Runtime.InteropServices;

namespace Virtuozzo.Sdk.Core.Runtime.Libvirt;

// The subset of libvirt's C API the libvirt runtime uses (libvirt.so.0 and libvirt-qemu.so.0, Debian's libvirt0), bound
// with source-generated LibraryImport so that it is trim- and AOT-safe. Pointers stay raw here; LibvirtConnection and
// LibvirtDomain own them. Strings libvirt returns as "char *" (caller frees) are freed with free(3) through NativeMemory.Free;
// those returned as "const char *" belong to libvirt. References: libvirt's include/libvirt/libvirt-*.h (9.0).
internal static unsafe partial class LibvirtNative
{
    private const string Lib = "libvirt.so.0";
    private const string QemuLib = "libvirt-qemu.so.0";

    // virConnectListAllDomainsFlags
    internal const uint ListDomainsAll = 0;

    // virDomainShutdownFlagValues
    internal const uint ShutdownAcpiPowerButton = 1;
    internal const uint ShutdownGuestAgent = 2;

    // virDomainUndefineFlagsValues
    internal const uint UndefineManagedSave = 1;
    internal const uint UndefineSnapshotsMetadata = 2;
    internal const uint UndefineNvram = 4;
    internal const uint UndefineCheckpointsMetadata = 16;

    // virDomainModificationImpact
    internal const uint AffectLive = 1;
    internal const uint AffectConfig = 2;

    // virDomainMemoryModFlags / virDomainVcpuFlags
    internal const uint MemoryMaximum = 4;
    internal const uint VcpuMaximum = 4;
    internal const uint VcpuGuest = 8;

    // virDomainBlockResizeFlags
    internal const uint BlockResizeBytes = 1;

    // virDomainXMLFlags
    internal const uint XmlInactive = 2;

    // virDomainSnapshotDeleteFlags / virDomainSnapshotRevertFlags
    internal const uint SnapshotRevertForce = 4;
    internal const uint SnapshotDeleteMetadataOnly = 2;

    // virConnectGetAllDomainStats: virDomainStatsTypes
    internal const uint StatsState = 1;
    internal const uint StatsCpuTotal = 2;
    internal const uint StatsBalloon = 4;
    internal const uint StatsInterface = 16;
    internal const uint StatsBlock = 32;

    // virDomainEventID
    internal const int EventIdLifecycle = 0;

    [StructLayout(LayoutKind.Sequential)]
    internal struct VirError
    {
        public int Code;
        public int Domain;
        public byte* Message;
        public int Level;
        public nint Conn;
        public nint Dom;
        public byte* Str1;
        public byte* Str2;
        public byte* Str3;
        public int Int1;
        public int Int2;
        public nint Net;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct VirDomainInfo
    {
        public byte State;
        public nuint MaxMem;      // KiB
        public nuint Memory;      // KiB
        public ushort NrVirtCpu;
        public ulong CpuTime;     // ns
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct VirTypedParameter
    {
        public fixed byte Field[80];
        public int Type;
        public long Value;        // a union: int, uint, llong, ullong, double, boolean, or a char* for strings
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct VirDomainStatsRecord
    {
        public nint Dom;
        public VirTypedParameter* Params;
        public int NParams;
    }

    [LibraryImport(Lib)] internal static partial int virInitialize();
    [LibraryImport(Lib)] internal static partial VirError* virGetLastError();
    [LibraryImport(Lib)] internal static partial void virResetLastError();
    [LibraryImport(Lib)] internal static partial void virSetErrorFunc(nint userData, nint handler);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virConnectOpen(string? name);
    [LibraryImport(Lib)] internal static partial int virConnectClose(nint conn);
    [LibraryImport(Lib)] internal static partial int virConnectGetLibVersion(nint conn, out nuint version);
    [LibraryImport(Lib)] internal static partial int virConnectGetVersion(nint conn, out nuint version);
    [LibraryImport(Lib)] internal static partial byte* virConnectGetCapabilities(nint conn);
    [LibraryImport(Lib)] internal static partial byte* virConnectGetHostname(nint conn);
    [LibraryImport(Lib)] internal static partial byte* virConnectGetURI(nint conn);
    [LibraryImport(Lib)] internal static partial int virConnectIsAlive(nint conn);
    [LibraryImport(Lib)] internal static partial int virConnectListAllDomains(nint conn, nint** domains, uint flags);
    [LibraryImport(Lib)] internal static partial int virConnectGetAllDomainStats(nint conn, uint stats, VirDomainStatsRecord*** records, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainListGetStats(nint* doms, uint stats, VirDomainStatsRecord*** retStats, uint flags);
    [LibraryImport(Lib)] internal static partial void virDomainStatsRecordListFree(VirDomainStatsRecord** records);
    [LibraryImport(Lib)] internal static partial int virConnectDomainEventRegisterAny(nint conn, nint dom, int eventId, nint callback, nint opaque, nint freeCallback);
    [LibraryImport(Lib)] internal static partial int virConnectDomainEventDeregisterAny(nint conn, int callbackId);
    [LibraryImport(Lib)] internal static partial int virConnectSetKeepAlive(nint conn, int interval, uint count);
    [LibraryImport(Lib)] internal static partial int virEventRegisterDefaultImpl();
    [LibraryImport(Lib)] internal static partial int virEventRunDefaultImpl();

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virDomainLookupByUUIDString(nint conn, string uuid);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virDomainLookupByName(nint conn, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virDomainDefineXML(nint conn, string xml);
    [LibraryImport(Lib)] internal static partial int virDomainFree(nint dom);
    [LibraryImport(Lib)] internal static partial byte* virDomainGetName(nint dom);
    [LibraryImport(Lib)] internal static partial int virDomainGetUUIDString(nint dom, byte* buffer);
    [LibraryImport(Lib)] internal static partial int virDomainGetState(nint dom, out int state, out int reason, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainGetInfo(nint dom, out VirDomainInfo info);
    [LibraryImport(Lib)] internal static partial byte* virDomainGetXMLDesc(nint dom, uint flags);
    [LibraryImport(Lib)] internal static partial byte* virDomainGetOSType(nint dom);
    [LibraryImport(Lib)] internal static partial int virDomainCreate(nint dom);
    [LibraryImport(Lib)] internal static partial int virDomainShutdownFlags(nint dom, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainDestroy(nint dom);
    [LibraryImport(Lib)] internal static partial int virDomainUndefineFlags(nint dom, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainSuspend(nint dom);
    [LibraryImport(Lib)] internal static partial int virDomainResume(nint dom);
    [LibraryImport(Lib)] internal static partial int virDomainReset(nint dom, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainManagedSave(nint dom, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainHasManagedSaveImage(nint dom, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainManagedSaveRemove(nint dom, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainRename(nint dom, string newName, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainSetMemoryFlags(nint dom, nuint memoryKiB, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainSetVcpusFlags(nint dom, uint count, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainAttachDeviceFlags(nint dom, string xml, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainDetachDeviceFlags(nint dom, string xml, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainBlockResize(nint dom, string disk, ulong size, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainSetAutostart(nint dom, int autostart);
    [LibraryImport(Lib)] internal static partial int virDomainGetAutostart(nint dom, out int autostart);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainSetUserPassword(nint dom, string user, string password, uint flags);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virDomainSnapshotCreateXML(nint dom, string xml, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainListAllSnapshots(nint dom, nint** snapshots, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virDomainSnapshotLookupByName(nint dom, string name, uint flags);
    [LibraryImport(Lib)] internal static partial byte* virDomainSnapshotGetXMLDesc(nint snapshot, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainSnapshotIsCurrent(nint snapshot, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainRevertToSnapshot(nint snapshot, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainSnapshotDelete(nint snapshot, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainSnapshotFree(nint snapshot);

    // virDomainCheckpointCreateFlags / virDomainCheckpointDeleteFlags
    internal const uint CheckpointCreateRedefine = 1;
    internal const uint CheckpointDeleteMetadataOnly = 2;

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainBackupBegin(nint dom, string backupXml, string? checkpointXml, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virDomainCheckpointCreateXML(nint dom, string xml, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainListAllCheckpoints(nint dom, nint** checkpoints, uint flags);
    [LibraryImport(Lib)] internal static partial byte* virDomainCheckpointGetName(nint checkpoint);
    [LibraryImport(Lib)] internal static partial int virDomainCheckpointDelete(nint checkpoint, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainCheckpointFree(nint checkpoint);
    [LibraryImport(Lib)] internal static partial int virDomainFSFreeze(nint dom, nint mountpoints, uint nmountpoints, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainFSThaw(nint dom, nint mountpoints, uint nmountpoints, uint flags);

    // virDomainJobType
    internal const int JobNone = 0;
    internal const int JobCompleted = 3;
    internal const int JobFailed = 4;
    internal const int JobCancelled = 5;

    // virDomainJobOperation
    internal const long JobOperationBackup = 9;

    // virDomainMigrateFlags
    internal const uint MigrateLive = 1;
    internal const uint MigratePeerToPeer = 2;
    internal const uint MigratePersistDest = 8;
    internal const uint MigrateUndefineSource = 16;
    internal const uint MigrateOffline = 1024;
    internal const uint MigrateAutoConverge = 8192;

    // virDomainGetJobStatsFlags
    internal const uint JobStatsCompleted = 1;

    // virTypedParameterType
    internal const int TypedParamULLong = 4;
    internal const int TypedParamString = 7;

    [StructLayout(LayoutKind.Sequential)]
    internal struct VirDomainJobInfo
    {
        public int Type;
        public ulong TimeElapsed;
        public ulong TimeRemaining;
        public ulong DataTotal;
        public ulong DataProcessed;
        public ulong DataRemaining;
        public ulong MemTotal;
        public ulong MemProcessed;
        public ulong MemRemaining;
        public ulong FileTotal;
        public ulong FileProcessed;
        public ulong FileRemaining;
    }

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainMigrateToURI3(nint dom, string dconnuri, VirTypedParameter* parameters, uint nparams, uint flags);
    [LibraryImport(Lib)] internal static partial int virDomainGetJobInfo(nint dom, out VirDomainJobInfo info);
    [LibraryImport(Lib)] internal static partial int virDomainGetJobStats(nint dom, out int type, out VirTypedParameter* parameters, out int nparams, uint flags);
    [LibraryImport(Lib)] internal static partial void virTypedParamsFree(VirTypedParameter* parameters, int nparams);
    [LibraryImport(Lib)] internal static partial int virDomainAbortJob(nint dom);
    [LibraryImport(Lib)] internal static partial int virDomainMigrateSetMaxDowntime(nint dom, ulong downtimeMs, uint flags);

    /// <summary>libvirt's typed parameters as a dictionary (numbers as long or double, strings, booleans).</summary>
    internal static Dictionary<string, object> ReadTypedParameters(VirTypedParameter* parameters, int count)
    {
        var fields = new Dictionary<string, object>(StringComparer.Ordinal);
        for (var p = 0; p < count; p++)
        {
            var param = &parameters[p];
            var field = Marshal.PtrToStringUTF8((nint)param->Field) ?? string.Empty;
            object? value = param->Type switch
            {
                1 => (long)(int)param->Value,
                2 => (long)(uint)param->Value,
                3 => param->Value,
                4 => (long)(ulong)param->Value,
                5 => BitConverter.Int64BitsToDouble(param->Value),
                6 => (byte)param->Value != 0,
                7 => Marshal.PtrToStringUTF8((nint)param->Value),
                _ => null,
            };
            if (value is not null)
                fields[field] = value;
        }
        return fields;
    }

    internal const uint MigrateNonSharedDisk = 64;
    internal const uint StoragePoolCreateWithBuild = 1;

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virStoragePoolLookupByTargetPath(nint conn, string path);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial nint virStoragePoolCreateXML(nint conn, string xml, uint flags);
    [LibraryImport(Lib)] internal static partial int virStoragePoolDestroy(nint pool);
    [LibraryImport(Lib)] internal static partial int virStoragePoolFree(nint pool);

    [LibraryImport("libc", EntryPoint = "statfs", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int statfs(string path, byte* buffer);

    /// <summary>The file system type (statfs's f_type) of <paramref name="path"/>; null when it cannot be read.</summary>
    internal static long? FileSystemType(string path)
    {
        var buffer = stackalloc byte[256];
        return statfs(path, buffer) == 0 ? *(long*)buffer : null;
    }

    [LibraryImport(QemuLib, StringMarshalling = StringMarshalling.Utf8)] internal static partial byte* virDomainQemuAgentCommand(nint dom, string command, int timeoutSeconds, uint flags);
    [LibraryImport(QemuLib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int virDomainQemuMonitorCommand(nint dom, string command, out byte* result, uint flags);

    /// <summary>A "const char *" from libvirt as a string (null stays null).</summary>
    internal static string? Borrowed(byte* text) => text is null ? null : Marshal.PtrToStringUTF8((nint)text);

    /// <summary>A "char *" the caller frees, as a string; the memory is freed.</summary>
    internal static string? Owned(byte* text)
    {
        if (text is null)
            return null;
        try
        {
            return Marshal.PtrToStringUTF8((nint)text);
        }
        finally
        {
            NativeMemory.Free(text);
        }
    }
}
