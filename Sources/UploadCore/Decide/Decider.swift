/// What the decider needs from configuration. Recorded into the events it produces, so that replay
/// never needs it.
public struct DecisionSettings: Sendable, Equatable {
    /// The 12-digit id of the registry this coordinator serves; used when a command names none.
    public var defaultRegistryId: String
    /// Another name the registry answers to (RegistryIdOrAlias); `r<registryId>` when not configured.
    public var registryAlias: String?

    /// The alias the registry answers to (a request's registryId) and DescribeRegistries lists.
    public var alias: String { registryAlias ?? "r" + defaultRegistryId }
    /// The `partSize` handed out by InitiateLayerUpload.
    public var partSize: UInt64
    /// The most parts one upload may have (ECR Public's quota).
    public var maximumParts: UInt64 = 1000
    /// The most chunks one registry upload may have: each is an event, and a client that sent a
    /// layer a byte at a time would otherwise fill the log. Far past any client's (docker, skopeo
    /// and containerd send a layer in one; 10 GiB in 5 MiB chunks is 2,048).
    public var maximumRegistryChunks: UInt64 = 10_000
    /// The most uploads in progress one repository may have; more is `LimitExceededException`.
    public var maximumActiveUploadsPerRepository: UInt64 = 10_000

    public static let standardPartSize: UInt64 = 10_485_760
    /// The largest `partSize` to hand out: 1 GiB, far past the 20 MiB one request can carry, and
    /// small enough that no sum of parts can overflow.
    public static let largestPartSize: UInt64 = 1 << 30

    public init(defaultRegistryId: String, registryAlias: String? = nil, partSize: UInt64 = standardPartSize) {
        self.defaultRegistryId = defaultRegistryId
        self.registryAlias = registryAlias
        self.partSize = partSize
    }

    /// Why a registry upload that holds `chunks` chunks takes no more, or `nil` while it may.
    public func refusesAnotherChunk(after chunks: UInt64) -> String? {
        chunks < maximumRegistryChunks ? nil : "The upload already holds \(chunks) chunks, the most one upload may have; push the blob again in larger chunks"
    }

    /// The canonical id of the registry a command names, or `RegistryNotFoundException`.
    public func resolveRegistry(_ requested: String?) throws(CommandError) -> String {
        guard let requested, requested != defaultRegistryId, requested != alias else { return defaultRegistryId }
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
    /// Whether the call sent an `amz-sdk-invocation-id`, whose retry window must hold it: then a
    /// call that changes nothing, and a BatchDeleteImage whose events do not tell its answer,
    /// records ``CallAnswered``.
    public var sentInvocationId: Bool

    public init(now: Timestamp, newUploadId: String? = nil, sentInvocationId: Bool = false) {
        self.now = now
        self.newUploadId = newUploadId
        self.sentInvocationId = sentInvocationId
    }
}

/// The events a command records, and what else its caller must hear.
public struct Decision: Sendable, Equatable {
    public var events: [Event]
    /// BatchDeleteImage's deleted image ids, one per requested id that succeeded, as answered.
    public var imageIds: [ImageIdentifier] = []
    /// BatchDeleteImage's per-image refusals; the rest of the batch still applies.
    public var imageFailures: [ImageFailure] = []
    /// BatchDeleteImage's refusal of each requested id, in request order; `nil` where the id was
    /// deleted or untagged. What its ``CallAnswered`` records when its events do not tell it.
    public var refusalByRequestedId: [ImageFailure.Code?] = []

    public init(_ events: [Event], imageIds: [ImageIdentifier] = [], imageFailures: [ImageFailure] = []) {
        self.events = events
        self.imageIds = imageIds
        self.imageFailures = imageFailures
    }
}

/// One image BatchDeleteImage could not delete (ImageFailure).
public struct ImageFailure: Sendable, Equatable {
    public enum Code: String, Sendable {
        case invalidImageDigest = "InvalidImageDigest"
        case imageTagDoesNotMatchDigest = "ImageTagDoesNotMatchDigest"
        case imageNotFound = "ImageNotFound"
        case missingDigestAndTag = "MissingDigestAndTag"
        case imageReferencedByManifestList = "ImageReferencedByManifestList"
    }

    public let imageId: ImageIdentifier
    public let failureCode: Code
    public let failureReason: String
}

/// Decides a valid command against current state into the events that record it.
///
/// Pure: reads `state` only, calls no clock and draws no randomness. Throws ``CommandError``
/// when the command is refused, and then nothing is written.
public enum Decider {
    public static func decide(
        _ command: Command, state: some ProjectionState, settings: DecisionSettings, context: DecisionContext
    ) throws -> Decision {
        var decision = try changes(command, state: state, settings: settings, context: context)
        // A call that changed nothing still marks its invocation id, so that its retry is answered
        // as it was and the id stays its own; a BatchDeleteImage whose events do not tell its
        // answer records each id's outcome after them, for the same reason.
        if context.sentInvocationId, decision.events.isEmpty || command.needsItsOutcomesRecorded(decision) {
            decision.events.append(.callAnswered(try command.callAnswered(decision, settings: settings)))
        }
        return decision
    }

    /// The events that record what `command` changes; none when it changes nothing.
    private static func changes(
        _ command: Command, state: some ProjectionState, settings: DecisionSettings, context: DecisionContext
    ) throws -> Decision {
        switch command {
        case .createRepository(let c):
            let ref = RepositoryRef(registryId: try settings.resolveRegistry(c.registryId), repositoryName: c.repositoryName)
            guard try state.repository(ref) == nil else {
                throw CommandError(
                    .repositoryAlreadyExists,
                    "The repository with name '\(ref.repositoryName)' already exists in the registry with id '\(ref.registryId)'")
            }
            return try Decision([.repositoryCreated(RepositoryCreated(
                registryId: ref.registryId, repositoryName: ref.repositoryName, createdAt: context.now))]
                + CatalogDecisions.initialDetails(of: ref, catalog: c.catalog, tags: c.tags))

        case .deleteRepository(let c):
            return try deleteRepository(c, state: state, settings: settings)

        case .initiateLayerUpload(let c):
            let ref = try existingRepository(c.registryId, c.repositoryName, state: state, settings: settings)
            try refuseAnotherUpload(in: ref, state: state, settings: settings)
            guard let uploadId = context.newUploadId else {
                preconditionFailure("the writer supplies an upload id for InitiateLayerUpload")
            }
            guard try state.session(uploadId) == nil else {
                throw CommandError(.server, "The generated upload id \(uploadId) is already in use; retry the request")
            }
            return Decision([.uploadInitiated(UploadInitiated(
                uploadId: uploadId, partSize: settings.partSize, registryId: ref.registryId,
                repositoryName: ref.repositoryName, initiatedAt: context.now))])

        case .uploadLayerPart(let c):
            return try LayerDecisions.uploadPart(c, state: state, settings: settings)
        case .completeLayerUpload(let c):
            return try LayerDecisions.complete(c, state: state, settings: settings)
        case .putImage(let c):
            return try ImageDecisions.put(c, state: state, settings: settings, now: context.now)
        case .batchDeleteImage(let c):
            return try ImageDecisions.batchDelete(c, state: state, settings: settings)
        case .expireIdleUploads(let c):
            return try LayerDecisions.expire(c, state: state, now: context.now)
        case .cancelLayerUpload(let c):
            return try LayerDecisions.cancel(c, state: state, settings: settings)
        case .mountLayer(let c):
            return try LayerDecisions.mount(c, state: state, settings: settings)
        case .putRepositoryCatalogData(let c):
            return try CatalogDecisions.putCatalog(c, state: state, settings: settings)
        case .tagResource(let c):
            return try CatalogDecisions.tag(c, state: state, settings: settings)
        case .untagResource(let c):
            return try CatalogDecisions.untag(c, state: state, settings: settings)
        case .putRegistryCatalogData(let c):
            return CatalogDecisions.putRegistryCatalog(c, settings: settings)
        case .setRepositoryPolicy(let c):
            return try CatalogDecisions.setPolicy(c, state: state, settings: settings)
        case .deleteRepositoryPolicy(let c):
            return try CatalogDecisions.deletePolicy(c, state: state, settings: settings)
        }
    }

    private static func deleteRepository(_ c: DeleteRepository, state: some ProjectionState, settings: DecisionSettings) throws -> Decision {
        let ref = RepositoryRef(registryId: try settings.resolveRegistry(c.registryId), repositoryName: c.repositoryName)
        guard let repository = try state.repository(ref) else { throw repositoryNotFound(ref) }
        let images = try state.imageDigests(in: ref)
        let uploads = try state.activeUploads(in: ref)
        guard c.force || images.isEmpty else {
            throw CommandError(
                .repositoryNotEmpty,
                "The repository with name '\(ref.repositoryName)' in registry with id '\(ref.registryId)' cannot be deleted because it still contains \(images.count) image(s); use force to delete them too")
        }
        let deletedImages = images.map {
            Event.imageDeleted(ImageDeleted(registryId: ref.registryId, repositoryName: ref.repositoryName, imageDigest: $0))
        }
        // Uploads in progress never block a delete (clients abandon uploads, e.g. after
        // LayerAlreadyExistsException); they are aborted, each with its own event.
        let aborted = uploads.map {
            Event.uploadAborted(UploadAborted(
                uploadId: $0, registryId: ref.registryId, repositoryName: ref.repositoryName, reason: .repositoryDeleted))
        }
        return Decision(deletedImages + aborted + [.repositoryDeleted(RepositoryDeleted(
            registryId: ref.registryId, repositoryName: ref.repositoryName, force: c.force, createdAt: repository.createdAt))])
    }

    /// What an exact retry of `command` answers, whose first attempt recorded `recorded` at
    /// `decidedAt`: the events' decision, and for BatchDeleteImage its ids and refusals too
    /// (``ImageDecisions/batchDeleteAnsweredAgain(_:recorded:decidedAt:state:settings:)``).
    public static func answeredAgain(
        _ command: Command, recorded: [Event], decidedAt: Timestamp, state: some ProjectionState, settings: DecisionSettings
    ) throws -> Decision {
        guard case .batchDeleteImage(let c) = command else { return Decision(recorded) }
        return try ImageDecisions.batchDeleteAnsweredAgain(c, recorded: recorded, decidedAt: decidedAt, state: state, settings: settings)
    }

    /// The repository a command names, which must exist: `RegistryNotFoundException` or
    /// `RepositoryNotFoundException` otherwise. Read-only operations use it too.
    public static func existingRepository(
        _ registryId: String?, _ name: String, state: some ProjectionState, settings: DecisionSettings
    ) throws -> RepositoryRef {
        let ref = RepositoryRef(registryId: try settings.resolveRegistry(registryId), repositoryName: name)
        guard try state.repository(ref) != nil else { throw repositoryNotFound(ref) }
        return ref
    }

    /// Refuses an upload into a repository that has as many in progress as it may
    /// (`LimitExceededException`): the initiation's check, which a front end may also make before
    /// it reads a body the initiation would follow.
    public static func refuseAnotherUpload(in ref: RepositoryRef, state: some ProjectionState, settings: DecisionSettings) throws {
        if let repository = try state.repository(ref), repository.activeSessions >= settings.maximumActiveUploadsPerRepository {
            throw CommandError(.limitExceeded, "The repository with name '\(ref.repositoryName)' already has \(repository.activeSessions) uploads in progress, the most allowed; complete or abandon some (idle uploads expire)")
        }
    }

    public static func repositoryNotFound(_ ref: RepositoryRef) -> CommandError {
        CommandError(
            .repositoryNotFound,
            "The repository with name '\(ref.repositoryName)' does not exist in the registry with id '\(ref.registryId)'")
    }
}

extension Command {
    /// Whether deciding this command needs a fresh upload id in its ``DecisionContext``.
    public var startsUpload: Bool {
        if case .initiateLayerUpload = self { return true }
        return false
    }
}
