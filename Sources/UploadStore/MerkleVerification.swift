import LMDBKit
import LogHashing
import UploadCore

/// Verify's check of the stored Merkle tree against the events, in two parts that may run in two
/// snapshots: ``checkNothingStoredPast(_:_:)`` in the snapshot the log's size was read from, and
/// ``check(_:_:tick:)`` in any later one (the log and the tree only ever grow at their ends, so
/// their first `size` events and the nodes over them are the same in every later snapshot). So
/// verify can run the long part on whichever of its two threads is free first.
struct MerkleVerification {
    let size: UInt64
    /// The largest key a node over the first `size` events may have: `size`, then level 0xFF.
    private let bound: [UInt8]

    init(size: UInt64) {
        self.size = size
        bound = BigEndian.bytes(size) + [0xFF]
    }

    /// Whether a stored key sorts past every node over the first `size` events.
    private func isPast(_ key: UnsafeRawBufferPointer) -> Bool { bound.lexicographicallyPrecedes(key) }

    /// Every key of the tree must be a node over the first `size` events: one past them is a node
    /// no event supports (the first such is named). Run in the snapshot `size` was read from.
    func checkNothingStoredPast(_ txn: Transaction, _ schema: Schema) throws {
        var past: [UInt8]?
        try txn.scan(schema.merkleNodes, from: bound) { key, _ in
            if isPast(key) { past = Array(key) }
            return past == nil
        }
        if let past { throw Replayer.Failure.log(Self.unsupported(past)) }
    }

    /// Recomputes every Merkle node from the raw event bytes and compares each with the stored
    /// one: a changed, removed, reordered or inserted byte changes a leaf, and the first
    /// differing node names the positions it covers.
    ///
    /// Stored nodes are keyed by their last leaf's position, then level
    /// (``MerkleTree/nodeKey(level:index:)``): the order in which appending the leaves completes
    /// them. So the computed nodes are kept in one flat buffer in that order, and one pass over
    /// the stored ones meets them in the same order: the first one out of place is the first
    /// difference. Only the right edge of the tree (one node per level) is needed to compute the
    /// next, and nothing is allocated per node.
    func check(_ txn: Transaction, _ schema: Schema, tick: () -> Void) throws {
        let hashSize = MerkleTree.hashSize
        // A tree of n leaves has fewer than 2n nodes.
        var computed = [UInt8](repeating: 0, count: 2 * Int(size) * hashSize)
        var count = 0
        // The newest node at each level, the left sibling of the next one completed there.
        var rightEdge = [UInt8](repeating: 0, count: 64 * hashSize)
        try computed.withUnsafeMutableBytes { computed in
            try rightEdge.withUnsafeMutableBytes { rightEdge in
                func slot(_ buffer: UnsafeMutableRawBufferPointer, _ n: Int) -> UnsafeMutableRawBufferPointer {
                    UnsafeMutableRawBufferPointer(rebasing: buffer[n * hashSize..<(n + 1) * hashSize])
                }
                var expected: UInt64 = 1
                try txn.scan(schema.events) { key, value in
                    guard expected <= size else { return false }
                    // Verify checks the tree only over a log a rebuild found dense; this keeps the
                    // buffer's bounds whatever the log holds.
                    guard let position = BigEndian.uint64(key), position == expected else {
                        throw Replayer.Failure.log("Merkle tree: position \(expected) is not where the log's next event is")
                    }
                    expected += 1
                    MerkleTree.leafHash(position: position, record: value, into: slot(computed, count))
                    var level = 0, index = position - 1
                    while index & 1 == 1 {
                        MerkleTree.nodeHash(UnsafeRawBufferPointer(slot(rightEdge, level)), UnsafeRawBufferPointer(slot(computed, count)), into: slot(computed, count + 1))
                        count += 1
                        level += 1
                        index >>= 1
                    }
                    slot(rightEdge, level).copyMemory(from: UnsafeRawBufferPointer(slot(computed, count)))
                    count += 1
                    tick()
                    return true
                }
            }
        }
        try compare(computed, count: count, txn, schema)
    }

    /// Compares the stored nodes over the first `size` events, in key order, with the `count`
    /// computed ones.
    private func compare(_ computed: [UInt8], count: Int, _ txn: Transaction, _ schema: Schema) throws {
        /// The next node the stored tree should hold, in key order: (last leaf, level).
        var expected: (lastLeaf: UInt64, level: Int)? = size > 0 ? (1, 0) : nil
        func advance(_ node: (lastLeaf: UInt64, level: Int)) -> (lastLeaf: UInt64, level: Int)? {
            if node.lastLeaf.trailingZeroBitCount > node.level { return (node.lastLeaf, node.level + 1) }  // its parent ends here too
            return node.lastLeaf < size ? (node.lastLeaf + 1, 0) : nil
        }
        func missing(_ node: (lastLeaf: UInt64, level: Int)) -> String {
            "Merkle tree: the node over \(Self.place(node.level, (node.lastLeaf >> UInt64(node.level)) - 1)) is missing from the stored tree"
        }
        var failure: String?
        var n = 0
        try computed.withUnsafeBytes { computed in try txn.scan(schema.merkleNodes) { key, value in
            guard !isPast(key) else { return false }
            guard let (level, index) = MerkleTree.node(forKey: key) else {
                failure = Self.unsupported(Array(key))
                return false
            }
            let stored = (lastLeaf: (index + 1) << UInt64(level), level: Int(level))
            if let next = expected, next.lastLeaf < stored.lastLeaf || (next.lastLeaf == stored.lastLeaf && next.level < stored.level) {
                failure = missing(next)
                return false
            }
            guard let next = expected, next == stored, n < count else {
                failure = Self.unsupported(Array(key))
                return false
            }
            guard ExactBytes.equal(UnsafeRawBufferPointer(rebasing: computed[n * MerkleTree.hashSize..<(n + 1) * MerkleTree.hashSize]), value) else {
                failure = "Merkle tree: the node over \(Self.place(Int(level), index)) does not match the events"
                return false
            }
            n += 1
            expected = advance(next)
            return true
        } }
        if failure == nil, let next = expected { failure = missing(next) }
        if let failure { throw Replayer.Failure.log(failure) }
    }

    private static func unsupported(_ key: [UInt8]) -> String {
        guard let (level, index) = MerkleTree.node(forKey: key) else {
            return "Merkle tree: a stored node has the key \(Hex.encode(key)), which names no node; no event supports it"
        }
        return "Merkle tree: the node over \(place(Int(level), index)) is stored but no event supports it"
    }

    private static func place(_ level: Int, _ index: UInt64) -> String {
        let first = (index << UInt64(level)) + 1, last = (index + 1) << UInt64(level)
        return level == 0 ? "position \(first)" : "positions \(first)...\(last)"
    }
}

extension Store {
    /// The tree size and the Merkle root, as ``SnapshotReading/merkleRoot()`` gives them, once every
    /// stored node has been computed again from the events' bytes (``MerkleVerification``): what a
    /// backup prints, so that a damaged page of the log it copied fails the backup, rather than
    /// being kept in it beside a root it no longer proves.
    /// - Throws: ``StoreError`` `.corrupt`, naming the first events that do not hash to the tree.
    public func verifiedMerkleRoot() throws -> (treeSize: UInt64, rootHash: String) {
        try snapshot { reader in
            let size = try reader.lastPosition()
            let verification = MerkleVerification(size: size)
            do {
                try verification.checkNothingStoredPast(reader.txn, schema)
                try verification.check(reader.txn, schema, tick: {})
            } catch let failure as Replayer.Failure {
                throw StoreError(.corrupt, "the log does not hash to its Merkle tree: \(failure)")
            }
            return (size, Hex.encode(try reader.rootHash(size: size)))
        }
    }
}
