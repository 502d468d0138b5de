import LMDBKit
import UploadCore

/// The projection tables over one transaction of the projection environment: the live side of
/// ``KeyedProjectionTables``.
struct LMDBTables: KeyedProjectionTables {
    let txn: Transaction
    let schema: ProjectionSchema
    /// The records this transaction has read or written, decoded, when it writes many commands:
    /// the decider and the projector read the same few records again and again (a repository's
    /// summary three times per initiation). Writes still go through at once.
    private let decoded: DecodedRecords?

    /// - Parameter caching: keep decoded records for the transaction's life (a writer's batch).
    init(txn: Transaction, schema: ProjectionSchema, caching: Bool = false) {
        self.init(txn: txn, schema: schema, cache: caching ? DecodedRecords() : nil)
    }

    /// - Parameter cache: where to keep decoded records for the transaction's life; it is emptied
    ///   first (a writer hands the same one to each batch, so its storage is allocated once).
    init(txn: Transaction, schema: ProjectionSchema, cache: DecodedRecords?) {
        self.txn = txn
        self.schema = schema
        cache?.removeAll()
        decoded = cache
    }

    func record<R: FieldRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R? {
        guard let decoded else { return try txn.get(schema.database(table), key).map { try R(decoding: $0) } }
        let cacheKey = DecodedRecords.Key(table, key)
        if let known = decoded.records[cacheKey] {
            guard let record = known else { return nil }
            guard let typed = record as? R else {
                throw CodecError("table \(table.rawValue) holds a \(Swift.type(of: record)), not a \(R.self)")
            }
            return typed
        }
        let bytes = try txn.get(schema.database(table), key)
        let record = try bytes.map { try R(decoding: $0) }
        decoded.remember(cacheKey, record, bytes: bytes?.count ?? 0)
        return record
    }

    func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some FieldRecord) throws {
        // A record read back from the cache is not decoded, so it is checked as decoding would.
        if decoded != nil { try record.validate() }
        let bytes = record.encoded()
        try txn.put(schema.database(table), key, bytes, options: table.keysOnlyGrow ? .append : [])
        decoded?.update(DecodedRecords.Key(table, key), to: record, bytes: bytes.count)
    }

    func delete(_ table: ProjectionTable, _ key: [UInt8]) throws {
        try txn.delete(schema.database(table), key)
        decoded?.update(DecodedRecords.Key(table, key), to: nil, bytes: 0)
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

/// Decoded records by table and key. For LMDB, one write transaction's (``LMDBTables``): emptied
/// as each transaction begins, so a transaction given up and written again starts with none (the
/// writer keeps one instance for its storage). It holds only while nothing writes a projection
/// table in that transaction except through the same ``LMDBTables``: a `txn.put` beside it would
/// be read back stale. For PostgreSQL, the writer's decision cache, kept across batches while the
/// log's tail stays where its last batch left it (``PostgresCommitter``). A record known to be
/// absent is kept too: an initiation asks whether its new upload id is taken, then writes it.
final class DecodedRecords {
    struct Key: Hashable {
        let table: ProjectionTable
        let bytes: [UInt8]
        init(_ table: ProjectionTable, _ bytes: [UInt8]) {
            self.table = table
            self.bytes = bytes
        }
        func hash(into hasher: inout Hasher) {
            hasher.combine(table)
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }

    /// What has been read: a record, or `.some(nil)` for one known to be absent.
    private(set) var records: [Key: (any FieldRecord)?] = [:]
    /// About how many bytes the records kept hold, as encoded: what bounds a cache kept across
    /// batches, beside its count (an image's record holds its manifest, up to 4 MiB: PostgreSQL's
    /// writer kept every pushed one, 300 MiB for 300 pushes of 1 MiB manifests). Counted as each
    /// record is kept, never taken back: an upper bound.
    private(set) var bytesHeld = 0

    /// Keeps `record` (`nil`: known to be absent), read as `bytes` bytes, under `key`.
    func remember(_ key: Key, _ record: (any FieldRecord)?, bytes: Int) {
        records[key] = .some(record)
        bytesHeld += bytes
    }

    /// Keeps a write of `bytes` bytes in step with what was read; keys never read (the write-only
    /// indexes) are not kept at all.
    func update(_ key: Key, to record: (any FieldRecord)?, bytes: Int) {
        guard let index = records.index(forKey: key) else { return }
        records.values[index] = record
        bytesHeld += bytes
    }

    func removeAll() {
        records.removeAll(keepingCapacity: true)
        bytesHeld = 0
    }
}
