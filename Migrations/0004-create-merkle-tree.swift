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
            let leaf = MerkleTree.leafHash(position: position, record: value)
            let completed = try MerkleTree.nodesCompleted(byLeaf: position - 1, hash: leaf) { level, index in
                guard let hash = try txn.get(nodes, MerkleTree.nodeKey(level: level, index: index)) else {
                    throw MigrationError.corruptRecord("merkle node \(level)/\(index) before position \(position)")
                }
                return hash
            }
            for n in completed { try txn.put(nodes, MerkleTree.nodeKey(level: n.level, index: n.index), n.hash) }
            return true
        }
    }
}
