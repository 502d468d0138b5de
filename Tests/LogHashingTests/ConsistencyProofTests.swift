import LogHashing
import Testing

/// RFC 9162 §2.1.4 consistency proofs: the published CT vectors, the RFC's SUBPROOF written the
/// naive way over leaf lists, and the verifier's refusals.
struct ConsistencyProofTests {
    /// SUBPROOF(m, D[n], b), §2.1.4.1, over a list of leaf hashes: shares no code with MerkleTree.
    static func referenceProof(_ m: Int, _ leaves: ArraySlice<Reference.Hash>, _ knownRoot: Bool = true) -> [Reference.Hash] {
        let n = leaves.count
        if m == n { return knownRoot ? [] : [Reference.root(leaves)] }
        let k = Reference.split(n), middle = leaves.startIndex + k
        if m <= k { return referenceProof(m, leaves[..<middle], knownRoot) + [Reference.root(leaves[middle...])] }
        return referenceProof(m - k, leaves[middle...], false) + [Reference.root(leaves[..<middle])]
    }

    @Test func proofs_reproduceThePublishedRFC6962Vectors() throws {
        let store = try NodeStore(leaves: ctEntries.map { Reference.leafHash($0) })
        func proof(_ m: UInt64, _ n: UInt64) throws -> [String] {
            try MerkleTree.consistencyProof(first: m, second: n, node: store.node).map(hexString)
        }
        #expect(try proof(1, 1) == [])
        #expect(try proof(1, 8) == [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ])
        #expect(try proof(6, 8) == [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ])
        #expect(try proof(2, 5) == [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ])
    }

    /// Every pair of sizes up to `size`: the proof from stored nodes is the RFC's, and verifies
    /// between the reference roots.
    @Test(arguments: [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 70])
    func everyPair_isTheRFCProof_andVerifies(size: Int) throws {
        let leaves = sampleLeaves(size, seed: 9)
        let store = try NodeStore(leaves: leaves)
        for second in 1...size {
            for first in 0...second {
                let proof = try MerkleTree.consistencyProof(first: UInt64(first), second: UInt64(second), node: store.node)
                let expected = first == 0 ? [] : Self.referenceProof(first, leaves[..<second])
                #expect(proof == expected, "\(first) → \(second)")
                let firstRoot = Reference.root(leaves[..<first]), secondRoot = Reference.root(leaves[..<second])
                #expect(MerkleTree.verifyConsistency(first: UInt64(first), second: UInt64(second), firstRoot: firstRoot, secondRoot: secondRoot, proof: proof),
                        "\(first) → \(second)")
            }
        }
    }

    /// A tree whose older part was rewritten, a proof cut short, lengthened, reordered or with a
    /// changed hash, swapped sizes, and wrong roots: each is refused.
    @Test(arguments: [2, 3, 5, 8, 13, 33])
    func verify_rejectsARewrittenHistory_andEveryDamagedProof(size: Int) throws {
        let leaves = sampleLeaves(size, seed: 3)
        let store = try NodeStore(leaves: leaves)
        for first in 1..<size {
            let (m, n) = (UInt64(first), UInt64(size))
            let proof = try MerkleTree.consistencyProof(first: m, second: n, node: store.node)
            let oldRoot = Reference.root(leaves[..<first]), newRoot = Reference.root(leaves[...])
            func holds(_ proof: [MerkleTree.Hash], m: UInt64 = m, n: UInt64 = n, old: MerkleTree.Hash = oldRoot, new: MerkleTree.Hash = newRoot) -> Bool {
                MerkleTree.verifyConsistency(first: m, second: n, firstRoot: old, secondRoot: new, proof: proof)
            }
            #expect(holds(proof))
            // The history rewritten: one old leaf changed, and the new tree built over it.
            var rewritten = leaves
            rewritten[first / 2] = Reference.leafHash([0xEE])
            let rewrittenStore = try NodeStore(leaves: rewritten)
            let rewrittenProof = try MerkleTree.consistencyProof(first: m, second: n, node: rewrittenStore.node)
            #expect(!holds(rewrittenProof, new: Reference.root(rewritten)), "\(first) → \(size): a rewritten history")
            #expect(!holds(proof, new: Reference.root(rewritten)))
            #expect(!holds(Array(proof.dropLast())))
            #expect(!holds(proof + [oldRoot]))
            if proof.count > 1 { #expect(!holds(proof.reversed())) }
            for i in proof.indices {
                var damaged = proof
                damaged[i][0] ^= 1
                #expect(!holds(damaged), "hash \(i) changed")
            }
            #expect(!holds(proof, m: n, n: m, old: newRoot, new: oldRoot))
            #expect(!holds(proof, m: m + 1 < n ? m + 1 : m - 1))
            #expect(!holds(proof, old: newRoot))
        }
    }

    @Test func equalAndEmptyFirstTrees_needAnEmptyProof() throws {
        let leaves = sampleLeaves(4)
        let root = Reference.root(leaves)
        #expect(MerkleTree.verifyConsistency(first: 4, second: 4, firstRoot: root, secondRoot: root, proof: []))
        #expect(!MerkleTree.verifyConsistency(first: 4, second: 4, firstRoot: root, secondRoot: Reference.root(Array(leaves.prefix(3))), proof: []))
        #expect(!MerkleTree.verifyConsistency(first: 4, second: 4, firstRoot: root, secondRoot: root, proof: [root]))
        #expect(MerkleTree.verifyConsistency(first: 0, second: 4, firstRoot: MerkleTree.emptyRoot, secondRoot: root, proof: []))
        #expect(!MerkleTree.verifyConsistency(first: 0, second: 4, firstRoot: root, secondRoot: root, proof: []))
        #expect(!MerkleTree.verifyConsistency(first: 5, second: 4, firstRoot: root, secondRoot: root, proof: []))
    }
}

/// Proofs and roots with their nodes read at once (what a store does where each read is a round
/// trip): the same hashes as read one by one, from one read of exactly the nodes they use.
struct NodesReadAtOnceTests {
    @Test(arguments: [1, 2, 3, 5, 8, 13, 33, 70])
    func proofsAndRoots_readTheirNodesInOneBatch_andEqualTheOnesReadOneByOne(size: Int) throws {
        let store = try NodeStore(leaves: sampleLeaves(size))
        let n = UInt64(size)
        func atOnce<T>(_ proof: ((UInt8, UInt64) throws -> MerkleTree.Hash) throws -> T) throws -> T {
            var batches = 0
            let result = try MerkleTree.withNodesRead(by: { coordinates in
                batches += 1
                return try coordinates.map { try store.node($0.level, $0.index) }
            }, orEach: { level, index in
                Issue.record("node (\(level), \(index)) was not in the batch")
                return try store.node(level, index)
            }, proof)
            #expect(batches == 1)
            return result
        }
        #expect(try atOnce { try MerkleTree.rootHash(0, n, node: $0) } == MerkleTree.rootHash(0, n, node: store.node))
        for m in 0..<n {
            #expect(try atOnce { try MerkleTree.inclusionPath(leaf: m, size: n, node: $0) } == MerkleTree.inclusionPath(leaf: m, size: n, node: store.node))
            #expect(try atOnce { try MerkleTree.consistencyProof(first: m + 1, second: n, node: $0) }
                    == MerkleTree.consistencyProof(first: m + 1, second: n, node: store.node))
        }
    }
}
