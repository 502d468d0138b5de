/// A repository came into being in a registry.
@FieldRecord
public struct RepositoryCreated: EventPayload, RepositoryScoped {
    public static let type = EventType.repositoryCreated
    public var event: Event { .repositoryCreated(self) }

    public let registryId: String
    public let repositoryName: String
    public let createdAt: Timestamp

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, createdAt }
}

/// A repository was deleted. Uploads it still had were aborted by ``UploadAborted`` events
/// appended just before this one, in the same transaction.
@FieldRecord
public struct RepositoryDeleted: EventPayload, RepositoryScoped {
    public static let type = EventType.repositoryDeleted
    public var event: Event { .repositoryDeleted(self) }

    public let registryId: String
    public let repositoryName: String
    public let force: Bool
    /// When the deleted repository was created, so that a retried DeleteRepository answers it
    /// from the log; absent in events recorded before it was kept.
    public let createdAt: Timestamp?

    enum FieldTag: UInt64 { case registryId = 1, repositoryName, force, createdAt }
}
