import Foundation
import LMDBKit
import Logging
import PostgresKit
import UploadCore
import UploadMigrations

/// Read snapshots of a PostgreSQL store, and nothing else: what ``PostgresStore`` reads through,
/// and what auditors' and operators' tools open on their own (``StoreBackends/openForReading(directory:databaseURL:unreadableProjections:)``),
/// with no writer, no listener, no migration and no rebuild. Each read takes a pooled connection
/// and one `REPEATABLE READ READ ONLY` snapshot, so it sees every committed write of every node.
public final class PostgresReader: SnapshotReading {
    private let pool: PostgresPool
    private let logger: Logger
    private let projectionsReadAsEmpty: Bool
    /// How long each of a read's round trips may wait (``PostgresKit/PostgresConnection/answerLimit``);
    /// `nil` for the tools' readers, whose operator is there to stop them.
    private let answerLimit: Duration?

    /// A reader for a store a writer opens (and migrates) itself.
    init(pool: PostgresPool, answerLimit: Duration?, logger: Logger) {
        self.pool = pool
        self.logger = logger
        self.answerLimit = answerLimit
        projectionsReadAsEmpty = false
    }

    /// Opens a reader of the store at `url`. It holds one connection: a read inside another read
    /// would wait for it forever.
    /// - Throws: ``StoreError`` `.migration` when the database needs migrating (but for migrations
    ///   that only mark, ``PostgresMigrations/markingMigrations``), or (unless
    ///   `unreadable` is `.readAsEmpty`) its projections are of another layout than this binary's.
    public init(url: String, unreadableProjections unreadable: UnreadableProjections = .refuse, logger: Logger = Logger(label: "upload-coordinator")) throws {
        pool = PostgresPool(url: url, size: 1)
        self.logger = logger
        answerLimit = nil
        projectionsReadAsEmpty = try pool.withConnection { connection in
            if let refusal = try PostgresMigrations.status(connection).refusalToRead(toleratingPending: PostgresMigrations.markingMigrations) { throw StoreError(.migration, refusal.description) }
            // A copy that died part way may stop short of its source: nothing reads it as a store.
            try PostgresLog.refuseUnfinishedCopy(connection)
            let version = try PostgresProjectionState.read(connection).version
            guard version == Projector.version else {
                guard unreadable == .readAsEmpty else { throw StoreError.projections(ofLayout: version) }
                return true
            }
            return false
        }
    }

    /// Waits until every transaction that had begun to write when called has ended: one whose
    /// commit waits on a synchronous standby stays invisible until then, its locks held. Each
    /// writing transaction holds the lock of its own id, which `pg_locks` shows to every user (a
    /// snapshot's list of running ids does not: it leaves out the newest). Only this database's
    /// sessions count (`pg_stat_activity` shows every user which database a session is in), but a
    /// transaction left open in it after writing makes the wait end in a refusal.
    public func waitForCommitsInFlight(patience: Duration) throws {
        let deadline = ContinuousClock.now + patience
        let runningIds = """
            SELECT l.transactionid::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted AND a.datname = current_database()
            """
        try pool.withConnection { connection in
            guard try connection.query("SELECT pg_is_in_recovery()::text").text(0, 0) == "false" else {
                throw StoreError(.io, "the database is a standby: its reads trail the primary's commits; use the primary's URL")
            }
            let begun = try connection.query(runningIds)
            let ids = "{" + (0..<begun.count).map { begun.text($0, 0) }.joined(separator: ",") + "}"
            while true {
                let running = try connection.query(runningIds + " AND l.transactionid::text = ANY($1::text[])", [.text(ids)])
                if running.isEmpty { return }
                guard ContinuousClock.now < deadline else {
                    throw StoreError(.io, "transaction \(running.text(0, 0)) of the database server, begun before this read, has not ended (a commit waiting on a synchronous standby, or a transaction left open: pg_locks and pg_stat_activity show it); run again once it has")
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    /// The projections' row counts that `stats` and `/metrics` show.
    typealias ProjectionCounts = (activeSessions: Int, repositories: Int, images: Int)

    /// The store's figures, from one snapshot.
    public func statistics() throws -> StoreStatistics { try statistics(counted: nil) }

    /// The store's figures from one snapshot: the log's position and the projections' lag read
    /// fresh, their row counts `counted` if given, else counted now (a scan of
    /// `projection_entries`) and handed to `fresh`.
    func statistics(counted: ProjectionCounts?, fresh: (ProjectionCounts) -> Void = { _ in }) throws -> StoreStatistics {
        try read { snapshot in
            let position = try snapshot.lastPosition()
            // First, as it refuses projections of another layout: their rows are not counted.
            let checkpoint = try snapshot.checkpoint()
            // Projections read as empty hold nothing, whatever rows another layout left.
            let counts = try counted ?? (projectionsReadAsEmpty ? (0, 0, 0) : {
                let tables: [ProjectionTable] = [.activeUploads, .repositories, .images]
                let rows = try (snapshot as! PostgresSnapshot).connection.query(
                    "SELECT count(*) FILTER (WHERE tbl = $1), count(*) FILTER (WHERE tbl = $2), count(*) FILTER (WHERE tbl = $3) FROM projection_entries WHERE tbl IN ($1, $2, $3)",
                    tables.map { .text($0.rawValue) })
                let counted = (activeSessions: Int(try rows.int64(0, 0)), repositories: Int(try rows.int64(0, 1)), images: Int(try rows.int64(0, 2)))
                fresh(counted)
                return counted
            }())
            return StoreStatistics(
                logPosition: position, checkpointLag: position - min(position, checkpoint),
                activeSessions: counts.activeSessions, repositories: counts.repositories, images: counts.images,
                mapSizeBytes: 0, mapUsedBytes: 0, readers: 0, maxReaders: 0, projectionMapSizeBytes: 0, projectionMapUsedBytes: 0)
        }
    }

    /// Runs `body` in one `REPEATABLE READ READ ONLY` transaction, begun in the same round trip as a
    /// read of the projections' layout in its snapshot, and hands it the refusal of the projections
    /// when they are of another layout (`nil` when they are this binary's, or were never built): a
    /// node of an older binary, still serving while one of a newer binary has rebuilt the tables
    /// in its layout (a rolling upgrade, whose writes the batches already refuse), reads none of
    /// them rather than misread them, and still reads the log.
    static func inSnapshot<T>(_ connection: PostgresConnection, _ body: (_ otherLayout: StoreError?) throws -> T) throws -> T {
        let value: T
        do {
            let begun = try connection.pipeline([
                .init("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), .init("SELECT value FROM projection_state WHERE name = 'version'"),
            ])
            var otherLayout: StoreError?
            if begun[1].count > 0 {
                let version = try begun[1].int64(0, 0)
                if let layout = UInt32(exactly: version) {
                    if layout != Projector.version { otherLayout = StoreError.projections(ofLayout: layout) }
                } else {
                    otherLayout = StoreError(.corrupt, "projection_state holds \(version) for 'version'")
                }
            }
            value = try body(otherLayout)
        } catch {
            // A lost connection has rolled back by itself; the caller's error is the one to report.
            _ = try? connection.execute("ROLLBACK")
            throw error
        }
        try connection.execute("COMMIT")
        return value
    }

    /// Runs `body` in one read-only snapshot. A read that meets a lost connection before `body`
    /// begins (a pooled one the server closed when it restarted) runs once more on a new one. One
    /// lost while `body` runs is not run again: `body` may have changed its caller's state (a
    /// page's cursor), and a second run would mix two snapshots.
    public func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T {
        var began = false
        func attempt() throws -> T {
            try pool.withConnection { connection in
                try connection.answering(within: answerLimit) {
                    try Self.inSnapshot(connection) { otherLayout in
                        began = true
                        var snapshot = PostgresSnapshot(connection: connection, projectionsReadAsEmpty: projectionsReadAsEmpty)
                        if !projectionsReadAsEmpty { snapshot.projectionsRefused = otherLayout }
                        return try body(snapshot)
                    }
                }
            }
        }
        do {
            do {
                return try attempt()
            } catch let error as PostgresError where error.isConnectionFailure && !error.wentUnanswered && !error.connecting && !began {
                return try attempt()
            }
        } catch let exhausted as PostgresPool.Exhausted {
            throw StoreError(.overloaded, "\(exhausted); try again")
        } catch let failure as PostgresError {
            // Its detail (host, role, SQL) is for the log, not for a client.
            logger.error("a read failed in PostgreSQL", metadata: ["error": "\(failure)"])
            throw StoreError(.io, "the database could not be read (the server's log has the detail); try again", isForCallers: true, passing: failure.endsTheSession ? StoreError.databaseUnreachable : nil)
        }
    }
}
