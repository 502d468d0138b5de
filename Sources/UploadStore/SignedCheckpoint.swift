import LMDBKit
public import LogHashing
import UploadCore

/// A checkpoint the log signed (C2SP tlog-checkpoint in a signed note), kept by tree size so that
/// verify can later check each against the tree: a tree that no longer extends a checkpoint it
/// signed has been rewritten.
public struct SignedCheckpoint: Sendable, Equatable {
    /// The tree size the checkpoint commits to.
    public let size: UInt64
    /// The signed note, as served.
    public let note: String

    public init(size: UInt64, note: String) {
        self.size = size
        self.note = note
    }

    /// The checkpoint the note holds, unverified: its signature is checked where a key is at
    /// hand (``Checkpoint/init(note:verifiedBy:)``).
    public func checkpoint() throws(NoteError) -> Checkpoint {
        try Checkpoint(text: SignedNote.unverifiedText(note))
    }

    static let databaseName = "signed-checkpoints"

    static func keep(_ checkpoint: SignedCheckpoint, _ txn: Transaction, _ schema: Schema) throws -> SignedCheckpoint {
        let key = BigEndian.bytes(checkpoint.size)
        if let kept = try txn.get(schema.signedCheckpoints, key) { return SignedCheckpoint(size: checkpoint.size, note: String(decoding: kept, as: UTF8.self)) }
        try txn.put(schema.signedCheckpoints, key, Array(checkpoint.note.utf8))
        return checkpoint
    }

    static func latest(_ txn: Transaction, _ schema: Schema) throws -> SignedCheckpoint? {
        guard let (key, value) = try txn.last(schema.signedCheckpoints) else { return nil }
        return try decode(key, value)
    }

    /// Every kept checkpoint, smallest tree first.
    static func all(_ txn: Transaction, _ schema: Schema) throws -> [SignedCheckpoint] {
        var kept: [SignedCheckpoint] = []
        try txn.scan(schema.signedCheckpoints) { key, value in
            kept.append(try decode(Array(key), Array(value)))
            return true
        }
        return kept
    }

    private static func decode(_ key: [UInt8], _ value: [UInt8]) throws -> SignedCheckpoint {
        guard let size = BigEndian.uint64(key) else { throw StoreError(.corrupt, "a signed checkpoint has a key of \(key.count) bytes; sizes are 8") }
        return SignedCheckpoint(size: size, note: String(decoding: value, as: UTF8.self))
    }
}
