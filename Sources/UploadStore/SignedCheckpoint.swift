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

    /// Keeps `checkpoint` unless one of its size, or a larger one, is kept (which is returned
    /// instead), after checking, in the same transaction, that the log's last kept checkpoint is
    /// `identity`'s: two processes with two keys cannot both keep.
    static func keep(_ checkpoint: SignedCheckpoint, signedAs identity: LogIdentity, _ txn: Transaction, _ schema: Schema) throws -> SignedCheckpoint {
        let last = try latest(txn, schema)
        if let last { try identity.check(last) }
        if let last, last.size > checkpoint.size { return last }  // another process's, kept meanwhile: never a smaller tree
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

/// Who signs a log: its key and its origin. A log keeps one for its life: checkpoints under a
/// second key or origin would be a second log, which no auditor of the first would accept.
public struct LogIdentity: Sendable {
    public let verifier: NoteVerifier
    public let origin: String

    public init(verifier: NoteVerifier, origin: String) {
        self.verifier = verifier
        self.origin = origin
    }

    /// - Returns: the checkpoint, once its signature and origin are this identity's.
    /// - Throws: ``StoreError`` `.corrupt` unless `checkpoint` is signed by this key for this origin.
    @discardableResult
    public func check(_ checkpoint: SignedCheckpoint) throws -> Checkpoint {
        let signed: Checkpoint
        do {
            signed = try Checkpoint(note: checkpoint.note, verifiedBy: verifier)
        } catch {
            throw StoreError(.corrupt, "the log's checkpoints are not signed by \(verifier.text) (\(error)); give the log's own key with --log-key")
        }
        guard signed.origin == origin else {
            throw StoreError(.corrupt, "the log's checkpoints name the origin '\(signed.origin)', not '\(origin)'; a log keeps its origin for its life")
        }
        return signed
    }
}
