/// The stable numeric code and name of each event type. Codes are permanent: never reuse one.
/// See the event catalogue (`Docs.docc/EventCatalogue.md`).
public enum EventType: UInt32, Sendable, CaseIterable {
    case repositoryCreated = 1
    case repositoryDeleted = 2
    case uploadInitiated = 3
    case uploadAborted = 4

    public var name: String {
        switch self {
        case .repositoryCreated: "RepositoryCreated"
        case .repositoryDeleted: "RepositoryDeleted"
        case .uploadInitiated: "UploadInitiated"
        case .uploadAborted: "UploadAborted"
        }
    }
}

/// One event type's payload: its fields, canonical encoding and JSON form.
public protocol EventPayload: Sendable, Equatable {
    static var type: EventType { get }
    /// The schema version this binary writes. Older versions are upcast on decode.
    static var schemaVersion: UInt32 { get }
    func encode(into writer: inout FieldWriter)
    init(decoding reader: FieldReader, version: UInt32) throws(CodecError)
    /// The payload as a JSON object with sorted members.
    var json: JSONValue { get }
}

/// A fact that happened, decided from a command. Events are never changed once appended.
public enum Event: Sendable, Equatable {
    case repositoryCreated(RepositoryCreated)
    case repositoryDeleted(RepositoryDeleted)
    case uploadInitiated(UploadInitiated)
    case uploadAborted(UploadAborted)

    public var payload: any EventPayload {
        switch self {
        case .repositoryCreated(let e): e
        case .repositoryDeleted(let e): e
        case .uploadInitiated(let e): e
        case .uploadAborted(let e): e
        }
    }

    public var type: EventType { Swift.type(of: payload).type }

    static func decode(type: EventType, version: UInt32, payload: FieldReader) throws(CodecError) -> Event {
        switch type {
        case .repositoryCreated: .repositoryCreated(try RepositoryCreated(decoding: payload, version: version))
        case .repositoryDeleted: .repositoryDeleted(try RepositoryDeleted(decoding: payload, version: version))
        case .uploadInitiated: .uploadInitiated(try UploadInitiated(decoding: payload, version: version))
        case .uploadAborted: .uploadAborted(try UploadAborted(decoding: payload, version: version))
        }
    }
}

extension EventPayload {
    /// Refuses a version newer than this binary writes; older ones are for the payload to upcast.
    static func checkVersion(_ version: UInt32) throws(CodecError) {
        guard version >= 1, version <= schemaVersion else {
            throw CodecError("\(type.name) version \(version) is not known to this binary (it knows 1...\(schemaVersion))")
        }
    }
}
