import Crypto

/// The RFC 9162 (Certificate Transparency v2) Merkle tree over the event log, as pure functions.
///
/// Leaf `i` (0-based) is the event at position `i + 1`; its leaf data is the 8-byte big-endian
/// position followed by the event record's bytes, so a moved, changed, removed or inserted event
/// changes the root. Hashes: `leaf = SHA-256(0x00 ‖ data)`, `node = SHA-256(0x01 ‖ left ‖ right)`.
///
/// Storage keeps the hash of every *complete* subtree: node `(level, index)` covers leaves
/// `index·2^level ..< (index+1)·2^level`. Every hash the algorithms need (roots of any size,
/// inclusion paths) is one of those or combines them, so nothing is recomputed from events.
public enum MerkleTree {
    public typealias Hash = [UInt8]

    // Hashed straight from the caller's bytes, without a copy: the writer hashes a leaf per event
    // inside its transaction, and verify a million of them.
    public static func leafHash(position: UInt64, record: some Collection<UInt8>) -> Hash {
        record.withContiguousStorageIfAvailable { leafHash(position: position, record: UnsafeRawBufferPointer($0)) }
            ?? Array(record).withUnsafeBytes { leafHash(position: position, record: $0) }
    }

    public static func leafHash(position: UInt64, record: UnsafeRawBufferPointer) -> Hash {
        hash { leafHash(position: position, record: record, into: $0) }
    }

    /// The leaf's hash written into `hash` (32 bytes), allocating nothing: verify hashes a million.
    public static func leafHash(position: UInt64, record: UnsafeRawBufferPointer, into hash: UnsafeMutableRawBufferPointer) {
        precondition(hash.count == hashSize)
        var hasher = SHA256()
        hasher.update(data: leafPrefix)
        withUnsafeBytes(of: position.bigEndian) { hasher.update(bufferPointer: $0) }
        hasher.update(bufferPointer: record)
        hasher.finalize().withUnsafeBytes { hash.copyMemory(from: $0) }
    }

    /// The node's hash over two 32-byte hashes, written into `hash`, allocating nothing.
    public static func nodeHash(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer, into hash: UnsafeMutableRawBufferPointer) {
        precondition(hash.count == hashSize)
        var hasher = SHA256()
        hasher.update(data: nodePrefix)
        hasher.update(bufferPointer: left)
        hasher.update(bufferPointer: right)
        hasher.finalize().withUnsafeBytes { hash.copyMemory(from: $0) }
    }

    public static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        left.withUnsafeBytes { left in right.withUnsafeBytes { right in hash { nodeHash(left, right, into: $0) } } }
    }

    /// The size of every hash: SHA-256's.
    public static let hashSize = 32

    private static func hash(_ write: (UnsafeMutableRawBufferPointer) -> Void) -> Hash {
        Hash(unsafeUninitializedCapacity: hashSize) { buffer, count in
            write(UnsafeMutableRawBufferPointer(buffer))
            count = hashSize
        }
    }

    private static let leafPrefix: [UInt8] = [0x00]
    private static let nodePrefix: [UInt8] = [0x01]

    /// The storage key of node `(level, index)`: the 1-based position of the last leaf it covers,
    /// `(index + 1) · 2^level`, in eight big-endian bytes, then one byte of level.
    ///
    /// Every node an append completes ends at the new leaf, so they share its position and sort
    /// after every node stored before them, lowest level first: appends land at the tree's right
    /// edge (keyed level first, each level's newest node sat at the end of its own range).
    public static func nodeKey(level: UInt8, index: UInt64) -> [UInt8] {
        precondition(level < 64 && index < UInt64.max >> level, "node (\(level), \(index)) ends past the last position")
        let lastLeaf = (index + 1) << UInt64(level)
        return (0..<8).map { UInt8(truncatingIfNeeded: lastLeaf >> (56 - 8 * $0)) } + [level]
    }

    /// The node a storage key names, or `nil` when no node has that key.
    public static func node(forKey key: UnsafeRawBufferPointer) -> (level: UInt8, index: UInt64)? {
        guard key.count == 9, key[8] < 64 else { return nil }
        let level = key[8]
        let lastLeaf = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
        guard lastLeaf > 0, lastLeaf.trailingZeroBitCount >= level else { return nil }
        return (level, (lastLeaf >> UInt64(level)) - 1)
    }

    public static func node(forKey key: [UInt8]) -> (level: UInt8, index: UInt64)? {
        key.withUnsafeBytes { node(forKey: $0) }
    }

    /// The nodes that appending leaf `index` completes, bottom up, starting with the leaf itself:
    /// pass the existing node hashes through `node`.
    public static func nodesCompleted(
        byLeaf index: UInt64, hash: Hash, node: (UInt8, UInt64) throws -> Hash
    ) rethrows -> [(level: UInt8, index: UInt64, hash: Hash)] {
        var completed = [(level: UInt8(0), index: index, hash: hash)]
        var (level, i, current) = (UInt8(0), index, hash)
        while i & 1 == 1 {
            current = nodeHash(try node(level, i - 1), current)
            level += 1
            i >>= 1
            completed.append((level, i, current))
        }
        return completed
    }

    /// MTH(D[start ..< end]), RFC 9162 §2.1.1, from stored complete-subtree nodes.
    /// `start` must be a multiple of the largest power of two below `end - start` (as in every
    /// range the RFC's recursion visits from 0).
    public static func rootHash(_ start: UInt64, _ end: UInt64, node: (UInt8, UInt64) throws -> Hash) rethrows -> Hash {
        precondition(end > start, "the empty tree has no stored nodes")
        let size = end - start
        if size & (size - 1) == 0 {
            let level = UInt8(size.trailingZeroBitCount)
            return try node(level, start >> UInt64(level))
        }
        let k = largestPowerOfTwo(below: size)
        return nodeHash(try rootHash(start, start + k, node: node), try rootHash(start + k, end, node: node))
    }

    /// A complete subtree: its level (0 for a leaf) and its index among that level's subtrees.
    public struct NodeCoordinate: Hashable, Sendable {
        public let level: UInt8
        public let index: UInt64

        public init(level: UInt8, index: UInt64) {
            self.level = level
            self.index = index
        }
    }

    /// Runs `proof` (a root, an inclusion path, a consistency proof), which reads stored nodes
    /// through its argument, with the nodes it needs read all at once by `read`: which nodes these
    /// read depends on the sizes and indices only, never on the hashes, so a first run with
    /// stand-in hashes names them. A node the second run asks for that the first did not (none
    /// does) is read by `node`.
    public static func withNodesRead<T>(
        by read: ([NodeCoordinate]) throws -> [Hash], orEach node: (UInt8, UInt64) throws -> Hash,
        _ proof: ((UInt8, UInt64) throws -> Hash) throws -> T
    ) throws -> T {
        var wanted: [NodeCoordinate] = []
        _ = try proof { level, index in
            wanted.append(NodeCoordinate(level: level, index: index))
            return emptyRoot
        }
        var known: [NodeCoordinate: Hash] = [:]
        for (coordinate, hash) in zip(wanted, try read(wanted)) { known[coordinate] = hash }
        return try withoutActuallyEscaping(node) { node in
            try proof { level, index in try known[NodeCoordinate(level: level, index: index)] ?? node(level, index) }
        }
    }

    /// The hash of the empty tree: SHA-256 of nothing.
    public static let emptyRoot: Hash = Array(SHA256.hash(data: [UInt8]()))

    /// PATH(m, D[0 ..< size]), RFC 9162 §2.1.3.1: the inclusion proof of leaf `m`.
    public static func inclusionPath(leaf m: UInt64, size: UInt64, node: (UInt8, UInt64) throws -> Hash) rethrows -> [Hash] {
        precondition(m < size)
        func path(_ m: UInt64, _ start: UInt64, _ end: UInt64) throws -> [Hash] {
            guard end - start > 1 else { return [] }
            let k = largestPowerOfTwo(below: end - start)
            if m < k {
                return try path(m, start, start + k) + [rootHash(start + k, end, node: node)]
            }
            return try path(m - k, start + k, end) + [rootHash(start, start + k, node: node)]
        }
        return try path(m, 0, size)
    }

    /// RFC 9162 §2.1.3.2: whether `path` proves leaf `index` with `leafHash` in the tree of
    /// `size` leaves whose root is `root`.
    public static func verifyInclusion(leafHash: Hash, index: UInt64, size: UInt64, path: [Hash], root: Hash) -> Bool {
        guard index < size else { return false }
        var fn = index, sn = size - 1, r = leafHash
        for p in path {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                while fn & 1 == 0 && fn != 0 {
                    fn >>= 1
                    sn >>= 1
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && r == root
    }

    /// The largest power of two strictly below `n` (n ≥ 2).
    static func largestPowerOfTwo(below n: UInt64) -> UInt64 {
        UInt64(1) << UInt64(63 - (n - 1).leadingZeroBitCount)
    }
}
