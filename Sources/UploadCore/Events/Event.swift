/// The stable numeric code and name of each event type. Codes are permanent: never reuse one.
/// See the event catalogue (`Docs.docc/EventCatalogue.md`).
public enum EventType: UInt32, Sendable, CaseIterable {
    case repositoryCreated = 1
    case repositoryDeleted = 2
    case uploadInitiated = 3
    case uploadAborted = 4
    case layerPartUploaded = 5
    case layerUploadCompleted = 6
    case imagePushed = 7
    case imageUntagged = 8
    case imageDeleted = 9
    case uploadExpired = 10

    public var name: String {
        switch self {
        case .repositoryCreated: "RepositoryCreated"
        case .repositoryDeleted: "RepositoryDeleted"
        case .uploadInitiated: "UploadInitiated"
        case .uploadAborted: "UploadAborted"
        case .layerPartUploaded: "LayerPartUploaded"
        case .layerUploadCompleted: "LayerUploadCompleted"
        case .imagePushed: "ImagePushed"
        case .imageUntagged: "ImageUntagged"
        case .imageDeleted: "ImageDeleted"
        case .uploadExpired: "UploadExpired"
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
    case layerPartUploaded(LayerPartUploaded)
    case layerUploadCompleted(LayerUploadCompleted)
    case imagePushed(ImagePushed)
    case imageUntagged(ImageUntagged)
    case imageDeleted(ImageDeleted)
    case uploadExpired(UploadExpired)

    public var payload: any EventPayload {
        switch self {
        case .repositoryCreated(let e): e
        case .repositoryDeleted(let e): e
        case .uploadInitiated(let e): e
        case .uploadAborted(let e): e
        case .layerPartUploaded(let e): e
        case .layerUploadCompleted(let e): e
        case .imagePushed(let e): e
        case .imageUntagged(let e): e
        case .imageDeleted(let e): e
        case .uploadExpired(let e): e
        }
    }

    public var type: EventType { Swift.type(of: payload).type }

    static func decode(type: EventType, version: UInt32, payload: FieldReader) throws(CodecError) -> Event {
        switch type {
        case .repositoryCreated: .repositoryCreated(try RepositoryCreated(decoding: payload, version: version))
        case .repositoryDeleted: .repositoryDeleted(try RepositoryDeleted(decoding: payload, version: version))
        case .uploadInitiated: .uploadInitiated(try UploadInitiated(decoding: payload, version: version))
        case .uploadAborted: .uploadAborted(try UploadAborted(decoding: payload, version: version))
        case .layerPartUploaded: .layerPartUploaded(try LayerPartUploaded(decoding: payload, version: version))
        case .layerUploadCompleted: .layerUploadCompleted(try LayerUploadCompleted(decoding: payload, version: version))
        case .imagePushed: .imagePushed(try ImagePushed(decoding: payload, version: version))
        case .imageUntagged: .imageUntagged(try ImageUntagged(decoding: payload, version: version))
        case .imageDeleted: .imageDeleted(try ImageDeleted(decoding: payload, version: version))
        case .uploadExpired: .uploadExpired(try UploadExpired(decoding: payload, version: version))
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
