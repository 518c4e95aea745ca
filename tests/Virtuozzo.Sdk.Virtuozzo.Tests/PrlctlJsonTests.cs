using System.Text.Json.Nodes;
using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Core.Runtime.Virtuozzo;

namespace Virtuozzo.Sdk.Virtuozzo.Tests;

/// <summary>The tolerant reader of prlctl's JSON and the version gate that decides how it reads.</summary>
public class PrlctlJsonTests
{
    private static readonly PrlctlVersion Old = new(7, 0, 170);
    private static readonly PrlctlVersion New = new(7, 0, 253);

    [Theory]
    [InlineData("prlctl version 7.0.253\n", 7, 0, 253)]
    [InlineData("prlctl version 7.0.190 (build 1)", 7, 0, 190)]
    [InlineData("prlctl version 9.0.26", 9, 0, 26)]
    public void The_version_is_read_from_prlctl_version(string output, int major, int minor, int build)
        => PrlctlVersion.TryParse(output).Should().Be(new PrlctlVersion(major, minor, build));

    [Theory]
    [InlineData("")]
    [InlineData("prlctl: command not found")]
    [InlineData("version 99999999999.1.1")]
    public void An_output_without_a_version_reads_as_unknown(string output)
        => PrlctlVersion.TryParse(output).Should().BeNull();

    [Theory]
    [InlineData(7, 0, 189, false)]
    [InlineData(7, 0, 190, true)]
    [InlineData(7, 1, 0, true)]
    [InlineData(6, 9, 999, false)]
    public void Escaped_JSON_starts_at_7_0_190(int major, int minor, int build, bool escapes)
        => new PrlctlVersion(major, minor, build).EscapesJson.Should().Be(escapes);

    [Fact]
    public void The_empty_list_prlctl_prints_reads_as_no_items()
    {
        PrlctlJson.ParseObjects(PrlctlFixtures.EmptyList, New).Should().BeEmpty();
        PrlctlJson.ParseObjects("", New).Should().BeEmpty();
    }

    [Fact]
    public void The_reconstructed_list_reads_as_rows_of_strings()
    {
        var rows = PrlctlJson.ParseObjects(PrlctlFixtures.ListAllReconstructed, New);
        rows.Should().ContainSingle();
        rows[0]["uuid"]!.GetValue<string>().Should().Be("ccefa40c-5c72-4e17-94c7-d68034a1c1a5");
        rows[0]["type"]!.GetValue<string>().Should().Be("CT");
        rows[0]["ip_configured"]!.GetValue<string>().Should().Be("216.158.239.189");
    }

    [Fact]
    public void A_single_object_reads_as_a_one_item_list()
        => PrlctlJson.ParseObjects(PrlctlFixtures.ProvirtedContainer, New).Should().ContainSingle()
            .Which["Name"]!.GetValue<string>().Should().Be("132694");

    [Fact]
    public void A_banner_that_reached_standard_output_before_the_JSON_is_skipped()
        => PrlctlJson.ParseObjects(PrlctlFixtures.Banner + PrlctlFixtures.ListAllReconstructed, New).Should().ContainSingle();

    // Before 7.0.190 prlctl copied user text into strings unescaped (PSBM-101599).
    [Fact]
    public void Before_7_0_190_raw_quotes_in_a_description_are_repaired()
    {
        var raw = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "web1", "stopped", description: "the \"main\" site, \"blue\"");
        var item = PrlctlJson.ParseObjects(raw, Old).Should().ContainSingle().Subject;
        item["Description"]!.GetValue<string>().Should().Be("the \"main\" site, \"blue\"");
        item["State"]!.GetValue<string>().Should().Be("stopped");
    }

    [Fact]
    public void Before_7_0_190_raw_newlines_and_backslashes_in_a_description_are_repaired()
    {
        var raw = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "web1", "running", description: "line one\nC:\\temp \"x\"\nline three");
        var item = PrlctlJson.ParseObjects(raw, Old).Should().ContainSingle().Subject;
        item["Description"]!.GetValue<string>().Should().Be("line one\nC:\\temp \"x\"\nline three");
        item["Name"]!.GetValue<string>().Should().Be("web1");
    }

    [Fact]
    public void Before_7_0_190_a_description_ending_in_a_quoted_word_is_repaired()
    {
        var raw = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "web1", "running", description: "say \"hi\"");
        PrlctlJson.ParseObjects(raw, Old)[0]["Description"]!.GetValue<string>().Should().Be("say \"hi\"");
    }

    [Fact]
    public void From_7_0_190_escaped_quotes_and_newlines_are_read_as_escapes()
    {
        var raw = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "web1", "running", description: "the \\\"main\\\" site\\nC:\\\\temp");
        PrlctlJson.ParseObjects(raw, New)[0]["Description"]!.GetValue<string>().Should().Be("the \"main\" site\nC:\\temp");
    }

    [Fact]
    public void Control_characters_that_prlctl_never_escapes_are_escaped()
    {
        var raw = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "web1", "running", description: "bell\u0007 and\u0001 tab\there");
        PrlctlJson.ParseObjects(raw, New)[0]["Description"]!.GetValue<string>().Should().Be("bell\u0007 and\u0001 tab\there");
        PrlctlJson.ParseObjects(raw, Old)[0]["Description"]!.GetValue<string>().Should().Be("bell\u0007 and\u0001 tab\there");
    }

    [Fact]
    public void With_an_unknown_version_the_strict_reading_is_tried_first_then_the_legacy_repair()
    {
        var escaped = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "a", "running", description: "C:\\\\x");
        PrlctlJson.ParseObjects(escaped, null)[0]["Description"]!.GetValue<string>().Should().Be("C:\\x");
        var raw = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "a", "running", description: "a \"b\" c");
        PrlctlJson.ParseObjects(raw, null)[0]["Description"]!.GetValue<string>().Should().Be("a \"b\" c");
    }

    [Fact]
    public void Compact_output_with_several_keys_on_a_line_reads_before_7_0_190_too()
    {
        const string compact = "[{\"uuid\":\"01732d18-0000-4000-8000-000000000001\",\"status\":\"invalid\",\"ip_configured\":\"-\",\"name\":\"Windows 11\"}]";
        var row = PrlctlJson.ParseObjects(compact, Old).Should().ContainSingle().Subject;
        row["status"]!.GetValue<string>().Should().Be("invalid");
        row["name"]!.GetValue<string>().Should().Be("Windows 11");
    }

    [Theory]
    [InlineData("Segmentation fault")]
    [InlineData("[{\"a\": ")]
    [InlineData("[1, 2]")]
    [InlineData("\"text\"")]
    public void Output_that_is_not_a_list_of_objects_is_a_typed_error_quoting_it(string output)
    {
        var act = () => PrlctlJson.ParseObjects(output, New);
        act.Should().Throw<VirtuozzoException>().WithMessage("*prlctl*");
    }

    [Fact]
    public void Text_after_the_document_is_ignored()
        => PrlctlJson.ParseObjects(PrlctlFixtures.ListAllReconstructed + "trailing garbage {", New).Should().ContainSingle();

    [Fact]
    public void Deeply_nested_input_is_refused_not_overflowed()
    {
        var deep = new string('[', 5000) + new string(']', 5000);
        var act = () => PrlctlJson.ParseObjects(deep, New);
        act.Should().Throw<VirtuozzoException>();
    }

    [Fact]
    public void Repaired_legacy_output_round_trips_as_valid_JSON()
    {
        var raw = PrlctlFixtures.Ct("ccefa40c-5c72-4e17-94c7-d68034a1c1a5", "web1", "running", description: "\"quoted\" start, end \"");
        var repaired = PrlctlJson.Repair(raw, raw.IndexOf('['), legacy: true);
        var act = () => JsonNode.Parse(repaired);
        act.Should().NotThrow();
    }
}
