using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>Reading <c>prlctl list -i -f -j</c> items: the verbatim captures and the synthetic edge cases of the reference's §7.</summary>
public class PrlctlVeConfigTests
{
    private static readonly PrlctlVersion V197 = new(7, 0, 197);
    private const string Uuid = "ccefa40c-5c72-4e17-94c7-d68034a1c1a5";

    private static PrlctlVeConfig One(string json, PrlctlVersion? version = null)
        => PrlctlVeConfig.Parse(PrlctlJson.ParseObjects(json, version ?? new PrlctlVersion(7, 0, 253)).Should().ContainSingle().Subject);

    // Source: provirted/provirted README.md (see PrlctlFixtures.ProvirtedContainer).
    [Fact]
    public void The_provirted_container_capture_reads_as_the_container_it_describes()
    {
        var c = One(PrlctlFixtures.ProvirtedContainer, V197);
        c.Id.Should().Be(VeId.Parse(Uuid));
        c.Name.Should().Be("132694");
        c.EnvId.Should().Be("132694");
        c.Kind.Should().Be(VeKind.Container);
        c.State.Should().Be(VeState.Running);
        c.Os.Should().Be("centos7");
        c.Home.Should().Be("/vz/private/132694");
        c.Hostname.Should().Be("t3.netfresn.net");
        c.Cpus.Should().Be(1);
        c.CpuUnits.Should().Be(1500);
        c.CpuLimitPercent.Should().BeNull();
        c.MemorySize.Should().Be(ByteSize.FromMiB(1024));
        c.MemoryHotplug.Should().BeTrue();
        c.MemoryGuaranteePercent.Should().BeNull("memory_guarantee is {\"auto\": true}");
        c.Disks.Should().ContainSingle().Which.Should().Be(new PrlctlDisk("hdd0", "/vz/private/132694/root.hdd", ByteSize.FromMiB(25390), "/"));
        c.IpAddresses.Should().Equal("216.158.239.189");
        c.MacAddress.Should().BeNull("venet0 has no MAC");
        c.Nameservers.Should().Equal("8.8.8.8", "64.20.34.50");
        c.Autostart.Should().BeTrue();
    }

    // Source: sadxussein/flask-aggregator test_rosplatforma.py (see PrlctlFixtures.RosplatformaVm).
    [Fact]
    public void The_rosplatforma_VM_capture_reads_as_the_VM_it_describes()
    {
        var c = One(PrlctlFixtures.RosplatformaVm, new PrlctlVersion(7, 0, 150));
        c.Id.Should().Be(VeId.Parse("56850624-9fd8-441a-b24f-00131f7f79ca"));
        c.Name.Should().Be("ts-app-stg-nih-01");
        c.Description.Should().Be("Шаблон РЕД ОС без cloud-init и установленным агентом vz-tools.");
        c.Kind.Should().Be(VeKind.Vm);
        c.State.Should().Be(VeState.Running);
        c.Cpus.Should().Be(8);
        c.MemorySize.Should().Be(ByteSize.FromMiB(16384));
        c.MemoryHotplug.Should().BeFalse();
        c.Disks.Select(d => (d.Name, d.Size)).Should().Equal(("hdd0", ByteSize.FromMiB(102400)), ("hdd1", ByteSize.FromMiB(204800)));
        c.Disks[0].Image.Should().EndWith("/template.qcow2");
        c.CdromImage.Should().Be("/mnt/vstorage/vols/datastores/Datastore/import/cloud-init-config.iso");
        c.IpAddresses.Should().Equal("10.166.11.143", "10.0.0.100");
        c.MacAddress.Should().Be("001C42E1A819");
        c.Nameservers.Should().Equal("10.82.254.32", "10.82.254.31");
        c.GuestToolsState.Should().Be("installed");
        c.Hostname.Should().Be("ts-app-stg-nih-01");
    }

    [Fact]
    public void A_percent_memory_guarantee_reads_as_its_percentage()
        => One(PrlctlFixtures.Ct(Uuid, "a", "stopped", memoryGuarantee: "\"value\": \"50%\"")).MemoryGuaranteePercent.Should().Be(50);

    [Fact]
    public void An_auto_memory_guarantee_reads_as_null()
        => One(PrlctlFixtures.Ct(Uuid, "a", "stopped", memoryGuarantee: "\"auto\": true")).MemoryGuaranteePercent.Should().BeNull();

    [Fact]
    public void Unlimited_cpus_read_as_no_count()
        => One(PrlctlFixtures.Ct(Uuid, "a", "stopped", cpus: "\"unlimited\"")).Cpus.Should().BeNull();

    [Theory]
    [InlineData("\"50%\"", 50)]
    [InlineData("\"1024Mhz\"", null)]
    public void A_cpu_limit_reads_in_percent_and_a_limit_in_megahertz_is_not_a_percentage(string value, int? expected)
    {
        var json = PrlctlFixtures.Ct(Uuid, "a", "stopped").Replace("\"cpuunits\": 1000", "\"cpuunits\": 1000,\n\t\t\t\t\"cpulimit\": " + value, StringComparison.Ordinal);
        One(json).CpuLimitPercent.Should().Be(expected);
    }

    [Fact]
    public void Several_configured_addresses_with_masks_and_a_trailing_space_read_as_addresses()
        => One(PrlctlFixtures.Ct(Uuid, "a", "running", ips: "10.0.0.5/255.255.255.0 10.0.0.6 fe80::1/64 ")).IpAddresses
            .Should().Equal("10.0.0.5", "10.0.0.6", "fe80::1");

    [Fact]
    public void The_ip_configured_field_as_the_last_field_splits_on_blanks_and_ignores_the_trailing_space()
        => PrlctlVeConfig.SplitAddresses("216.158.239.189 10.1.1.1 ").Should().Equal("216.158.239.189", "10.1.1.1");

    [Fact]
    public void Missing_optional_keys_read_as_empty()
    {
        // no Hostname, DNS Servers, Backup path, High Availability (list -i without -f), no GuestTools
        var c = One(PrlctlFixtures.Ct(Uuid, "a", "stopped"));
        c.Hostname.Should().BeNull();
        c.Nameservers.Should().BeEmpty();
        c.GuestToolsState.Should().BeNull();
        c.CpuMask.Should().BeNull();
    }

    [Fact]
    public void VHS9_extras_are_tolerated()
    {
        // VHS9: "Chipset" at top level, "NUMA nodes:" (with its colon) in memory, venet0 with the full adapter key set.
        var json = PrlctlFixtures.Ct(Uuid, "a", "running", extraTop: "\n\t\t\"Chipset\": \"q35\",")
            .Replace("\"hotplug\": true\n", "\"hotplug\": true,\n\t\t\t\t\"NUMA nodes:\": 1\n", StringComparison.Ordinal)
            .Replace("\"type\": \"routed\",", "\"type\": \"routed\",\n\t\t\t\t\"dev\": \"venet0\",\n\t\t\t\t\"mac\": \"-\",\n\t\t\t\t\"state\": \"connected\",", StringComparison.Ordinal);
        var c = One(json);
        c.MemorySize.Should().Be(ByteSize.FromMiB(1024));
        c.IpAddresses.Should().Equal("10.0.0.5");
        c.MacAddress.Should().BeNull("'-' is prlctl's empty value");
    }

    [Theory]
    [InlineData("stopped", VeState.Stopped)]
    [InlineData("running", VeState.Running)]
    [InlineData("paused", VeState.Paused)]
    [InlineData("suspended", VeState.Suspended)]
    [InlineData("mounted", VeState.Mounted)]
    [InlineData("starting", VeState.Busy)]
    [InlineData("migrating", VeState.Busy)]
    [InlineData("invalid", VeState.Busy)]
    public void Prlctl_state_words_map_to_the_SDK_states(string word, VeState state)
        => PrlctlVeConfig.MapState(word).Should().Be(state);

    [Fact]
    public void A_braced_ID_is_accepted()
        => One(PrlctlFixtures.Ct("{" + Uuid + "}", "a", "stopped")).Id.Should().Be(VeId.Parse(Uuid));

    [Theory]
    [InlineData("\"ID\": \"" + Uuid + "\",", "\"ID\": \"not-a-uuid\",")]
    [InlineData("\"Type\": \"CT\",", "\"Type\": \"XX\",")]
    [InlineData("\"State\": \"running\",", "")]
    public void An_item_without_a_valid_id_type_or_state_is_a_typed_error_naming_the_key(string from, string to)
    {
        var json = PrlctlFixtures.Ct(Uuid, "a", "running").Replace(from, to, StringComparison.Ordinal);
        var act = () => One(json);
        act.Should().Throw<VirtuozzoException>().WithMessage("*'" + from.Split('"')[1] + "'*");
    }

    [Theory]
    [InlineData("1024Mb", 1024L)]
    [InlineData("0Mb", 0L)]
    [InlineData("25390 Mb", 25390L)]
    public void Sizes_in_Mb_read_as_MiB(string text, long mib)
        => PrlctlVeConfig.ParseMb(text).Should().Be(ByteSize.FromMiB(mib));

    [Theory]
    [InlineData("1024")]
    [InlineData("1G")]
    [InlineData("-1Mb")]
    [InlineData("99999999999999999999Mb")]
    public void Anything_else_is_not_a_size(string text)
        => PrlctlVeConfig.ParseMb(text).Should().BeNull();
}
