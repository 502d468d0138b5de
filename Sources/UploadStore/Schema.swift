import LMDBKit
import UploadCore

/// The named databases of a store, opened once and valid for the environment's life.
struct Schema: Sendable {
    static let eventsName = "events"
    static let projectionStateName = "projection-state"

    let events: Database
    let projectionState: Database
    let merkleNodes: Database
    let tables: [ProjectionTable: Database]

    /// Opens every database. Fails when one is missing, which means migrations have not run.
    init(_ txn: Transaction) throws {
        func open(_ name: String) throws -> Database {
            guard let db = try txn.openDatabase(name) else {
                throw StoreError(.migration, "the store lacks its '\(name)' database; run `upload-coordinator migrate`")
            }
            return db
        }
        events = try open(Self.eventsName)
        projectionState = try open(Self.projectionStateName)
        merkleNodes = try open(MerkleLog.databaseName)
        var tables: [ProjectionTable: Database] = [:]
        for table in ProjectionTable.allCases { tables[table] = try open(table.rawValue) }
        self.tables = tables
    }

    func database(_ table: ProjectionTable) -> Database { tables[table]! }
}
