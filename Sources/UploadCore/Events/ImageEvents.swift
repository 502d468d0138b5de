/// An image manifest was stored, and tagged when `imageTag` is present. A tag that named another
/// image of the repository moves to this one.
public struct ImagePushed: EventPayload {
    public static let type = EventType.imagePushed
    public static let schemaVersion: UInt32 = 1

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

    public init(
        registryId: String, repositoryName: String, imageDigest: String, imageTag: String?, imageManifest: String,
        imageManifestMediaType: String, artifactMediaType: String?, imageSizeInBytes: UInt64, pushedAt: Timestamp
    ) {
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.imageDigest = imageDigest
        self.imageTag = imageTag
        self.imageManifest = imageManifest
        self.imageManifestMediaType = imageManifestMediaType
        self.artifactMediaType = artifactMediaType
        self.imageSizeInBytes = imageSizeInBytes
        self.pushedAt = pushedAt
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, registryId)
        w.string(2, repositoryName)
        w.string(3, imageDigest)
        w.optionalString(4, imageTag)
        w.string(5, imageManifest)
        w.string(6, imageManifestMediaType)
        w.optionalString(7, artifactMediaType)
        w.uint(8, imageSizeInBytes)
        w.timestamp(9, pushedAt)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 9)
        registryId = try f.string(1, "registryId")
        repositoryName = try f.string(2, "repositoryName")
        imageDigest = try f.string(3, "imageDigest")
        imageTag = try f.optionalString(4, "imageTag")
        imageManifest = try f.string(5, "imageManifest")
        imageManifestMediaType = try f.string(6, "imageManifestMediaType")
        artifactMediaType = try f.optionalString(7, "artifactMediaType")
        imageSizeInBytes = try f.uint(8, "imageSizeInBytes")
        pushedAt = try f.timestamp(9, "pushedAt")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("registryId", .string(registryId)), ("repositoryName", .string(repositoryName)),
            ("imageDigest", .string(imageDigest)), ("imageTag", imageTag.map(JSONValue.string)),
            ("imageManifest", .string(imageManifest)), ("imageManifestMediaType", .string(imageManifestMediaType)),
            ("artifactMediaType", artifactMediaType.map(JSONValue.string)), ("imageSizeInBytes", .uint(imageSizeInBytes)),
            ("pushedAt", .string(pushedAt.iso8601)),
        ])
    }
}

/// A tag was removed from an image (BatchDeleteImage by tag). If it was the image's last tag,
/// an ImageDeleted follows.
public struct ImageUntagged: EventPayload {
    public static let type = EventType.imageUntagged
    public static let schemaVersion: UInt32 = 1

    public let registryId: String
    public let repositoryName: String
    public let imageDigest: String
    public let imageTag: String

    public init(registryId: String, repositoryName: String, imageDigest: String, imageTag: String) {
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.imageDigest = imageDigest
        self.imageTag = imageTag
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, registryId)
        w.string(2, repositoryName)
        w.string(3, imageDigest)
        w.string(4, imageTag)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 4)
        registryId = try f.string(1, "registryId")
        repositoryName = try f.string(2, "repositoryName")
        imageDigest = try f.string(3, "imageDigest")
        imageTag = try f.string(4, "imageTag")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("registryId", .string(registryId)), ("repositoryName", .string(repositoryName)),
            ("imageDigest", .string(imageDigest)), ("imageTag", .string(imageTag)),
        ])
    }
}

/// An image and every tag it still had were deleted.
public struct ImageDeleted: EventPayload {
    public static let type = EventType.imageDeleted
    public static let schemaVersion: UInt32 = 1

    public let registryId: String
    public let repositoryName: String
    public let imageDigest: String

    public init(registryId: String, repositoryName: String, imageDigest: String) {
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.imageDigest = imageDigest
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, registryId)
        w.string(2, repositoryName)
        w.string(3, imageDigest)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 3)
        registryId = try f.string(1, "registryId")
        repositoryName = try f.string(2, "repositoryName")
        imageDigest = try f.string(3, "imageDigest")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("registryId", .string(registryId)), ("repositoryName", .string(repositoryName)), ("imageDigest", .string(imageDigest)),
        ])
    }
}
