import LMDBKit
import LogHashing
import UploadCore

/// The append-only log: 8-byte big-endian positions, dense from 1, written with `MDB_APPEND`.
enum EventLog {
    /// The last event's position and time, read inside the transaction so that every writer,
    /// in any process, continues from the true tail.
    /// - Complexity: O(log n).
    static func tail(_ txn: Transaction, _ schema: Schema) throws -> (position: UInt64, recordedAt: Timestamp)? {
        guard let (key, value) = try txn.last(schema.events) else { return nil }
        guard let position = BigEndian.uint64(key) else {
            throw StoreError(.corrupt, "the event log has a key of \(key.count) bytes; positions are 8 bytes")
        }
        let envelope = try decode(position: position, value[...])
        return (position, envelope.recordedAt)
    }

    /// The last event's position (0 for an empty log), its record unread: for readers, which
    /// ask often (feeds, tiles, metrics), of a record that may hold a 4 MiB manifest.
    static func lastPosition(_ txn: Transaction, _ schema: Schema) throws -> UInt64 {
        guard let key = try txn.lastKey(schema.events) else { return 0 }
        guard let position = BigEndian.uint64(key) else {
            throw StoreError(.corrupt, "the event log has a key of \(key.count) bytes; positions are 8 bytes")
        }
        return position
    }

    /// Appends the event and binds it into the Merkle tree, in the caller's transaction.
    static func append(_ txn: Transaction, _ schema: Schema, _ envelope: EventEnvelope) throws {
        let record = envelope.encoded()
        try txn.put(schema.events, BigEndian.bytes(envelope.position), record, options: .append)
        try MerkleLog.append(txn, schema, position: envelope.position, record: record)
    }

    /// Visits events after `position` in order until `body` returns false.
    /// Checks that positions are dense: a gap is corruption. Nothing follows `UInt64.max`, which a
    /// client may well ask for.
    static func scan(
        _ txn: Transaction, _ schema: Schema, after position: UInt64,
        _ body: (EventEnvelope) throws -> Bool
    ) throws {
        guard position < UInt64.max else { return }
        var expected = position + 1
        try txn.scan(schema.events, from: BigEndian.bytes(expected)) { key, value in
            guard let found = BigEndian.uint64(key) else {
                throw StoreError(.corrupt, "event log key \(Array(key)) is not an 8-byte position")
            }
            guard found == expected else {
                throw StoreError(.corrupt, "the event log jumps from position \(expected - 1) to \(found)")
            }
            expected += 1
            return try body(decode(position: found, Array(value)[...]))
        }
    }

    static func decode(position: UInt64, _ bytes: ArraySlice<UInt8>) throws -> EventEnvelope {
        do {
            return try EventEnvelope(position: position, decoding: bytes)
        } catch {
            throw StoreError(.corrupt, "the event at position \(position) does not decode: \(error)")
        }
    }
}

/// How far the projection tables have applied the log, with which layout, and the Merkle leaf of
/// the event at that position, which ties them to this log: projections copied from another store
/// of the same layout and position would otherwise be served as this log's (checked at open, in
/// ``ProjectionCatchUp/run(_:_:_:changingLayout:)``, and by `upload-replay`).
struct ProjectionCheckpoint: Equatable {
    var position: UInt64
    /// ``Projector/version`` when the tables were written; `nil` before the first build.
    var version: UInt32?
    /// The leaf of the last event folded, when this version wrote the checkpoint; `nil` at
    /// position 0 and in tables a version before it wrote. A version before it that writes after
    /// this one leaves it at an earlier position, where it still names this log's event.
    var leaf: FoldedLeaf?

    /// The Merkle leaf hash of the log's event at `position`.
    struct FoldedLeaf: Equatable {
        var position: UInt64
        var hash: MerkleTree.Hash

        var bytes: [UInt8] { BigEndian.bytes(position) + hash }

        init(position: UInt64, hash: MerkleTree.Hash) { (self.position, self.hash) = (position, hash) }

        /// `nil` for a record of another shape, taken as no leaf: only damage makes one (a change of
        /// the record takes another key), and it must not refuse every open, as the log's own
        /// checks would not; `upload-replay`'s comparison of the tables still catches another
        /// store's projections.
        init?(_ bytes: some Collection<UInt8>) {
            guard bytes.count == 40, let position = BigEndian.uint64(bytes.prefix(8)), position > 0 else { return nil }
            (self.position, self.hash) = (position, Array(bytes.dropFirst(8)))
        }
    }

    private static let positionKey = Array("checkpoint".utf8)
    private static let versionKey = Array("version".utf8)
    private static let leafKey = Array("leaf".utf8)

    /// The checkpoint, or position 0 and no version in a projection environment never built.
    static func read(_ txn: Transaction, _ schema: ProjectionSchema) throws -> ProjectionCheckpoint {
        guard let bytes = try txn.get(schema.projectionState, positionKey) else { return ProjectionCheckpoint(position: 0) }
        guard let position = BigEndian.uint64(bytes) else {
            throw StoreError(.corrupt, "the projection checkpoint is malformed")
        }
        let version = try txn.get(schema.projectionState, versionKey).flatMap(Self.version)
        let leaf = try txn.get(schema.projectionState, leafKey).flatMap(FoldedLeaf.init)
        return ProjectionCheckpoint(position: position, version: version, leaf: leaf)
    }

    /// The checkpoint at `position` of the log read by `txn`, with that event's leaf.
    static func at(_ position: UInt64, version: UInt32?, of txn: Transaction, _ schema: Schema) throws -> ProjectionCheckpoint {
        let leaf = position == 0 ? nil : FoldedLeaf(position: position, hash: try MerkleLog.node(txn, schema, 0, position - 1))
        return ProjectionCheckpoint(position: position, version: version, leaf: leaf)
    }

    /// Refuses tables that folded another event at the leaf's position than the log read by
    /// `txn` holds there. Positions past the log's tail are refused apart, as a log gone back;
    /// tables no version with the leaf wrote are taken as they are.
    func checkFollows(_ txn: Transaction, _ schema: Schema, tail: UInt64) throws {
        guard let leaf, leaf.position <= min(position, tail), try MerkleLog.node(txn, schema, 0, leaf.position - 1) != leaf.hash else { return }
        throw StoreError(.corrupt, "the projections were written from another log: the event at position \(leaf.position) they folded is not this log's (they were copied from another store, or this log was restored alone from another store's copy). Restore the whole store from one backup; or, to serve this log as it stands, stop every process on the store, then remove the data folder's `\(ProjectionEnvironment.subdirectory)` folder: the next open rebuilds it from the log")
    }

    /// The refusal of a read of projections another binary wrote in its layout (a newer one,
    /// rebuilt by a process of that binary while this one still has the store open), which this
    /// binary would misread, or whose layout is malformed; `nil` when they are this binary's, or
    /// were never built (and so hold nothing to misread).
    static func otherLayout(_ txn: Transaction, _ schema: ProjectionSchema) throws -> StoreError? {
        guard let bytes = try txn.get(schema.projectionState, versionKey) else { return nil }
        guard let version = Self.version(bytes) else { return StoreError(.corrupt, "the projections' layout version is malformed") }
        return version == Projector.version ? nil : StoreError.projections(ofLayout: version)
    }

    /// A stored version's four bytes, big-endian; `nil` when malformed.
    private static func version(_ bytes: some Collection<UInt8>) -> UInt32? {
        bytes.count == 4 ? bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : nil
    }

    func write(_ txn: Transaction, _ schema: ProjectionSchema) throws {
        try txn.put(schema.projectionState, Self.positionKey, BigEndian.bytes(position))
        if let version {
            try txn.put(schema.projectionState, Self.versionKey, [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: version >> $0) })
        }
        if let leaf {
            try txn.put(schema.projectionState, Self.leafKey, leaf.bytes)
        } else {
            _ = try txn.delete(schema.projectionState, Self.leafKey)
        }
    }
}
