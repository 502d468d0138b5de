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

/// The projection tables over one LMDB transaction: the live side of ``ProjectionTables``.
struct LMDBTables: ProjectionTables {
    let txn: Transaction
    let schema: Schema

    func record<R: ProjectionRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R? {
        try txn.get(schema.database(table), key).map { try R(decoding: $0) }
    }

    func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some ProjectionRecord) throws {
        try txn.put(schema.database(table), key, record.encoded())
    }

    func delete(_ table: ProjectionTable, _ key: [UInt8]) throws {
        try txn.delete(schema.database(table), key)
    }

    func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) throws -> [[UInt8]] {
        var keys: [[UInt8]] = []
        try txn.scan(schema.database(table), from: prefix) { key, _ in
            guard key.starts(with: prefix) else { return false }
            keys.append(Array(key))
            return true
        }
        return keys
    }
}
