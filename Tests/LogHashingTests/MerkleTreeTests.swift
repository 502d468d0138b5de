import Crypto
import Foundation
import LogHashing
import Testing

// MARK: - Tests

struct MerkleTreeTests {
    // MARK: Hashing and domain separation

    @Test func leafHash_isSHA256OfZeroByte_bigEndianPosition_andRecord() {
        let positions: [UInt64] = [0, 1, 2, 255, 256, 0x0102_0304, 1 << 32, UInt64.max]
        for (i, record) in sampleRecords(40, seed: 7).enumerated() {
            let position = positions[i % positions.count]
            #expect(MerkleTree.leafHash(position: position, record: record) == Reference.leafHash(position: position, record: record),
                    "position \(position), record of \(record.count) bytes")
            // The record may be any collection of bytes, not only an array.
            #expect(MerkleTree.leafHash(position: position, record: record[...]) == Reference.leafHash(position: position, record: record))
        }
    }

    @Test func nodeHash_isSHA256OfOneByte_left_right() {
        let leaves = sampleLeaves(6, seed: 3)
        for (left, right) in zip(leaves, leaves.dropFirst()) {
            #expect(MerkleTree.nodeHash(left, right) == Reference.nodeHash(left, right))
            #expect(MerkleTree.nodeHash(left, right) != MerkleTree.nodeHash(right, left), "children are ordered")
        }
    }

    /// The point of the prefixes: an interior node's 64 bytes, offered as a leaf's data, must not
    /// hash to that node (the second-preimage attack RFC 9162 §2.1.1 rules out).
    @Test func anInteriorNodeCannotPassAsALeaf_andALeafCannotPassAsANode() {
        let leaves = sampleLeaves(4, seed: 11)
        let left = MerkleTree.nodeHash(leaves[0], leaves[1]), right = MerkleTree.nodeHash(leaves[2], leaves[3])
        let node = MerkleTree.nodeHash(left, right)
        // A leaf whose data (position ‖ record) is exactly left ‖ right.
        let position = left.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let record = Array(left.dropFirst(8)) + right
        #expect(Reference.bigEndian(position) + record == left + right, "the forged leaf data is the node's data")
        #expect(Reference.sha256(Reference.bigEndian(position) + record) == Reference.sha256(left + right),
                "without prefixes the two would collide")
        #expect(MerkleTree.leafHash(position: position, record: record) != node)

        // And the other way round: a node over two halves of a 64-byte leaf's data.
        let data = Array(0..<64).map { UInt8($0) }
        let leafPosition = data.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let leaf = MerkleTree.leafHash(position: leafPosition, record: Array(data.dropFirst(8)))
        #expect(leaf != MerkleTree.nodeHash(Array(data.prefix(32)), Array(data.suffix(32))))
    }

    @Test func leafHash_bindsThePosition() {
        let record = Array("the same event bytes".utf8)
        let hashes = [1, 2, 256, 1 << 40].map { MerkleTree.leafHash(position: UInt64($0), record: record) }
        #expect(Set(hashes).count == hashes.count, "one record at four positions gives four leaves")
    }

    @Test func emptyRoot_isSHA256OfNothing() {
        #expect(MerkleTree.emptyRoot == Reference.sha256([]))
        #expect(hexString(MerkleTree.emptyRoot) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Reference.root([Reference.Hash]()) == MerkleTree.emptyRoot)
    }

    // MARK: Published test vectors

    /// The CT test data's leaves are hashed without a position (plain `SHA-256(0x00 ‖ entry)`),
    /// then fed through the incremental API: the tree shape must give the published heads.
    @Test func incrementalTree_reproducesThePublishedRFC6962TreeHeads() throws {
        let store = NodeStore()
        for (n, entry) in ctEntries.enumerated() {
            _ = try store.append(Reference.leafHash(entry))
            #expect(try hexString(store.root()) == ctRoots[n], "tree size \(n + 1)")
        }
    }

    @Test func inclusionPath_reproducesThePublishedRFC6962Paths() throws {
        let store = try NodeStore(leaves: ctEntries.map { Reference.leafHash($0) })
        let path0 = try MerkleTree.inclusionPath(leaf: 0, size: 8, node: store.node).map(hexString)
        #expect(path0 == [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ])
        let path5 = try MerkleTree.inclusionPath(leaf: 5, size: 8, node: store.node).map(hexString)
        #expect(path5 == [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",  // = MTH(D[0:4])
        ])
    }

    // MARK: The incremental tree against the reference

    /// Appending leaf `i` completes exactly the subtrees whose width divides `i + 1`, each with the
    /// reference hash of the leaves it covers; after all of them the stored nodes are exactly the
    /// complete subtrees, and `rootHash` over them is the reference root.
    @Test(arguments: 1...70)
    func nodesCompleted_andRootHash_matchTheNaiveTree(size: Int) throws {
        let leaves = sampleLeaves(size)
        let store = NodeStore()
        for i in 0..<size {
            let completed = try store.append(leaves[i])
            var expected: [NodeID] = []
            var width = 1
            while (i + 1) % width == 0 {
                expected.append(NodeID(level: UInt8(expected.count), index: UInt64((i + 1) / width - 1)))
                width *= 2
            }
            #expect(completed.map { NodeID(level: $0.level, index: $0.index) } == expected, "leaf \(i)")
            for n in completed {
                let first = Int(n.index) << Int(n.level), end = (Int(n.index) + 1) << Int(n.level)
                #expect(n.hash == Reference.root(leaves[first..<end]), "node \(NodeID(level: n.level, index: n.index))")
            }
        }

        var everyCompleteSubtree: Set<[UInt8]> = []
        for level in 0..<8 {
            for index in 0..<(size >> level) {
                everyCompleteSubtree.insert(MerkleTree.nodeKey(level: UInt8(level), index: UInt64(index)))
            }
        }
        #expect(Set(store.nodes.keys) == everyCompleteSubtree)
        #expect(store.nodes.count == 2 * size - size.nonzeroBitCount)

        #expect(try store.root() == Reference.root(leaves))
    }

    /// `rootHash(start, end)` for every range the RFC's recursion visits from 0.
    @Test(arguments: [1, 2, 3, 5, 6, 7, 8, 11, 16, 17, 24, 31, 33, 45, 64, 70])
    func rootHash_ofEverySubrangeTheRecursionVisits_matchesTheNaiveHash(size: Int) throws {
        let leaves = sampleLeaves(size, seed: 5)
        let store = try NodeStore(leaves: leaves)
        var ranges: [(Int, Int)] = []
        func visit(_ start: Int, _ end: Int) {
            ranges.append((start, end))
            guard end - start > 1 else { return }
            let k = Reference.split(end - start)
            visit(start, start + k)
            visit(start + k, end)
        }
        visit(0, size)
        for (start, end) in ranges {
            #expect(try MerkleTree.rootHash(UInt64(start), UInt64(end), node: store.node) == Reference.root(leaves[start..<end]),
                    "D[\(start):\(end)]")
        }
    }

    // MARK: Inclusion proofs

    @Test(arguments: 1...70)
    func inclusionPath_isTheRFCPath_andVerifiesAgainstTheNaiveRoot(size: Int) throws {
        let leaves = sampleLeaves(size, seed: 2)
        let store = try NodeStore(leaves: leaves)
        let root = Reference.root(leaves)
        for m in 0..<size {
            let path = try MerkleTree.inclusionPath(leaf: UInt64(m), size: UInt64(size), node: store.node)
            #expect(path == Reference.path(m, leaves[...]), "leaf \(m) of \(size)")
            #expect(MerkleTree.verifyInclusion(leafHash: leaves[m], index: UInt64(m), size: UInt64(size), path: path, root: root),
                    "leaf \(m) of \(size)")
        }
    }

    /// The verifier is checked against proofs built by the reference alone, so a bug shared by
    /// `inclusionPath` and `verifyInclusion` cannot hide.
    @Test(arguments: [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 32, 33, 70])
    func verifyInclusion_acceptsTheReferencePath(size: Int) {
        let leaves = sampleLeaves(size, seed: 9)
        let root = Reference.root(leaves)
        for m in 0..<size {
            #expect(MerkleTree.verifyInclusion(
                leafHash: leaves[m], index: UInt64(m), size: UInt64(size), path: Reference.path(m, leaves[...]), root: root))
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 70])
    func verifyInclusion_rejectsAWrongLeafIndexPathOrRoot(size: Int) {
        let leaves = sampleLeaves(size, seed: 4)
        let root = Reference.root(leaves)
        let n = UInt64(size)
        for m in 0..<size {
            let honestPath = Reference.path(m, leaves[...])
            let i = UInt64(m)
            /// The honest proof of leaf `m`, with whatever is given replaced.
            func verify(leaf: MerkleTree.Hash? = nil, index: UInt64? = nil, size claimed: UInt64? = nil,
                        path: [MerkleTree.Hash]? = nil, root claimedRoot: MerkleTree.Hash? = nil) -> Bool {
                MerkleTree.verifyInclusion(
                    leafHash: leaf ?? leaves[m], index: index ?? i, size: claimed ?? n, path: path ?? honestPath, root: claimedRoot ?? root)
            }
            #expect(verify(), "the honest proof of leaf \(m) of \(size)")

            // A different leaf, at this index.
            var flipped = leaves[m]
            flipped[31] ^= 0x01
            #expect(!verify(leaf: flipped), "a changed leaf \(m) of \(size)")
            if size > 1 { #expect(!verify(leaf: leaves[(m + 1) % size]), "leaf \((m + 1) % size) claimed at \(m) of \(size)") }
            // This leaf and path, claimed at any other index, including past the end.
            for other in 0..<(n + 1) where other != i {
                #expect(!verify(index: other), "leaf \(m) claimed at index \(other) of \(size)")
            }
            #expect(!verify(index: UInt64.max))
            // A path with a changed, a missing, an extra or a reordered step.
            for step in honestPath.indices {
                var bad = honestPath
                bad[step][0] ^= 0x80
                #expect(!verify(path: bad), "step \(step) changed, leaf \(m) of \(size)")
            }
            if !honestPath.isEmpty {
                #expect(!verify(path: Array(honestPath.dropLast())), "last step missing, leaf \(m) of \(size)")
                #expect(!verify(path: Array(honestPath.dropFirst())), "first step missing, leaf \(m) of \(size)")
            }
            #expect(!verify(path: honestPath + [leaves[0]]), "an extra step, leaf \(m) of \(size)")
            #expect(!verify(path: [leaves[m]] + honestPath), "an extra first step, leaf \(m) of \(size)")
            if honestPath.count >= 2 {
                #expect(!verify(path: Array(honestPath.reversed())), "steps reversed, leaf \(m) of \(size)")
            }
            // Another tree's root, for the size claimed.
            var otherRoot = root
            otherRoot[0] ^= 0x01
            #expect(!verify(root: otherRoot))
            if m < size - 1 {
                #expect(!verify(size: n - 1, root: Reference.root(leaves[..<(size - 1)])), "proof of \(size) against the tree of \(size - 1)")
            }
            #expect(!verify(size: n + 1, root: Reference.root(sampleLeaves(size + 1, seed: 4))), "proof of \(size) against the tree of \(size + 1)")
        }
    }

    @Test func verifyInclusion_rejectsAnIndexOutsideTheTree() {
        let leaf = Reference.leafHash(position: 1, record: [1])
        #expect(MerkleTree.verifyInclusion(leafHash: leaf, index: 0, size: 1, path: [], root: leaf))
        #expect(!MerkleTree.verifyInclusion(leafHash: leaf, index: 1, size: 1, path: [], root: leaf))
        #expect(!MerkleTree.verifyInclusion(leafHash: leaf, index: 0, size: 0, path: [], root: leaf))
        #expect(!MerkleTree.verifyInclusion(leafHash: leaf, index: 0, size: 1, path: [leaf], root: leaf), "a one-leaf tree takes no steps")
    }

    // MARK: What the root commits to

    /// The root through the library's own leaf hashing and incremental storage.
    func libraryRoot(_ records: [[UInt8]]) throws -> MerkleTree.Hash {
        let leaves = records.enumerated().map { MerkleTree.leafHash(position: UInt64($0.offset + 1), record: $0.element) }
        return try NodeStore(leaves: leaves).root()
    }

    @Test func theRoot_changesWhenARecordIsChangedMovedRemovedOrInserted() throws {
        let records = sampleRecords(21, seed: 13).map { $0 + [0xAA] }  // none empty, so each has a byte to change
        let root = try libraryRoot(records)
        let referenceLeaves = records.enumerated().map { Reference.leafHash(position: UInt64($0.offset + 1), record: $0.element) }
        #expect(root == Reference.root(referenceLeaves))

        var variants: [(String, [[UInt8]])] = []
        for j in [0, 1, 7, 10, 15, 20] {
            var changed = records
            changed[j][changed[j].count - 1] ^= 0x01
            variants.append(("a byte of record \(j + 1) changed", changed))
            var extended = records
            extended[j].append(0)
            variants.append(("record \(j + 1) extended by a zero byte", extended))
            var removed = records
            let record = removed.remove(at: j)
            variants.append(("record \(j + 1) removed", removed))
            if j < records.count - 1 {  // moving the last record to the end would leave the log as it was
                variants.append(("record \(j + 1) moved to the end", removed + [record]))
            }
            var inserted = records
            inserted.insert([], at: j)
            variants.append(("an empty record inserted at \(j + 1)", inserted))
        }
        for j in [0, 9, 19] {
            var swapped = records
            swapped.swapAt(j, j + 1)
            variants.append(("records \(j + 1) and \(j + 2) swapped", swapped))
        }
        variants.append(("an empty record appended", records + [[]]))
        var seen: Set<MerkleTree.Hash> = [root]
        for (what, variant) in variants {
            let variantRoot = try libraryRoot(variant)
            #expect(variantRoot != root, "\(what)")
            seen.insert(variantRoot)
        }
        #expect(seen.count == variants.count + 1, "every variant has its own root")
    }

    // MARK: Storage keys

    @Test func nodeKey_isTheBigEndianLastLeafThenTheLevel_andReadsBack() {
        for (level, index, lastLeaf) in [(0, 0, 1), (0, 6, 7), (1, 1, 4), (3, 2, 24), (10, 0, 1024), (63, 0, 1 << 63)] as [(UInt8, UInt64, UInt64)] {
            let key = MerkleTree.nodeKey(level: level, index: index)
            #expect(key == Reference.bigEndian(lastLeaf) + [level], "level \(level), index \(index)")
            #expect(MerkleTree.node(forKey: key)! == (level, index))
        }
        // Keys that name no node: a leaf position not a multiple of the level's width, position 0,
        // a level past 63, the wrong length.
        for key in [Reference.bigEndian(6) + [2], Reference.bigEndian(0) + [0], Reference.bigEndian(1 << 63) + [64], [0, 1]] {
            #expect(MerkleTree.node(forKey: key) == nil, "\(key)")
        }
    }

    /// LMDB orders keys bytewise, and the writer appends nodes with `MDB_APPEND`: the nodes that
    /// appending the leaves completes, in the order they complete, must have strictly increasing
    /// keys, and every node its own key.
    @Test func nodeKey_ofNodesInTheOrderAppendsCompleteThem_strictlyIncreases() {
        var keys: [[UInt8]] = []
        var levels: [[MerkleTree.Hash]] = []
        for leaf in UInt64(0)..<1_000 {
            let hash = MerkleTree.leafHash(position: leaf + 1, record: [UInt8(truncatingIfNeeded: leaf)])
            for n in MerkleTree.nodesCompleted(byLeaf: leaf, hash: hash, node: { levels[Int($0)][Int($1)] }) {
                if levels.count <= Int(n.level) { levels.append([]) }
                levels[Int(n.level)].append(n.hash)
                keys.append(MerkleTree.nodeKey(level: n.level, index: n.index))
            }
        }
        #expect(keys.count == 2 * 1_000 - 1_000.nonzeroBitCount)
        #expect(zip(keys, keys.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) })
    }
}
