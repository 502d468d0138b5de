import Foundation
import LMDBKit
import LogHashing
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// Tamper evidence and the audit query.
struct AuditTests {
    /// The pages read the initiations index newest first; a key that is not a time and a
    /// position is corruption, not an entry to skip (skipping would end a page early, silently).
    @Test func anInitiationsIndexKeyOfAnotherShape_isCorruption() throws {
        #expect(throws: StoreError.self) { try InitiationMark((key: [1, 2, 3], value: [])) }
        let key = BigEndian.bytes(UInt64(1_700_000_000_000)) + BigEndian.bytes(UInt64(7))
        let value = RepositoryMark(RepositoryRef(registryId: "123456789012", repositoryName: "team/app")).encoded()
        let mark = try InitiationMark((key: key, value: value))
        #expect(mark.position == 7 && mark.recordedAt.millisecondsSinceEpoch == 1_700_000_000_000 && mark.repository == "123456789012/team/app")
    }

    /// The stored-node algorithms against RFC 9162's definition, computed naively from the leaves.
    @Test(arguments: [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33])
    func merkleTree_rootAndEveryInclusionProof_matchRFC9162(size: Int) throws {
        let leaves = (1...size).map { MerkleTree.leafHash(position: UInt64($0), record: Array("event \($0)".utf8)) }
        func mth(_ d: ArraySlice<MerkleTree.Hash>) -> MerkleTree.Hash {
            if d.count == 1 { return d.first! }
            var k = 1
            while k * 2 < d.count { k *= 2 }
            return MerkleTree.nodeHash(mth(d.prefix(k)), mth(d.dropFirst(k)))
        }
        // RFC 9162 2.1.3.1's PATH(m, D[n]), as written there.
        func rfcPath(_ m: Int, _ d: ArraySlice<MerkleTree.Hash>) -> [MerkleTree.Hash] {
            if d.count == 1 { return [] }
            var k = 1
            while k * 2 < d.count { k *= 2 }
            let start = d.startIndex
            return m < k ? rfcPath(m, d.prefix(k)) + [mth(d.dropFirst(k))] : rfcPath(m - k, d.dropFirst(k)) + [mth(d[start..<start + k])]
        }
        var nodes: [[UInt8]: MerkleTree.Hash] = [:]
        for (i, leaf) in leaves.enumerated() {
            for n in MerkleTree.nodesCompleted(byLeaf: UInt64(i), hash: leaf, node: { nodes[MerkleTree.nodeKey(level: $0, index: $1)]! }) {
                nodes[MerkleTree.nodeKey(level: n.level, index: n.index)] = n.hash
            }
        }
        let lookup: (UInt8, UInt64) -> MerkleTree.Hash = { nodes[MerkleTree.nodeKey(level: $0, index: $1)]! }
        let root = MerkleTree.rootHash(0, UInt64(size), node: lookup)
        #expect(root == mth(leaves[...]))
        for m in 0..<size {
            let path = MerkleTree.inclusionPath(leaf: UInt64(m), size: UInt64(size), node: lookup)
            #expect(path == rfcPath(m, leaves[...]), "leaf \(m) of \(size)")
            #expect(MerkleTree.verifyInclusion(leafHash: leaves[m], index: UInt64(m), size: UInt64(size), path: path, root: root))
            // a forged proof: another leaf, index or path does not verify
            #expect(!MerkleTree.verifyInclusion(leafHash: leaves[(m + 1) % size], index: UInt64(m), size: UInt64(size), path: path, root: root) || size == 1)
            if !path.isEmpty {
                var forged = path
                forged[0][0] ^= 1
                #expect(!MerkleTree.verifyInclusion(leafHash: leaves[m], index: UInt64(m), size: UInt64(size), path: forged, root: root))
            }
        }
    }

    func populate(_ dir: TemporaryDirectory, uploads: Int = 6, clock: TestClock = TestClock()) async throws -> [String] {
        try await withTestStore(dir, configure: { $0.clock = clock }) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/web")), metadata: testMetadata())
            var ids: [String] = []
            for i in 0..<uploads {
                clock.advance(milliseconds: 60_000)
                let name = i % 2 == 0 ? "team/app" : "team/web"
                ids.append(try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: name), metadata: testMetadata("r\(i)")).uploadId)
            }
            return ids
        }
    }

    func tamper(_ dir: TemporaryDirectory, _ body: (Transaction) throws -> Void) throws {
        let env = try Environment(directory: dir.path)
        try env.write { try body($0) }
    }

    /// Verify's report on a populated store after `edit`, written behind the store's back.
    func verifyAfter(_ edit: (Transaction) throws -> Void) async throws -> Replayer.Report {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        _ = try await populate(dir)
        try tamper(dir, edit)
        return Replayer.verify(directory: dir.path)
    }

    @Test func proof_ofAnInitiation_verifiesOffline_andAForgedOneFails() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let ids = try await populate(dir)
        try await withTestStore(dir) { store in
            let position = try #require(try store.read { try $0.session(ids[2]) }).initiatedPosition
            let proof = try store.inclusionProof(position: position)
            let root = try store.merkleRoot()
            #expect(proof.rootHash == root.rootHash && proof.treeSize == root.treeSize)
            guard case .uploadInitiated(let e) = try proof.verify(trustedRoot: root.rootHash).event else { Issue.record("wrong event"); return }
            #expect(e.uploadId == ids[2])

            var otherRecord = proof
            otherRecord.record = try store.inclusionProof(position: position + 1).record
            #expect(throws: ProofRejected.self) { try otherRecord.verify() }
            var movedLeaf = proof
            movedLeaf.position += 1
            #expect(throws: ProofRejected.self) { try movedLeaf.verify() }
            var forgedPath = proof
            forgedPath.path[0] = String(repeating: "0", count: 64)
            #expect(throws: ProofRejected.self) { try forgedPath.verify() }
            #expect(throws: ProofRejected.self) { try proof.verify(trustedRoot: String(repeating: "a", count: 64)) }
            let roundTrip = try InclusionProof(json: proof.json.text)
            #expect(roundTrip == proof)
        }
    }

    @Test func replay_namesThePositionOfAChangedByteThatStillDecodes() async throws {
        let report = try await verifyAfter { txn in
            let events = try txn.openDatabase("events")!
            var bytes = try #require(try txn.get(events, BigEndian.bytes(5)))
            let at = try #require(bytes.firstIndex(of: UInt8(ascii: "r")))  // the requestId "r…"
            bytes[at] = UInt8(ascii: "s")
            #expect((try? EventEnvelope(position: 5, decoding: bytes)) != nil, "the change still decodes")
            try txn.put(events, BigEndian.bytes(5), bytes)
        }
        guard case .log(let text)? = report.failure else { Issue.record("not caught: \(String(describing: report.failure))"); return }
        #expect(text.contains("position 5"))
    }

    @Test func replay_catchesAChangedTreeNode_andATruncatedLog() async throws {
        let changedNode = try await verifyAfter { txn in
            let nodes = try txn.openDatabase("merkle-tree")!
            let key = MerkleTree.nodeKey(level: 1, index: 1)
            var hash = try #require(try txn.get(nodes, key))
            hash[0] ^= 0xff
            try txn.put(nodes, key, hash)
        }
        guard case .log(let node)? = changedNode.failure else { Issue.record("node change not caught"); return }
        #expect(node.contains("positions 3...4"))

        let cutShort = try await verifyAfter { txn in try txn.delete(try txn.openDatabase("events")!, BigEndian.bytes(8)) }  // the last event
        guard case .log(let cut)? = cutShort.failure else { Issue.record("truncation not caught"); return }
        #expect(cut.contains("position 8"))
    }

    /// The last position sizes verify's work: one far past the log (a decodable record inserted
    /// at 2^62) made it count past UInt64 and trap. And a last record that does not decode is
    /// damage to the log (exit 2), not a store that cannot be checked (exit 3).
    @Test func replay_reportsAPositionFarPastTheLog_andALastRecordThatDoesNotDecode_asDamage() async throws {
        let farReport = try await verifyAfter { txn in
            let events = try txn.openDatabase("events")!
            try txn.put(events, BigEndian.bytes(1 << 62), try #require(try txn.get(events, BigEndian.bytes(5))))
        }
        #expect(farReport.failure == .log("position 9 is missing (the next event is at \(UInt64(1) << 62))"))

        let report = try await verifyAfter { txn in try txn.put(try txn.openDatabase("events")!, BigEndian.bytes(8), [0xFF, 0x00]) }
        guard case .log(let text)? = report.failure else { Issue.record("not reported as damage: \(String(describing: report.failure))"); return }
        #expect(text.contains("position 8") && report.failure?.exitCode == 2)
    }

    /// Verify checks the tree over the first `size` events in a snapshot later than the one `size`
    /// came from, so the nodes past `size` that a writer adds meanwhile must not count; in the
    /// snapshot `size` came from, any node past it is one no event supports, and the first is named.
    @Test(arguments: [0, 1, 3, 4, 7])
    func theTreeOverAPrefix_checksInASnapshotThatHoldsMore(size: UInt64) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        _ = try await populate(dir)
        let env = try Environment(directory: dir.path, configuration: .readOnly)
        let schema = try env.read { try Schema($0) }
        try env.read { txn in
            #expect(try EventLog.tail(txn, schema)?.position == 8)
            let prefix = MerkleVerification(size: size)
            try prefix.check(txn, schema, tick: {})
            let failure = #expect(throws: Replayer.Failure.self) { try prefix.checkNothingStoredPast(txn, schema) }
            #expect(failure == .log("Merkle tree: the node over position \(size + 1) is stored but no event supports it"))
            try MerkleVerification(size: 8).checkNothingStoredPast(txn, schema)
        }
    }

    /// Keys beside the bound between the nodes over the first `size` events and the rest: the
    /// bound itself (level 0xFF, no node) is checked with the first and refused; one past it is
    /// left to the snapshot's own check, which names the first key past the bound.
    @Test func keysBesideTheBound_fallOnTheRightSide() async throws {
        for (extra, inside) in [(BigEndian.bytes(4) + [0xFF], true), (BigEndian.bytes(4) + [0xFF, 0], false), (BigEndian.bytes(5), false)] {
            let dir = TemporaryDirectory()
            defer { dir.remove() }
            _ = try await populate(dir)
            try tamper(dir) { txn in try txn.put(try txn.openDatabase("merkle-tree")!, extra, Array(repeating: 1, count: 32)) }
            let env = try Environment(directory: dir.path, configuration: .readOnly)
            let schema = try env.read { try Schema($0) }
            try env.read { txn in
                let prefix = MerkleVerification(size: 4)
                let inCheck = Result { try prefix.check(txn, schema, tick: {}) }
                let past = #expect(throws: Replayer.Failure.self, "\(extra)") { try prefix.checkNothingStoredPast(txn, schema) }
                if inside {
                    guard case .failure(Replayer.Failure.log(let text)) = inCheck else { Issue.record("\(extra) passed the check"); return }
                    #expect(text.contains("key \(Hex.encode(extra)), which names no node"), "\(text)")
                    #expect(past == .log("Merkle tree: the node over position 5 is stored but no event supports it"))
                } else {
                    #expect(throws: Never.self, "\(extra)") { try inCheck.get() }
                    #expect(past == .log("Merkle tree: a stored node has the key \(Hex.encode(extra)), which names no node; no event supports it"))
                }
            }
        }
    }

    /// The ordered comparison must still catch what the tree should not hold: a removed node
    /// (reported at its place), and an invented one, even under a malformed key.
    @Test func replay_catchesARemovedAndAnInventedTreeNode() async throws {
        for (name, change, expected) in [
            ("removed", { (txn: Transaction, nodes: Database) in try txn.delete(nodes, MerkleTree.nodeKey(level: 0, index: 2)) }, "over position 3 is missing"),
            ("invented", { (txn: Transaction, nodes: Database) in try txn.put(nodes, MerkleTree.nodeKey(level: 5, index: 0), Array(repeating: 1, count: 32)) }, "stored but no event supports it"),
            ("malformed key", { (txn: Transaction, nodes: Database) in try txn.put(nodes, [0], Array(repeating: 1, count: 32)) }, "no event supports it"),
        ] as [(String, (Transaction, Database) throws -> Void, String)] {
            let dir = TemporaryDirectory()
            defer { dir.remove() }
            _ = try await populate(dir)
            try tamper(dir) { txn in try change(txn, try txn.openDatabase("merkle-tree")!) }
            guard case .log(let found)? = Replayer.verify(directory: dir.path).failure else { Issue.record("\(name) node not caught"); continue }
            #expect(found.contains(expected), "\(name): \(found)")
        }
    }

    /// Appends land past every stored node (`MDB_APPEND`): a node put by hand past the log's
    /// tail stops them, and the error names the corruption rather than LMDB's bare "key exists".
    @Test func aTreeNodePastTheTail_refusesAppends_asCorruption() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        _ = try await populate(dir)
        try tamper(dir) { txn in
            try txn.put(try txn.openDatabase("merkle-tree")!, MerkleTree.nodeKey(level: 5, index: 0), Array(repeating: 1, count: 32))
        }
        try await withTestStore(dir) { store in
            let error = await #expect(throws: StoreError.self) {
                _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "late/repo")), metadata: testMetadata())
            }
            #expect(error?.code == .corrupt)
            #expect(error?.message.contains("past position 8") == true, "\(String(describing: error))")
        }
    }

    @Test func initiations_areListedByTimeAndRepository_fromTheIndex() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let clock = TestClock()
        let start = clock.now()
        let ids = try await populate(dir, uploads: 6, clock: clock)
        try await withTestStore(dir) { store in
            let all = try store.initiations()
            #expect(all.compactMap { if case .uploadInitiated(let e) = $0.event { e.uploadId } else { nil } } == ids)
            let app = try store.initiations(repository: RepositoryRef(registryId: testRegistryId, repositoryName: "team/app"))
            #expect(app.count == 3)
            // uploads were initiated one minute apart, starting one minute after `start`
            let window = try store.initiations(
                since: Timestamp(millisecondsSinceEpoch: start.millisecondsSinceEpoch + 2 * 60_000),
                until: Timestamp(millisecondsSinceEpoch: start.millisecondsSinceEpoch + 4 * 60_000))
            #expect(window.map(\.metadata.requestId) == ["r1", "r2"])
            // Times before 1970: from one, everything; until one, nothing (no key is negative).
            let epoch = Timestamp(millisecondsSinceEpoch: 0)
            #expect(try store.initiations(since: Timestamp(millisecondsSinceEpoch: -86_400_000)).count == all.count)
            #expect(try store.initiations(until: Timestamp(millisecondsSinceEpoch: -86_400_000)).isEmpty)
            #expect(try store.initiations(since: epoch).count == all.count)
        }
    }

    @Test func retriedCall_withTheSameInvocationId_isAnsweredWithTheOriginal_evenAfterReopen() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        var metadata = testMetadata()
        metadata.invocationId = "d4af0e11-95af-4fcf-9df5-f81dbdec60d5"
        let first = try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let first = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: metadata)
            let again = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: metadata)
            #expect(again.uploadId == first.uploadId)
            return first
        }
        try await withTestStore(dir, configure: { $0.uploadIds = SequentialUploadIDs(start: 50) }) { store in
            let retried = try await store.execute(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app")), metadata: metadata)
            #expect(retried.isRetry)
            guard case .uploadInitiated(let e)? = retried.events.first?.event else { Issue.record("no event"); return }
            #expect(e.uploadId == first.uploadId)
            #expect(try store.read { try $0.events() }.count == 2, "no orphaned session")
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }
}
