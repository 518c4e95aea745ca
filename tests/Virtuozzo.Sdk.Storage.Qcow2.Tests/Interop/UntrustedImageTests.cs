using Virtuozzo.Sdk.Testing;

namespace Virtuozzo.Sdk.Storage.Qcow2.Tests.Interop;

/// <summary>Images that name other files on the host (issue 15, item 6): shown as qemu-img shows them, and refusable.</summary>
public class UntrustedImageTests
{
    /// <summary>An image in <paramref name="dir"/>/inside whose data file is <paramref name="dataFile"/>.</summary>
    private static string WithDataFile(string dir, string dataFile)
    {
        Directory.CreateDirectory(Path.Combine(dir, "inside"));
        var file = Path.Combine(dir, "inside", "d.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"data_file={dataFile},data_file_raw=on", file, "1M").Ok();
        return file;
    }

    [IntegrationFact("qemu-img")]
    public void Info_names_the_external_data_file_as_qemu_img_does()
    {
        using var dir = new TempDirectory();
        var secret = Path.Combine(dir.Path, "secret.raw");
        var file = WithDataFile(dir.Path, secret);
        var qemu = Qemu.Json("info", "--output=json", file).GetProperty("format-specific").GetProperty("data");

        using var img = Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true });
        var info = img.GetInfo();
        info.DataFile.Should().Be(qemu.GetProperty("data-file").GetString()).And.Be(secret);
        info.DataFileRaw.Should().Be(qemu.GetProperty("data-file-raw").GetBoolean()).And.BeTrue();
    }

    [IntegrationFact("qemu-img")]
    public void An_image_with_an_external_data_file_is_refused_when_external_data_files_are_not_allowed()
    {
        using var dir = new TempDirectory();
        var file = WithDataFile(dir.Path, Path.Combine(dir.Path, "inside", "data.raw"));

        var act = () => Qcow2Image.Open(file, new Qcow2OpenOptions { ReadOnly = true, AllowExternalDataFile = false });
        act.Should().Throw<Qcow2UnsafeReferenceException>().WithMessage("*external data file*AllowExternalDataFile*")
            .Which.ReferencedPath.Should().EndWith("data.raw");
    }

    [IntegrationFact("qemu-img")]
    public void Data_and_backing_files_outside_the_allowed_directory_are_refused_even_through_a_symbolic_link()
    {
        using var dir = new TempDirectory();
        var inside = Path.Combine(dir.Path, "inside");
        var outsideData = Path.Combine(dir.Path, "outside.raw");
        var file = WithDataFile(dir.Path, outsideData);
        var options = new Qcow2OpenOptions { ReadOnly = true, AllowedDirectory = inside };

        var act = () => Qcow2Image.Open(file, options);
        act.Should().Throw<Qcow2UnsafeReferenceException>().WithMessage("*outside the allowed directory*");

        // a link inside the directory that points out of it is still outside
        var link = Path.Combine(inside, "link.raw");
        File.CreateSymbolicLink(link, outsideData);
        var viaLink = WithDataFile(dir.Path, link);
        act = () => Qcow2Image.Open(viaLink, options);
        act.Should().Throw<Qcow2UnsafeReferenceException>().Which.ReferencedPath.Should().Be(outsideData);

        // a backing file outside
        var baseImage = Path.Combine(dir.Path, "base.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", baseImage, "1M").Ok();
        var overlay = Path.Combine(inside, "overlay.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "../base.qcow2", "-F", "qcow2", overlay).Ok();
        act = () => Qcow2Image.Open(overlay, options);
        act.Should().Throw<Qcow2UnsafeReferenceException>().WithMessage("*backing file*");

        // files inside open as before
        var ok = WithDataFile(dir.Path, Path.Combine(inside, "data.raw"));
        using (var img = Qcow2Image.Open(ok, options))
            img.GetInfo().DataFile.Should().EndWith("data.raw");
        var innerBase = Path.Combine(inside, "inner-base.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", innerBase, "1M").Ok();
        var innerOverlay = Path.Combine(inside, "inner-overlay.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "inner-base.qcow2", "-F", "qcow2", innerOverlay).Ok();
        using (var img = Qcow2Image.Open(innerOverlay, options))
            img.Backing.Should().NotBeNull();
    }

    [IntegrationFact("qemu-img")]
    public void Convert_copies_an_external_data_file_unless_the_source_open_options_refuse_it()
    {
        using var dir = new TempDirectory();
        var secret = Path.Combine(dir.Path, "secret.raw");
        var file = WithDataFile(dir.Path, secret);
        File.WriteAllBytes(secret, Enumerable.Repeat((byte)0x5a, 1 << 20).ToArray());
        // qemu-img, and the library by default, read the data file: the secret ends up in the output
        var plain = Path.Combine(dir.Path, "plain.raw");
        Qcow2Converter.Convert(file, plain, new Qcow2ConvertOptions { OutputFormat = "raw" });
        File.ReadAllBytes(plain).Should().Equal(File.ReadAllBytes(secret));

        var refused = Path.Combine(dir.Path, "refused.raw");
        var act = () => Qcow2Converter.Convert(file, refused, new Qcow2ConvertOptions
        {
            OutputFormat = "raw",
            SourceOpenOptions = new Qcow2OpenOptions { AllowExternalDataFile = false },
        });
        act.Should().Throw<Qcow2UnsafeReferenceException>();
        File.Exists(refused).Should().BeFalse();
        act = () => Qcow2Converter.Convert(file, refused, new Qcow2ConvertOptions
        {
            OutputFormat = "raw",
            SourceOpenOptions = new Qcow2OpenOptions { AllowedDirectory = Path.GetDirectoryName(file) },
        });
        act.Should().Throw<Qcow2UnsafeReferenceException>();
    }
}
