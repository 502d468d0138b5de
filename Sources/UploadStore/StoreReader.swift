import LMDBKit
public import UploadCore

/// Read access to one snapshot. Valid only inside ``Store/read(_:)``.
public struct StoreReader {
    let txn: Transaction
    let schema: Schema

    /// The position of the last event, 0 for an empty log.
    public func lastPosition() throws -> UInt64 { try EventLog.tail(txn, schema)?.position ?? 0 }

    /// Up to `limit` events after `position`, in order.
    public func events(after position: UInt64 = 0, limit: Int = .max) throws -> [EventEnvelope] {
        var events: [EventEnvelope] = []
        guard limit > 0 else { return events }
        try EventLog.scan(txn, schema, after: position) { envelope in
            events.append(envelope)
            return events.count < limit
        }
        return events
    }

    /// The projection tables, for typed look-ups (`session`, `repository`, `layer`, `image`, `tag`).
    public var tables: some ProjectionTables { LMDBTables(txn: txn, schema: schema) }

    public func session(_ uploadId: String) throws -> UploadSession? { try tables.session(uploadId) }
    public func repository(_ ref: RepositoryRef) throws -> RepositorySummary? { try tables.repository(ref) }

    /// Up to `limit` entries of `table` whose keys start with `prefix`, after the key
    /// `prefix + after` when given, in key order; each with its key's part after the prefix.
    public func entries(
        _ table: ProjectionTable, prefix: [UInt8], after: String? = nil, limit: Int
    ) throws -> [(name: String, value: [UInt8])] {
        var entries: [(name: String, value: [UInt8])] = []
        guard limit > 0 else { return entries }
        let start = prefix + Array((after ?? "").utf8)
        try txn.scan(schema.database(table), from: start) { key, value in
            guard key.starts(with: prefix) else { return false }
            let name = String(decoding: key.dropFirst(prefix.count), as: UTF8.self)
            if let after, name == after { return true }
            entries.append((name, Array(value)))
            return entries.count < limit
        }
        return entries
    }

    /// Up to `limit` entries of `table` after the key `after` (from the first when `nil`), in byte
    /// order, keys as stored: for walking a whole table, whose keys need not be text.
    public func entries(_ table: ProjectionTable, afterKey after: [UInt8]?, limit: Int) throws -> [(key: [UInt8], value: [UInt8])] {
        var entries: [(key: [UInt8], value: [UInt8])] = []
        guard limit > 0 else { return entries }
        try txn.scan(schema.database(table), from: after) { key, value in
            if let after, key.elementsEqual(after) { return true }
            entries.append((Array(key), Array(value)))
            return entries.count < limit
        }
        return entries
    }

    /// Every key of `table`, in byte order.
    public func keys(_ table: ProjectionTable) throws -> [[UInt8]] {
        var keys: [[UInt8]] = []
        try txn.scan(schema.database(table)) { key, _ in
            keys.append(Array(key))
            return true
        }
        return keys
    }

    /// How many entries `table` holds. - Complexity: O(1).
    public func count(_ table: ProjectionTable) throws -> Int { try txn.count(schema.database(table)) }

    /// The position the projections reflect.
    public func checkpoint() throws -> UInt64 { try ProjectionCheckpoint.read(txn, schema).position }
}
