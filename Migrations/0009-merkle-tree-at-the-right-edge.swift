import LMDBKit

extension UploadMigrations {
    /// `merkle-nodes` keyed each node level first (one byte of level, eight of index), so an append
    /// wrote at the end of each level's range: one hot page per level. `merkle-tree` keys it by
    /// the position of its last leaf, then its level, so every append lands at the right edge. The
    /// hashes are copied, not recomputed; the events are not touched.
    static func merkleTreeAtTheRightEdge(_ txn: Transaction) throws {
        let tree = try txn.openDatabase("merkle-tree", create: true)!
        guard let nodes = try txn.openDatabase("merkle-nodes") else { return }
        try txn.scan(nodes) { key, value in
            guard key.count == 9, let level = key.first, level < 64 else {
                throw MigrationError.corruptRecord("merkle node key of \(key.count) bytes")
            }
            let index = key.dropFirst().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard index < UInt64.max >> level else { throw MigrationError.corruptRecord("merkle node \(level)/\(index)") }
            let lastLeaf = (index + 1) << UInt64(level)
            try txn.put(tree, (0..<8).map { UInt8(truncatingIfNeeded: lastLeaf >> (56 - 8 * $0)) } + [level], Array(value))
            return true
        }
        try txn.dropDatabase("merkle-nodes")
    }
}
