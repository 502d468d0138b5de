import Foundation

/// A checkpoint (C2SP tlog-checkpoint): the log's origin, a tree size and the root hash of the
/// tree of that many leaves, one per line. It is the text of a ``SignedNote``.
public struct Checkpoint: Sendable, Equatable {
    public var origin: String
    public var size: UInt64
    public var rootHash: MerkleTree.Hash

    public init(origin: String, size: UInt64, rootHash: MerkleTree.Hash) {
        self.origin = origin
        self.size = size
        self.rootHash = rootHash
    }

    /// The note text: origin, decimal size and base64 root, each ending in a newline.
    public var text: String { "\(origin)\n\(size)\n\(Data(rootHash).base64EncodedString())\n" }

    /// Parses a checkpoint's text. Extension lines after the root are allowed and not kept.
    public init(text: String) throws(NoteError) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard text.hasSuffix("\n"), lines.count >= 4, Self.isValidOrigin(String(lines[0])),
              lines[1].utf8.allSatisfy({ (0x30...0x39).contains($0) }), lines[1] == "0" || !lines[1].hasPrefix("0"), let size = UInt64(lines[1]),
              let root = Data(base64Encoded: String(lines[2])), root.count == MerkleTree.hashSize,
              root.base64EncodedString() == lines[2] else {
            throw NoteError("not a checkpoint: want an origin line, a decimal tree size and a base64 SHA-256 root hash")
        }
        self.init(origin: String(lines[0]), size: size, rootHash: Array(root))
    }

    /// The checkpoint in a signed note, once `verifier`'s signature on it holds.
    public init(note: String, verifiedBy verifier: NoteVerifier) throws(NoteError) {
        try self.init(text: SignedNote.open(note, verifiedBy: verifier))
    }

    /// Whether `origin` can name a log: C2SP asks for its URL without the scheme, and a key made for
    /// the log is named after it, so it must also be a key name (no spaces, no '+').
    public static func isValidOrigin(_ origin: String) -> Bool { NoteKeys.isValidName(origin) }
}
