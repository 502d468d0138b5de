/// One upload session in the current-upload-sessions view.
public struct UploadSession: Sendable, Equatable {
    public enum State: String, Sendable, CaseIterable {
        case active
        case aborted
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

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    /// 1 uploadId · 2 registryId · 3 repositoryName · 4 partSize · 5 state · 6 initiatedAt ·
    /// 7 initiatedPosition · 8 lastActivityAt · 9 lastPosition.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.string(1, uploadId)
        w.string(2, registryId)
        w.string(3, repositoryName)
        w.uint(4, partSize)
        w.string(5, state.rawValue)
        w.uint(6, UInt64(initiatedAt.millisecondsSinceEpoch))
        w.uint(7, initiatedPosition)
        w.uint(8, UInt64(lastActivityAt.millisecondsSinceEpoch))
        w.uint(9, lastPosition)
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let name = "upload session"
        var r = FieldReader(bytes)
        var s: [UInt64: FieldReader.Value] = [:]
        while let (tag, v) = try r.next() {
            guard (1...9).contains(tag) else { throw .unknownTag(tag, in: name) }
            s[tag] = v
        }
        func field(_ tag: UInt64, _ label: String) throws(CodecError) -> FieldReader.Value {
            try required(s[tag], label, in: name)
        }
        uploadId = try field(1, "uploadId").string("uploadId")
        registryId = try field(2, "registryId").string("registryId")
        repositoryName = try field(3, "repositoryName").string("repositoryName")
        partSize = try field(4, "partSize").uint("partSize")
        let rawState = try field(5, "state").string("state")
        guard let state = State(rawValue: rawState) else { throw CodecError("\(name) has unknown state \(rawState)") }
        self.state = state
        initiatedAt = Timestamp(millisecondsSinceEpoch: try field(6, "initiatedAt").int64("initiatedAt"))
        initiatedPosition = try field(7, "initiatedPosition").uint("initiatedPosition")
        lastActivityAt = Timestamp(millisecondsSinceEpoch: try field(8, "lastActivityAt").int64("lastActivityAt"))
        lastPosition = try field(9, "lastPosition").uint("lastPosition")
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
            ("lastPosition", .uint(lastPosition)),
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

    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }

    /// 1 registryId · 2 repositoryName · 3 createdAt · 4 createdPosition · 5 uploadsInitiated ·
    /// 6 activeSessions · 7 lastActivityAt · 8 lastPosition.
    public func encoded() -> [UInt8] {
        var w = FieldWriter()
        w.string(1, registryId)
        w.string(2, repositoryName)
        w.uint(3, UInt64(createdAt.millisecondsSinceEpoch))
        w.uint(4, createdPosition)
        w.uint(5, uploadsInitiated)
        w.uint(6, activeSessions)
        w.uint(7, UInt64(lastActivityAt.millisecondsSinceEpoch))
        w.uint(8, lastPosition)
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) {
        let name = "repository summary"
        var r = FieldReader(bytes)
        var s: [UInt64: FieldReader.Value] = [:]
        while let (tag, v) = try r.next() {
            guard (1...8).contains(tag) else { throw .unknownTag(tag, in: name) }
            s[tag] = v
        }
        func field(_ tag: UInt64, _ label: String) throws(CodecError) -> FieldReader.Value {
            try required(s[tag], label, in: name)
        }
        registryId = try field(1, "registryId").string("registryId")
        repositoryName = try field(2, "repositoryName").string("repositoryName")
        createdAt = Timestamp(millisecondsSinceEpoch: try field(3, "createdAt").int64("createdAt"))
        createdPosition = try field(4, "createdPosition").uint("createdPosition")
        uploadsInitiated = try field(5, "uploadsInitiated").uint("uploadsInitiated")
        activeSessions = try field(6, "activeSessions").uint("activeSessions")
        lastActivityAt = Timestamp(millisecondsSinceEpoch: try field(7, "lastActivityAt").int64("lastActivityAt"))
        lastPosition = try field(8, "lastPosition").uint("lastPosition")
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
        ])
    }
}
