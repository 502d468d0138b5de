import LMDBKit
import LogHashing

extension UploadMigrations {
    /// The Merkle tree over the log (RFC 9162), computed over the events already there. The events
    /// themselves are only read, never rewritten.
    static func createMerkleTree(_ txn: Transaction) throws {
        let nodes = try txn.openDatabase("merkle-nodes", create: true)!
        guard let events = try txn.openDatabase("events") else { return }
        try txn.scan(events) { key, value in
            let position = key.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            // Positions are 8-byte keys from 1: a damaged key is refused, not trapped on below.
            guard key.count == 8, position > 0 else { throw MigrationError.corruptRecord("an event keyed \(Array(key)), not a position") }
            let leaf = MerkleTree.leafHash(position: position, record: value)
            let completed = try MerkleTree.nodesCompleted(byLeaf: position - 1, hash: leaf) { level, index in
                guard let hash = try txn.get(nodes, levelFirstKey(level, index)) else {
                    throw MigrationError.corruptRecord("merkle node \(level)/\(index) before position \(position)")
                }
                return hash
            }
            for n in completed { try txn.put(nodes, levelFirstKey(n.level, n.index), n.hash) }
            return true
        }
    }

    /// The node key as 0004 wrote it, level first (0009 re-keys it): frozen here, since a shipped
    /// migration describes the store as it was.
    private static func levelFirstKey(_ level: UInt8, _ index: UInt64) -> [UInt8] {
        [level] + (0..<8).map { UInt8(truncatingIfNeeded: index >> (56 - 8 * $0)) }
    }
}
