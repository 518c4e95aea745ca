namespace Virtuozzo.Sdk.Core;

/// <summary>
/// Progress of a long operation (convert, backup, restore, migrate), reported through <see cref="IProgress{T}"/>.
/// </summary>
/// <param name="Stage">What is being done now, in a few words (for example "copying disk").</param>
/// <param name="Completed">Units done so far (bytes unless the stage says otherwise).</param>
/// <param name="Total">Units in all, or null when unknown.</param>
public readonly record struct OperationProgress(string Stage, long Completed, long? Total)
{
    /// <summary>Completion between 0 and 1, or null when the total is unknown.</summary>
    public double? Fraction => Total is > 0 ? Math.Clamp((double)Completed / Total.Value, 0, 1) : Total == 0 ? 1 : null;
}
