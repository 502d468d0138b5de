import Foundation
public import Logging
public import UploadCore
public import UploadStore

/// The application layer: every operation of the coordinator, whichever front end asks (the
/// AWS JSON API, the command line, the sweeper). It owns what lies between a validated command and
/// the store: the blob store, the order that makes a crash safe (stage → sync → record → clean
/// up), the checks made before any I/O, and the clean-up after a refusal.
///
/// Each command is decided once, by the store, inside its write transaction; a retry of an SDK
/// call is recognised there too. The checks here only decide whether I/O is worth doing.
public final class UploadService: Sendable {
    public let store: any EventStore
    /// The folder of staging (each upload's parts in progress), and by default of the blobs too.
    public let blobs: BlobStore
    /// Where completed layers are kept: ``blobs``' folder unless another ``BlobStorage`` is given.
    public let storage: any BlobStorage
    let logger: Logger
    /// Serialises the parts, completion and clean-up of one upload (its staging file), across nodes too.
    let uploadLocks: UploadLocks
    /// What refused completions found staged, so that a repeat is refused without reading it again.
    let refusedDigests = RefusedStagedDigests()

    /// - Parameter longestUploadWait: the longest a request waits behind another to the same
    ///   upload before it is refused as overloaded (``UploadLocks/longestWait``).
    public init(
        store: any EventStore, blobs: BlobStore, storage: (any BlobStorage)? = nil, logger: Logger,
        longestUploadWait: Duration = UploadLocks.standardWait
    ) {
        self.store = store
        self.blobs = blobs
        self.storage = storage ?? blobs
        self.logger = logger
        uploadLocks = UploadLocks(blobs, longestWait: longestUploadWait)
    }

    public var settings: DecisionSettings { store.settings }

    /// Runs `body` against one consistent snapshot of the store, where it is called: for callers
    /// on threads of their own. Async callers use ``reading(_:)``. A snapshot that misses a write
    /// already answered is refused (``UploadStore/EventStore/readAnswering(_:)``).
    public func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T { try store.readAnswering(body) }

    /// Runs `body` against one consistent snapshot of the store without blocking the cooperative
    /// pool (``UploadStore/SnapshotReading/offTheCooperativePool(_:)``), refused as ``read(_:)``'s is.
    public func reading<T: Sendable>(_ body: @escaping @Sendable (any StoreSnapshot) throws -> T) async throws -> T {
        try await store.offTheCooperativePool { [store] in try store.readAnswering(body) }
    }

    /// Creates the repository, its logo kept as a blob first (``execute(_:keepingLogo:as:_:)``).
    /// The repository's creation, and its catalog data when the call gave some: both from the
    /// recorded events, so that a retry is answered as the first attempt was.
    public func createRepository(
        _ command: CreateRepository, logo: [UInt8]? = nil, _ metadata: RequestMetadata
    ) async throws -> (created: RepositoryCreated, catalog: RepositoryCatalogDataPut?) {
        let events = try await execute(.createRepository(command), keepingLogo: logo, as: command.catalog?.logoImageDigest, metadata).events
        let catalog = events.lazy.compactMap { $0.event.payload as? RepositoryCatalogDataPut }.first
        return (try events.first(RepositoryCreated.self, recordedBy: "CreateRepository"), catalog)
    }

    public func putRepositoryCatalogData(_ command: PutRepositoryCatalogData, logo: [UInt8]?, _ metadata: RequestMetadata) async throws -> RepositoryCatalogDataPut {
        // The logo it may replace is marked used, as a deleted repository's blobs are; a read or
        // a mark that fails refuses the call (it is retried), rather than leave the logo unmarked.
        if let ref = repository(command.registryId, command.repositoryName), let replaced = try await reading({ try $0.details(ref)?.logoImageDigest }) {
            try await markUsed([replaced])
        }
        return try await execute(.putRepositoryCatalogData(command), keepingLogo: logo, as: command.catalog.logoImageDigest, metadata).events
            .first(RepositoryCatalogDataPut.self, recordedBy: "PutRepositoryCatalogData")
    }

    /// Runs a command that may change nothing (tags, registry catalog data): then it records only
    /// CallAnswered, or nothing without an invocation id; its answer comes from the events that
    /// record a change, or the state when there are none.
    @discardableResult
    public func execute(_ command: Command, _ metadata: RequestMetadata) async throws -> CommandOutcome {
        try await store.execute(command, metadata: metadata)
    }

    /// ``BlobStorage/claimBlob(_:)``, on NIO's thread pool (it may sync a directory).
    public func claimBlob(_ digest: String) async throws -> UInt64? {
        try await Self.blocking { [storage] in try storage.claimBlob(digest) }
    }

    /// Runs `command`, whose events name `logo` by `digest`, so that no event ever names a logo
    /// the store lacks: the logo is kept as a blob before the command reaches the writer. A
    /// command the state refuses now (decided as the writer will decide it, on a snapshot) keeps
    /// no logo: a refused request writes nothing. It still goes to the writer when it carries an
    /// SDK invocation id, but only to be answered from the retry window (the original result, or
    /// IdempotentParameterMismatchException); the writer refuses anything else as the snapshot
    /// did (``UploadStore/CommandSubmission/refusalUnlessRetry``), even if the state changed
    /// since, so it never records a logo not kept. A refusal only at the log's tail leaves a
    /// logo behind: harmless, as blobs are content-addressed and never changed.
    private func execute(
        _ command: Command, keepingLogo logo: [UInt8]?, as digest: String?, _ metadata: RequestMetadata
    ) async throws -> CommandOutcome {
        guard let logo, let digest else { return try await store.execute(command, metadata: metadata) }
        // Kept before (by another request, which may not have synced its name yet): claimed, made durable.
        let claimedAt = ContinuousClock.now
        if try await claimBlob(digest) != nil {
            return try await store.execute(command, metadata: metadata, claimedBlobsAt: claimedAt)
        }
        let keep = { @Sendable in try self.storage.commitBlob(self.blobs.writeTemporary(logo), digest: digest) }
        let now = DecisionContext(now: store.clock.now())
        let settings = self.settings
        // Only the decider's refusal spares the logo; a read that failed (the database busy)
        // decides nothing, and the writer may well take the command: the logo is kept first.
        let refusedNow: CommandError?
        do {
            _ = try await reading { try Decider.decide(command, state: $0, settings: settings, context: now) }
            refusedNow = nil
        } catch let refusal as CommandError {
            refusedNow = refusal
        } catch {
            refusedNow = nil
        }
        if let refusedNow {
            guard metadata.invocationId != nil else { throw refusedNow }
            return try await store.execute(command, metadata: metadata, refusalUnlessRetry: refusedNow, answersMismatch: true)
        }
        let keptAt = ContinuousClock.now
        try await Self.blocking(keep)  // a write and up to three syncs: off the cooperative pool
        return try await store.execute(command, metadata: metadata, claimedBlobsAt: keptAt)
    }

    /// Deletes the repository, then the staged bytes of the uploads it aborted (no longer needed
    /// once the abort has committed). `refusalUnlessRetry`: ``CommandSubmission/refusalUnlessRetry``.
    public func deleteRepository(
        _ command: DeleteRepository, _ metadata: RequestMetadata, refusalUnlessRetry: (any Error & Sendable)? = nil
    ) async throws -> RepositoryRemoved {
        // Its blobs are marked used before it commits (a collection that reads the names after
        // finds them marked): none removes them within its minimum age, while a backup of the
        // database taken before may still name them. A read or a mark that fails refuses the
        // call (it is retried), rather than delete them unmarked. A call refused unless it is a
        // retry deletes nothing (a retry's first attempt marked them), so it touches no blob: a
        // caller denied the delete could otherwise have the server touch every blob of the
        // repository at will.
        if refusalUnlessRetry == nil, let ref = repository(command.registryId, command.repositoryName) {
            try await markUsed(blobsHeld(by: ref))
        }
        let events = try await store.execute(.deleteRepository(command), metadata: metadata, refusalUnlessRetry: refusalUnlessRetry).events
        let deleted = try events.first(RepositoryDeleted.self, recordedBy: "DeleteRepository")
        var aborted: [String] = []
        for case .uploadAborted(let abort) in events.map(\.event) {
            blobs.removeStaging(abort.uploadId)  // not under the upload's lock: see cutBackStaging
            aborted.append(abort.uploadId)
        }
        return RepositoryRemoved(repository: deleted.repository, createdAt: deleted.createdAt, abortedUploads: aborted)
    }

    /// The repository a command names, when its registry is one this store serves (else the
    /// command is refused, and marks nothing).
    private func repository(_ registryId: String?, _ name: String) -> RepositoryRef? {
        (try? settings.resolveRegistry(registryId)).map { RepositoryRef(registryId: $0, repositoryName: name) }
    }

    /// ``BlobStorage/markUsed(_:)``, on NIO's thread pool.
    private func markUsed(_ digests: [String]) async throws {
        try await Self.blocking { [storage] in try storage.markUsed(digests) }
    }

    /// The blobs a repository's layers and logo name, a page of layers per read.
    private func blobsHeld(by ref: RepositoryRef) async throws -> [String] {
        var digests: [String] = []
        while true {
            let page = try await reading { [digests] in try $0.layers(in: ref, after: digests.last, limit: 1024) }
            digests += page.map(\.layerDigest)
            guard page.count == 1024 else { break }
        }
        if let logo = try await reading({ try $0.details(ref)?.logoImageDigest }) { digests.append(logo) }
        return digests
    }

    public func putImage(_ command: PutImage, _ metadata: RequestMetadata) async throws -> ImagePushed {
        try await store.execute(.putImage(command), metadata: metadata).events.first(ImagePushed.self, recordedBy: "PutImage")
    }

    public func batchDeleteImage(_ command: BatchDeleteImage, _ metadata: RequestMetadata) async throws -> ImagesDeleted {
        let outcome = try await store.execute(.batchDeleteImage(command), metadata: metadata)
        return ImagesDeleted(imageIds: outcome.decision.imageIds, failures: outcome.decision.imageFailures)
    }
}
