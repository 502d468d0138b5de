/// One upload session in the current-upload-sessions view.
@FieldRecord
public struct UploadSession: FieldRecord, RepositoryScoped {
    public enum State: String, FieldEnumeration, CaseIterable {
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
    // The last accepted part (see ``lastPart``), to answer an exact retry of it as before.
    public internal(set) var lastPartFirstByte: UInt64?
    public internal(set) var lastPartLastByte: UInt64?
    public internal(set) var lastPartDigest: String?
    /// Whether some part other than the last is under ``minimumPartBytes``.
    public var hasSmallNonFinalPart = false
    /// The completed layer, once `state` is `completed`.
    public var layerDigest: String?

    enum FieldTag: UInt64 {
        case uploadId = 1, registryId, repositoryName, partSize, state, initiatedAt, initiatedPosition, lastActivityAt,
             lastPosition, bytesReceived, partCount, lastPartFirstByte, lastPartLastByte, lastPartDigest,
             hasSmallNonFinalPart, layerDigest
    }

    public static var recordName: String { "upload session" }

    /// Every part but the last must be at least this long (5 MiB).
    public static let minimumPartBytes: UInt64 = 5_242_880

    public struct PartRecord: Sendable, Equatable {
        public var firstByte: UInt64
        public var lastByte: UInt64
        public var digest: String
        public var length: UInt64 { lastByte - firstByte + 1 }
    }

    /// The last accepted part; present exactly when a part has been.
    public var lastPart: PartRecord? {
        get {
            guard let lastPartFirstByte, let lastPartLastByte, let lastPartDigest else { return nil }
            return PartRecord(firstByte: lastPartFirstByte, lastByte: lastPartLastByte, digest: lastPartDigest)
        }
        set {
            lastPartFirstByte = newValue?.firstByte
            lastPartLastByte = newValue?.lastByte
            lastPartDigest = newValue?.digest
        }
    }

    /// The last part's three fields come together, exactly when a part has been accepted, so that
    /// a record has one encoding.
    public func validate() throws(CodecError) {
        let present = [lastPartFirstByte != nil, lastPartLastByte != nil, lastPartDigest != nil]
        guard present.allSatisfy({ $0 == (partCount > 0) }) else {
            throw CodecError("\(Self.recordName) has \(partCount) parts but last-part fields \(present)")
        }
    }
}

extension UploadSession {
    init(started e: UploadInitiated, at envelope: ProjectedEvent) {
        self.init(
            uploadId: e.uploadId, registryId: e.registryId, repositoryName: e.repositoryName, partSize: e.partSize,
            state: .active, initiatedAt: e.initiatedAt, initiatedPosition: envelope.position,
            lastActivityAt: envelope.recordedAt, lastPosition: envelope.position)
    }
}

/// One repository in the per-repository view.
@FieldRecord
public struct RepositorySummary: FieldRecord, RepositoryScoped {
    public var registryId: String
    public var repositoryName: String
    public var createdAt: Timestamp
    /// The position of the repository's RepositoryCreated event.
    public var createdPosition: UInt64
    public var uploadsInitiated: UInt64 = 0
    public var activeSessions: UInt64 = 0
    public var lastActivityAt: Timestamp
    public var lastPosition: UInt64
    public var layerCount: UInt64 = 0
    public var imageCount: UInt64 = 0

    enum FieldTag: UInt64 {
        case registryId = 1, repositoryName, createdAt, createdPosition, uploadsInitiated, activeSessions, lastActivityAt,
             lastPosition, layerCount, imageCount
    }

    public static var recordName: String { "repository summary" }
}

extension RepositorySummary {
    init(created e: RepositoryCreated, at envelope: ProjectedEvent) {
        self.init(
            registryId: e.registryId, repositoryName: e.repositoryName, createdAt: e.createdAt, createdPosition: envelope.position,
            lastActivityAt: envelope.recordedAt, lastPosition: envelope.position)
    }
}

/// A layer available in a repository.
@FieldRecord
public struct LayerRecord: FieldRecord {
    public var layerDigest: String
    public var layerSize: UInt64
    public var uploadId: String
    public var completedAt: Timestamp
    /// The media type the last manifest pushed that names this blob gives it; `nil` until one does.
    public var mediaType: String?

    enum FieldTag: UInt64 { case layerDigest = 1, layerSize, uploadId, completedAt, mediaType }
    public static var recordName: String { "layer" }
}

/// An image in a repository: its manifest, exactly as pushed. Its tags and the manifest lists that
/// name it are keyed entries of their own (``ProjectionState/tags(of:in:)``,
/// ``ProjectionState/manifestLists(naming:in:)``), so that tagging an image never rewrites its
/// record, however many tags it has.
@FieldRecord
public struct ImageRecord: FieldRecord {
    public var imageDigest: String
    public var imageManifest: String
    public var imageManifestMediaType: String
    public var artifactMediaType: String?
    public var imageSizeInBytes: UInt64
    public var pushedAt: Timestamp

    // Fields 7 (tags, since the image tables) and 8 (referencedBy, since projection layout 8)
    // were retired by layout 10; never reuse their numbers.
    enum FieldTag: UInt64 {
        case imageDigest = 1, imageManifest, imageManifestMediaType, artifactMediaType, imageSizeInBytes, pushedAt
    }
    public static var recordName: String { "image" }
}

extension ImageRecord {
    /// A stored image record's bytes with its manifest (up to 4 MiB) stored empty: what listings
    /// (DescribeImages, the gallery) decode, since they show everything but the manifest. Reads
    /// `record` in place, copying only the other fields, a few hundred bytes. A record not laid
    /// out as the writer lays it out is copied whole, for the decoder to refuse.
    public static func withoutManifest(_ record: UnsafeRawBufferPointer) -> [UInt8] {
        var reader = RawFieldReader(record, 0..<record.count)
        // The digest (tag 1) is always first and the manifest (tag 2) right after it.
        guard case .some((FieldTag.imageDigest.rawValue, .bytes(let digest))) = try? reader.next(),
              case .some((FieldTag.imageManifest.rawValue, .bytes(let manifest))) = try? reader.next() else {
            return Array(record)
        }
        var writer = FieldWriter()
        writer.string(FieldTag.imageManifest.rawValue, "")
        return Array(record[..<digest.upperBound]) + writer.bytes + Array(record[manifest.upperBound...])
    }

    init(pushed e: ImagePushed) {
        self.init(
            imageDigest: e.imageDigest, imageManifest: e.imageManifest, imageManifestMediaType: e.imageManifestMediaType,
            artifactMediaType: e.artifactMediaType, imageSizeInBytes: e.imageSizeInBytes, pushedAt: e.pushedAt)
    }
}

/// A tag in a repository and the image it names.
@FieldRecord
public struct TagRecord: FieldRecord {
    public var imageDigest: String
    /// When the tag came to name this image.
    public var createdAt: Timestamp

    enum FieldTag: UInt64 { case imageDigest = 1, createdAt }
    public static var recordName: String { "tag" }
}

/// One event recorded by an SDK call that sent an `amz-sdk-invocation-id`, kept by position so
/// that the store can find a retry's original answer. The consecutive marks of one request are
/// that call's events.
@FieldRecord
public struct InvocationMark: FieldRecord {
    public var invocationId: String
    public var requestId: String
    public var recordedAt: Timestamp

    public init(invocationId: String, requestId: String, recordedAt: Timestamp) {
        self.invocationId = invocationId
        self.requestId = requestId
        self.recordedAt = recordedAt
    }

    /// The mark of an event, when its call sent an invocation id: the one place the projector
    /// and the writer's retry window both take it from.
    public init?(_ envelope: EventEnvelope) {
        guard let id = envelope.metadata.invocationId else { return nil }
        self.init(invocationId: id, requestId: envelope.metadata.requestId, recordedAt: envelope.recordedAt)
    }

    enum FieldTag: UInt64 { case invocationId = 1, requestId, recordedAt }
    public static var recordName: String { "invocationMark" }
}

// Every field, for a store that keeps records in a layout of its own and makes them only to
// write or hash them (replay's flat state).
extension UploadSession {
    package init(
        restoring uploadId: String, registryId: String, repositoryName: String, partSize: UInt64, state: State,
        initiatedAt: Timestamp, initiatedPosition: UInt64, lastActivityAt: Timestamp, lastPosition: UInt64,
        bytesReceived: UInt64, partCount: UInt64, lastPartFirstByte: UInt64?, lastPartLastByte: UInt64?,
        lastPartDigest: String?, hasSmallNonFinalPart: Bool, layerDigest: String?
    ) {
        self.init(
            uploadId: uploadId, registryId: registryId, repositoryName: repositoryName, partSize: partSize, state: state,
            initiatedAt: initiatedAt, initiatedPosition: initiatedPosition, lastActivityAt: lastActivityAt,
            lastPosition: lastPosition, bytesReceived: bytesReceived, partCount: partCount,
            lastPartFirstByte: lastPartFirstByte, lastPartLastByte: lastPartLastByte, lastPartDigest: lastPartDigest,
            hasSmallNonFinalPart: hasSmallNonFinalPart, layerDigest: layerDigest)
    }
}

extension LayerRecord {
    package init(restoring layerDigest: String, layerSize: UInt64, uploadId: String, completedAt: Timestamp, mediaType: String?) {
        self.init(layerDigest: layerDigest, layerSize: layerSize, uploadId: uploadId, completedAt: completedAt, mediaType: mediaType)
    }
}

extension InvocationMark {
    /// The record's bytes from its ids' bytes, as ``encode(into:)`` writes them, for a store that
    /// keeps the ids as bytes (replay's flat state) and need not make them strings to hash them.
    package static func encode(
        invocationId: UnsafeRawBufferPointer, requestId: UnsafeRawBufferPointer, recordedAt: Timestamp, into writer: inout FieldWriter
    ) {
        writer.bytes(FieldTag.invocationId.rawValue, invocationId)
        writer.bytes(FieldTag.requestId.rawValue, requestId)
        writer.timestamp(FieldTag.recordedAt.rawValue, recordedAt)
    }
}
