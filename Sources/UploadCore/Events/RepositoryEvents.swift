/// A repository came into being in a registry.
public struct RepositoryCreated: EventPayload {
    public static let type = EventType.repositoryCreated
    public static let schemaVersion: UInt32 = 1

    public let registryId: String
    public let repositoryName: String
    public let createdAt: Timestamp

    public init(registryId: String, repositoryName: String, createdAt: Timestamp) {
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.createdAt = createdAt
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, registryId)
        w.string(2, repositoryName)
        w.uint(3, UInt64(createdAt.millisecondsSinceEpoch))
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        var r = reader
        var registryId: String?, repositoryName: String?, createdAt: Int64?
        while let (tag, v) = try r.next() {
            switch tag {
            case 1: registryId = try v.string("registryId")
            case 2: repositoryName = try v.string("repositoryName")
            case 3: createdAt = try v.int64("createdAt")
            default: throw .unknownTag(tag, in: Self.type.name)
            }
        }
        self.registryId = try required(registryId, "registryId", in: Self.type.name)
        self.repositoryName = try required(repositoryName, "repositoryName", in: Self.type.name)
        self.createdAt = Timestamp(millisecondsSinceEpoch: try required(createdAt, "createdAt", in: Self.type.name))
    }

    public var json: JSONValue {
        .object(sorting: [
            ("registryId", .string(registryId)),
            ("repositoryName", .string(repositoryName)),
            ("createdAt", .string(createdAt.iso8601)),
        ])
    }
}

/// A repository was deleted. Uploads it still had were aborted by ``UploadAborted`` events
/// appended just before this one, in the same transaction.
public struct RepositoryDeleted: EventPayload {
    public static let type = EventType.repositoryDeleted
    public static let schemaVersion: UInt32 = 1

    public let registryId: String
    public let repositoryName: String
    public let force: Bool

    public init(registryId: String, repositoryName: String, force: Bool) {
        self.registryId = registryId
        self.repositoryName = repositoryName
        self.force = force
    }

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    public func encode(into w: inout FieldWriter) {
        w.string(1, registryId)
        w.string(2, repositoryName)
        w.bool(3, force)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        var r = reader
        var registryId: String?, repositoryName: String?, force: Bool?
        while let (tag, v) = try r.next() {
            switch tag {
            case 1: registryId = try v.string("registryId")
            case 2: repositoryName = try v.string("repositoryName")
            case 3: force = try v.bool("force")
            default: throw .unknownTag(tag, in: Self.type.name)
            }
        }
        self.registryId = try required(registryId, "registryId", in: Self.type.name)
        self.repositoryName = try required(repositoryName, "repositoryName", in: Self.type.name)
        self.force = try required(force, "force", in: Self.type.name)
    }

    public var json: JSONValue {
        .object(sorting: [
            ("registryId", .string(registryId)),
            ("repositoryName", .string(repositoryName)),
            ("force", .bool(force)),
        ])
    }
}
