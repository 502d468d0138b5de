import LogHashing
import Logging
import PostgresKit
import UploadCore

/// The PostgreSQL backend's batches (``BatchCommitter``): one transaction per batch on the writer's
/// own connection, holding the append lock (``PostgresLog/appendLockKey``) that every node takes,
/// so each batch continues from the true tail whichever node wrote last. The log, the Merkle tree
/// and the projections commit together, durably (`synchronous_commit`), and the commit notifies
/// every node's live feeds.
final class PostgresCommitter: BatchCommitter {
    private let url: String
    private let configuration: StoreConfiguration
    /// The writer's connection, opened again after it fails; used only on the writer's thread.
    nonisolated(unsafe) private var connection: PostgresConnection?
    /// The retry window: the decision cache valid at a log position, brought to the tail inside
    /// each transaction from the marks every node wrote. Used only on the writer's thread.
    nonisolated(unsafe) private var invocations: InvocationWindow
    /// The decision cache: the projection records this node's batches read or wrote, valid at the
    /// log position ``cacheValidAt``. A batch that finds the tail elsewhere (another node appended)
    /// starts it afresh; so does any failure (it may hold the writes of a batch rolled back).
    /// Used only on the writer's thread.
    nonisolated(unsafe) private var cache = DecodedRecords()
    nonisolated(unsafe) private var cacheValidAt: UInt64?
    /// The Merkle tree's right edge after this node's last batch (the last node completed at each
    /// level: every node a later leaf can need), valid with the cache at ``cacheValidAt``. Used
    /// only on the writer's thread.
    nonisolated(unsafe) private var rightEdge: [MerkleNodeAddress: MerkleTree.Hash] = [:]
    /// What the caches (the retry window, the decision cache, the right edge) last saw of the log:
    /// the Merkle leaf hash of the event at the retry window's position. Each batch and each
    /// catch-up first checks that the log still holds that event there. A failover to a standby
    /// that had not received the last commits, or a database restored from a backup, puts other
    /// events at positions this node has seen, which positions alone cannot tell: the caches would
    /// answer retries of calls the log no longer holds, and decide from records it no longer has.
    /// Then every cache starts afresh from the log as it now stands. (A record holds its request's
    /// own id and time: another history does not put the same record at the same position.) Used
    /// only on the writer's thread.
    nonisolated(unsafe) private var witness: (position: UInt64, leaf: MerkleTree.Hash)?
    /// When this node last reported its clock off the database's (``measureClock(database:sent:)``).
    nonisolated(unsafe) private var skewReportedAt: ContinuousClock.Instant?
    /// Whether the last batch found the tail moved by another node since this node's batch before:
    /// then the next one asks for the marks up front. Used only on the writer's thread.
    nonisolated(unsafe) private var othersAppendedBeforeLastBatch = false
    /// How many batches found other nodes' marks they had not asked for up front, and read them in
    /// a round trip of their own, inside the lock. Used only on the writer's thread; read by tests.
    nonisolated(unsafe) private(set) var marksReadAlone = 0
    /// The most records, and about the most bytes, the cache holds before it starts afresh.
    static let cacheLimit = (records: 100_000, bytes: 64 << 20)
    private var cacheIsFull: Bool { cache.records.count > Self.cacheLimit.records || cache.bytesHeld > Self.cacheLimit.bytes }

    private let notifier: CommitNotifier

    /// This node's clock set to the database's, which each batch's first round trip measures.
    private let databaseClock: DatabaseClock

    init(url: String, configuration: StoreConfiguration, notifier: CommitNotifier, databaseClock: DatabaseClock = DatabaseClock()) {
        self.url = url
        self.configuration = configuration
        self.notifier = notifier
        self.databaseClock = databaseClock
        invocations = InvocationWindow(limit: configuration.retryWindow)
    }

    /// What each batch's transaction insists on, whatever the server's, the role's or the
    /// session's settings (set in the transaction itself, so that a pooler that hands the session
    /// to others between transactions cannot lose them):
    /// - commits are durable when they return (answers follow them);
    /// - a batch waits at most 30 s for the append lock (then its callers get ServerException);
    /// - a writer that stops in the middle of a transaction (a node frozen or cut off) has it
    ///   ended by the server after 10 s, which releases the append lock for the other nodes;
    /// - no `statement_timeout` a role or database sets cuts a batch: the writer bounds its own
    ///   waits (`--database-answer-limit`), and a cut batch would be its callers' ServerException.
    static let batchSettings = PostgresConnection.Query("""
        SELECT set_config('synchronous_commit', 'on', true), set_config('lock_timeout', '30s', true),
               set_config('idle_in_transaction_session_timeout', '10s', true), set_config('statement_timeout', '0', true)
        """)

    /// The retry window is brought to the tail inside the append lock; when it is this far behind
    /// (other nodes wrote much since this node's last batch), most of that is done first, outside.
    static let catchUpOutsideTheLock: UInt64 = 10_000

    func start() {
        do {
            try catchUpOutsideTheLock(try writerConnection())
        } catch {
            configuration.logger.error("the retry window could not be filled at start", metadata: ["error": "\(error)"])
        }
    }

    func commit(
        _ batch: [GroupCommitWriter.Pending], isolating isolated: [Int: any Error]
    ) throws -> (results: GroupCommitWriter.Results, tail: UInt64) {
        var opened: PostgresConnection?
        do {
            let connection = try writerConnection()
            opened = connection
            if notifier.tail > invocations.validAt + Self.catchUpOutsideTheLock {
                // Only a head start: the batch catches up inside the lock whatever happens here.
                do { try catchUpOutsideTheLock(connection) } catch {
                    configuration.logger.warning("the retry window could not be caught up outside the append lock", metadata: ["error": "\(error)"])
                }
            }
            let (results, path) = try appendBatch(batch, isolated: isolated, connection)
            invocations.absorb(path.marks)
            invocations.committed(upTo: path.position, now: path.now)
            cacheValidAt = path.position
            return (results, path.position)
        } catch {
            cacheValidAt = nil
            // A connection left in a transaction (a failed rollback), or in a read-only session,
            // would fail every later batch.
            let postgresError = (error as? PostgresError) ?? ((error as? CommandFailure)?.error as? PostgresError)
            if let opened, !opened.isUsable || !opened.isIdle || postgresError?.endsTheSession == true { self.connection = nil }
            // A database error is the batch's, not one command's (the write path blames the
            // command it was writing), and its detail (host, role, SQL) is for the log only.
            guard let failure = postgresError else { throw error }
            configuration.logger.error("a batch failed in PostgreSQL", metadata: ["error": "\(failure)", "batch.commands": "\(batch.count)"])
            throw StoreError(
                .io, "the database failed during the write (the server's log has the detail); it may or may not have been kept: a retry with the same amz-sdk-invocation-id gets its answer",
                isForCallers: true, passing: Self.passing(failure))
        }
    }

    /// Brings the retry window to the tail in a read-only transaction of its own, outside the
    /// append lock: at start, and when other nodes wrote much since this node's last batch.
    private func catchUpOutsideTheLock(_ connection: PostgresConnection) throws {
        do {
            try connection.transaction("ISOLATION LEVEL REPEATABLE READ READ ONLY") {
                if let witness { try forgetIfTheLogChanged(leaf: Self.leaf(connection, at: witness.position)) }
                let tail = try PostgresLog.lastPosition(connection) ?? 0
                let leaf = try Self.leaf(connection, at: tail)
                try invocations.catchUp(tail: tail, marks: Self.marks(connection))
                witness = leaf.map { (tail, $0) }
            }
        } catch {
            // The window may have moved past the witness: neither is trusted after a failure.
            forgetTheCaches()
            throw error
        }
    }

    /// What a batch's caller may be told of `failure` when it passes (``StoreError/passing``): a
    /// connection never made, or a read-only session (a standby's), kept nothing; a connection cut
    /// during the batch may have been cut after its commit.
    static func passing(_ failure: PostgresError) -> String? {
        guard failure.endsTheSession else { return nil }
        return failure.connecting || failure.sqlState == "25006" ? StoreError.databaseUnreachable : StoreError.databaseUnreachableDuringAWrite
    }

    private static func leaf(_ connection: PostgresConnection, at position: UInt64) throws -> MerkleTree.Hash? {
        let query = PostgresLog.leafQuery(at: position)
        return PostgresLog.leaf(try connection.query(query.sql, query.parameters))
    }

    /// Starts every cache afresh when the log no longer holds the ``witness``'s event: `leaf` is
    /// the log's leaf hash at the witness's position, read in the caller's transaction.
    private func forgetIfTheLogChanged(leaf: MerkleTree.Hash?) {
        guard let witness, leaf != witness.leaf else { return }
        configuration.logger.error(
            "the log no longer holds the event this node saw at its position (a failover that lost commits, or a restore from a backup): the retry window, the decision cache and the tree's right edge start afresh from the log as it is now",
            metadata: ["log.position": "\(witness.position)"])
        forgetTheCaches()
    }

    private func forgetTheCaches() {
        invocations.forgetAll()
        cache = DecodedRecords()
        cacheValidAt = nil
        rightEdge = [:]
        self.witness = nil
    }

    /// When the writer's connection was last used; one idle longer than a second is checked
    /// before a batch is sent on it. Used only on the writer's thread.
    nonisolated(unsafe) private var lastUsed = ContinuousClock.now

    /// The writer's connection, checked when it has been idle: a server that restarted meanwhile
    /// has closed it, and a batch sent on it would fail although nothing of it reached the server.
    /// (A batch that fails after it began is never sent again: its commit may have happened.)
    private func writerConnection() throws -> PostgresConnection {
        defer { lastUsed = ContinuousClock.now }
        if let connection, connection.isUsable {
            guard ContinuousClock.now - lastUsed > .seconds(1) else { return connection }
            if (try? connection.query("SELECT 1")) != nil { return connection }
        }
        connection = nil
        let opened = try PostgresConnection(url: url)
        opened.answerLimit = configuration.databaseAnswerLimit
        connection = opened
        return opened
    }

    /// The batch's transaction, in two round trips: the first begins it, takes the append lock and
    /// reads what deciding needs (the tail, the projections' position, the records its commands
    /// will read, ``BatchReads``, and the marks since the retry window's if another node
    /// appended); the second writes everything and commits. Anything else the decider asks for
    /// that the cache lacks is read on the way, one query each.
    private func appendBatch(
        _ batch: [GroupCommitWriter.Pending], isolated: [Int: any Error], _ connection: PostgresConnection
    ) throws -> (results: GroupCommitWriter.Results, path: WritePath) {
        // The marks are asked for when another node is known to have appended (its commit's
        // notification came), or appended before this node's last batch (nodes taking turns at
        // the lock, whose commits land while this batch waits for it); one not foreseen shows in
        // the tail, and its marks are then read in a round trip of their own.
        let othersExpected = notifier.tail > invocations.validAt || othersAppendedBeforeLastBatch
        let marksFrom = othersExpected ? invocations.validAt + 1 : nil
        // The records the batch will read, asked for up front: all of them when the cache is
        // expected to start afresh (another node appended, the cache was lost or is full), else
        // those it lacks. Any other is read when asked for.
        let cacheKept = !othersExpected && cacheValidAt != nil && !cacheIsFull
        let reads = BatchReads(batch, settings: configuration.settings).lacking(in: cacheKept ? cache : nil)
        let readQueries = reads.queries
        do {
            let sent = (wall: SystemClock().now(), at: ContinuousClock.now)
            let opening = try connection.pipeline([
                // READ COMMITTED whatever the role's default: each read after the lock sees every
                // append before it (a snapshot taken at BEGIN would not).
                .init("BEGIN ISOLATION LEVEL READ COMMITTED"), Self.batchSettings,
                .init("SELECT pg_advisory_xact_lock(\(PostgresLog.appendLockKey))"), PostgresLog.tailAndProjectionsQuery,
                PostgresLog.leafQuery(at: witness?.position ?? 0),
            ] + [marksFrom.map(Self.marksQuery(from:))].compactMap { $0 } + readQueries)
            let (tail, projected, databaseTime) = try PostgresLog.tailAndProjections(opening[3])
            measureClock(database: databaseTime, sent: sent)
            let position = tail?.position ?? 0
            // Read under the append lock, the true tail: one announced above it was lost.
            if notifier.tail > position { notifier.observed(tail: position) }
            guard projected.version == Projector.version, projected.position == position else {
                throw StoreError(.corrupt, "the projections (layout \(projected.version.map(String.init) ?? "none"), at position \(projected.position)) do not follow this log (at \(position)); restart a node to rebuild them")
            }
            forgetIfTheLogChanged(leaf: PostgresLog.leaf(opening[4]))
            let now = invocations.decisionTime(wallClock: wallClock(), logTail: tail?.recordedAt)
            // Other nodes' calls since this node's last batch: a retry sent to another node is found.
            if marksFrom == nil && position != invocations.validAt { marksReadAlone += 1 }
            try invocations.catchUp(tail: position, marks: Self.marks(connection, firstPage: marksFrom.map { ($0, opening[5]) }))
            witness = tail.map { ($0.position, $0.leaf) }
            othersAppendedBeforeLastBatch = cacheValidAt != position
            if cacheValidAt != position || cacheIsFull {
                cache = DecodedRecords()
                rightEdge = [:]
            }
            var write = PostgresWriteTransaction(connection: connection, tail: position, decoded: cache, rightEdge: rightEdge)
            reads.note(opening.suffix(readQueries.count), in: write.tables)
            // The images a BatchDeleteImage's tags name, known now that the tags are: one round trip more.
            let imagesOfTags = reads.imagesNamedByTags(in: write.tables)
            let imagesOfTagsQueries = imagesOfTags.queries
            if !imagesOfTagsQueries.isEmpty { imagesOfTags.note(try connection.pipeline(imagesOfTagsQueries), in: write.tables) }
            var path = WritePath(
                settings: configuration.settings, retryWindow: configuration.retryWindow, blobClaimLease: configuration.blobClaimLease, tail: position, now: now)
            let results = try path.write(batch, isolating: isolated, in: &write, invocations: invocations)
            if path.position > position {
                try write.flush(projectionsAt: path.position, then: ["COMMIT"])
                rightEdge = write.rightEdge()
                // The batch's last leaf: the right edge's node of level 0.
                witness = rightEdge[MerkleNodeAddress(level: 0, index: path.position - 1)].map { (path.position, $0) }
            } else {
                try connection.execute("COMMIT")
            }
            return (results, path)
        } catch {
            // A lost connection has rolled back by itself; the error is the one to report.
            _ = try? connection.execute("ROLLBACK")
            throw error
        }
    }

    /// The wall clock a batch decides and records at: the database's, as ``DatabaseClock`` keeps
    /// it (measured by this batch's first round trip when that was short: one that waited for the
    /// append lock places its reading too loosely, and a wait past a second would look like a
    /// step), so that every node keeps one clock, its steps held off. A node whose own clock ran
    /// ahead would otherwise expire the uploads every other node holds (its sweeper leading), and
    /// record times the others must then follow. A clock a test gives stands for the wall clock.
    private func wallClock() -> Timestamp {
        configuration.clock is SystemClock ? databaseClock.now() : configuration.clock.now()
    }

    /// Measures this node's clock against `database`, read in the round trip sent at `sent`, for
    /// ``DatabaseClock``; a node more than ``skewToReport`` off is told, at most once a minute:
    /// request signatures are checked at the database's time, which its clients' clocks must keep.
    private func measureClock(database: Timestamp, sent: (wall: Timestamp, at: ContinuousClock.Instant)) {
        guard let offset = databaseClock.measure(database: database, sent: sent.wall, roundTrip: ContinuousClock.now - sent.at, sentAt: sent.at),
              offset.magnitude > Self.skewToReport,
              skewReportedAt.map({ ContinuousClock.now - $0 > .seconds(60) }) ?? true else { return }
        skewReportedAt = ContinuousClock.now
        configuration.logger.warning(
            "this node's clock is off the database's; it keeps the database's time, but keep its clock set (NTP)",
            metadata: ["clock.offset_ms": "\(offset)"])
    }

    /// How far this node's clock may be off the database's before it is reported, in milliseconds.
    static let skewToReport: UInt64 = 10_000

    /// A page of the invocation marks from position `from` on.
    static func marksQuery(from: UInt64) -> PostgresConnection.Query {
        PostgresConnection.Query(
            "SELECT key, value FROM projection_entries WHERE tbl = $1 AND key >= $2 ORDER BY key LIMIT \(marksPage)",
            [.text(ProjectionTable.invocationMarks.rawValue), .bytes(BigEndian.bytes(from))])
    }
    static let marksPage = 10_000

    /// Visits the invocation marks from a position on, in pages, for ``InvocationWindow``; a page
    /// already read (`firstPage`, the rows of ``marksQuery(from:)``) is visited without asking again.
    static func marks(
        _ connection: PostgresConnection, firstPage: (from: UInt64, rows: PostgresRows)? = nil
    ) -> (UInt64, (UInt64, [UInt8]) throws -> Bool) throws -> Void {
        { from, visit in
            var next = from
            while true {
                let page = marksQuery(from: next)
                let rows = if let firstPage, firstPage.from == next, next == from { firstPage.rows } else { try connection.query(page.sql, page.parameters) }
                for row in 0..<rows.count {
                    guard let position = BigEndian.uint64(rows.bytes(row, 0)) else {
                        throw StoreError(.corrupt, "invocation-marks has a key of \(rows.bytes(row, 0).count) bytes; positions are 8 bytes")
                    }
                    guard try visit(position, rows.bytes(row, 1)) else { return }
                    next = position + 1
                }
                guard rows.count == marksPage else { return }
            }
        }
    }
}

/// How far the projection tables have applied the log, and with which layout (`projection_state`).
struct PostgresProjectionState: Equatable {
    var position: UInt64
    var version: UInt32?

    static func read(_ connection: PostgresConnection) throws -> PostgresProjectionState {
        let rows = try connection.query("SELECT name, value FROM projection_state WHERE name IN ('position', 'version')")
        var state = PostgresProjectionState(position: 0, version: nil)
        for row in 0..<rows.count {
            let value = try rows.int64(row, 1)
            guard value >= 0, value <= Int64(UInt32.max) || rows.text(row, 0) == "position" else {
                throw StoreError(.corrupt, "projection_state holds \(value) for '\(rows.text(row, 0))'")
            }
            if rows.text(row, 0) == "position" { state.position = UInt64(value) } else { state.version = UInt32(value) }
        }
        return state
    }

    /// The rows that record this state.
    var rows: PostgresRowBatch {
        var rows = PostgresRowBatch(
            into: "projection_state", columns: [("name", .text), ("value", .int8)], onConflict: "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
        rows.append(.text("position"), .position(position))
        if let version { rows.append(.text("version"), .int64(Int64(version))) }
        return rows
    }
}
