import Crypto
import Foundation
import LogHashing
import UploadTesting

// MARK: - An independent reference, written straight from RFC 9162 §2.1

/// RFC 9162's definitions written the naive way: lists of leaf hashes and recursion, nothing
/// stored and nothing incremental. Shares no code with `MerkleTree`; only SHA-256 comes from Crypto.
enum Reference {
    typealias Hash = [UInt8]

    static func sha256(_ bytes: [UInt8]) -> Hash { Array(SHA256.hash(data: bytes)) }

    /// Eight bytes, most significant first, through the integer's own byte order (not shifts).
    static func bigEndian(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    /// `SHA-256(0x00 ‖ data)`.
    static func leafHash(_ data: [UInt8]) -> Hash { sha256([0x00] + data) }

    /// The log's leaf data: the 8-byte big-endian position, then the record.
    static func leafHash(position: UInt64, record: [UInt8]) -> Hash { leafHash(bigEndian(position) + record) }

    /// `SHA-256(0x01 ‖ left ‖ right)`.
    static func nodeHash(_ left: Hash, _ right: Hash) -> Hash { sha256([0x01] + left + right) }

    /// The largest power of two strictly below `n` (n ≥ 2), by doubling.
    static func split(_ n: Int) -> Int {
        var k = 1
        while k * 2 < n { k *= 2 }
        return k
    }

    /// MTH over a list of leaf hashes: MTH({}) = SHA-256(), MTH({d}) = d's leaf hash,
    /// MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n])).
    static func root(_ leaves: ArraySlice<Hash>) -> Hash {
        switch leaves.count {
        case 0: return sha256([])
        case 1: return leaves[leaves.startIndex]
        default:
            let middle = leaves.startIndex + split(leaves.count)
            return nodeHash(root(leaves[..<middle]), root(leaves[middle...]))
        }
    }

    static func root(_ leaves: [Hash]) -> Hash { root(leaves[...]) }

    /// PATH(m, D[n]), §2.1.3.1.
    static func path(_ m: Int, _ leaves: ArraySlice<Hash>) -> [Hash] {
        guard leaves.count > 1 else { return [] }
        let k = split(leaves.count)
        let middle = leaves.startIndex + k
        if m < k { return path(m, leaves[..<middle]) + [root(leaves[middle...])] }
        return path(m - k, leaves[middle...]) + [root(leaves[..<middle])]
    }
}

/// `count` records of 0 to 47 pseudo-random bytes (some empty), the same for the same seed.
func sampleRecords(_ count: Int, seed: UInt64 = 1) -> [[UInt8]] {
    var rng = SplitMix64(state: seed)
    return (0..<count).map { _ in
        let length = Int(rng.next() % 48)
        return (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }
}

/// The leaf hashes of `sampleRecords(count)` at positions 1, 2, …, by the reference.
func sampleLeaves(_ count: Int, seed: UInt64 = 1) -> [Reference.Hash] {
    sampleRecords(count, seed: seed).enumerated().map { Reference.leafHash(position: UInt64($0.offset + 1), record: $0.element) }
}

/// Node storage as the store keeps it, `nodeKey → hash`, filled only through `nodesCompleted`.
/// Asking for a node that was never completed throws, so the algorithms cannot lean on one.
final class NodeStore {
    struct Missing: Error, CustomStringConvertible {
        let level: UInt8
        let index: UInt64
        var description: String { "node (\(level), \(index)) was never completed" }
    }

    private(set) var nodes: [[UInt8]: MerkleTree.Hash] = [:]
    private(set) var size: UInt64 = 0

    init() {}

    convenience init(leaves: [MerkleTree.Hash]) throws {
        self.init()
        for leaf in leaves { _ = try append(leaf) }
    }

    func node(_ level: UInt8, _ index: UInt64) throws -> MerkleTree.Hash {
        guard let hash = nodes[MerkleTree.nodeKey(level: level, index: index)] else { throw Missing(level: level, index: index) }
        return hash
    }

    /// Appends the next leaf. - Returns: what `nodesCompleted` reported.
    func append(_ leaf: MerkleTree.Hash) throws -> [(level: UInt8, index: UInt64, hash: MerkleTree.Hash)] {
        let completed = try MerkleTree.nodesCompleted(byLeaf: size, hash: leaf, node: node)
        for n in completed { nodes[MerkleTree.nodeKey(level: n.level, index: n.index)] = n.hash }
        size += 1
        return completed
    }

    func root() throws -> MerkleTree.Hash { try MerkleTree.rootHash(0, size, node: node) }
}

struct NodeID: Hashable, CustomStringConvertible {
    let level: UInt8
    let index: UInt64
    var description: String { "(\(level), \(index))" }
}

/// The RFC 6962 / RFC 9162 test data every Certificate Transparency implementation uses, and the
/// published tree heads MTH(D[1…8]) over it (also reproduced with Python's hashlib when writing this).
let ctEntries: [[UInt8]] = [
    [], [0x00], [0x10], [0x20, 0x21], [0x30, 0x31], [0x40, 0x41, 0x42, 0x43],
    Array(0x50...0x57), Array(0x60...0x6f),
]
let ctRoots = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

/// Lower-case hex, written without `Hex`.
func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] })
}
