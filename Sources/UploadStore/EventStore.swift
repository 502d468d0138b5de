import Foundation
public import LogHashing
public import UploadCore

/// What reads a store's snapshots: an open store, or one opened read-only (``ReadOnlyStore``).
public protocol SnapshotReading: Sendable {
    /// Runs `body` against one consistent snapshot of the log and the projections.
    func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T
    /// Whether a read waits on the network (PostgreSQL's round trips, and its pool of
    /// connections), so that async callers must run it on a thread of its own rather than on the
    /// cooperative pool. LMDB's reads come from memory in microseconds: `false`.
    var readsWaitOnTheNetwork: Bool { get }
    /// Waits until every commit already made is visible to reads that begin after: what a reader
    /// judging by what the store does *not* name (the blob collector) needs. An LMDB commit is
    /// visible once made; a PostgreSQL one waiting on a synchronous standby is not, yet lands later.
    /// - Throws: ``StoreError`` `.io` when one has not become visible within `patience`, or the
    ///   database is a standby (whose reads trail its primary's commits).
    func waitForCommitsInFlight(patience: Duration) throws
}

extension SnapshotReading {
    public var readsWaitOnTheNetwork: Bool { false }
    public func waitForCommitsInFlight(patience: Duration) throws {}
}

extension ReadOnlyStore: SnapshotReading {}

/// What the application layer needs of a store, whatever keeps it: LMDB (``Store``) or
/// PostgreSQL (``PostgresStore``). The store owns the storage layout; callers speak commands,
/// events and the typed projection state.
public protocol EventStore: SnapshotReading {
    /// The settings the store decides commands with.
    var settings: DecisionSettings { get }
    /// Whether a commit whose answer was lost may still land later: PostgreSQL's, waiting on a
    /// synchronous standby after its connection was cut. Then a staging file written lately may
    /// hold bytes the log is about to record, and no start-up may cut it back to what the log
    /// says now. An LMDB commit ends with its process.
    var commitsMayLandLate: Bool { get }
    /// The store's clock, for what callers stamp themselves (a token's expiry, a sweep's id).
    var clock: any Clock { get }
    /// Runs `body` against one snapshot for answering a request, whose projections miss no write
    /// already answered: a caller must not be told that a repository it created, or an upload it
    /// began, does not exist. Reads of the log alone (feeds, tiles, proofs, the audit trail) use
    /// ``SnapshotReading/read(_:)``. Only LMDB keeps the projections in a commit of their own,
    /// which can fail after the log's (a full disk); elsewhere this is ``SnapshotReading/read(_:)``.
    /// - Throws: ``StoreError`` `.io` (ServerException), which says why, when they miss one and
    ///   cannot be caught up.
    func readAnswering<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T

    /// Decides each command inside the store's write transaction, from the state at the log's
    /// tail (each against the state the ones before it left), appends its events, updates the
    /// projections and commits. Each result is answered once its commit is durable: the command's
    /// outcome, its refusal (``CommandError``, nothing written), or the store's failure.
    func append(_ submissions: [CommandSubmission]) async -> [Result<CommandOutcome, any Error>]

    /// Waits until an event after `position` commits, or `timeout` passes (the caller then reads
    /// again, to see what another process appended). - Returns: `false` once followers were
    /// stopped (shutdown) or the task was cancelled: stop following.
    func waitForEvents(after position: UInt64, timeout: Duration) async -> Bool
    /// Ends every ``waitForEvents(after:timeout:)`` at once, for a graceful shutdown of live feeds.
    func stopFollowers()
    var followersStopped: Bool { get }

    /// Figures for monitoring, read from one snapshot.
    func statistics() throws -> StoreStatistics

    /// Keeps a checkpoint the log signed, unless one of its tree size, or of a larger one, is
    /// already kept; in the same transaction, checks that the last one kept is `identity`'s
    /// (``LogIdentity/check(_:)``).
    /// - Returns: the checkpoint to serve: the one kept for that size (the first one given), or
    ///   the larger one another process or node kept meanwhile, so that no client sent to each in
    ///   turn sees the tree shrink.
    func keep(_ checkpoint: SignedCheckpoint, signedAs identity: LogIdentity) throws -> SignedCheckpoint

    /// The migrations recorded in the store, in the order applied.
    func appliedMigrations() throws -> [String]

    /// The migrations this process applied when it opened the store (another process may have
    /// applied others meanwhile: they are recorded, not this one's to report).
    var migrationsAppliedAtOpen: [String] { get }

    /// The layout of the projections this process rebuilt to its own as it opened the store
    /// (`migrate`, or a `serve` after an upgrade), or `nil`: from then on, processes of the older
    /// binary refuse to write the store.
    var projectionLayoutReplacedAtOpen: UInt32? { get }

    /// Whether this process should do the store-wide `duty` now: true in one process at a time
    /// where several share the store (PostgreSQL nodes elect one by advisory lock). A duty's work
    /// must still be safe to repeat: the lead can move between one call and the next (also from
    /// a process that stands frozen or stopped, which soon loses it).
    func leads(_ duty: StoreDuty) -> Bool

    /// Writes every command already submitted, then stops taking more.
    func close() async
}

extension EventStore {
    public func readAnswering<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T { try read(body) }
    public var projectionLayoutReplacedAtOpen: UInt32? { nil }
}

/// Work one process of a deployment does for all of them.
public enum StoreDuty: String, Sendable, CaseIterable {
    /// Ending uploads left idle too long: the expiry sweeper of `serve`.
    case expirySweep = "expiry-sweep"
}

/// One command for ``EventStore/append(_:)``, with who asked for it.
public struct CommandSubmission: Sendable {
    public let command: Command
    public let metadata: RequestMetadata
    /// Set for a call its caller may no longer make (its first attempt changed what authorised
    /// it: a deleted repository's policy, a policy set or deleted): the writer answers it only as
    /// the exact retry of a call its retry window holds, and otherwise refuses it with this,
    /// writing nothing.
    public let refusalUnlessRetry: (any Error & Sendable)?
    /// Whether a call with `refusalUnlessRetry` that reuses another call's invocation id is
    /// answered IdempotentParameterMismatchException, as any call is: set for a caller refused by
    /// the state it may change (a logo's command, refused on a snapshot), not by its authority,
    /// which is told nothing of the other call.
    public let answersMismatch: Bool
    /// Set for a command whose events will name blobs it claimed (see ``BlobClaims``): when it
    /// claimed them. The writer refuses it once ``BlobClaims/lease`` has passed since, writing
    /// nothing (`.overloaded`: ThrottlingException, which clients retry, claiming again).
    public let claimedBlobsAt: ContinuousClock.Instant?

    public init(
        _ command: Command, metadata: RequestMetadata, refusalUnlessRetry: (any Error & Sendable)? = nil, answersMismatch: Bool = false,
        claimedBlobsAt: ContinuousClock.Instant? = nil
    ) {
        self.command = command
        self.metadata = metadata
        self.refusalUnlessRetry = refusalUnlessRetry
        self.answersMismatch = answersMismatch
        self.claimedBlobsAt = claimedBlobsAt
    }
}

/// A blob a command is about to name is claimed first (its modification time set, by the blob
/// store), and a blob collection removes only blobs unnamed and unclaimed for its minimum age.
/// That alone is a lease: a command whose commit came later than the minimum age after its claim
/// (a writer stalled, a database failing over) would name a blob the collection had just removed.
/// The writer makes it a fence: it refuses a command whose claim is older than ``lease`` when it
/// comes to decide it, so a collection that keeps every blob claimed within
/// ``shortestCollectionAge`` of its clock never removes a blob a commit is about to name,
/// whatever minimum age it was given.
public enum BlobClaims {
    /// The longest a command may take from claiming its blobs to its commit.
    public static let lease = Duration.seconds(30)
    /// Twice the lease, in seconds: the commit's own time after the writer's check, and the file
    /// system's clock (which stamps the claim) against this process's, are well inside it.
    public static let shortestCollectionAge: Double = 60
}

extension EventStore {
    /// Waits up to a second: see ``waitForEvents(after:timeout:)``.
    public func waitForEvents(after position: UInt64) async -> Bool {
        await waitForEvents(after: position, timeout: .seconds(1))
    }

    /// Appends one command. - Throws: its refusal (``CommandError``, or `refusalUnlessRetry`: see
    /// ``CommandSubmission/refusalUnlessRetry``) or the store's failure.
    public func execute(
        _ command: Command, metadata: RequestMetadata, refusalUnlessRetry: (any Error & Sendable)? = nil, answersMismatch: Bool = false,
        claimedBlobsAt: ContinuousClock.Instant? = nil
    ) async throws -> CommandOutcome {
        let submission = CommandSubmission(
            command, metadata: metadata, refusalUnlessRetry: refusalUnlessRetry, answersMismatch: answersMismatch, claimedBlobsAt: claimedBlobsAt)
        guard let result = await append([submission]).first else {
            throw StoreError(.closed, "the store answered nothing")
        }
        return try result.get()
    }
}

/// Typed reads of one snapshot: the projection state the decider sees, pages of the views, and the
/// log. Valid only inside ``EventStore/read(_:)``.
public protocol StoreSnapshot: ProjectionState {
    /// The position of the last event, 0 for an empty log.
    func lastPosition() throws -> UInt64
    /// The position the projections reflect.
    func checkpoint() throws -> UInt64
    /// Up to `limit` events after `position`, in order.
    func events(after position: UInt64, limit: Int) throws -> [EventEnvelope]
    /// The records of up to `count` events from `position` on, byte for byte as the log holds them,
    /// ending early (after at least one) once they hold `byteBudget` bytes. Fewer than `count` within
    /// the budget means the log ends (or has a gap) there.
    func eventRecords(from position: UInt64, count: Int, byteBudget: Int) throws -> [[UInt8]]
    /// The hash of the Merkle tree's complete subtree (`level`, `index`) (``MerkleTree``): every
    /// one over the log's events is kept.
    func merkleNode(level: UInt8, index: UInt64) throws -> [UInt8]
    /// The hashes of the consecutive complete subtrees (`level`, i) for each i in `indices` (a
    /// hash tile's): one read where a backend pays per round trip.
    func merkleNodes(level: UInt8, indices: Range<UInt64>) throws -> [[UInt8]]
    /// The hashes of the complete subtrees at `coordinates`, in their order (a proof's, which lie
    /// on several levels): one read where a backend pays per round trip.
    func merkleNodes(at coordinates: [MerkleTree.NodeCoordinate]) throws -> [[UInt8]]
    /// The layer `digest` in each of `repositories`, in their order: one read where a backend pays
    /// per round trip (a registry mount without `from` looks through many repositories).
    func layers(_ digest: String, in repositories: [RepositoryRef]) throws -> [LayerRecord?]
    /// The newest checkpoint the log signed (``EventStore/keep(_:signedAs:)``), if any.
    func latestSignedCheckpoint() throws -> SignedCheckpoint?
    /// Every checkpoint the log signed, smallest tree first.
    func signedCheckpoints() throws -> [SignedCheckpoint]
    /// Up to `limit` repositories of the registry whose names sort after `name`, in name order.
    func repositories(in registryId: String, after name: String?, limit: Int) throws -> [RepositorySummary]
    /// Up to `limit` images of the repository whose digests sort after `digest`, in digest order,
    /// each with its manifest empty (``UploadCore/ImageRecord/withoutManifest(_:)``): listings show
    /// everything else, and a manifest may hold 4 MiB.
    func imagesWithoutManifests(in ref: RepositoryRef, after digest: String?, limit: Int) throws -> [ImageRecord]
    /// The image, with its manifest empty, as ``imagesWithoutManifests(in:after:limit:)`` reads it.
    func imageWithoutManifest(_ ref: RepositoryRef, _ digest: String) throws -> ImageRecord?
    /// The image of each of `digests`, in their order, as ``imageWithoutManifest(_:_:)`` reads it:
    /// one read where a backend pays per round trip (a page of tags names many images). Each
    /// record read still holds its manifest until it is cut out, so callers ask for a few at once.
    func imagesWithoutManifests(_ ref: RepositoryRef, _ digests: [String]) throws -> [ImageRecord?]
    /// The image of each of `digests`, in their order, manifest and all: one read where a backend
    /// pays per round trip (a page of referrers). Callers ask for a few at once.
    func images(_ ref: RepositoryRef, _ digests: [String]) throws -> [ImageRecord?]
    /// The record of each of the tags `names`, in their order: one read where a backend pays per
    /// round trip (DescribeImages names up to 100 images by tag).
    func tags(_ ref: RepositoryRef, _ names: [String]) throws -> [TagRecord?]
    /// The tags of each of the images `digests`, in their order, each list in byte order as
    /// ``UploadCore/ProjectionState/tags(of:in:)`` gives it: one read where a backend pays per
    /// round trip (a page that shows many images' tags).
    func tags(of digests: [String], in ref: RepositoryRef) throws -> [[String]]
    /// Up to `limit` tags of the repository that sort after `tag`, in tag order.
    func tags(in ref: RepositoryRef, after tag: String?, limit: Int) throws -> [(name: String, record: TagRecord)]
    /// The tags of the repository's images whose digests sort from `first` through `last`, by digest
    /// and then tag in byte order: the tags of a page of images in one read.
    func imageTags(in ref: RepositoryRef, from first: String, through last: String) throws -> [(digest: String, tag: String)]
    /// Up to `limit` of the repository's images whose manifests name `subject`, with digests that
    /// sort after `referrer`, in digest order: the referrers index a page at a time.
    func referrers(of subject: String, in ref: RepositoryRef, after referrer: String?, limit: Int) throws -> [String]
    /// The position of every UploadInitiated recorded in `since ..< until` (either bound
    /// optional), in time order, with its repository (`registryId/name`): the auditors' index.
    func initiationMarks(since: Timestamp?, until: Timestamp?) throws -> [(position: UInt64, repository: String)]
    /// Up to `limit` entries of the same index, newest first, from before `cursor` (from the newest
    /// when `nil`): for pages that show the latest initiations without reading a whole window.
    func newestInitiationMarks(before cursor: StoreCursor?, limit: Int) throws -> [InitiationMark]
    /// Up to `limit` completed layers of every repository, after `cursor` (from the first when
    /// `nil`), with the cursor of each for the next page.
    func layers(after cursor: StoreCursor?, limit: Int) throws -> [(cursor: StoreCursor, layer: LayerRecord)]
    /// Up to `limit` completed layers of one repository, after the layer `digest` (from the first
    /// when `nil`), in byte order of their digests.
    func layers(in ref: RepositoryRef, after digest: String?, limit: Int) throws -> [LayerRecord]
    /// Up to `limit` repositories' logos (``RepositoryDetails/logoImageDigest``) after `cursor`
    /// (from the first when `nil`), each with its cursor for the next page: `nil` for a repository
    /// with catalog data but no logo.
    func repositoryLogos(after cursor: StoreCursor?, limit: Int) throws -> [(cursor: StoreCursor, logo: String?)]
}

extension StoreSnapshot {
    /// Every event after `position` (the whole log by default), in order.
    public func events(after position: UInt64 = 0) throws -> [EventEnvelope] { try events(after: position, limit: .max) }
}

extension SnapshotReading {
    /// The digests of every blob the projections name: each repository's completed layers and its
    /// logo, in byte order, without repeats, read where the projections stand at the log's tail
    /// (``forEachNamedBlob(atTheTail:_:)``). What commits after a page was read named a blob it
    /// claimed first (`BlobStorage.claimBlob`): what the blob collector relies on.
    /// - Throws: ``StoreError`` `.io` when the projections trail the log for all of `patience`
    ///   (their commit fails: `stats` shows the checkpoint lag).
    public func referencedBlobDigests(patience: Duration = .seconds(10)) throws -> [String] {
        var digests = Set<String>()
        try forEachNamedBlob(atTheTail: patience) { blob in
            digests.insert(blob.digest)
            return true
        }
        return digests.sorted { $0.precedesByBytes($1) }
    }

    /// Visits the blob each completed layer of every repository names (with the size the layer
    /// records), then each repository's logo (no size recorded), a page per read snapshot (a long walk holds none for long), until `visit` returns
    /// `false`. With `patience`, each page is read where the projections stand at the log's tail,
    /// so that no event committed before it is missed: a snapshot that catches a writer between
    /// its log's commit and its projections' is read again, for up to `patience`.
    public func forEachNamedBlob(atTheTail patience: Duration?, _ visit: (_ blob: (digest: String, namedBy: String, size: UInt64?)) -> Bool) throws {
        var after: StoreCursor?
        repeat {
            let page = try read(atTheTail: patience) { try $0.layers(after: after, limit: 1024) }
            for entry in page where !visit((entry.layer.layerDigest, "layer", entry.layer.layerSize)) { return }
            after = page.count == 1024 ? page.last?.cursor : nil
        } while after != nil
        repeat {
            let page = try read(atTheTail: patience) { try $0.repositoryLogos(after: after, limit: 1024) }
            for entry in page { if let logo = entry.logo, !visit((logo, "logo", nil)) { return } }
            after = page.count == 1024 ? page.last?.cursor : nil
        } while after != nil
    }

    private func read<T>(atTheTail patience: Duration?, _ body: (any StoreSnapshot) throws -> T) throws -> T {
        guard let patience else { return try read(body) }
        return try readAtTheTail(patience: patience, body)
    }

    /// `body` run on a snapshot whose projections stand at (or past) its log's tail.
    private func readAtTheTail<T>(patience: Duration, _ body: (any StoreSnapshot) throws -> T) throws -> T {
        let deadline = ContinuousClock.now + patience
        while true {
            var lag: UInt64 = 0
            let page: T? = try read { snapshot in
                let (checkpoint, tail) = (try snapshot.checkpoint(), try snapshot.lastPosition())
                guard checkpoint >= tail else {
                    lag = tail - checkpoint
                    return nil
                }
                return try body(snapshot)
            }
            if let page { return page }
            guard ContinuousClock.now < deadline else {
                throw StoreError(.io, "the projections trail the log by \(lag) events (stats' checkpoint lag): the blobs those events name cannot be told from garbage until they catch up")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }
}

/// A place in a store's walk of a whole view; opaque to callers.
public struct StoreCursor: Sendable, Equatable {
    let key: [UInt8]

    init(key: [UInt8]) { self.key = key }

    /// The cursor as text, for a link to the next page.
    public var text: String { Hex.encode(key) }

    /// A cursor from its ``text``; `nil` for text that is not one.
    public init?(text: String) {
        guard text.utf8.count <= 1024, let key = Hex.decode(text), !key.isEmpty else { return nil }
        self.key = key
    }
}

extension StoreSnapshot {
    /// The records of up to `count` events from `position` on, whatever their size.
    public func eventRecords(from position: UInt64, count: Int) throws -> [[UInt8]] {
        try eventRecords(from: position, count: count, byteBudget: .max)
    }

    public func merkleNodes(level: UInt8, indices: Range<UInt64>) throws -> [[UInt8]] {
        try indices.map { try merkleNode(level: level, index: $0) }
    }

    public func merkleNodes(at coordinates: [MerkleTree.NodeCoordinate]) throws -> [[UInt8]] {
        try coordinates.map { try merkleNode(level: $0.level, index: $0.index) }
    }

    public func layers(_ digest: String, in repositories: [RepositoryRef]) throws -> [LayerRecord?] {
        try repositories.map { try layer($0, digest) }
    }

    public func imagesWithoutManifests(_ ref: RepositoryRef, _ digests: [String]) throws -> [ImageRecord?] {
        try digests.map { try imageWithoutManifest(ref, $0) }
    }

    public func images(_ ref: RepositoryRef, _ digests: [String]) throws -> [ImageRecord?] {
        try digests.map { try image(ref, $0) }
    }

    public func tags(_ ref: RepositoryRef, _ names: [String]) throws -> [TagRecord?] {
        try names.map { try tag(ref, $0) }
    }

    public func tags(of digests: [String], in ref: RepositoryRef) throws -> [[String]] {
        try digests.map { try tags(of: $0, in: ref) }
    }

    /// Up to `limit` events after `position`, ending early (after at least one) once their records
    /// hold `byteBudget` bytes: an `ImagePushed` carries a manifest of up to 4 MiB, so a reader of
    /// a run of them holds a few at a time, not `limit`. The first read takes one record; each
    /// later one at most 16, and no more than the budget left holds at the largest size so far, so
    /// that large records are seldom read only to be dropped.
    /// - Throws: ``StoreError`` `.corrupt` when the log lacks a position before its tail.
    public func events(after position: UInt64, limit: Int, byteBudget: Int) throws -> [EventEnvelope] {
        var events: [EventEnvelope] = [], bytes = 0, largest = 1
        guard position < UInt64.max else { return events }
        var next = position + 1, asked = 1
        while events.count < limit, bytes < byteBudget {
            asked = min(asked, limit - events.count)
            let records = try eventRecords(from: next, count: asked)
            var used = 0
            for record in records {
                guard bytes < byteBudget else { break }
                events.append(try EventLog.decode(position: next, record[...]))
                bytes += record.count
                largest = max(largest, record.count)
                next += 1
                used += 1
            }
            if used < records.count { break }  // the budget is spent
            if records.count < asked {
                guard next > (try lastPosition()) else { throw StoreError(.corrupt, "the event log has no event at position \(next)") }
                break  // the log's tail
            }
            asked = max(1, min(16, (byteBudget - min(bytes, byteBudget)) / largest))
        }
        return events
    }
}

extension EventEnvelope {
    /// What a reader that walks the log page by page holds of it at once, in records' bytes
    /// (``StoreSnapshot/events(after:limit:byteBudget:)``): the feeds, `events`, a backup's look-ups.
    public static let pageBytes = 1 << 20
}
