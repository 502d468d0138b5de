import Crypto
import PostgresKit
import UploadCore

/// The projection tables in PostgreSQL's `projection_entries`, over one transaction: the
/// PostgreSQL side of ``KeyedProjectionTables``, with the keys and records LMDB keeps.
///
/// A writer's changes are held in ``Changes`` until ``takeChanges()`` turns them into the
/// statements the batch's last round trip sends; every read looks at them first, so the batch
/// sees its own writes.
struct PostgresTables: KeyedProjectionTables {
    let connection: PostgresConnection
    /// The changes of this batch not yet sent, per table: a record, or `nil` for a deletion.
    final class Changes {
        private(set) var byTable: [ProjectionTable: [[UInt8]: [UInt8]?]] = [:]
        /// The changed keys in key order of each table a prefix was read from, so that a read of a
        /// prefix finds its own among them without looking at every other (a forced delete reads a
        /// prefix once an image). Made at a table's first such read: the tables only ever written
        /// to (most of a batch's changes) pay nothing.
        private var keysInOrder: [ProjectionTable: [[UInt8]]] = [:]
        var isEmpty: Bool { byTable.values.allSatisfy(\.isEmpty) }
        /// Ranges of keys this transaction read whole before it changed anything (``BatchReads``):
        /// every key stored under each prefix, in key order, by prefix.
        var keysRead: [ProjectionTable: [[UInt8]: [[UInt8]]]] = [:]

        /// The keys a range read whole holds under `prefix`: one read under `prefix` itself, or
        /// under a shorter prefix of it that ends at a 0x00 byte (each range a batch reads does: a
        /// repository's, an image's set). A look-up per candidate, not a scan of every range: a
        /// batch that deletes thousands of images reads thousands of ranges.
        func keysRead(_ table: ProjectionTable, under prefix: [UInt8]) -> [[UInt8]]? {
            guard let ranges = keysRead[table] else { return nil }
            let range = ranges[prefix] ?? prefix.indices.lazy.filter { prefix[$0] == 0 }.compactMap { ranges[Array(prefix[...$0])] }.first
            return range.map { keys in Array(keys[PostgresTables.firstIndex(notBefore: prefix, in: keys)...].prefix { $0.starts(with: prefix) }) }
        }

        /// Notes the change of `key` to `value` (`nil`: deleted).
        func change(_ table: ProjectionTable, _ key: [UInt8], to value: [UInt8]?) {
            guard byTable[table, default: [:]].updateValue(value, forKey: key) == nil,
                  let index = keysInOrder[table].map({ PostgresTables.firstIndex(notBefore: key, in: $0) }) else { return }
            keysInOrder[table]?.insert(key, at: index)  // in place: no other reference to the array is held
        }

        /// The changes of keys under `prefix`, in key order.
        func changes(in table: ProjectionTable, under prefix: [UInt8]) -> [(key: [UInt8], value: [UInt8]?)] {
            guard let values = byTable[table], !values.isEmpty else { return [] }
            let keys = keysInOrder[table] ?? values.keys.sorted(by: ProjectionKey.precedes)
            keysInOrder[table] = keys
            return keys[PostgresTables.firstIndex(notBefore: prefix, in: keys)...].prefix { $0.starts(with: prefix) }.map { ($0, values[$0]!) }
        }

        /// Forgets every change and range read: the database holds them now.
        func clear() {
            byTable = [:]
            keysInOrder = [:]
            keysRead = [:]
        }
    }

    /// The index of the first of `keys` (in key order) that does not sort before `key`.
    static func firstIndex(notBefore key: [UInt8], in keys: [[UInt8]]) -> Int {
        var low = 0, high = keys.count
        while low < high {
            let middle = (low + high) / 2
            if ProjectionKey.precedes(keys[middle], key) { low = middle + 1 } else { high = middle }
        }
        return low
    }
    private let changes = Changes()
    /// Decoded records read or written (as ``LMDBTables`` keeps them): this transaction's, or the
    /// writer's ``PostgresCommitter`` decision cache, which outlives a batch.
    private let decoded: DecodedRecords

    init(connection: PostgresConnection, decoded: DecodedRecords = DecodedRecords()) {
        self.connection = connection
        self.decoded = decoded
    }

    func record<R: FieldRecord>(_ table: ProjectionTable, _ key: [UInt8], as type: R.Type) throws -> R? {
        let cacheKey = DecodedRecords.Key(table, key)
        if let known = decoded.records[cacheKey] {
            guard let record = known else { return nil }
            guard let typed = record as? R else { throw CodecError("table \(table.rawValue) holds a \(Swift.type(of: record)), not a \(R.self)") }
            return typed
        }
        let bytes: [UInt8]?
        if let changed = changes.byTable[table]?[key] {
            bytes = changed
        } else {
            bytes = try Self.storedValue(connection, table, key)
        }
        let record = try bytes.map { try R(decoding: $0) }
        decoded.remember(cacheKey, record, bytes: bytes?.count ?? 0)
        return record
    }

    func put(_ table: ProjectionTable, _ key: [UInt8], _ record: some FieldRecord) throws {
        try record.validate()
        let bytes = record.encoded()
        changes.change(table, key, to: bytes)
        decoded.update(DecodedRecords.Key(table, key), to: record, bytes: bytes.count)
    }

    func delete(_ table: ProjectionTable, _ key: [UInt8]) throws {
        changes.change(table, key, to: nil)
        decoded.update(DecodedRecords.Key(table, key), to: nil, bytes: 0)
    }

    /// The keys alone: a forced DeleteRepository asks for a repository's image digests, whose
    /// records hold manifests of up to 4 MiB each.
    func keys(in table: ProjectionTable, withPrefix prefix: [UInt8]) throws -> [[UInt8]] {
        let stored = try storedKeys(in: table, withPrefix: prefix)
        let changed = changes.changes(in: table, under: prefix)
        guard !changed.isEmpty else { return stored }
        var present = Set(stored)
        for (key, value) in changed {
            if value == nil { present.remove(key) } else { present.insert(key) }
        }
        return present.sorted { ProjectionKey.precedes($0, $1) }
    }

    /// The keys stored under `prefix` when the transaction began: from a range it read whole, or
    /// read now.
    private func storedKeys(in table: ProjectionTable, withPrefix prefix: [UInt8]) throws -> [[UInt8]] {
        if let keys = changes.keysRead(table, under: prefix) { return keys }
        let rows = try Self.rows(connection, "key", table, prefix: prefix, after: nil, limit: .max)
        return (0..<rows.count).map { rows.bytes($0, 0) }
    }

    /// Keeps `keys`, the answer to a ``keysQuery(_:prefix:)`` sent before this transaction changed
    /// anything, as every key stored under `prefix`.
    func noteKeys(_ table: ProjectionTable, prefix: [UInt8], found keys: [[UInt8]]) {
        changes.keysRead[table, default: [:]][prefix] = keys
    }

    /// Every key of `table` under `prefix`, in key order.
    static func keysQuery(_ table: ProjectionTable, prefix: [UInt8]) -> PostgresConnection.Query {
        entriesQuery("key", table, prefix: prefix)
    }

    /// Every key of `table` under each of `prefixes`, in one query (a range scan of the index per
    /// prefix): rows of (the prefix's place in `prefixes`, from 1; a key), by place, then key.
    /// `nil` when there are none, or one has no end (``prefixEnd(_:)``: all 0xFF bytes).
    static func keysUnderEachQuery(_ table: ProjectionTable, prefixes: [[UInt8]]) -> PostgresConnection.Query? {
        let ends = prefixes.compactMap(prefixEnd)
        guard !prefixes.isEmpty, ends.count == prefixes.count else { return nil }
        return PostgresConnection.Query("""
            SELECT p.i, e.key FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS p(lo, hi, i)
            CROSS JOIN LATERAL (SELECT key FROM projection_entries WHERE tbl = $1 AND key >= p.lo AND key < p.hi) e
            ORDER BY p.i, e.key
            """, [
                .text(table.rawValue), .array(PostgresArray(of: .bytea, prefixes.lazy.map { .bytes($0) })),
                .array(PostgresArray(of: .bytea, ends.lazy.map { .bytes($0) })),
            ])
    }

    /// Keeps the answer to a ``keysUnderEachQuery(_:prefixes:)`` as every key stored under each of
    /// `prefixes`, as ``noteKeys(_:prefix:found:)`` does; an answer it cannot place is not kept
    /// (the keys are then read when asked for).
    func noteKeys(_ table: ProjectionTable, under prefixes: [[UInt8]], found rows: PostgresRows) {
        var keys = prefixes.map { _ in [[UInt8]]() }
        for row in 0..<rows.count {
            guard let place = try? rows.int64(row, 0), place >= 1, place <= keys.count else { return }
            keys[Int(place) - 1].append(rows.bytes(row, 1))
        }
        for (prefix, found) in zip(prefixes, keys) { noteKeys(table, prefix: prefix, found: found) }
    }

    func entries<R: FieldRecord>(in table: ProjectionTable, withPrefix prefix: [UInt8], as type: R.Type) throws -> [(key: [UInt8], value: R)] {
        try rawEntries(in: table, withPrefix: prefix).map { ($0.key, try R(decoding: $0.value)) }
    }

    /// The stored entries under `prefix` with this batch's changes laid over them, in key order.
    private func rawEntries(in table: ProjectionTable, withPrefix prefix: [UInt8]) throws -> [(key: [UInt8], value: [UInt8])] {
        var entries = try Self.stored(connection, table, prefix: prefix, after: nil, limit: .max)
        let changed = changes.changes(in: table, under: prefix)
        guard !changed.isEmpty else { return entries }
        var merged: [[UInt8]: [UInt8]] = [:]
        for entry in entries { merged[entry.key] = entry.value }
        for (key, value) in changed { merged[key] = value }
        entries = merged.map { ($0.key, $0.value) }
        entries.sort { ProjectionKey.precedes($0.key, $1.key) }
        return entries
    }

    /// Up to `limit` stored entries of `table` under `prefix` whose keys sort after `after` (from
    /// the prefix's first when `nil`), in key order.
    /// The value stored under `key` in `table`, as committed; `nil` when there is none.
    static func storedValue(_ connection: PostgresConnection, _ table: ProjectionTable, _ key: [UInt8]) throws -> [UInt8]? {
        let rows = try connection.query("SELECT value FROM projection_entries WHERE tbl = $1 AND key = $2", [.text(table.rawValue), .bytes(key)])
        return rows.isEmpty ? nil : rows.bytes(0, 0)
    }

    /// The stored values of `keys` in `table` that exist, in one query.
    static func storedValues(_ connection: PostgresConnection, _ table: ProjectionTable, _ keys: [[UInt8]]) throws -> [[UInt8]: [UInt8]] {
        guard !keys.isEmpty else { return [:] }
        let rows = try connection.query(
            "SELECT key, value FROM projection_entries WHERE tbl = $1 AND key = ANY($2)", [.text(table.rawValue), .array(PostgresArray(of: .bytea, keys.lazy.map { .bytes($0) }))])
        var values: [[UInt8]: [UInt8]] = [:]
        for row in 0..<rows.count { values[rows.bytes(row, 0)] = rows.bytes(row, 1) }
        return values
    }

    static func stored(
        _ connection: PostgresConnection, _ table: ProjectionTable, prefix: [UInt8], after: [UInt8]?, limit: Int
    ) throws -> [(key: [UInt8], value: [UInt8])] {
        let rows = try rows(connection, "key, value", table, prefix: prefix, after: after, limit: limit)
        return (0..<rows.count).map { (rows.bytes($0, 0), rows.bytes($0, 1)) }
    }

    /// The keys of `table` from `lower` (inclusive) to `upper` (exclusive), in key order.
    static func stored(_ connection: PostgresConnection, _ table: ProjectionTable, from lower: [UInt8], before upper: [UInt8]) throws -> [[UInt8]] {
        let rows = try connection.query(
            "SELECT key FROM projection_entries WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key",
            [.text(table.rawValue), .bytes(lower), .bytes(upper)])
        return (0..<rows.count).map { rows.bytes($0, 0) }
    }

    /// `columns` of the entries ``stored(_:_:prefix:after:limit:)`` names.
    private static func rows(
        _ connection: PostgresConnection, _ columns: String, _ table: ProjectionTable, prefix: [UInt8], after: [UInt8]?, limit: Int
    ) throws -> PostgresRows {
        let query = entriesQuery(columns, table, prefix: prefix, after: after, limit: limit)
        return try connection.query(query.sql, query.parameters)
    }

    /// The query of ``rows(_:_:_:prefix:after:limit:)``, to run or to send in a pipeline.
    private static func entriesQuery(
        _ columns: String, _ table: ProjectionTable, prefix: [UInt8], after: [UInt8]? = nil, limit: Int = .max
    ) -> PostgresConnection.Query {
        var sql = "SELECT \(columns) FROM projection_entries WHERE tbl = $1 AND key >= $2"
        var parameters: [PostgresValue] = [.text(table.rawValue), .bytes(prefix)]
        if let after {
            parameters.append(.bytes(after))
            sql += " AND key > $\(parameters.count)"
        }
        if let end = prefixEnd(prefix) {
            parameters.append(.bytes(end))
            sql += " AND key < $\(parameters.count)"
        }
        sql += " ORDER BY key"
        if limit < Int(Int64.max) {
            parameters.append(.int64(Int64(limit)))
            sql += " LIMIT $\(parameters.count)"
        }
        return PostgresConnection.Query(sql, parameters)
    }

    /// Up to `limit` entries of `table` with keys before `before` (every key when `nil`), greatest first.
    static func storedNewestFirst(
        _ connection: PostgresConnection, _ table: ProjectionTable, before: [UInt8]?, limit: Int
    ) throws -> [(key: [UInt8], value: [UInt8])] {
        var sql = "SELECT key, value FROM projection_entries WHERE tbl = $1"
        var parameters: [PostgresValue] = [.text(table.rawValue)]
        if let before {
            parameters.append(.bytes(before))
            sql += " AND key < $\(parameters.count)"
        }
        parameters.append(.int64(Int64(limit)))
        sql += " ORDER BY key DESC LIMIT $\(parameters.count)"
        let rows = try connection.query(sql, parameters)
        return (0..<rows.count).map { (rows.bytes($0, 0), rows.bytes($0, 1)) }
    }

    /// The first key past every key that starts with `prefix`; `nil` when there is none (an empty
    /// prefix, or one of 0xFF bytes only).
    static func prefixEnd(_ prefix: [UInt8]) -> [UInt8]? {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return nil
    }

    /// Rows for `projection_entries`, to be inserted as they are or (with `onConflict`) upserted.
    static func entryRows(onConflict: String = "") -> PostgresRowBatch {
        PostgresRowBatch(into: "projection_entries", columns: [("tbl", .text), ("key", .bytea), ("value", .bytea)], onConflict: onConflict)
    }

    /// The statements that write this batch's changes, which it then forgets: an upsert of the
    /// records written (one statement per ``PostgresRowBatch/rowsPerStatement``), and per table a deletion of the keys removed
    /// (each key is one or the other: ``Changes`` holds its last state).
    func takeChanges() -> [PostgresConnection.Query] {
        var upserts = Self.entryRows(onConflict: "ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value")
        var deletions: [PostgresConnection.Query] = []
        for table in ProjectionTable.allCases {
            guard let changed = changes.byTable[table], !changed.isEmpty else { continue }
            var removed = PostgresArray(of: .bytea)
            for (key, value) in changed {
                if let value { upserts.append(.text(table.rawValue), .bytes(key), .bytes(value)) } else { removed.append(.bytes(key)) }
            }
            // Not prepared, as no read is: a generic plan made while the table was small could
            // scan it for every key (``PostgresConnection/Query/prepared(_:_:)``).
            if removed.count > 0 {
                deletions.append(PostgresConnection.Query("DELETE FROM projection_entries WHERE tbl = $1 AND key = ANY($2::bytea[])", [.text(table.rawValue), .array(removed)]))
            }
        }
        changes.clear()
        return upserts.queries + deletions
    }

    /// The records of `keys` in `table`, in one query: what a batch will ask of each (new upload
    /// ids, the repositories and uploads its commands name), asked at once in the round trip that
    /// begins its transaction (``noteRecords(_:keys:found:as:)`` reads the answer). `nil` when
    /// there are no keys.
    static func recordsQuery(_ table: ProjectionTable, keys: [[UInt8]]) -> PostgresConnection.Query? {
        guard !keys.isEmpty else { return nil }
        // Not prepared: planned for these keys each time, an index look-up per key.
        return PostgresConnection.Query(
            "SELECT key, value FROM projection_entries WHERE tbl = $1 AND key = ANY($2::bytea[])",
            [.text(table.rawValue), .array(PostgresArray(of: .bytea, keys.lazy.map { .bytes($0) }))])
    }

    /// Whether this transaction knows the record of `key` (or that it is absent) without a read.
    func knows(_ table: ProjectionTable, _ key: [UInt8]) -> Bool {
        decoded.records[DecodedRecords.Key(table, key)] != nil
    }

    /// Keeps the answer to a ``recordsQuery(_:keys:)`` as this transaction's reads of `keys`: each
    /// record found, decoded as `R`, and the others as absent; keys it already knows stay as known.
    /// A record that does not decode is left unread, for the command that reads it to fail alone.
    func noteRecords<R: FieldRecord>(_ table: ProjectionTable, keys: [[UInt8]], found rows: PostgresRows, as type: R.Type) {
        var found: [[UInt8]: [UInt8]] = [:]
        for row in 0..<rows.count { found[rows.bytes(row, 0)] = rows.bytes(row, 1) }
        for key in keys {
            let cacheKey = DecodedRecords.Key(table, key)
            guard decoded.records[cacheKey] == nil && changes.byTable[table]?[key] == nil else { continue }
            guard let bytes = found[key] else {
                decoded.remember(cacheKey, nil, bytes: 0)
                continue
            }
            if let record = try? R(decoding: bytes) { decoded.remember(cacheKey, record, bytes: bytes.count) }
        }
    }
}

extension ProjectionDigest {
    /// The digest of a PostgreSQL store's live tables, as ``ofLive(_:_:)`` hashes LMDB's: every
    /// table in name order, each in key byte order, read a page at a time.
    static func ofLive(_ connection: PostgresConnection) throws -> SHA256.Digest {
        var hasher = Hasher()
        for table in ProjectionTable.allCases.sorted() {
            var after: [UInt8]? = nil
            while true {
                let page = try PostgresTables.stored(connection, table, prefix: [], after: after, limit: 10_000)
                for entry in page { hasher.add(table, entry.key, entry.value) }
                guard page.count == 10_000 else { break }
                after = page.last!.key
            }
        }
        return hasher.finalize()
    }
}

extension PostgresStore {
    /// The digest of the live projection tables, read in one snapshot.
    package func liveProjectionDigest() throws -> SHA256.Digest {
        try read { try ProjectionDigest.ofLive(($0 as! PostgresSnapshot).connection) }
    }
}
