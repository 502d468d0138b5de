/// The stable numeric code of each event type. Codes are permanent: never reuse one.
/// See the event catalogue (`Docs.docc/EventCatalogue.md`) and "Adding an event".
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
    case layerMounted = 11
    case repositoryCatalogDataPut = 12
    case repositoryTagged = 13
    case repositoryUntagged = 14
    case registryCatalogDataPut = 15
    case repositoryPolicySet = 16
    case repositoryPolicyDeleted = 17
    case callAnswered = 18

    /// The one table from type codes to payload types, which the log decodes by.
    public var payloadType: any EventPayload.Type {
        switch self {
        case .repositoryCreated: RepositoryCreated.self
        case .repositoryDeleted: RepositoryDeleted.self
        case .uploadInitiated: UploadInitiated.self
        case .uploadAborted: UploadAborted.self
        case .layerPartUploaded: LayerPartUploaded.self
        case .layerUploadCompleted: LayerUploadCompleted.self
        case .imagePushed: ImagePushed.self
        case .imageUntagged: ImageUntagged.self
        case .imageDeleted: ImageDeleted.self
        case .uploadExpired: UploadExpired.self
        case .layerMounted: LayerMounted.self
        case .repositoryCatalogDataPut: RepositoryCatalogDataPut.self
        case .repositoryTagged: RepositoryTagged.self
        case .repositoryUntagged: RepositoryUntagged.self
        case .registryCatalogDataPut: RegistryCatalogDataPut.self
        case .repositoryPolicySet: RepositoryPolicySet.self
        case .repositoryPolicyDeleted: RepositoryPolicyDeleted.self
        case .callAnswered: CallAnswered.self
        }
    }

    /// The payload type's name, as feeds and reports show it (`UploadInitiated`).
    public var name: String { payloadType.recordName }
}

/// One event type's payload: a ``FieldRecord`` whose type code and schema version are recorded
/// with it in the log.
public protocol EventPayload: FieldRecord {
    static var type: EventType { get }
    /// The schema version this binary writes. Older versions are upcast on decode.
    static var schemaVersion: UInt32 { get }
    /// The payload as the ``Event`` the decider and projector switch over.
    var event: Event { get }
    init(decoding reader: FieldReader, version: UInt32) throws(CodecError)
}

extension EventPayload {
    public static var schemaVersion: UInt32 { 1 }

    /// Version 1 is the only one so far; a payload with older versions to upcast implements this.
    public init(decoding reader: FieldReader, version: UInt32) throws(CodecError) {
        try Self.checkVersion(version)
        try self.init(decoding: reader)
    }

    /// Refuses a version newer than this binary writes; older ones are for the payload to upcast.
    static func checkVersion(_ version: UInt32) throws(CodecError) {
        guard version >= 1, version <= schemaVersion else {
            throw CodecError("\(type.name) version \(version) is not known to this binary (it knows 1...\(schemaVersion))")
        }
    }
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
    case layerMounted(LayerMounted)
    case repositoryCatalogDataPut(RepositoryCatalogDataPut)
    case repositoryTagged(RepositoryTagged)
    case repositoryUntagged(RepositoryUntagged)
    case registryCatalogDataPut(RegistryCatalogDataPut)
    case repositoryPolicySet(RepositoryPolicySet)
    case repositoryPolicyDeleted(RepositoryPolicyDeleted)
    case callAnswered(CallAnswered)

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
        case .layerMounted(let e): e
        case .repositoryCatalogDataPut(let e): e
        case .repositoryTagged(let e): e
        case .repositoryUntagged(let e): e
        case .registryCatalogDataPut(let e): e
        case .repositoryPolicySet(let e): e
        case .repositoryPolicyDeleted(let e): e
        case .callAnswered(let e): e
        }
    }

    public var type: EventType { Swift.type(of: payload).type }

    static func decode(type: EventType, version: UInt32, payload: FieldReader) throws(CodecError) -> Event {
        try type.payloadType.init(decoding: payload, version: version).event
    }
}

/// A value that belongs to one repository, named by `registryId` and `repositoryName` fields.
public protocol RepositoryScoped {
    var registryId: String { get }
    var repositoryName: String { get }
}

extension RepositoryScoped {
    public var repository: RepositoryRef { RepositoryRef(registryId: registryId, repositoryName: repositoryName) }
}
