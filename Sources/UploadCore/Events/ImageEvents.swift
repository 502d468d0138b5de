/// An image manifest was stored, and tagged when `imageTag` is present. A tag that named another
/// image of the repository moves to this one.
@FieldRecord
public struct ImagePushed: EventPayload, RepositoryScoped {
    public static let type = EventType.imagePushed
    public var event: Event { .imagePushed(self) }

    public let registryId: String
    public let repositoryName: String
    public let imageDigest: String
    public let imageTag: String?
    /// The manifest exactly as sent. Manifests are metadata (at most 4 MiB), not layer bytes.
    public let imageManifest: String
    public let imageManifestMediaType: String
    public let artifactMediaType: String?
    /// The sum of the sizes of the layers the manifest names.
    public let imageSizeInBytes: UInt64
    public let pushedAt: Timestamp

    enum FieldTag: UInt64 {
        case registryId = 1, repositoryName, imageDigest, imageTag, imageManifest, imageManifestMediaType,
             artifactMediaType, imageSizeInBytes, pushedAt
    }
}

/// A tag was removed from an image (BatchDeleteImage by tag). If it was the image's last tag,
/// an ImageDeleted follows.
@FieldRecord
public struct ImageUntagged: EventPayload, RepositoryScoped {
    public static let type = EventType.imageUntagged
    public var event: Event { .imageUntagged(self) }

    public let registryId: String
    public let repositoryName: String
    public let imageDigest: String
    public let imageTag: String

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, imageDigest, imageTag }
}

/// An image and every tag it still had were deleted.
@FieldRecord
public struct ImageDeleted: EventPayload, RepositoryScoped {
    public static let type = EventType.imageDeleted
    public var event: Event { .imageDeleted(self) }

    public let registryId: String
    public let repositoryName: String
    public let imageDigest: String

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, imageDigest }
}
