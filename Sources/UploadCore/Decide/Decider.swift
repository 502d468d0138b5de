/// What the decider needs from configuration. Recorded into the events it produces, so that replay
/// never needs it.
public struct DecisionSettings: Sendable, Equatable {
    /// The 12-digit id of the registry this coordinator serves; used when a command names none.
    public var defaultRegistryId: String
    /// The `partSize` handed out by InitiateLayerUpload.
    public var partSize: UInt64

    public static let standardPartSize: UInt64 = 10_485_760

    public init(defaultRegistryId: String, partSize: UInt64 = standardPartSize) {
        self.defaultRegistryId = defaultRegistryId
        self.partSize = partSize
    }

    /// The canonical id of the registry a command names, or `RegistryNotFoundException`.
    public func resolveRegistry(_ requested: String?) throws(CommandError) -> String {
        guard let requested, requested != defaultRegistryId else { return defaultRegistryId }
        throw CommandError(
            .registryNotFound,
            "The registry with id '\(Validation.quoted(requested))' does not exist. This coordinator serves the registry with id '\(defaultRegistryId)'; omit registryId to use it."
        )
    }
}

/// Per-command inputs that would otherwise need a clock or randomness, supplied by the writer.
public struct DecisionContext: Sendable {
    public var now: Timestamp
    /// A fresh upload id, present for commands that start an upload.
    public var newUploadId: String?

    public init(now: Timestamp, newUploadId: String? = nil) {
        self.now = now
        self.newUploadId = newUploadId
    }
}

/// Decides a valid command against current state into the events that record it.
///
/// Pure: reads `state` only, calls no clock and draws no randomness. Throws ``CommandError``
/// when the command is refused, and then nothing is written.
public enum Decider {
    public static func decide(
        _ command: Command, state: some ProjectionTables, settings: DecisionSettings, context: DecisionContext
    ) throws -> [Event] {
        switch command {
        case .createRepository(let c):
            let ref = RepositoryRef(registryId: try settings.resolveRegistry(c.registryId), repositoryName: c.repositoryName)
            guard try state.repository(ref) == nil else {
                throw CommandError(
                    .repositoryAlreadyExists,
                    "The repository with name '\(ref.repositoryName)' already exists in the registry with id '\(ref.registryId)'")
            }
            return [.repositoryCreated(RepositoryCreated(
                registryId: ref.registryId, repositoryName: ref.repositoryName, createdAt: context.now))]

        case .deleteRepository(let c):
            let ref = try existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
            let active = try state.activeUploads(in: ref)
            guard active.isEmpty || c.force else {
                throw CommandError(
                    .repositoryNotEmpty,
                    "The repository with name '\(ref.repositoryName)' in registry with id '\(ref.registryId)' has \(active.count) upload(s) in progress; use force to delete it and abort them")
            }
            let aborted = active.map {
                Event.uploadAborted(UploadAborted(
                    uploadId: $0, registryId: ref.registryId, repositoryName: ref.repositoryName, reason: .repositoryDeleted))
            }
            return aborted + [.repositoryDeleted(RepositoryDeleted(
                registryId: ref.registryId, repositoryName: ref.repositoryName, force: c.force))]

        case .initiateLayerUpload(let c):
            let ref = try existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
            guard let uploadId = context.newUploadId else {
                preconditionFailure("the writer supplies an upload id for InitiateLayerUpload")
            }
            guard try state.session(uploadId) == nil else {
                throw CommandError(.server, "The generated upload id \(uploadId) is already in use; retry the request")
            }
            return [.uploadInitiated(UploadInitiated(
                uploadId: uploadId, partSize: settings.partSize, registryId: ref.registryId,
                repositoryName: ref.repositoryName, initiatedAt: context.now))]
        }
    }

    private static func existingRepository(
        _ registryId: String?, _ name: String, state: some ProjectionTables, settings: DecisionSettings
    ) throws -> RepositoryRef {
        let ref = RepositoryRef(registryId: try settings.resolveRegistry(registryId), repositoryName: name)
        guard try state.repository(ref) != nil else {
            throw CommandError(
                .repositoryNotFound,
                "The repository with name '\(name)' does not exist in the registry with id '\(ref.registryId)'")
        }
        return ref
    }
}

extension Command {
    /// Whether deciding this command needs a fresh upload id in its ``DecisionContext``.
    public var startsUpload: Bool {
        if case .initiateLayerUpload = self { return true }
        return false
    }
}
