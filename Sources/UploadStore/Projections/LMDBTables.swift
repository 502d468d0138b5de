import LMDBKit
import UploadCore

/// The projection tables over one LMDB transaction: the live side of ``KeyedProjectionTables``.
struct LMDBTables: KeyedProjectionTables {
    let txn: Transaction
    let schema: Schema

    func record<R: FieldRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R? {
        try txn.get(schema.database(table), key).map { try R(decoding: $0) }
    }

    func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some FieldRecord) throws {
        try txn.put(schema.database(table), key, record.encoded(), options: table.keysOnlyGrow ? .append : [])
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

    func entries<R: FieldRecord>(in table: ProjectionTable, withPrefix prefix: [UInt8], as type: R.Type) throws -> [(key: [UInt8], value: R)] {
        var entries: [(key: [UInt8], value: R)] = []
        try txn.scan(schema.database(table), from: prefix) { key, value in
            guard key.starts(with: prefix) else { return false }
            entries.append((Array(key), try R(decoding: Array(value))))
            return true
        }
        return entries
    }
}
