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
        w.timestamp(3, createdAt)
    }

    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 3)
        registryId = try f.string(1, "registryId")
        repositoryName = try f.string(2, "repositoryName")
        createdAt = try f.timestamp(3, "createdAt")
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
        let f = try DecodedFields(reader, record: Self.type.name, maxTag: 3)
        registryId = try f.string(1, "registryId")
        repositoryName = try f.string(2, "repositoryName")
        force = try f.bool(3, "force")
    }

    public var json: JSONValue {
        .object(sorting: [
            ("registryId", .string(registryId)),
            ("repositoryName", .string(repositoryName)),
            ("force", .bool(force)),
        ])
    }
}
