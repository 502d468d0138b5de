/// A layer upload session began: the answer to InitiateLayerUpload.
@FieldRecord
public struct UploadInitiated: EventPayload, RepositoryScoped {
    public static let type = EventType.uploadInitiated
    public var event: Event { .uploadInitiated(self) }

    public let uploadId: String
    public let partSize: UInt64
    public let registryId: String
    public let repositoryName: String
    public let initiatedAt: Timestamp

    enum FieldTag: UInt64 { case uploadId = 1, partSize, registryId, repositoryName, initiatedAt }
}

/// An upload session ended without a layer.
@FieldRecord
public struct UploadAborted: EventPayload, RepositoryScoped {
    public enum Reason: String, FieldEnumeration, CaseIterable {
        /// Its repository was deleted (forced or not: uploads in progress never block a delete).
        case repositoryDeleted
        /// Its client ended it (a registry client's `DELETE` of the upload session).
        case cancelled
        /// Its bytes were a layer the repository already held (a registry client pushing a blob
        /// again): the session ends as the client asked, and the layer stays as it was.
        case layerAlreadyExists
    }

    public static let type = EventType.uploadAborted
    public var event: Event { .uploadAborted(self) }

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    public let reason: Reason

    enum FieldTag: UInt64 { case uploadId = 1, registryId, repositoryName, reason }
}

/// An upload session ended because nothing happened to it for too long. Decided and recorded by
/// the sweeper when it runs; replay never decides expiry again, it only reads this event.
@FieldRecord
public struct UploadExpired: EventPayload, RepositoryScoped {
    public static let type = EventType.uploadExpired
    public var event: Event { .uploadExpired(self) }

    public let uploadId: String
    public let registryId: String
    public let repositoryName: String
    /// The session's last activity, which the sweeper judged too old.
    public let lastActivityAt: Timestamp

    enum FieldTag: UInt64 { case uploadId = 1, registryId, repositoryName, lastActivityAt }
}
