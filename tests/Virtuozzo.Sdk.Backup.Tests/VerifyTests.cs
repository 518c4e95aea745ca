using Virtuozzo.Sdk.Storage.Qcow2;

namespace Virtuozzo.Sdk.Backup.Tests;

public class VerifyTests
{
    [Fact]
    public async Task Intact_backups_verify_as_valid()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 });

        var result = await location.Client().VerifyAsync(location.Ve.ToString());

        result.IsValid.Should().BeTrue();
        result.Checked.Should().Equal(chain[0].Id, chain[1].Id);
    }

    [Fact]
    public async Task Changed_data_is_caught_by_its_digest_and_the_backups_that_depend_on_it_are_named()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 }, new() { [2] = 3 }, new() { [3] = 4 });
        using (var image = Qcow2Image.Open(location.DiskFile(chain[1].Id), new Qcow2OpenOptions { NoBacking = true }))
            image.Write(BackupLocation.Cluster + 100, new byte[] { 0xff }); // one byte, in place: the structure stays sound

        var result = await location.Client().VerifyAsync(location.Ve.ToString());

        result.IsValid.Should().BeFalse();
        result.Damaged.Should().ContainSingle().Which.Should().Be(new KeyValuePair<string, string>(chain[1].Id, "disk root: the data does not match the digest recorded when it was written"));
        result.Affected.Should().Equal(chain[2].Id, chain[3].Id);
    }

    [Fact]
    public async Task Verifying_one_backup_by_id_checks_only_it_but_names_what_depends_on_it()
    {
        using var location = new BackupLocation();
        var chain = await location.AddChainAsync(new() { [0] = 1 }, new() { [1] = 2 }, new() { [2] = 3 });
        using (var image = Qcow2Image.Open(location.DiskFile(chain[0].Id), new Qcow2OpenOptions { NoBacking = true }))
            image.Write(0, new byte[] { 0xff });

        var result = await location.Client().VerifyAsync(chain[0].Id);

        result.Checked.Should().Equal(chain[0].Id);
        result.Damaged.Keys.Should().Equal(chain[0].Id);
        result.Affected.Should().Equal(chain[1].Id, chain[2].Id);
    }
}
