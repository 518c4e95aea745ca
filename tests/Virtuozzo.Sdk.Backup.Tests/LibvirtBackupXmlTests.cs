using System.Text.RegularExpressions;
using System.Xml.Linq;
using Virtuozzo.Sdk.Backup.Runtime.Libvirt;
using Virtuozzo.Sdk.Core.Runtime.Local;

namespace Virtuozzo.Sdk.Backup.Tests;

/// <summary>The XML the libvirt backup source hands to libvirt, and the checkpoint names it maps backup ids to.</summary>
public class LibvirtBackupXmlTests
{
    private const string Full = "{7d3c1a52-0c49-4d0e-a5a4-8e2b1f3c9a10}";
    private const string Incremental = Full + ".12";

    // libvirt 9.0's domaincheckpoint.rng: checkpointName.
    private static readonly Regex LibvirtCheckpointName = new("^[a-zA-Z0-9_\\-][a-zA-Z0-9_\\-.]*$");

    [Fact]
    public void A_full_backup_pushes_every_disk_into_its_scratch_qcow2_with_no_incremental_element()
    {
        var xml = XElement.Parse(LibvirtBackupSource.BackupXml([("vda", "/b/st/.push-hdd0.qcow2"), ("vdb", "/b/it's & <odd>.qcow2")], null, ["sda"]));
        xml.Name.LocalName.Should().Be("domainbackup");
        xml.Attribute("mode")!.Value.Should().Be("push");
        xml.Element("incremental").Should().BeNull();
        var all = xml.Element("disks")!.Elements("disk").ToList();
        all.Should().ContainSingle(d => d.Attribute("name")!.Value == "sda" && d.Attribute("backup")!.Value == "no" && !d.HasElements, "a disk not backed up is named and left out");
        var disks = all.Where(d => d.Attribute("backup")!.Value == "yes").ToList();
        disks.Select(d => d.Attribute("name")!.Value).Should().Equal("vda", "vdb");
        disks.Select(d => d.Element("target")!.Attribute("file")!.Value).Should().Equal("/b/st/.push-hdd0.qcow2", "/b/it's & <odd>.qcow2");
        disks.Should().OnlyContain(d => d.Attribute("backup")!.Value == "yes" && d.Attribute("type")!.Value == "file" && d.Element("driver")!.Attribute("type")!.Value == "qcow2");
    }

    [Fact]
    public void An_incremental_names_the_parents_checkpoint()
    {
        var xml = XElement.Parse(LibvirtBackupSource.BackupXml([("vda", "/x.qcow2")], ChangeTracking.CheckpointName(Full)));
        xml.Element("incremental")!.Value.Should().Be("vzsdk-backup-7d3c1a52-0c49-4d0e-a5a4-8e2b1f3c9a10");
    }

    [Fact]
    public void A_new_checkpoint_lets_libvirt_name_the_bitmaps_and_a_redefinition_names_them_and_its_time()
    {
        var made = XElement.Parse(LibvirtBackupSource.CheckpointXml("vzsdk-backup-a", ["vda", "vdb"], others: ["sda"]));
        made.Element("name")!.Value.Should().Be("vzsdk-backup-a");
        made.Element("creationTime").Should().BeNull();
        made.Element("disks")!.Elements("disk").Where(d => d.Attribute("name")!.Value != "sda")
            .Should().HaveCount(2).And.OnlyContain(d => d.Attribute("checkpoint")!.Value == "bitmap" && d.Attribute("bitmap") == null);
        made.Element("disks")!.Elements("disk").Single(d => d.Attribute("name")!.Value == "sda").Attribute("checkpoint")!.Value.Should().Be("no");

        var at = new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero);
        var redefined = XElement.Parse(LibvirtBackupSource.CheckpointXml("vzsdk-backup-a", ["vda"], at));
        redefined.Element("creationTime")!.Value.Should().Be(at.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture));
        redefined.Element("disks")!.Element("disk")!.Attribute("bitmap")!.Value.Should().Be("vzsdk-backup-a");
    }

    [Theory]
    [InlineData(Full)]
    [InlineData(Incremental)]
    public void Backup_ids_map_to_names_libvirt_accepts_and_back(string id)
    {
        var name = ChangeTracking.CheckpointName(id);
        LibvirtCheckpointName.IsMatch(name).Should().BeTrue(name);
        ChangeTracking.IsTrackingCheckpoint(name).Should().BeTrue();
        ChangeTracking.BackupIdOfCheckpoint(name).Should().Be(id);
    }

    [Theory]
    [InlineData("nightly")]
    [InlineData("vzsdk-backup-")]
    [InlineData("vzsdk-backup-not-a-uuid-at-all-but-long-enough-1234")]
    public void Checkpoints_the_SDK_did_not_make_map_to_no_backup(string name)
        => ChangeTracking.BackupIdOfCheckpoint(name).Should().BeNull();

    [Fact]
    public void QEMUs_block_state_gives_each_images_bitmaps_inconsistent_disabled_or_good()
    {
        // The shape of QEMU 7.2's query-block reply, as libvirt passes it back (trimmed to the fields read).
        const string Reply = """
            {"return":[
              {"device":"","qdev":"/machine/peripheral/ua-hdd0/virtio-backend","inserted":{"file":"/d/hdd0.qcow2","dirty-bitmaps":[
                {"name":"vzsdk-backup-a","recording":true,"persistent":true,"busy":false,"granularity":65536,"count":0},
                {"name":"vzsdk-backup-b","recording":true,"persistent":true,"inconsistent":true,"busy":false,"granularity":65536,"count":0},
                {"name":"vzsdk-backup-c","recording":false,"persistent":true,"busy":false,"granularity":65536,"count":0}]}},
              {"device":"","qdev":"/machine/peripheral/ua-hdd1/virtio-backend","inserted":{"file":"/d/hdd1.qcow2"}},
              {"device":"ide0-cd0","removable":true}
            ],"id":"libvirt-42"}
            """;
        var map = LibvirtBackupSource.ParseQueryBlock(Reply);
        map.Keys.Should().BeEquivalentTo(["/d/hdd0.qcow2", "/d/hdd1.qcow2"]);
        map["/d/hdd0.qcow2"].Should().BeEquivalentTo(new Dictionary<string, Internal.TrackingState>
        {
            ["vzsdk-backup-a"] = Internal.TrackingState.Good,
            ["vzsdk-backup-b"] = Internal.TrackingState.Inconsistent,
            ["vzsdk-backup-c"] = Internal.TrackingState.Disabled,
        });
        map["/d/hdd1.qcow2"].Should().BeEmpty();
        LibvirtBackupSource.ParseQueryBlock("{\"error\":{\"class\":\"GenericError\",\"desc\":\"x\"}}").Should().BeEmpty();
    }
}
