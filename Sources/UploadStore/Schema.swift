import LMDBKit
import UploadCore

/// The log environment's databases (`data.mdb` in the data directory): the event log, its Merkle
/// tree, the checkpoints signed over it, and the record of who writes the projections without syncing them. Everything here is
/// committed durably before a command is answered. Opened once and valid for the environment's life.
struct Schema: Sendable {
    static let eventsName = "events"

    let events: Database
    let merkleNodes: Database
    let projectionWriters: Database
    let signedCheckpoints: Database

    /// Opens every database. Fails when one is missing, which means migrations have not run.
    init(_ txn: Transaction) throws {
        func open(_ name: String) throws -> Database {
            guard let db = try txn.openDatabase(name) else {
                throw StoreError(.migration, "the store lacks its '\(name)' database; run `upload-coordinator migrate`")
            }
            return db
        }
        events = try open(Self.eventsName)
        merkleNodes = try open(MerkleLog.databaseName)
        projectionWriters = try open(UnsyncedProjectionWriters.databaseName)
        signedCheckpoints = try open(SignedCheckpoint.databaseName)
    }
}

/// The projection environment's databases (``ProjectionEnvironment``): every table and the
/// checkpoint. They are derived from the log, so they are not migrated: they are created when
/// missing, and cleared and rebuilt when ``Projector/version`` changes.
struct ProjectionSchema: Sendable {
    static let projectionStateName = "projection-state"

    let projectionState: Database
    let tables: [ProjectionTable: Database]

    /// - Parameter create: create missing databases (a writable environment); otherwise a missing
    ///   one means the projections were never built there.
    init(_ txn: Transaction, create: Bool) throws {
        func open(_ name: String) throws -> Database {
            guard let db = try txn.openDatabase(name, create: create) else {
                throw StoreError(.corrupt, "the projections lack their '\(name)' database; open the store for writing (serve, migrate) to rebuild them")
            }
            return db
        }
        projectionState = try open(Self.projectionStateName)
        var tables: [ProjectionTable: Database] = [:]
        for table in ProjectionTable.allCases { tables[table] = try open(table.rawValue) }
        self.tables = tables
    }

    func database(_ table: ProjectionTable) -> Database { tables[table]! }
}
