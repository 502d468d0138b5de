/// One upload session in the current-upload-sessions view.
public struct UploadSession: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable {
        case active
        case completed
        case aborted
        case expired
    }

    public var uploadId: String
    public var registryId: String
    public var repositoryName: String
    public var partSize: UInt64
    public var state: State
    public var initiatedAt: Timestamp
    /// The log position of the session's UploadInitiated event.
    public var initiatedPosition: UInt64
    public var lastActivityAt: Timestamp
    /// The position of the last event that changed this session.
    public var lastPosition: UInt64
    /// Bytes accepted so far; the next part must start here.
    public var bytesReceived: UInt64 = 0
    public var partCount: UInt64 = 0
    /// The last accepted part, to answer an exact retry of it as before.
    public var lastPart: PartRecord?
    /// Whether some part other than the last is under ``minimumPartBytes``.
    public var hasSmallNonFinalPart = false
    /// The completed layer, once `state` is `completed`.
    public var layerDigest: String?

    /// Every part but the last must be at least this long (5 MiB).
    public static let minimumPartBytes: UInt64 = 5_242_880

    public struct PartRecord: Sendable, Equatable {
        public var firstByte: UInt64
        public var lastByte: UInt64
        public var digest: String
        public var length: UInt64 { lastByte - firstByte + 1 }
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    /// 1 uploadId · 2 registryId · 3 repositoryName · 4 partSize · 5 state · 6 initiatedAt ·
    /// 7 initiatedPosition · 8 lastActivityAt · 9 lastPosition · 10 bytesReceived · 11 partCount ·
    /// 12 lastPart.firstByte · 13 lastPart.lastByte · 14 lastPart.digest · 15 hasSmallNonFinalPart · 16 layerDigest.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.string(1, uploadId)
        w.string(2, registryId)
        w.string(3, repositoryName)
        w.uint(4, partSize)
        w.string(5, state.rawValue)
        w.timestamp(6, initiatedAt)
        w.uint(7, initiatedPosition)
        w.timestamp(8, lastActivityAt)
        w.uint(9, lastPosition)
        w.uint(10, bytesReceived)
        w.uint(11, partCount)
        if let lastPart {
            w.uint(12, lastPart.firstByte)
            w.uint(13, lastPart.lastByte)
            w.string(14, lastPart.digest)
        }
        w.bool(15, hasSmallNonFinalPart)
        w.optionalString(16, layerDigest)
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let f = try DecodedFields(bytes, record: "upload session", maxTag: 16)
        uploadId = try f.string(1, "uploadId")
        registryId = try f.string(2, "registryId")
        repositoryName = try f.string(3, "repositoryName")
        partSize = try f.uint(4, "partSize")
        state = try f.enumeration(5, "state")
        initiatedAt = try f.timestamp(6, "initiatedAt")
        initiatedPosition = try f.uint(7, "initiatedPosition")
        lastActivityAt = try f.timestamp(8, "lastActivityAt")
        lastPosition = try f.uint(9, "lastPosition")
        bytesReceived = try f.uint(10, "bytesReceived")
        partCount = try f.uint(11, "partCount")
        if partCount > 0 {
            lastPart = PartRecord(firstByte: try f.uint(12, "lastPart.firstByte"), lastByte: try f.uint(13, "lastPart.lastByte"), digest: try f.string(14, "lastPart.digest"))
        }
        hasSmallNonFinalPart = try f.bool(15, "hasSmallNonFinalPart")
        layerDigest = try f.optionalString(16, "layerDigest")
    }

    init(started e: UploadInitiated, at envelope: EventEnvelope) {
        uploadId = e.uploadId
        registryId = e.registryId
        repositoryName = e.repositoryName
        partSize = e.partSize
        state = .active
        initiatedAt = e.initiatedAt
        initiatedPosition = envelope.position
        lastActivityAt = envelope.recordedAt
        lastPosition = envelope.position
    }

    public var json: JSONValue {
        .object(sorting: [
            ("uploadId", .string(uploadId)), ("registryId", .string(registryId)),
            ("repositoryName", .string(repositoryName)), ("partSize", .uint(partSize)),
            ("state", .string(state.rawValue)), ("initiatedAt", .string(initiatedAt.iso8601)),
            ("initiatedPosition", .uint(initiatedPosition)), ("lastActivityAt", .string(lastActivityAt.iso8601)),
            ("lastPosition", .uint(lastPosition)), ("bytesReceived", .uint(bytesReceived)), ("partCount", .uint(partCount)),
            ("layerDigest", layerDigest.map(JSONValue.string)),
        ])
    }
}

/// One repository in the per-repository view.
public struct RepositorySummary: Sendable, Equatable {
    public var registryId: String
    public var repositoryName: String
    public var createdAt: Timestamp
    /// The position of the repository's RepositoryCreated event.
    public var createdPosition: UInt64
    public var uploadsInitiated: UInt64
    public var activeSessions: UInt64
    public var lastActivityAt: Timestamp
    public var lastPosition: UInt64
    public var layerCount: UInt64 = 0
    public var imageCount: UInt64 = 0

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    /// 1 registryId · 2 repositoryName · 3 createdAt · 4 createdPosition · 5 uploadsInitiated ·
    /// 6 activeSessions · 7 lastActivityAt · 8 lastPosition · 9 layerCount · 10 imageCount.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.string(1, registryId)
        w.string(2, repositoryName)
        w.timestamp(3, createdAt)
        w.uint(4, createdPosition)
        w.uint(5, uploadsInitiated)
        w.uint(6, activeSessions)
        w.timestamp(7, lastActivityAt)
        w.uint(8, lastPosition)
        w.uint(9, layerCount)
        w.uint(10, imageCount)
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let f = try DecodedFields(bytes, record: "repository summary", maxTag: 10)
        registryId = try f.string(1, "registryId")
        repositoryName = try f.string(2, "repositoryName")
        createdAt = try f.timestamp(3, "createdAt")
        createdPosition = try f.uint(4, "createdPosition")
        uploadsInitiated = try f.uint(5, "uploadsInitiated")
        activeSessions = try f.uint(6, "activeSessions")
        lastActivityAt = try f.timestamp(7, "lastActivityAt")
        lastPosition = try f.uint(8, "lastPosition")
        layerCount = try f.uint(9, "layerCount")
        imageCount = try f.uint(10, "imageCount")
    }

    init(created e: RepositoryCreated, at envelope: EventEnvelope) {
        registryId = e.registryId
        repositoryName = e.repositoryName
        createdAt = e.createdAt
        createdPosition = envelope.position
        uploadsInitiated = 0
        activeSessions = 0
        lastActivityAt = envelope.recordedAt
        lastPosition = envelope.position
    }

    public var json: JSONValue {
        .object(sorting: [
            ("registryId", .string(registryId)), ("repositoryName", .string(repositoryName)),
            ("createdAt", .string(createdAt.iso8601)), ("createdPosition", .uint(createdPosition)),
            ("uploadsInitiated", .uint(uploadsInitiated)), ("activeSessions", .uint(activeSessions)),
            ("lastActivityAt", .string(lastActivityAt.iso8601)), ("lastPosition", .uint(lastPosition)),
            ("layerCount", .uint(layerCount)), ("imageCount", .uint(imageCount)),
        ])
    }
}

/// A layer available in a repository.
public struct LayerRecord: Sendable, Equatable {
    public var layerDigest: String
    public var layerSize: UInt64
    public var uploadId: String
    public var completedAt: Timestamp

    /// 1 layerDigest · 2 layerSize · 3 uploadId · 4 completedAt.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.string(1, layerDigest)
        w.uint(2, layerSize)
        w.string(3, uploadId)
        w.timestamp(4, completedAt)
        return w.bytes
    }

    public init(layerDigest: String, layerSize: UInt64, uploadId: String, completedAt: Timestamp) {
        self.layerDigest = layerDigest
        self.layerSize = layerSize
        self.uploadId = uploadId
        self.completedAt = completedAt
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let f = try DecodedFields(bytes, record: "layer", maxTag: 4)
        layerDigest = try f.string(1, "layerDigest")
        layerSize = try f.uint(2, "layerSize")
        uploadId = try f.string(3, "uploadId")
        completedAt = try f.timestamp(4, "completedAt")
    }
}

/// An image in a repository: its manifest, exactly as pushed, and its tags.
public struct ImageRecord: Sendable, Equatable {
    public var imageDigest: String
    public var imageManifest: String
    public var imageManifestMediaType: String
    public var artifactMediaType: String?
    public var imageSizeInBytes: UInt64
    public var pushedAt: Timestamp
    /// Sorted.
    public var tags: [String]

    /// 1 imageDigest · 2 imageManifest · 3 imageManifestMediaType · 4 artifactMediaType ·
    /// 5 imageSizeInBytes · 6 pushedAt · 7 tags.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.string(1, imageDigest)
        w.string(2, imageManifest)
        w.string(3, imageManifestMediaType)
        w.optionalString(4, artifactMediaType)
        w.uint(5, imageSizeInBytes)
        w.timestamp(6, pushedAt)
        w.strings(7, tags)
        return w.bytes
    }

    init(pushed e: ImagePushed) {
        imageDigest = e.imageDigest
        imageManifest = e.imageManifest
        imageManifestMediaType = e.imageManifestMediaType
        artifactMediaType = e.artifactMediaType
        imageSizeInBytes = e.imageSizeInBytes
        pushedAt = e.pushedAt
        tags = []
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let f = try DecodedFields(bytes, record: "image", maxTag: 7)
        imageDigest = try f.string(1, "imageDigest")
        imageManifest = try f.string(2, "imageManifest")
        imageManifestMediaType = try f.string(3, "imageManifestMediaType")
        artifactMediaType = try f.optionalString(4, "artifactMediaType")
        imageSizeInBytes = try f.uint(5, "imageSizeInBytes")
        pushedAt = try f.timestamp(6, "pushedAt")
        tags = try f.strings(7, "tags")
    }
}

/// A tag in a repository and the image it names.
public struct TagRecord: Sendable, Equatable {
    public var imageDigest: String
    /// When the tag came to name this image.
    public var createdAt: Timestamp

    /// 1 imageDigest · 2 createdAt.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.string(1, imageDigest)
        w.timestamp(2, createdAt)
        return w.bytes
    }

    public init(imageDigest: String, createdAt: Timestamp) {
        self.imageDigest = imageDigest
        self.createdAt = createdAt
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let f = try DecodedFields(bytes, record: "tag", maxTag: 2)
        imageDigest = try f.string(1, "imageDigest")
        createdAt = try f.timestamp(2, "createdAt")
    }
}

/// The events one SDK call (one `amz-sdk-invocation-id`) recorded: positions `first ..< first + count`,
/// all from the request `requestId`.
public struct InvocationRecord: Sendable, Equatable {
    public var firstPosition: UInt64
    public var count: UInt64
    public var requestId: String

    public init(firstPosition: UInt64, count: UInt64, requestId: String) {
        self.firstPosition = firstPosition
        self.count = count
        self.requestId = requestId
    }

    /// 1 firstPosition · 2 count · 3 requestId.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.uint(1, firstPosition)
        w.uint(2, count)
        w.string(3, requestId)
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let f = try DecodedFields(bytes, record: "invocation", maxTag: 3)
        firstPosition = try f.uint(1, "firstPosition")
        count = try f.uint(2, "count")
        requestId = try f.string(3, "requestId")
    }
}
