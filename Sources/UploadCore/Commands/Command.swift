/// A request to change state, already checked against the API's stateless rules.
///
/// Each command's initialiser validates its raw members and throws `InvalidParameterException`,
/// so a `Command` value is always well formed; ``Decider`` then checks it against current state.
public enum Command: Sendable, Equatable {
    case createRepository(CreateRepository)
    case deleteRepository(DeleteRepository)
    case initiateLayerUpload(InitiateLayerUpload)
    case uploadLayerPart(UploadLayerPart)
    case completeLayerUpload(CompleteLayerUpload)
    case putImage(PutImage)
    case batchDeleteImage(BatchDeleteImage)
    case expireIdleUploads(ExpireIdleUploads)
    case cancelLayerUpload(CancelLayerUpload)
    case mountLayer(MountLayer)
    case putRepositoryCatalogData(PutRepositoryCatalogData)
    case tagResource(TagResource)
    case untagResource(UntagResource)
    case putRegistryCatalogData(PutRegistryCatalogData)
    case setRepositoryPolicy(SetRepositoryPolicy)
    case deleteRepositoryPolicy(DeleteRepositoryPolicy)

    /// Whether this command can record an event of `type`: how a retry (same invocation id) is
    /// told from another call that reused the id.
    public func records(_ type: EventType) -> Bool {
        if type == .callAnswered { return true }  // a call that changed nothing, or a BatchDeleteImage's outcomes (its operation is checked too)
        return switch self {
        case .createRepository: [.repositoryCreated, .repositoryCatalogDataPut, .repositoryTagged].contains(type)
        case .deleteRepository: [.imageDeleted, .uploadAborted, .repositoryDeleted].contains(type)
        case .initiateLayerUpload: type == .uploadInitiated
        case .uploadLayerPart: type == .layerPartUploaded
        // Under the registry's rules a completion may end its upload without a layer (UploadAborted).
        case .completeLayerUpload(let c): type == .layerUploadCompleted || (c.rules == .registry && type == .uploadAborted)
        case .putImage: type == .imagePushed
        case .batchDeleteImage: [.imageUntagged, .imageDeleted].contains(type)
        case .expireIdleUploads: type == .uploadExpired
        case .cancelLayerUpload: type == .uploadAborted
        case .mountLayer: type == .layerMounted
        case .putRepositoryCatalogData: type == .repositoryCatalogDataPut
        case .tagResource: type == .repositoryTagged
        case .untagResource: type == .repositoryUntagged
        case .putRegistryCatalogData: type == .registryCatalogDataPut
        case .setRepositoryPolicy: type == .repositoryPolicySet
        case .deleteRepositoryPolicy: type == .repositoryPolicyDeleted
        }
    }

    /// The mark this call records for a caller that holds an invocation id when it succeeds and
    /// changes nothing, or after a BatchDeleteImage's deletions that do not tell its answer: the
    /// repository it names (`nil` for the registry's own catalog data) and, for BatchDeleteImage,
    /// each requested id's refusal.
    /// - Throws: `RegistryNotFoundException` for a registry id this coordinator does not serve.
    func callAnswered(_ decision: Decision, settings: DecisionSettings) throws -> CallAnswered {
        let (registryId, repositoryName): (String?, String?) = switch self {
        case .createRepository(let c): (c.registryId, c.repositoryName)
        case .deleteRepository(let c): (c.registryId, c.repositoryName)
        case .initiateLayerUpload(let c): (c.registryId, c.repositoryName)
        case .uploadLayerPart(let c): (c.registryId, c.repositoryName)
        case .completeLayerUpload(let c): (c.registryId, c.repositoryName)
        case .putImage(let c): (c.registryId, c.repositoryName)
        case .batchDeleteImage(let c): (c.registryId, c.repositoryName)
        case .expireIdleUploads: (nil, nil)
        case .cancelLayerUpload(let c): (c.upload.repository.registryId, c.upload.repository.repositoryName)
        case .mountLayer(let c): (c.repository.registryId, c.repository.repositoryName)
        case .putRepositoryCatalogData(let c): (c.registryId, c.repositoryName)
        case .tagResource(let c): (c.resource.registryId, c.resource.repositoryName)
        case .untagResource(let c): (c.resource.registryId, c.resource.repositoryName)
        case .putRegistryCatalogData: (nil, nil)
        case .setRepositoryPolicy(let c): (c.registryId, c.repositoryName)
        case .deleteRepositoryPolicy(let c): (c.registryId, c.repositoryName)
        }
        return CallAnswered(
            registryId: try settings.resolveRegistry(registryId), repositoryName: repositoryName, operation: operationName,
            failureCodes: decision.refusalByRequestedId.map { $0?.rawValue ?? "" })
    }

    /// Whether this call, decided as `decision`, records each requested id's outcome in its
    /// ``CallAnswered``: a BatchDeleteImage whose events do not tell its answer
    /// (``ImageDecisions/needsItsOutcomesRecorded(_:_:)``).
    func needsItsOutcomesRecorded(_ decision: Decision) -> Bool {
        if case .batchDeleteImage(let c) = self { ImageDecisions.needsItsOutcomesRecorded(c, decision) } else { false }
    }

    /// The bytes of a manifest the command carries (PutImage's, up to 4 MiB; 0 for the rest):
    /// its event and the image's record both repeat them, so the writer bounds a batch by them.
    public var manifestBytes: Int {
        if case .putImage(let c) = self { c.imageManifest.utf8.count } else { 0 }
    }

    /// The API operation's name, for logs and metrics, and recorded in the log (CallAnswered's
    /// `operation`, which a retry is matched by): permanent, as event fields are
    /// (`CallAnsweredTests.swift` pins the names a call that changes nothing records).
    public var operationName: String {
        switch self {
        case .createRepository: "CreateRepository"
        case .deleteRepository: "DeleteRepository"
        case .initiateLayerUpload: "InitiateLayerUpload"
        case .uploadLayerPart: "UploadLayerPart"
        case .completeLayerUpload: "CompleteLayerUpload"
        case .putImage: "PutImage"
        case .batchDeleteImage: "BatchDeleteImage"
        case .expireIdleUploads: "ExpireIdleUploads"
        case .cancelLayerUpload: "CancelLayerUpload"
        case .mountLayer: "MountLayer"
        case .putRepositoryCatalogData: "PutRepositoryCatalogData"
        case .tagResource: "TagResource"
        case .untagResource: "UntagResource"
        case .putRegistryCatalogData: "PutRegistryCatalogData"
        case .setRepositoryPolicy: "SetRepositoryPolicy"
        case .deleteRepositoryPolicy: "DeleteRepositoryPolicy"
        }
    }
}

public struct CreateRepository: Sendable, Equatable {
    /// `nil` means the default registry.
    public let registryId: String?
    public let repositoryName: String
    /// Catalog data to keep from the start; `nil` when none was given.
    public let catalog: RepositoryCatalogInput?
    public let tags: ResourceTags

    public init(
        registryId: String? = nil, repositoryName: String?, catalog: RepositoryCatalogInput? = nil, tags: ResourceTags? = nil
    ) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        self.catalog = catalog
        if let tags { self.tags = tags } else { self.tags = try ResourceTags(nil) }
    }
}

public struct DeleteRepository: Sendable, Equatable {
    public let registryId: String?
    public let repositoryName: String
    /// Delete even when the repository holds images. Uploads in progress are aborted either way.
    public let force: Bool

    public init(registryId: String? = nil, repositoryName: String?, force: Bool = false) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
        self.force = force
    }
}

/// The seed's command: "Notifies Amazon ECR that you intend to upload an image layer."
public struct InitiateLayerUpload: Sendable, Equatable {
    public let registryId: String?
    public let repositoryName: String

    public init(registryId: String? = nil, repositoryName: String?) throws(CommandError) {
        self.registryId = try Validation.registryId(registryId)
        self.repositoryName = try Validation.repositoryName(repositoryName)
    }
}

/// The sweeper's command: end every active upload with no activity for `idleMilliseconds`,
/// judged against the writer's clock, at most `limit` of them per command, but those in `sparing`:
/// uploads a chunk is streaming into (its bytes are activity the log has not recorded yet).
public struct ExpireIdleUploads: Sendable, Equatable {
    public let idleMilliseconds: Int64
    public let limit: Int
    /// Looked up, never iterated: the decision does not depend on its order.
    public let sparing: Set<String>

    public init(idleMilliseconds: Int64, limit: Int = 1000, sparing: Set<String> = []) {
        precondition(idleMilliseconds > 0 && limit > 0)
        self.idleMilliseconds = idleMilliseconds
        self.limit = limit
        self.sparing = sparing
    }
}
