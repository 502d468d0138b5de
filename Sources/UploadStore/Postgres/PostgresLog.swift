import LogHashing
import PostgresKit
import UploadCore

/// The log, its Merkle tree and the signed checkpoints in PostgreSQL (migration
/// `0001-create-event-log`): the same records, positions, nodes and notes as LMDB's.
enum PostgresLog {
    /// The advisory lock every append holds for its transaction (`pg_advisory_xact_lock`), in every
    /// node: appends are serialised, so positions stay dense and each batch decides from the tail.
    static let appendLockKey: Int64 = 0x7570_6C64_0000_0002
    /// Runs `body` in a transaction that holds the append lock, for work other than the writer's
    /// batches (which set the same in their own pipeline): READ COMMITTED whatever the role's
    /// default, so each read after the lock sees every append before it (a snapshot taken when the
    /// lock was asked for would not), and a synced commit whatever the role's `synchronous_commit`.
    /// It waits for the lock as long as a batch does (30 s), not for ever behind a frozen node.
    static func underAppendLock<T>(_ connection: PostgresConnection, _ body: () throws -> T) throws -> T {
        try connection.transaction("ISOLATION LEVEL READ COMMITTED") {
            // No role's or database's statement_timeout cuts what runs under the lock: a rebuild of
            // the projections at open is the longest statement there is.
            try connection.execute("SET LOCAL synchronous_commit = on; SET LOCAL lock_timeout = '30s'; SET LOCAL statement_timeout = 0")
            try connection.query("SELECT pg_advisory_xact_lock($1)", [.int64(appendLockKey)])
            return try body()
        }
    }

    /// The channel each commit notifies with its tail, for every node's live feeds.
    static let channel = "upload_coordinator_log"

    /// The last event's position, its record unread.
    static func lastPosition(_ connection: PostgresConnection) throws -> UInt64? {
        let rows = try connection.query("SELECT position FROM events ORDER BY position DESC LIMIT 1")
        return rows.isEmpty ? nil : try rows.position(0, 0)
    }

    /// The tail (with its stored Merkle leaf) and the projections' state in one query: a batch's
    /// first read, sent in the round trip that begins its transaction.
    static let tailAndProjectionsQuery = PostgresConnection.Query("""
        SELECT e.position, e.record,
               (SELECT value FROM projection_state WHERE name = 'position'), (SELECT value FROM projection_state WHERE name = 'version'), m.hash,
               \(DatabaseClock.expression), (SELECT value FROM projection_state WHERE name = '\(unfinishedCopyMark)')
        FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT position, record FROM events ORDER BY position DESC LIMIT 1) AS e ON true
        LEFT JOIN merkle_nodes AS m ON m.last_leaf = e.position AND m.level = 0
        """)

    /// The tail (with its leaf: the tree's, or hashed from the record if the tree lacks it), the
    /// projections' state and the database's clock, read under the append lock, from the rows of
    /// ``tailAndProjectionsQuery``.
    static func tailAndProjections(
        _ rows: PostgresRows
    ) throws -> ((position: UInt64, recordedAt: Timestamp, leaf: MerkleTree.Hash)?, PostgresProjectionState, databaseTime: Timestamp) {
        var tail: (position: UInt64, recordedAt: Timestamp, leaf: MerkleTree.Hash)?
        if !rows.isNull(0, 0) {
            let position = try rows.position(0, 0)
            let record = rows.bytes(0, 1)
            let leaf = rows.isNull(0, 4) ? MerkleTree.leafHash(position: position, record: record) : rows.bytes(0, 4)
            tail = (position, try EventLog.decode(position: position, record[...]).recordedAt, leaf)
        }
        let databaseTime = Timestamp(millisecondsSinceEpoch: try rows.int64(0, 5))
        // A copy begun after this node opened the database: none may write it until it is whole.
        guard rows.isNull(0, 6) else { throw unfinishedCopyRefusal }
        let version = rows.isNull(0, 3) ? nil : try rows.int64(0, 3)
        guard let version else { return (tail, PostgresProjectionState(position: rows.isNull(0, 2) ? 0 : try rows.position(0, 2), version: nil), databaseTime) }
        guard (0...Int64(UInt32.max)).contains(version) else { throw StoreError(.corrupt, "projection_state holds version \(version)") }
        return (tail, PostgresProjectionState(position: rows.isNull(0, 2) ? 0 : try rows.position(0, 2), version: UInt32(version)), databaseTime)
    }

    /// The most bytes of records one page of the log holds, after its first record, where a reader
    /// pages through it: an `ImagePushed` carries a manifest of up to 4 MiB, and 10,000 of them
    /// would be 40 GB, which libpq holds whole and past PostgreSQL's 1 GB message.
    static let pageBytes = 64 << 20

    /// Up to `rows` events from `position` through `last`, ending after the record that brings
    /// their bytes to `bytes` (always at least one). `octet_length` of a stored record reads its
    /// size, not its bytes, and the rows past the bound are never sent.
    static func pageQuery(from position: UInt64, through last: UInt64 = UInt64(Int64.max), rows: Int, bytes: Int = pageBytes) -> PostgresConnection.Query {
        PostgresConnection.Query("""
            SELECT position, record FROM (
                SELECT position, record, sum(octet_length(record)) OVER (ORDER BY position ROWS UNBOUNDED PRECEDING) - octet_length(record) AS bytes_before
                FROM events WHERE position >= $1 AND position <= $2 ORDER BY position LIMIT $3) AS page
            WHERE bytes_before < $4 ORDER BY position
            """, [.position(position), .position(last), .int64(Int64(rows)), .int64(Int64(min(max(bytes, 1), Int(Int64.max))))])
    }

    /// Up to `count` records from `position` on, dense (stops at the first gap), ending early
    /// (after at least one) once they hold `byteBudget` bytes.
    static func records(_ connection: PostgresConnection, from position: UInt64, count: Int, byteBudget: Int = .max) throws -> [[UInt8]] {
        guard count > 0, position > 0, position <= UInt64(Int64.max) else { return [] }
        let page = pageQuery(from: position, rows: count, bytes: byteBudget)
        let rows = try connection.query(page.sql, page.parameters)
        var records: [[UInt8]] = []
        for row in 0..<rows.count {
            guard try rows.position(row, 0) == position + UInt64(records.count) else { break }
            records.append(rows.bytes(row, 1))
        }
        return records
    }

    /// Up to `limit` events after `position`, in order. - Throws: `.corrupt` at a gap.
    static func events(_ connection: PostgresConnection, after position: UInt64, limit: Int) throws -> [EventEnvelope] {
        guard limit > 0, position < UInt64(Int64.max) else { return [] }
        var events: [EventEnvelope] = []
        var expected = position + 1
        // In pages, so that a reader of the whole log never holds it all as rows at once.
        while events.count < limit {
            let asked = min(limit - events.count, 10_000)
            let page = pageQuery(from: expected, rows: asked)
            let rows = try connection.query(page.sql, page.parameters)
            var bytes = 0
            for row in 0..<rows.count {
                let found = try rows.position(row, 0)
                guard found == expected else { throw StoreError(.corrupt, "the event log jumps from position \(expected - 1) to \(found)") }
                let record = rows.bytes(row, 1)
                events.append(try EventLog.decode(position: found, record[...]))
                bytes += record.count
                expected += 1
            }
            if rows.count < asked && bytes < pageBytes { break }  // the tail, not the page's bytes
        }
        return events
    }

    /// The Merkle leaf hash of the event at `position` (no row when the log has none there).
    static func leafQuery(at position: UInt64) -> PostgresConnection.Query {
        PostgresConnection.Query(
            "SELECT hash FROM merkle_nodes WHERE last_leaf = $1 AND level = 0", [.position(position)])
    }

    /// The leaf hash from the rows of ``leafQuery(at:)``.
    static func leaf(_ rows: PostgresRows) -> MerkleTree.Hash? { rows.count == 1 ? rows.bytes(0, 0) : nil }

    static func merkleNode(_ connection: PostgresConnection, level: UInt8, index: UInt64) throws -> MerkleTree.Hash {
        let rows = try connection.query(
            "SELECT hash FROM merkle_nodes WHERE last_leaf = $1 AND level = $2", [.position(lastLeaf(level, index)), .int16(Int16(level))])
        guard rows.count == 1, rows.bytes(0, 0).count == 32 else {
            throw StoreError(.corrupt, "the Merkle tree lacks node (level \(level), index \(index)), covering positions \((index << UInt64(level)) + 1)...\((index + 1) << UInt64(level))")
        }
        return rows.bytes(0, 0)
    }

    /// `copy-store` writing into this database has not finished (`projection_state`'s
    /// `copy_store_unfinished`): its log may stop short of the source's, so no store opens it.
    static let unfinishedCopyMark = "copy_store_unfinished"

    static func markUnfinishedCopy(_ connection: PostgresConnection) throws {
        _ = try connection.query("INSERT INTO projection_state (name, value) VALUES ($1, 1) ON CONFLICT (name) DO NOTHING", [.text(unfinishedCopyMark)])
    }

    static func clearUnfinishedCopy(_ connection: PostgresConnection) throws {
        _ = try connection.query("DELETE FROM projection_state WHERE name = $1", [.text(unfinishedCopyMark)])
    }

    /// What the database holds that a copy into it would meet, said for a refusal; `nil` when it
    /// holds neither events nor a signed checkpoint. A node that served the new database signs its
    /// empty log (as it stops, or when asked), and `signed_checkpoints` is append-only: the refusal says so.
    static func heldLog(_ connection: PostgresConnection) throws -> String? {
        if let tail = try lastPosition(connection) { return tail == 1 ? "an event" : "\(tail) events" }
        guard let checkpoint = try latestSignedCheckpoint(connection) else { return nil }
        return checkpoint.size > 0 ? "a checkpoint signed for \(checkpoint.size) events"
            : "a checkpoint of its empty log, which a node that served it signed (checkpoints are never removed: stop its nodes, then drop the database and create it again)"
    }

    /// - Throws: ``StoreError`` `.io` when the database holds an unfinished copy.
    static func refuseUnfinishedCopy(_ connection: PostgresConnection) throws {
        guard try connection.query("SELECT 1 FROM projection_state WHERE name = $1", [.text(unfinishedCopyMark)]).count == 0 else {
            throw unfinishedCopyRefusal
        }
    }

    /// Not `.corrupt`: the log is not damaged, only not whole yet (a running node's checkpoint
    /// route would call it a broken log).
    static let unfinishedCopyRefusal = StoreError(
        .io, "this database holds a copy-store that did not finish, or is still under way (its log may stop short of its source's): wait for it, or, if it died, drop the database and copy again")

    /// A hash tile's nodes in one round trip (256 point reads of the primary key, not 256 queries).
    static func merkleNodes(_ connection: PostgresConnection, level: UInt8, indices: Range<UInt64>) throws -> [MerkleTree.Hash] {
        let lastLeaves = PostgresArray(of: .int8, indices.lazy.map { .position(lastLeaf(level, $0)) })
        let rows = try connection.query(
            "SELECT hash FROM merkle_nodes WHERE level = $1 AND last_leaf = ANY($2) ORDER BY last_leaf", [.int16(Int16(level)), .array(lastLeaves)])
        guard rows.count == indices.count, (0..<rows.count).allSatisfy({ rows.bytes($0, 0).count == 32 }) else {
            throw StoreError(.corrupt, "the Merkle tree lacks a node of level \(level) with an index in \(indices.lowerBound)..<\(indices.upperBound)")
        }
        return (0..<rows.count).map { rows.bytes($0, 0) }
    }

    /// The nodes at `coordinates`, on any levels, in their order: one query.
    static func merkleNodes(_ connection: PostgresConnection, at coordinates: [MerkleTree.NodeCoordinate]) throws -> [MerkleTree.Hash] {
        let distinct = Array(Set(coordinates))
        guard !distinct.isEmpty else { return [] }
        let rows = try connection.query("""
            SELECT n.level::int8, n.last_leaf, n.hash FROM merkle_nodes n
            JOIN unnest($1::int2[], $2::int8[]) AS wanted(level, last_leaf) ON n.level = wanted.level AND n.last_leaf = wanted.last_leaf
            """, [.array(PostgresArray(of: .int2, distinct.lazy.map { .int16(Int16($0.level)) })),
                  .array(PostgresArray(of: .int8, distinct.lazy.map { .position(lastLeaf($0.level, $0.index)) }))])
        var found: [MerkleTree.NodeCoordinate: MerkleTree.Hash] = [:]
        for row in 0..<rows.count where rows.bytes(row, 2).count == 32 {
            let level = UInt8(clamping: try rows.int64(row, 0)), last = try rows.position(row, 1)
            found[MerkleTree.NodeCoordinate(level: level, index: (last >> UInt64(level)) - 1)] = rows.bytes(row, 2)
        }
        return try coordinates.map { coordinate in
            guard let hash = found[coordinate] else {
                throw StoreError(.corrupt, "the Merkle tree lacks node (level \(coordinate.level), index \(coordinate.index)), covering positions \((coordinate.index << UInt64(coordinate.level)) + 1)...\((coordinate.index + 1) << UInt64(coordinate.level))")
            }
            return hash
        }
    }

    /// The position of the last leaf under node (`level`, `index`): its key with its level.
    static func lastLeaf(_ level: UInt8, _ index: UInt64) -> UInt64 { (index + 1) << UInt64(level) }

    /// `checkpoints` as rows of `signed_checkpoints`. A size already kept fails the insert: its
    /// callers look under the append lock first, and a copy that met one would be of two logs.
    static func checkpointRows(_ checkpoints: [SignedCheckpoint]) -> PostgresRowBatch {
        var rows = PostgresRowBatch(into: "signed_checkpoints", columns: [("size", .int8), ("note", .text)])
        for checkpoint in checkpoints { rows.append(.position(checkpoint.size), .text(checkpoint.note)) }
        return rows
    }

    static func latestSignedCheckpoint(_ connection: PostgresConnection) throws -> SignedCheckpoint? {
        let rows = try connection.query("SELECT size, note FROM signed_checkpoints ORDER BY size DESC LIMIT 1")
        return rows.isEmpty ? nil : SignedCheckpoint(size: try rows.position(0, 0), note: rows.text(0, 1))
    }

    /// Every kept checkpoint, smallest tree first.
    static func signedCheckpoints(_ connection: PostgresConnection) throws -> [SignedCheckpoint] {
        let rows = try connection.query("SELECT size, note FROM signed_checkpoints ORDER BY size")
        return try (0..<rows.count).map { SignedCheckpoint(size: try rows.position($0, 0), note: rows.text($0, 1)) }
    }
}
