/// The projections' current state, by what it means: what the decider reads and the projector
/// keeps. The store implements it over its tables (LMDB, memory, later PostgreSQL); how records are
/// keyed and laid out is the store's business, never the domain's.
///
/// Every list comes in one fixed order that depends only on the state (never on hashing or
/// insertion order), so that decisions made from it are deterministic.
public protocol ProjectionState {
    func session(_ uploadId: String) throws -> UploadSession?
    func repository(_ ref: RepositoryRef) throws -> RepositorySummary?
    /// The ids of the repository's active uploads, in the store's fixed order.
    func activeUploads(in ref: RepositoryRef) throws -> [String]
    /// Every active upload of every repository, in the store's fixed order.
    func allActiveUploads() throws -> [String]
    func layer(_ ref: RepositoryRef, _ digest: String) throws -> LayerRecord?
    func image(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord?
    /// The digests of the repository's images, in the store's fixed order.
    func imageDigests(in ref: RepositoryRef) throws -> [String]
    func tag(_ ref: RepositoryRef, _ tag: String) throws -> TagRecord?
    /// The tags that name the image `digest`, in byte order.
    func tags(of digest: String, in ref: RepositoryRef) throws -> [String]
    /// The digests of the repository's manifest lists (indexes) that name `digest`, in byte order:
    /// while any does, BatchDeleteImage refuses to delete the image.
    func manifestLists(naming digest: String, in ref: RepositoryRef) throws -> [String]
    /// The repository's catalog data and tags; `nil` when it never had any.
    func details(_ ref: RepositoryRef) throws -> RepositoryDetails?
    func registryCatalog(_ registryId: String) throws -> RegistryCatalog?
}

/// The projection state the ``Projector`` writes to.
public protocol MutableProjectionState: ProjectionState {
    mutating func put(_ session: UploadSession) throws
    mutating func put(_ repository: RepositorySummary) throws
    mutating func removeRepository(_ ref: RepositoryRef) throws
    /// Adds the upload to, or removes it from, its repository's active uploads.
    mutating func setUpload(_ uploadId: String, in ref: RepositoryRef, active: Bool) throws
    /// Notes an UploadInitiated for the auditors' indexes (all initiations, and per repository).
    mutating func recordInitiation(in ref: RepositoryRef, at recordedAt: Timestamp, position: UInt64) throws
    mutating func put(_ layer: LayerRecord, in ref: RepositoryRef) throws
    mutating func removeLayers(in ref: RepositoryRef) throws
    mutating func put(_ image: ImageRecord, in ref: RepositoryRef) throws
    mutating func removeImage(_ digest: String, in ref: RepositoryRef) throws
    /// Makes `name` name the image `tag.imageDigest`, which it must not name yet: the tag's record,
    /// and its entry among the image's tags.
    mutating func put(_ tag: TagRecord, named name: String, in ref: RepositoryRef) throws
    /// Removes the tag `name` of the image `digest` (the one it names): its record and its entry
    /// among the image's tags.
    mutating func removeTag(_ name: String, of digest: String, in ref: RepositoryRef) throws
    /// Adds the manifest list `list` to, or removes it from, the lists that name `digest`.
    mutating func setManifestList(_ list: String, naming digest: String, in ref: RepositoryRef, present: Bool) throws
    /// Adds the image `referrer` to, or removes it from, the referrers of `subject`.
    mutating func setReferrer(_ referrer: String, of subject: String, in ref: RepositoryRef, present: Bool) throws
    /// Notes that the event at `position` came from an SDK call with an invocation id. Positions
    /// only grow, so the store can append these at the end of a table.
    mutating func put(_ mark: InvocationMark, at position: UInt64) throws
    mutating func put(_ details: RepositoryDetails, of ref: RepositoryRef) throws
    mutating func removeDetails(of ref: RepositoryRef) throws
    mutating func put(_ catalog: RegistryCatalog, of registryId: String) throws
}
