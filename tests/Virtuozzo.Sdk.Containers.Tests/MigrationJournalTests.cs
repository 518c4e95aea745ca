using Virtuozzo.Sdk.Containers.Runtime.Local;

namespace Virtuozzo.Sdk.Containers.Tests;

/// <summary>What reconcile does with a container that a killed migration left behind.</summary>
public class MigrationJournalTests
{
    [Fact]
    public void Nothing_is_done_without_a_journal()
        => MigrationJournal.Decide(false, false, false, false, true).Should().Be(MigrationRecovery.None);

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void A_migration_whose_process_still_lives_is_left_alone(bool outgoing, bool incoming)
        => MigrationJournal.Decide(outgoing, incoming, ownerAlive: true, processesRunning: false, imagesComplete: true).Should().Be(MigrationRecovery.InProgress);

    [Fact]
    public void After_the_dump_with_complete_images_the_source_restores_them()
        => MigrationJournal.Decide(true, false, false, processesRunning: false, imagesComplete: true).Should().Be(MigrationRecovery.RestoreFromImages);

    [Fact]
    public void After_the_processes_stopped_without_complete_images_the_source_starts_from_its_disk()
        => MigrationJournal.Decide(true, false, false, processesRunning: false, imagesComplete: false).Should().Be(MigrationRecovery.ColdStart);

    [Fact]
    public void A_kill_before_the_dump_ended_the_processes_only_forgets_the_journal()
        => MigrationJournal.Decide(true, false, false, processesRunning: true, imagesComplete: false).Should().Be(MigrationRecovery.ForgetJournal);

    [Theory]
    [InlineData(false, false)] // killed while the disk or the images arrived
    [InlineData(true, true)] // killed after the restore there, before the source committed: the source brought its copy back
    public void A_receive_whose_process_died_is_discarded_on_the_destination(bool processesRunning, bool imagesComplete)
        => MigrationJournal.Decide(false, true, ownerAlive: false, processesRunning, imagesComplete).Should().Be(MigrationRecovery.DiscardIncoming);
}
