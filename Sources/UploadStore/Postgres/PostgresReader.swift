import LMDBKit
import Logging
import PostgresKit
import UploadCore
import UploadMigrations

/// Read snapshots of a PostgreSQL store, and nothing else: what ``PostgresStore`` reads through,
/// and what auditors' and operators' tools open on their own (``StoreBackends/openForReading(directory:databaseURL:)``),
/// with no writer, no listener, no migration and no rebuild. Each read takes a pooled connection
/// and one `REPEATABLE READ READ ONLY` snapshot, so it sees every committed write of every node.
public final class PostgresReader: SnapshotReading {
    private let pool: PostgresPool
    private let logger: Logger

    /// A reader for a store a writer opens (and migrates) itself.
    init(pool: PostgresPool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    /// Opens a reader of the store at `url`, one connection at most.
    /// - Throws: ``StoreError`` `.migration` when the database needs migrating, or its projections
    ///   are of another layout than this binary's (open it for writing first: `migrate`, `serve`).
    public convenience init(url: String, logger: Logger = Logger(label: "upload-coordinator")) throws {
        self.init(pool: PostgresPool(url: url, size: 1), logger: logger)
        try pool.withConnection { connection in
            switch try PostgresMigrations.status(connection) {
            case .current: break
            case .superseded(let unknown): throw StoreError(.migration, MigrationError.superseded(unknown).description)
            case .pending(let pending): throw StoreError(.migration, MigrationError.pending(pending).description)
            }
            let version = try PostgresProjectionState.read(connection).version
            guard version == Projector.version else {
                throw StoreError(.migration, "the projections are of layout \(version.map(String.init) ?? "none"), not this binary's \(Projector.version): open the store for writing (migrate, serve) first")
            }
        }
    }

    /// Runs `body` in one read-only snapshot. A read that meets a lost connection (a pooled one the
    /// server closed when it restarted) runs once more on a new one: it wrote nothing, so running
    /// it again is safe.
    public func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T {
        func attempt() throws -> T {
            try pool.withConnection { connection in
                try connection.transaction("ISOLATION LEVEL REPEATABLE READ READ ONLY") { try body(PostgresSnapshot(connection: connection)) }
            }
        }
        do {
            do {
                return try attempt()
            } catch let error as PostgresError where error.isConnectionFailure {
                return try attempt()
            }
        } catch let failure as PostgresError {
            // Its detail (host, role, SQL) is for the log, not for a client.
            logger.error("a read failed in PostgreSQL", metadata: ["error": "\(failure)"])
            throw StoreError(.io, "the database could not be read (the server's log has the detail); try again")
        }
    }
}
