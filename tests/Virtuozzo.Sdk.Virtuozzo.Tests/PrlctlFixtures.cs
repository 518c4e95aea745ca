namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>
/// prlctl outputs the tests read. "Verbatim" fixtures are copied unchanged from the public captures that
/// /work/shared/reference/virtuozzo-cli-and-sdk.md §3.3 names as the contract; "reconstructed" ones follow that
/// reference's description of prlctl's formatter; "synthetic" ones are the edge cases its §7 lists. None is produced by
/// the SDK.
/// </summary>
internal static class PrlctlFixtures
{
    /// <summary>
    /// VERBATIM. A container, <c>prlctl list --all --info --full --json</c> on VZ7 (prlctl 7.0.197–7.0.222: has
    /// <c>Backup path</c>, no <c>state</c> in hdd0). Source: provirted/provirted README.md, "Data Structures Found In
    /// Code › Virtuozzo" (commit 5c93bbb5). The README shows one item of the array, pretty-printed with two spaces.
    /// </summary>
    public const string ProvirtedContainer = """
        {
          "ID": "ccefa40c-5c72-4e17-94c7-d68034a1c1a5",
          "EnvID": "132694",
          "Name": "132694",
          "Description": "",
          "Type": "CT",
          "State": "running",
          "OS": "centos7",
          "Template": "no",
          "Uptime": "797400",
          "Home": "/vz/private/132694",
          "Backup path": "",
          "Owner": "root",
          "GuestTools": {
            "state": "possibly_installed"
          },
          "GuestTools autoupdate": "on",
          "Autostart": "on",
          "Autostop": "suspend",
          "Autocompact": "on",
          "Boot order": "",
          "EFI boot": "off",
          "Allow select boot device": "off",
          "External boot device": "",
          "Remote display": {
            "mode": "off",
            "address": "0.0.0.0"
          },
          "Remote display state": "stopped",
          "Hardware": {
            "cpu": {
              "sockets": 1,
              "cpus": 1,
              "cores": 1,
              "VT-x": true,
              "hotplug": true,
              "accl": "high",
              "mode": "64",
              "cpuunits": 1500,
              "ioprio": 4
            },
            "memory": {
              "size": "1024Mb",
              "hotplug": true
            },
            "video": {
              "size": "0Mb",
              "3d acceleration": "off",
              "vertical sync": "yes"
            },
            "memory_guarantee": {
              "auto": true
            },
            "hdd0": {
              "enabled": true,
              "port": "scsi:0",
              "image": "/vz/private/132694/root.hdd",
              "type": "expanded",
              "size": "25390Mb",
              "mnt": "/",
              "subtype": "virtio-scsi"
            },
            "venet0": {
              "enabled": true,
              "type": "routed",
              "ips": "216.158.239.189 "
            }
          },
          "Features": "",
          "Disabled Windows logo": "on",
          "Nested virtualization": "off",
          "Offline management": {
            "enabled": false
          },
          "Hostname": "t3.netfresn.net",
          "DNS Servers": "8.8.8.8 64.20.34.50",
          "Search Domains": "interserver.net",
          "High Availability": {
            "enabled": "yes",
            "prio": 0
          }
        }
        """;

    /// <summary>
    /// VERBATIM. A VM, <c>prlctl list -i -f -j</c> on Rosplatforma (a VZ7 rebrand; no <c>Backup path</c>, so prlctl older
    /// than 7.0.197; a non-ASCII description). Source: sadxussein/flask-aggregator
    /// src/flask_aggregator/tests/test_rosplatforma.py, <c>RAW_STRING_VM_CONFIGS</c> (commit 08ed5d3).
    /// </summary>
    public const string RosplatformaVm = """
        [
                {
                        "ID": "56850624-9fd8-441a-b24f-00131f7f79ca",
                        "EnvID": "1451558436",
                        "Name": "ts-app-stg-nih-01",
                        "Description": "Шаблон РЕД ОС без cloud-init и установленным агентом vz-tools.",
                        "Type": "VM",
                        "State": "running",
                        "OS": "debian",
                        "Template": "no",
                        "Uptime": "0",
                        "Home": "/mnt/vstorage/vols/datastores/Datastore/56850624-9fd8-441a-b24f-00131f7f79ca/",
                        "Owner": "root",
                        "GuestTools": {
                                "state": "installed",
                                "version": "7.12-9.rv7.1"
                        },
                        "GuestTools autoupdate": "on",
                        "Autostart": "on",
                        "Autostop": "stop",
                        "Autocompact": "off",
                        "Boot order": "cdrom0 hdd0 net0 hdd1 ",
                        "EFI boot": "off",
                        "Allow select boot device": "off",
                        "External boot device": "",
                        "On guest crash": "restart",
                        "Remote display": {
                                "mode": "auto",
                                "port": 6737,
                                "websocket": 5715,
                                "address": "0.0.0.0"
                        },
                        "Remote display state": "running",
                        "Hardware": {
                                "cpu": {
                                        "sockets": 1,
                                        "cpus": 8,
                                        "cores": 8,
                                        "VT-x": true,
                                        "hotplug": false,
                                        "accl": "high",
                                        "mode": "64",
                                        "ioprio": 4,
                                        "iolimit": "0"
                                },
                                "memory": {
                                        "size": "16384Mb",
                                        "hotplug": false
                                },
                                "video": {
                                        "size": "32Mb",
                                        "3d acceleration": "off",
                                        "vertical sync": "yes"
                                },
                                "memory_guarantee": {
                                        "auto": true
                                },
                                "hdd0": {
                                        "enabled": true,
                                        "port": "scsi:1",
                                        "image": "/mnt/vstorage/vols/datastores/Datastore/56850624-9fd8-441a-b24f-00131f7f79ca/template.qcow2",
                                        "type": "expanded",
                                        "size": "102400Mb",
                                        "subtype": "virtio-scsi",
                                        "serial": "2bfc1bd2af7d45769e61"
                                },
                                "hdd1": {
                                        "enabled": true,
                                        "port": "scsi:0",
                                        "image": "/mnt/vstorage/vols/datastores/Datastore/56850624-9fd8-441a-b24f-00131f7f79ca/harddisk1.hdd",
                                        "type": "expanded",
                                        "size": "204800Mb",
                                        "subtype": "virtio-scsi",
                                        "serial": "411b907483d6444d9564"
                                },
                                "cdrom0": {
                                        "enabled": true,
                                        "port": "ide:0",
                                        "image": "/mnt/vstorage/vols/datastores/Datastore/import/cloud-init-config.iso"
                                },
                                "usb": {
                                        "enabled": true
                                },
                                "net0": {
                                        "enabled": true,
                                        "dev": "vme001c42e1a819",
                                        "network": "1211-vlan",
                                        "mac": "001C42E1A819",
                                        "card": "virtio",
                                        "preventpromisc": "on",
                                        "mac_filter": "on",
                                        "ip_filter": "on",
                                        "nameservers": "10.82.254.32 10.82.254.31",
                                        "searchdomains": "crimea.rncb.ru",
                                        "ips": "10.166.11.143/255.255.255.192 10.0.0.100/255.255.255.0 ",
                                        "gw": "10.166.11.129"
                                }
                        },
                        "SmartMount": {
                                "enabled": false
                        },
                        "Disabled Windows logo": "on",
                        "Nested virtualization": "off",
                        "Offline management": {
                                "enabled": false
                        },
                        "Hostname": "ts-app-stg-nih-01",
                        "High Availability": {
                                "enabled": "yes",
                                "prio": 0
                        }
                }
        ]

        """;

    /// <summary>RECONSTRUCTED (reference §3.2): <c>prlctl list -a -j</c> on VZ7, tab-indented, values from the provirted CT.</summary>
    public const string ListAllReconstructed =
        "[\n\t{\n\t\t\"uuid\": \"ccefa40c-5c72-4e17-94c7-d68034a1c1a5\",\n\t\t\"status\": \"running\",\n\t\t\"ip_configured\": \"216.158.239.189\",\n\t\t\"type\": \"CT\",\n\t\t\"name\": \"132694\"\n\t}\n]\n";

    /// <summary>SYNTHETIC (reference §3.2): an empty result is <c>"[\n\n]\n"</c>.</summary>
    public const string EmptyList = "[\n\n]\n";

    /// <summary>The deprecation banner prlctl ≥ 7.0.224 prints on standard error (reference §1, <c>src/PrlCtl.cpp</c>).</summary>
    public const string Banner =
        "WARNING: You are using a deprecated CLI component that won't be installed by default in the next major release. Please use virsh instead\n";

    /// <summary>
    /// SYNTHETIC: a minimal CT item in prlctl's tab layout (keys and value shapes of §3.3), for flows and edge cases.
    /// <paramref name="extraTop"/> and <paramref name="hardware"/> are inserted raw.
    /// </summary>
    public static string Ct(string uuid, string name, string state, string description = "", string memoryGuarantee = "\"auto\": true",
        string cpus = "2", string ips = "10.0.0.5 ", string extraTop = "", string hardware = "")
        => $$"""
        [
        	{
        		"ID": "{{uuid}}",
        		"EnvID": "{{uuid}}",
        		"Name": "{{name}}",
        		"Description": "{{description}}",
        		"Type": "CT",
        		"State": "{{state}}",
        		"OS": "centos7",
        		"Home": "/vz/private/{{uuid}}",
        		"Autostart": "off",{{extraTop}}
        		"Hardware": {
        			"cpu": {
        				"sockets": 1,
        				"cpus": {{cpus}},
        				"cores": {{cpus}},
        				"cpuunits": 1000
        			},
        			"memory": {
        				"size": "1024Mb",
        				"hotplug": true
        			},
        			"memory_guarantee": {
        				{{memoryGuarantee}}
        			},
        			"hdd0": {
        				"enabled": true,
        				"port": "scsi:0",
        				"image": "/vz/private/{{uuid}}/root.hdd",
        				"type": "expanded",
        				"size": "10240Mb",
        				"mnt": "/"
        			},{{hardware}}
        			"venet0": {
        				"enabled": true,
        				"type": "routed",
        				"ips": "{{ips}}"
        			}
        		}
        	}
        ]

        """;

    /// <summary>SYNTHETIC: a minimal VM item in prlctl's tab layout.</summary>
    public static string Vm(string uuid, string name, string state, string disks = "")
        => $$"""
        [
        	{
        		"ID": "{{uuid}}",
        		"EnvID": "{{uuid}}",
        		"Name": "{{name}}",
        		"Description": "",
        		"Type": "VM",
        		"State": "{{state}}",
        		"OS": "debian",
        		"GuestTools": {
        			"state": "installed"
        		},
        		"Autostart": "off",
        		"Hardware": {
        			"cpu": {
        				"sockets": 1,
        				"cpus": 2,
        				"cores": 2,
        				"hotplug": false
        			},
        			"memory": {
        				"size": "2048Mb",
        				"hotplug": false
        			},
        			"memory_guarantee": {
        				"value": "50%"
        			},{{disks}}
        			"net0": {
        				"enabled": true,
        				"network": "Bridged",
        				"mac": "001C42AABBCC",
        				"card": "virtio",
        				"ips": "192.168.1.20/255.255.255.0 "
        			}
        		}
        	}
        ]

        """;

    /// <summary>SYNTHETIC: a row of <c>list -a -j -o uuid,status,type,name</c>.</summary>
    public static string Row(string uuid, string state, string type, string name)
        => $"\t{{\n\t\t\"uuid\": \"{uuid}\",\n\t\t\"status\": \"{state}\",\n\t\t\"type\": \"{type}\",\n\t\t\"name\": \"{name}\"\n\t}}";

    /// <summary>SYNTHETIC: <c>list -a -j</c> of the given rows.</summary>
    public static string Rows(params string[] rows) => rows.Length == 0 ? EmptyList : "[\n" + string.Join(",\n", rows) + "\n]\n";
}
