using Virtuozzo.Sdk.Core;
using Virtuozzo.Sdk.Vm;

namespace HostingPanel;

/// <summary>An image a customer may create a VM from: a QCOW2 file of the images directory, or the directly booted test guest.</summary>
/// <param name="Name">What the customer picks: the file name (<c>debian-12.qcow2</c>) or <c>test-guest</c>.</param>
/// <param name="Kind"><c>disk</c> (copied into the VM as its first disk) or <c>kernel</c> (booted directly, no disk).</param>
/// <param name="SizeBytes">The image file's size on disk (null for a kernel).</param>
public sealed record PanelImage(string Name, string Kind, long? SizeBytes);

/// <summary>
/// The images the administrator offers (<c>Panel:ImagesDirectory</c>, <c>Panel:TestGuest</c>). A customer names an image by
/// its file name only; the name is looked up in this listing, so no path from a request ever reaches the file system.
/// </summary>
public sealed class ImageCatalog(PanelOptions options)
{
    /// <summary>The name under which the configured direct-kernel-boot guest is offered (not a file name: it has no .qcow2).</summary>
    public const string TestGuestName = "test-guest";

    /// <summary>What the administrator offers now, by name.</summary>
    public IReadOnlyList<PanelImage> List()
    {
        var images = new List<PanelImage>();
        if (options.ImagesDirectory is { Length: > 0 } dir && Directory.Exists(dir))
        {
            foreach (var file in Directory.EnumerateFiles(dir, "*.qcow2", SearchOption.TopDirectoryOnly).Order(StringComparer.Ordinal))
                images.Add(new PanelImage(Path.GetFileName(file), "disk", new FileInfo(file).Length));
        }
        if (options.TestGuest is { KernelPath: { } kernel, InitrdPath: { } initrd } && File.Exists(kernel) && File.Exists(initrd))
            images.Add(new PanelImage(TestGuestName, "kernel", null));
        return images;
    }

    /// <summary>The offered image of that exact name, or null (for a name that is not listed, a path, or nothing).</summary>
    public PanelImage? Find(string? name)
        => string.IsNullOrEmpty(name) || name.Length > 255 ? null : List().FirstOrDefault(i => string.Equals(i.Name, name, StringComparison.Ordinal));

    /// <summary>The creation options that boot <paramref name="image"/>, which must be on offer now (<see cref="List"/>).</summary>
    /// <exception cref="ArgumentException">The image is not one of those on offer.</exception>
    public VmCreateOptions Apply(VmCreateOptions vm, PanelImage image)
    {
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(image);
        if (Find(image.Name) is not { } offered || offered.Kind != image.Kind)
            throw new ArgumentException($"'{image.Name}' is not one of the images on offer.", nameof(image));
        return offered.Kind == "kernel"
            ? vm with { KernelPath = options.TestGuest!.KernelPath, InitrdPath = options.TestGuest.InitrdPath, KernelCommandLine = options.TestGuest.CommandLine }
            : vm with { Disks = [new VmDiskOptions { SourceImagePath = Path.Combine(options.ImagesDirectory!, offered.Name) }] };
    }
}

/// <summary>The VM part of the JSON API: the images on offer and creating a VM from one (the rest is the same for every VE).</summary>
public static class PanelVmApi
{
    public sealed record CreateVmRequest(string? Name, string? Image, string? Memory, int? Cpus);

    public static void MapPanelVmApi(this WebApplication app)
    {
        var api = app.MapGroup("/api").RequireAuthorization().AddEndpointFilter(PanelApi.CsrfFilter).WithTags("panel");

        api.MapGet("/images", (ImageCatalog images) => images.List());

        #region Snippet:PanelCreateVm
        api.MapPost("/vms", async (CreateVmRequest req, Tenancy t, VirtualMachineClient vms, ImageCatalog images, PanelOptions options, OwnershipStore owners, CancellationToken ct) =>
        {
            // Everything is checked before anything is created. The image is a name from the administrator's listing:
            // a path, a file outside the directory or a name not offered is a 400 like any other bad field.
            var errors = new Dictionary<string, string[]>();
            if (VeName.Validate(req.Name) is { } nameError)
                errors["name"] = [nameError];
            var memory = PanelApi.ParseMemory(req.Memory ?? "512M", errors);
            if (req.Cpus is < 1 or > 64)
                errors["cpus"] = ["CPUs must be between 1 and 64."];
            var image = images.Find(req.Image);
            if (image is null)
                errors["image"] = [$"'{req.Image}' is not one of the images on offer (GET /api/images lists them)."];
            if (errors.Count > 0)
                return Results.ValidationProblem(errors);

            return await PanelApi.Guard(async () => await vms.CreateAsync(images.Apply(new VmCreateOptions
            {
                Name = new VeName(req.Name!),
                MemorySize = memory,
                Cpus = req.Cpus ?? 1,
                Network = options.VmNetwork,
            }, image!), ct), vm =>
            {
                owners.Assign(vm.Id, t.Name);
                return Results.Created($"/api/ves/{vm.Id}", ToDto(vm, image!));
            });
        });
        #endregion
    }

    internal static object ToDto(VmInfo vm, PanelImage image) => new
    {
        Id = vm.Id.ToString(), Name = vm.Name.Value, Kind = vm.Kind.ToString(), State = vm.State.ToString(), vm.Cpus,
        Memory = vm.MemorySize.ToHumanString(), MemoryBytes = vm.MemorySize.Bytes, Disk = vm.DiskSize.ToHumanString(),
        Image = image.Name, Disks = vm.Disks.Select(d => new { d.Name, SizeBytes = d.Size.Bytes }),
    };
}
