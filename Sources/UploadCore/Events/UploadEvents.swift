/// A layer upload session began: the answer to InitiateLayerUpload.
public struct UploadInitiated: EventPayload {
    public static let type = EventType.uploadInitiated
    public static let schemaVersion: UInt32 = 1

    public let uploadId: String
    public let partSize: UInt64
    public let registryId: String
    public let repositoryName: String
    public let initiatedAt: Timestamp

    public init(uploadId: String, partSize: UInt64, registryId: String, repositoryName: String, initiatedAt: Timestamp) {
        self.uploadId = uploadId
        self.partSize = partSize
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.initiatedAt = initiatedAt
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, uploadId)
        w.uint(2, partSize)
        w.string(3, registryId)
        w.string(4, repositoryName)
        w.timestamp(5, initiatedAt)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 5)
        uploadId = try f.string(1, "uploadId")
        partSize = try f.uint(2, "partSize")
        registryId = try f.string(3, "registryId")
        repositoryName = try f.string(4, "repositoryName")
        initiatedAt = try f.timestamp(5, "initiatedAt")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("uploadId", .string(uploadId)),
            ("partSize", .uint(partSize)),
            ("registryId", .string(registryId)),
            ("repositoryName", .string(repositoryName)),
            ("initiatedAt", .string(initiatedAt.iso8601)),
        ])
    }
}

/// An upload session ended without a layer.
public struct UploadAborted: EventPayload {
    public enum Reason: String, Sendable, CaseIterable {
        /// Its repository was deleted with `force`.
        case repositoryDeleted
    }

    public static let type = EventType.uploadAborted
    public static let schemaVersion: UInt32 = 1

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    public let reason: Reason

    public init(uploadId: String, registryId: String, repositoryName: String, reason: Reason) {
        self.uploadId = uploadId
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.reason = reason
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, uploadId)
        w.string(2, registryId)
        w.string(3, repositoryName)
        w.string(4, reason.rawValue)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 4)
        uploadId = try f.string(1, "uploadId")
        registryId = try f.string(2, "registryId")
        repositoryName = try f.string(3, "repositoryName")
        reason = try f.enumeration(4, "reason")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("uploadId", .string(uploadId)),
            ("registryId", .string(registryId)),
            ("repositoryName", .string(repositoryName)),
            ("reason", .string(reason.rawValue)),
        ])
    }
}

/// An upload session ended because nothing happened to it for too long. Decided and recorded by
/// the sweeper when it runs; replay never decides expiry again, it only reads this event.
public struct UploadExpired: EventPayload {
    public static let type = EventType.uploadExpired
    public static let schemaVersion: UInt32 = 1

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    /// The session's last activity, which the sweeper judged too old.
    public let lastActivityAt: Timestamp

    public init(uploadId: String, registryId: String, repositoryName: String, lastActivityAt: Timestamp) {
        self.uploadId = uploadId
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.lastActivityAt = lastActivityAt
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, uploadId)
        w.string(2, registryId)
        w.string(3, repositoryName)
        w.timestamp(4, lastActivityAt)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 4)
        uploadId = try f.string(1, "uploadId")
        registryId = try f.string(2, "registryId")
        repositoryName = try f.string(3, "repositoryName")
        lastActivityAt = try f.timestamp(4, "lastActivityAt")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("uploadId", .string(uploadId)), ("registryId", .string(registryId)),
            ("repositoryName", .string(repositoryName)), ("lastActivityAt", .string(lastActivityAt.iso8601)),
        ])
    }
}
