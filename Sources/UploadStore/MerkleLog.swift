import LMDBKit
import LogHashing

/// The Merkle tree over the log (``MerkleTree``), kept in the database `merkle-tree` and
/// extended in the same transaction as every append. Nodes are keyed by the position of their last
/// leaf (``MerkleTree/nodeKey(level:index:)``), so every append lands at the tree's right edge.
enum MerkleLog {
    static let databaseName = "merkle-tree"

    static func append(_ txn: Transaction, _ schema: Schema, position: UInt64, record: [UInt8]) throws {
        let leaf = MerkleTree.leafHash(position: position, record: record)
        let completed = try MerkleTree.nodesCompleted(byLeaf: position - 1, hash: leaf) { try node(txn, schema, $0, $1) }
        for n in completed {
            do throws(LMDBError) {
                try txn.put(schema.merkleNodes, MerkleTree.nodeKey(level: n.level, index: n.index), n.hash, options: .append)
            } catch {
                // Appends must land past every stored node: one already there was put by hand.
                guard error.code == .keyExists else { throw error }
                throw StoreError(.corrupt, "the Merkle tree holds a node past position \(position - 1), where the log ends; `upload-replay` names it")
            }
        }
    }

    static func node(_ txn: Transaction, _ schema: Schema, _ level: UInt8, _ index: UInt64) throws -> MerkleTree.Hash {
        guard let hash = try txn.get(schema.merkleNodes, MerkleTree.nodeKey(level: level, index: index)), hash.count == 32 else {
            throw StoreError(.corrupt, "the Merkle tree lacks node (level \(level), index \(index)), covering positions \((index << UInt64(level)) + 1)...\((index + 1) << UInt64(level))")
        }
        return hash
    }

    /// The root of the tree of the first `size` events.
    static func root(_ txn: Transaction, _ schema: Schema, size: UInt64) throws -> MerkleTree.Hash {
        guard size > 0 else { return MerkleTree.emptyRoot }
        return try MerkleTree.rootHash(0, size) { try node(txn, schema, $0, $1) }
    }
}
