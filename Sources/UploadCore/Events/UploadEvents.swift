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
        w.uint(5, UInt64(initiatedAt.millisecondsSinceEpoch))
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        var r = reader
        var uploadId: String?, partSize: UInt64?, registryId: String?, repositoryName: String?, initiatedAt: Int64?
        while let (tag, v) = try r.next() {
            switch tag {
            case 1: uploadId = try v.string("uploadId")
            case 2: partSize = try v.uint("partSize")
            case 3: registryId = try v.string("registryId")
            case 4: repositoryName = try v.string("repositoryName")
            case 5: initiatedAt = try v.int64("initiatedAt")
            default: throw .unknownTag(tag, in: Self.type.name)
            }
        }
        self.uploadId = try required(uploadId, "uploadId", in: Self.type.name)
        self.partSize = try required(partSize, "partSize", in: Self.type.name)
        self.registryId = try required(registryId, "registryId", in: Self.type.name)
        self.repositoryName = try required(repositoryName, "repositoryName", in: Self.type.name)
        self.initiatedAt = Timestamp(millisecondsSinceEpoch: try required(initiatedAt, "initiatedAt", in: Self.type.name))
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
        var r = reader
        var uploadId: String?, registryId: String?, repositoryName: String?, reason: Reason?
        while let (tag, v) = try r.next() {
            switch tag {
            case 1: uploadId = try v.string("uploadId")
            case 2: registryId = try v.string("registryId")
            case 3: repositoryName = try v.string("repositoryName")
            case 4:
                let raw = try v.string("reason")
                guard let known = Reason(rawValue: raw) else { throw CodecError("UploadAborted has unknown reason \(raw)") }
                reason = known
            default: throw .unknownTag(tag, in: Self.type.name)
            }
        }
        self.uploadId = try required(uploadId, "uploadId", in: Self.type.name)
        self.registryId = try required(registryId, "registryId", in: Self.type.name)
        self.repositoryName = try required(repositoryName, "repositoryName", in: Self.type.name)
        self.reason = try required(reason, "reason", in: Self.type.name)
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
