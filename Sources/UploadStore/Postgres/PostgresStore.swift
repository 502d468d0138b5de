import Foundation
import LMDBKit
import LogHashing
import Logging
import PostgresKit
import Synchronization
import UploadMigrations
public import UploadCore

/// A store in PostgreSQL: the same log, Merkle tree, signed checkpoints and projections as
/// ``Store`` keeps in LMDB, for deployments of several `serve` nodes on one database.
///
/// Each node runs one ``GroupCommitWriter`` (its callers still share each commit) whose batches take
/// a transaction-scoped advisory lock: appends from every node are serialised, positions stay dense,
/// and each batch decides from the tail whichever node wrote it. Reads take a pooled connection and
/// one `REPEATABLE READ` snapshot, so they see every committed write of every node. Live feeds are
/// woken by `LISTEN`/`NOTIFY` from every node's commits.
public final class PostgresStore: EventStore {
    public let configuration: StoreConfiguration
    public let url: String
    private let pool: PostgresPool
    private let reader: PostgresReader
    private let writer: GroupCommitWriter
    private let notifier = CommitNotifier()
    private let listener: PostgresListener
    private let leadership: PostgresLeadership
    private let closing = Once()
    /// This node's clock set to the database's (``clock``).
    private let databaseClock: DatabaseClock
    public let migrationsAppliedAtOpen: [String]
    public let projectionLayoutReplacedAtOpen: UInt32?
    /// The projections' row counts and when they were read: `/metrics` is open to anyone, and a
    /// count is a scan of `projection_entries`, so scrapes in a loop read it at most once per
    /// ``countsInterval``, one scrape at a time (the log's position and lag are always read fresh).
    private let counts = Mutex<(read: ContinuousClock.Instant, counted: PostgresReader.ProjectionCounts)?>(nil)
    static let countsInterval = Duration.seconds(5)

    /// Opens the store at `url`: applies pending migrations under their advisory lock (unless
    /// `configuration.migrateOnOpen` is off), rebuilds the projections if their layout changed,
    /// and starts the writer and the listener.
    /// - Parameter poolSize: the most connections this node's readers hold at once (the writer and
    ///   the listener have one each besides).
    public init(url: String, configuration: StoreConfiguration, poolSize: Int = 8) throws {
        self.url = url
        self.configuration = configuration
        pool = PostgresPool(url: url, size: poolSize)
        reader = PostgresReader(pool: pool, answerLimit: configuration.databaseAnswerLimit, logger: configuration.logger)
        let notifier = self.notifier
        let databaseClock = DatabaseClock(logger: configuration.logger)
        self.databaseClock = databaseClock
        (migrationsAppliedAtOpen, projectionLayoutReplacedAtOpen) = try pool.withConnection { connection in
            var applied: [String] = []
            let status: MigrationStatus
            do { status = try PostgresMigrations.status(connection) } catch let error as MigrationError {
                throw StoreError(.migration, error.description)
            }
            switch status {
            case .current: break
            case .superseded(let unknown): throw StoreError(.migration, MigrationError.superseded(unknown).description)
            case .pending(let pending):
                guard configuration.migrateOnOpen else { throw StoreError(.migration, MigrationError.pending(pending).description) }
                do { applied = try PostgresMigrations.migrate(connection) } catch let error as MigrationError {
                    throw StoreError(.migration, error.description)
                }
            }
            try PostgresLog.refuseUnfinishedCopy(connection)
            let replaced = try PostgresProjectionRebuild.runIfNeeded(connection, changingLayout: configuration.migrateOnOpen, logger: configuration.logger)
            notifier.committed(upTo: try PostgresLog.lastPosition(connection) ?? 0)
            try Self.measure(databaseClock, on: connection)
            return (applied, replaced)
        }
        listener = PostgresListener(url: url, answerLimit: configuration.databaseAnswerLimit, notifier: notifier, logger: configuration.logger)
        leadership = PostgresLeadership(url: url, answerLimit: configuration.databaseAnswerLimit, logger: configuration.logger)
        writer = GroupCommitWriter(
            committer: PostgresCommitter(url: url, configuration: configuration, notifier: notifier, databaseClock: databaseClock),
            configuration: configuration, notifier: notifier)
    }

    public var settings: DecisionSettings { configuration.settings }
    /// The database's clock (``DatabaseClock``), unless the configuration gives a clock of its own
    /// (a test's), as decisions read it.
    public var clock: any Clock { configuration.clock is SystemClock ? databaseClock : configuration.clock }

    /// Measures `clock` against the database's by the shortest of three round trips.
    private static func measure(_ clock: DatabaseClock, on connection: PostgresConnection) throws {
        var best: (database: Timestamp, sent: Timestamp, roundTrip: Duration, started: ContinuousClock.Instant)?
        for _ in 0..<3 {
            let (sent, started) = (SystemClock().now(), ContinuousClock.now)
            let rows = try connection.query("SELECT " + DatabaseClock.expression)
            let sample = (Timestamp(millisecondsSinceEpoch: try rows.int64(0, 0)), sent, ContinuousClock.now - started, started)
            if best.map({ sample.2 < $0.roundTrip }) ?? true { best = sample }
        }
        if let best { clock.measure(database: best.database, sent: best.sent, roundTrip: best.roundTrip, sentAt: best.started) }
    }

    public func append(_ submissions: [CommandSubmission]) async -> [Result<CommandOutcome, any Error>] {
        await writer.submit(submissions)
    }

    /// Runs `body` in one `REPEATABLE READ READ ONLY` snapshot on a pooled connection (``PostgresReader``).
    public func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T { try reader.read(body) }
    public var readsWaitOnTheNetwork: Bool { true }
    public var commitsMayLandLate: Bool { true }

    /// Runs `body` on a pooled connection, outside any snapshot: for the store's own writes
    /// that are not commands (a copy's records, a rebuild).
    func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T { try pool.withConnection(body) }

    public func waitForEvents(after position: UInt64, timeout: Duration) async -> Bool {
        await notifier.wait(after: position, timeout: timeout)
    }

    public var followersStopped: Bool { notifier.isClosed }
    /// Whether this node hears other nodes' commits now (its listener is connected).
    package var hearsOtherNodes: Bool { listener.isListening }
    public func stopFollowers() { notifier.close() }

    public func statistics() throws -> StoreStatistics {
        let cached = counts.withLock { kept -> PostgresReader.ProjectionCounts? in
            guard let last = kept else { return nil }
            let now = ContinuousClock.now
            if now - last.read < Self.countsInterval { return last.counted }
            // This scrape counts again; those meanwhile take the last counts rather than count too.
            kept = (now, last.counted)
            return nil
        }
        return try reader.statistics(counted: cached) { fresh in counts.withLock { $0 = (ContinuousClock.now, fresh) } }
    }

    public func keep(_ checkpoint: SignedCheckpoint, signedAs identity: LogIdentity) throws -> SignedCheckpoint {
        do {
            return try pool.withConnection { connection in
                // Under the append lock: the identity check and the insert are one step for every
                // node. Bounded as the writer is: a shutdown signs last, and waits for this.
                try connection.answering(within: configuration.databaseAnswerLimit) { try PostgresLog.underAppendLock(connection) {
                    try PostgresLog.refuseUnfinishedCopy(connection)  // a copy begun since this node opened the database
                    let last = try PostgresLog.latestSignedCheckpoint(connection)
                    if let last { try identity.check(last) }
                    if let last, last.size > checkpoint.size { return last }  // another node's, kept meanwhile: never a smaller tree
                    let kept = try connection.query("SELECT note FROM signed_checkpoints WHERE size = $1", [.position(checkpoint.size)])
                    if !kept.isEmpty { return SignedCheckpoint(size: checkpoint.size, note: kept.text(0, 0)) }
                    try Self.checkTheLogHolds(checkpoint, connection)
                    try PostgresLog.checkpointRows([checkpoint]).run(on: connection)
                    return checkpoint
                } }
            }
        } catch let exhausted as PostgresPool.Exhausted {
            throw StoreError(.overloaded, "\(exhausted); try again")
        } catch let failure as PostgresError {
            // Its detail (host, role, SQL) is for the log, not for the client of `/log/checkpoint`.
            configuration.logger.error("a signed checkpoint could not be kept in PostgreSQL", metadata: ["error": "\(failure)"])
            throw StoreError(.io, "the checkpoint could not be kept (the server's log has the detail); try again", isForCallers: true)
        }
    }

    /// Refuses `checkpoint` unless the log holds its tree now. It was signed from a snapshot read
    /// before the append lock was taken: a failover that lost commits may have taken that tree
    /// back since, and a checkpoint kept of it would stop every later signing for good.
    private static func checkTheLogHolds(_ checkpoint: SignedCheckpoint, _ connection: PostgresConnection) throws {
        let size = checkpoint.size
        guard size > 0 else { return }
        let holds = try (PostgresLog.lastPosition(connection) ?? 0) >= size && MerkleTree.withNodesRead(
            by: { try PostgresLog.merkleNodes(connection, at: $0) }, orEach: { try PostgresLog.merkleNode(connection, level: $0, index: $1) }
        ) { node in try MerkleTree.rootHash(0, size, node: node) } == checkpoint.checkpoint().rootHash
        guard holds else {
            throw StoreError(.io, "the log no longer holds the tree of \(size) events the checkpoint was signed for (a failover that lost commits): the next signing signs the tree as it is")
        }
    }

    public func appliedMigrations() throws -> [String] {
        try pool.withConnection { try PostgresMigrations.applied($0) }
    }

    public func leads(_ duty: StoreDuty) -> Bool { leadership.leads(duty) }

    /// Writes every command already submitted, then stops the writer, the listener and any lead.
    public func close() async { await closing.run { await self.closeOnce() } }

    private func closeOnce() async {
        await writer.shutdown()
        notifier.close()
        listener.stop()
        leadership.resign()
    }

    /// The migrations recorded in the database at `url`, in the order applied, read without migrating.
    public static func appliedMigrations(url: String) throws -> [String] {
        try PostgresMigrations.applied(try PostgresConnection(url: url))
    }

    /// Whether the database carries `copy-store`'s mark of a copy that has not finished (read
    /// without migrating it).
    public static func holdsAnUnfinishedCopy(url: String) throws -> Bool {
        let connection = try PostgresConnection(url: url)
        guard try connection.query("SELECT to_regclass('projection_state') IS NOT NULL").bytes(0, 0) == [1] else { return false }
        return try connection.query("SELECT 1 FROM projection_state WHERE name = $1", [.text(PostgresLog.unfinishedCopyMark)]).count > 0
    }

    /// What the database holds that a copy into it would meet (``PostgresLog/heldLog(_:)``), read
    /// without migrating it (a database named by mistake may be a store an older binary still
    /// serves); `nil` for a new database, or one no store has written.
    public static func heldLog(url: String) throws -> String? {
        let connection = try PostgresConnection(url: url)
        // results come binary: a bool is one byte
        let migrated = try ["events", "signed_checkpoints"].allSatisfy { try connection.query("SELECT to_regclass($1) IS NOT NULL", [.text($0)]).bytes(0, 0) == [1] }
        return migrated ? try PostgresLog.heldLog(connection) : nil
    }
}
