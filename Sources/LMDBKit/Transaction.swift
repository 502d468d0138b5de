internal import CLMDB

/// A named database inside an ``Environment``. The handle stays valid for the environment's life.
public struct Database: Sendable, Hashable {
    let dbi: UInt32
    public let name: String
}

/// One LMDB transaction, lent to the closure of ``Environment/read(_:)`` or ``Environment/write(_:)``.
///
/// Valid only inside that closure: never store it. It is not `Sendable`, so the compiler refuses to
/// move it to another task, and the closures are synchronous, so it cannot cross an `await`.
/// (It is not `~Copyable`: the projection code is generic over a small table protocol, and a
/// borrowed noncopyable value cannot be wrapped by a type that conforms to it.)
///
/// Every value it returns is copied out of the map before the call returns, except inside
/// ``scan(_:from:_:)`` and ``withValue(_:_:_:)``, whose buffers are valid only during the call.
public struct Transaction {
    /// The longest key LMDB stores (`mdb_env_get_maxkeysize` of Debian's build). A look-up of a
    /// longer or empty key finds nothing rather than failing: no such key can be stored.
    public static let maximumKeySize = 511

    let txn: OpaquePointer
    public let isReadOnly: Bool

    init(environment: Environment, readOnly: Bool) throws(LMDBError) {
        var txn: OpaquePointer?
        try check(
            mdb_txn_begin(environment.handle, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn),
            "mdb_txn_begin"
        )
        self.txn = txn!
        self.isReadOnly = readOnly
    }

    /// ``Environment/usage()`` of this transaction's environment, whose map cannot be resized
    /// while the transaction is open.
    public func environmentUsage() -> Environment.Usage {
        Environment.usage(of: mdb_txn_env(txn))
    }

    func commit() throws(LMDBError) {
        let env = mdb_txn_env(txn)!
        try check(mdb_txn_commit(txn), "mdb_txn_commit")
        // The commit stands whatever this does: its failure (a full disk) must not make a durable
        // commit look failed to its callers; the next commit tries again.
        if !isReadOnly { try? Environment.coverLastPage(env) }
    }

    func abort() {
        mdb_txn_abort(txn)
    }

    /// Opens the named database, creating it when `create` is true and this is a write transaction.
    /// - Returns: `nil` when the database does not exist and `create` is false.
    public func openDatabase(_ name: String, create: Bool = false) throws(LMDBError) -> Database? {
        var dbi: MDB_dbi = 0
        let rc = mdb_dbi_open(txn, name, create ? UInt32(MDB_CREATE) : 0, &dbi)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_dbi_open(\(name))")
        return Database(dbi: dbi, name: name)
    }

    /// LMDB's main (unnamed) database, which names every named one.
    public func mainDatabase() throws(LMDBError) -> Database {
        var dbi: MDB_dbi = 0
        try check(mdb_dbi_open(txn, nil, 0, &dbi), "mdb_dbi_open(main)")
        return Database(dbi: dbi, name: "(main)")
    }

    /// The value stored under `key`, copied out of the map.
    public func get(_ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        var result: [UInt8]?
        try withValue(db, key) { result = Array($0) }
        return result
    }

    /// Calls `body` with the value under `key` while it is still in the map; not at all when absent.
    public func withValue(
        _ db: Database, _ key: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        guard Self.isStorable(key) else { return }
        var value = MDB_val()
        let rc = key.withUnsafeBytes { k in
            var keyVal = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            return mdb_get(txn, db.dbi, &keyVal, &value)
        }
        if rc == MDB_NOTFOUND { return }
        try check(rc, "mdb_get(\(db.name))")
        try body(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
    }

    public struct PutOptions: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// The key must sort after every key in the database (`MDB_APPEND`); fails with `keyExists` otherwise.
        public static let append = PutOptions(rawValue: UInt32(MDB_APPEND))
        /// Fail with `keyExists` rather than overwrite (`MDB_NOOVERWRITE`).
        public static let noOverwrite = PutOptions(rawValue: UInt32(MDB_NOOVERWRITE))
    }

    public func put(_ db: Database, _ key: [UInt8], _ value: [UInt8], options: PutOptions = []) throws(LMDBError) {
        let rc = key.withUnsafeBytes { k in value.withUnsafeBytes { v in rawPut(db, k, v, options) } }
        try check(rc, "mdb_put(\(db.name))")
    }

    /// As ``put(_:_:_:options:)``, from memory the caller holds (no array per entry).
    public func put(_ db: Database, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, options: PutOptions = []) throws(LMDBError) {
        try check(rawPut(db, key, value, options), "mdb_put(\(db.name))")
    }

    private func rawPut(_ db: Database, _ k: UnsafeRawBufferPointer, _ v: UnsafeRawBufferPointer, _ options: PutOptions) -> Int32 {
        var keyVal = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
        var valueVal = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
        return mdb_put(txn, db.dbi, &keyVal, &valueVal, options.rawValue)
    }

    /// Deletes `key`. - Returns: whether it was there.
    @discardableResult
    public func delete(_ db: Database, _ key: [UInt8]) throws(LMDBError) -> Bool {
        guard Self.isStorable(key) else { return false }
        let rc = key.withUnsafeBytes { k in
            var keyVal = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            return mdb_del(txn, db.dbi, &keyVal, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del(\(db.name))")
        return true
    }

    /// Removes every entry of `db`, keeping the database itself.
    public func clear(_ db: Database) throws(LMDBError) {
        try check(mdb_drop(txn, db.dbi, 0), "mdb_drop(\(db.name))")
    }

    /// Deletes the database `name` and its entries, if it exists. For migrations that retire a
    /// database; its handle must not be used again.
    public func dropDatabase(_ name: String) throws(LMDBError) {
        guard let db = try openDatabase(name) else { return }
        try check(mdb_drop(txn, db.dbi, 1), "mdb_drop(\(name), delete)")
    }

    /// The number of entries in `db`.
    /// - Complexity: O(1).
    public func count(_ db: Database) throws(LMDBError) -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(txn, db.dbi, &stat), "mdb_stat(\(db.name))")
        return stat.ms_entries
    }

    /// The entry with the greatest key, copied out of the map.
    /// - Complexity: O(log n).
    public func last(_ db: Database) throws(LMDBError) -> (key: [UInt8], value: [UInt8])? {
        try edgeEntry(db, MDB_LAST) { key, value in (Array(key), Array(value)) }
    }

    /// The first key, its value not copied.
    public func firstKey(_ db: Database) throws(LMDBError) -> [UInt8]? {
        try edgeEntry(db, MDB_FIRST) { key, _ in Array(key) }
    }

    /// The last key, its value not copied (a log's last record may be megabytes).
    public func lastKey(_ db: Database) throws(LMDBError) -> [UInt8]? {
        try edgeEntry(db, MDB_LAST) { key, _ in Array(key) }
    }

    /// What `copy` makes of the entry with the least (`MDB_FIRST`) or greatest (`MDB_LAST`) key,
    /// whose buffers it must not keep.
    private func edgeEntry<T>(
        _ db: Database, _ edge: MDB_cursor_op, _ copy: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> T
    ) throws(LMDBError) -> T? {
        let cursor = try openCursor(db)
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val(), value = MDB_val()
        let rc = mdb_cursor_get(cursor, &key, &value, edge)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_cursor_get(\(db.name), \(edge == MDB_FIRST ? "first" : "last"))")
        return copy(Self.buffer(key), Self.buffer(value))
    }

    /// Visits entries in key order, starting at the first key ≥ `start` (or the first key), until
    /// `body` returns `false`. The buffers are valid only during each call of `body`.
    /// - Complexity: O(log n) to start, then O(1) amortised per entry.
    public func scan(
        _ db: Database, from start: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        let cursor = try openCursor(db)
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val(), value = MDB_val()
        var rc: Int32
        if let start, !start.isEmpty {  // LMDB refuses an empty key
            // A start longer than any key: the first key ≥ it is the first key > its longest prefix.
            let bounded = Array(start.prefix(Self.maximumKeySize))
            rc = bounded.withUnsafeBytes { s in
                key = MDB_val(mv_size: s.count, mv_data: UnsafeMutableRawPointer(mutating: s.baseAddress))
                return mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
            }
            if rc == 0, bounded.count < start.count, Self.buffer(key).elementsEqual(bounded) {
                rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
            }
        } else {
            rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)
        }
        while rc == 0 {
            guard try body(Self.buffer(key), Self.buffer(value)) else { return }
            rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { throw LMDBError(code: rc, operation: "mdb_cursor_get(\(db.name))") }
    }

    /// Visits entries in descending key order, starting at the last key < `end` (or the last key),
    /// until `body` returns `false`. The buffers are valid only during each call of `body`.
    /// - Complexity: O(log n) to start, then O(1) amortised per entry.
    /// - Note: its seek and loop mirror ``scan(_:from:_:)``'s on purpose: replay runs `scan` once per
    ///   event, and sharing them through a helper cost replay 15 % (`Tools/bench`, BENCHMARKS.md).
    public func scanBackward(
        _ db: Database, before end: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        let cursor = try openCursor(db)
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val(), value = MDB_val()
        var rc: Int32
        if let end, !end.isEmpty {
            // The first key ≥ the end's storable prefix, then one step back unless that key is the
            // prefix itself of a longer end (then it sorts before the end, so it is the start).
            let bounded = Array(end.prefix(Self.maximumKeySize))
            rc = bounded.withUnsafeBytes { s in
                key = MDB_val(mv_size: s.count, mv_data: UnsafeMutableRawPointer(mutating: s.baseAddress))
                return mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
            }
            if rc == MDB_NOTFOUND {
                rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST)
            } else if rc == 0, !(bounded.count < end.count && Self.buffer(key).elementsEqual(bounded)) {
                rc = mdb_cursor_get(cursor, &key, &value, MDB_PREV)
            }
        } else {
            rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST)
        }
        while rc == 0 {
            guard try body(Self.buffer(key), Self.buffer(value)) else { return }
            rc = mdb_cursor_get(cursor, &key, &value, MDB_PREV)
        }
        if rc != MDB_NOTFOUND { throw LMDBError(code: rc, operation: "mdb_cursor_get(\(db.name))") }
    }

    private func openCursor(_ db: Database) throws(LMDBError) -> OpaquePointer {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "mdb_cursor_open(\(db.name))")
        return cursor!
    }

    /// Whether LMDB can hold `key`: 1 to ``maximumKeySize`` bytes.
    public static func isStorable(_ key: [UInt8]) -> Bool { !key.isEmpty && key.count <= maximumKeySize }

    private static func buffer(_ val: MDB_val) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: val.mv_data, count: val.mv_size)
    }
}
