import Foundation
import LMDBKit
import LogHashing
import Testing
@testable import UploadCore
@testable import UploadStore
@testable import UploadService
import UploadTesting

/// The log as a transparency log: kept checkpoints, proofs between them, tiles over the stored
/// tree, and a rewritten history caught by the signer and by verify.
struct TransparencyLogTests {
    let signer = try! NoteSigner.generate(name: "test.example/log")
    var identity: LogIdentity { LogIdentity(verifier: signer.verifier, origin: "test.example/log") }

    /// A store of 2 repositories and `uploads` initiations: `uploads + 2` events.
    func populate(_ dir: TemporaryDirectory, uploads: Int) async throws {
        _ = try await AuditTests().populate(dir, uploads: uploads)
    }

    /// Changes one byte of the event at `position` (it still decodes) and rebuilds the whole tree
    /// over the edited log, as someone rewriting history would, so that the tree is consistent in itself.
    func rewriteHistory(_ dir: TemporaryDirectory, position: UInt64, keepingCheckpoints: Bool) throws {
        let env = try Environment(directory: dir.path)
        try env.write { txn in
            let events = try txn.openDatabase("events")!, tree = try txn.openDatabase("merkle-tree")!
            var bytes = try #require(try txn.get(events, BigEndian.bytes(position)))
            let at = try #require(bytes.firstIndex(of: UInt8(ascii: "r")))  // the requestId "r…"
            bytes[at] = UInt8(ascii: "s")
            try txn.put(events, BigEndian.bytes(position), bytes)
            try txn.clear(tree)
            var nodes: [[UInt8]: MerkleTree.Hash] = [:]
            try txn.scan(events) { key, value in
                let p = BigEndian.uint64(key)!
                for n in MerkleTree.nodesCompleted(byLeaf: p - 1, hash: MerkleTree.leafHash(position: p, record: value), node: { nodes[MerkleTree.nodeKey(level: $0, index: $1)]! }) {
                    nodes[MerkleTree.nodeKey(level: n.level, index: n.index)] = n.hash
                }
                return true
            }
            for (key, hash) in nodes { try txn.put(tree, key, hash) }
            if !keepingCheckpoints { try txn.clear(try txn.openDatabase("signed-checkpoints")!) }
        }
    }

    @Test func checkpoints_areKeptOncePerSize_andProveTheLogGrewByAppendsOnly() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir, uploads: 20)
        try await withTestStore(dir, configure: { $0.uploadIds = SequentialUploadIDs(start: 1000) }) { store in
            let first = try CheckpointSigner.sign(store, signer, as: identity)
            #expect(first.size == 22)
            #expect(try CheckpointSigner.sign(store, signer, as: identity) == first, "the log did not grow: nothing new is signed")
            for i in 0..<280 { _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("more\(i)")) }
            let second = try CheckpointSigner.sign(store, signer, as: identity)
            #expect(second.size == 302)
            #expect(try store.read { try $0.latestSignedCheckpoint() } == second)

            let old = try Checkpoint(note: first.note, verifiedBy: signer.verifier)
            let new = try Checkpoint(note: second.note, verifiedBy: signer.verifier)
            let proof = try store.read { try $0.consistencyProof(first: old.size, second: new.size) }
            #expect(MerkleTree.verifyConsistency(first: old.size, second: new.size, firstRoot: old.rootHash, secondRoot: new.rootHash, proof: proof))
            #expect(throws: CommandError.self) { try store.read { try $0.consistencyProof(first: 5, second: 303) } }
            #expect(throws: CommandError.self) { try store.read { try $0.consistencyProof(first: 6, second: 5) } }
            #expect(throws: CommandError.self) { try store.read { try $0.inclusionPath(leafIndex: 302, size: 302) } }
        }
        let report = Replayer.verify(directory: dir.path, checkpointKey: signer.verifier)
        #expect(report.passed, "\(String(describing: report.failure))")
        #expect(report.kept?.count == 2)
        let otherKey = try NoteSigner.generate(name: "test.example/log").verifier
        guard case .log(let text)? = Replayer.verify(directory: dir.path, checkpointKey: otherKey).failure else {
            Issue.record("a checkpoint not signed by the given key passed"); return
        }
        #expect(text.contains("checkpoint kept for tree size 22"))
    }

    /// Tiles are the stored nodes at every eighth level; entry bundles hash to the level-0 tile.
    @Test func tiles_holdTheTreesNodes_andEntriesHashToTheirLeaves() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir, uploads: 298)  // 300 events: one full level-0 tile and a partial of 44
        try await withTestStore(dir) { store in
            try store.read { snapshot in
                let records = try snapshot.eventRecords(from: 1, count: 300)
                #expect(records.count == 300)
                let leaves = records.enumerated().map { MerkleTree.leafHash(position: UInt64($0.offset + 1), record: $0.element) }
                #expect(try snapshot.tile(TileAddress(kind: .hashes(level: 0), index: 0)) == Array(leaves[0..<256].joined()))
                #expect(try snapshot.tile(TileAddress(kind: .hashes(level: 0), index: 1, width: 44)) == Array(leaves[256..<300].joined()))
                #expect(try snapshot.tile(TileAddress(kind: .hashes(level: 0), index: 1, width: 45)) == nil, "not yet in the tree")
                #expect(try snapshot.tile(TileAddress(kind: .hashes(level: 0), index: 1)) == nil)
                #expect(try snapshot.tile(TileAddress(kind: .hashes(level: 1), index: 0, width: 1)) == snapshot.rootHash(size: 256))
                let bundle = try #require(try snapshot.tile(TileAddress(kind: .entries, index: 1, width: 44)))
                var rest = bundle[...], hashes: [MerkleTree.Hash] = []
                while !rest.isEmpty {
                    let length = Int(rest[rest.startIndex]) << 8 | Int(rest[rest.startIndex + 1])
                    let entry = Array(rest.dropFirst(2).prefix(length))
                    hashes.append(MerkleTree.leafHash(position: BigEndian.uint64(entry.prefix(8))!, record: entry.dropFirst(8)))
                    rest = rest.dropFirst(2 + length)
                }
                #expect(hashes == Array(leaves[256..<300]))
            }
        }
    }

    /// A bundle is read and served a slice at a time (a wide one of 4 MiB manifests is 1 GiB): its
    /// slices, in order, are the bundle, whatever the budget; a narrow bundle whose entry is too
    /// long for a 16-bit length is refused, not read whole.
    @Test func entryBundleSlices_makeTheBundle_whateverTheirBudget() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            for n in 0..<3 { _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("r-\(n)")) }
            let about = try RepositoryCatalogInput(aboutText: String(repeating: "a", count: 10_000))
            let catalog = Command.putRepositoryCatalogData(try PutRepositoryCatalogData(repositoryName: "team/app", catalog: about))
            for n in 0..<4 { _ = try await store.execute(catalog, metadata: testMetadata("c-\(n)")) }
            try store.read { snapshot in
                for kind in [TileAddress.Kind.entries, .wideEntries] {
                    let address = TileAddress(kind: kind, index: 0, width: 8)
                    let whole = try #require(try snapshot.tile(address))
                    for budget in [1, 500, 12_000, 25_000, .max] {
                        var sliced: [UInt8] = [], next: UInt64 = 1, slices = 0
                        while next <= 8 {
                            let slice = try #require(try snapshot.entryBundleSlice(address, from: next, byteBudget: budget))
                            #expect(slice.next > next)
                            sliced += slice.bytes
                            next = slice.next
                            slices += 1
                        }
                        #expect(sliced == whole, "\(kind), a budget of \(budget)")
                        #expect(budget > 1 || slices == 8, "one entry a slice, however small the budget")
                    }
                }
                #expect(try snapshot.tile(TileAddress(kind: .entries, index: 0, width: 9)) == nil, "past the log")
            }
            let large = try RepositoryCatalogInput(aboutText: String(repeating: "€", count: 25_000))  // 75,000 bytes
            _ = try await store.execute(.putRepositoryCatalogData(try PutRepositoryCatalogData(repositoryName: "team/app", catalog: large)), metadata: testMetadata("c-large"))
            try store.read { snapshot in
                let record = try #require(try snapshot.eventRecords(from: 9, count: 1).first)
                #expect(record.count > 65_535 - 8, "an entry too long for a 16-bit length")
                #expect(try snapshot.entryBundleSlice(TileAddress(kind: .entries, index: 0, width: 9), from: 1, byteBudget: .max) == nil)
                #expect(try snapshot.tile(TileAddress(kind: .entries, index: 0, width: 9)) == nil)
                #expect(try snapshot.tile(TileAddress(kind: .wideEntries, index: 0, width: 9)) != nil)
            }
        }
    }

    /// Someone rewrites an old event and rebuilds the tree so that it is consistent in itself: the
    /// signer refuses to sign over it, and verify names the checkpoint the tree no longer extends.
    @Test func aRewrittenHistory_isRefusedBySigning_andCaughtByVerify() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir, uploads: 10)
        let signed = try await withTestStore(dir) { try CheckpointSigner.sign($0, signer, as: identity) }
        try rewriteHistory(dir, position: 5, keepingCheckpoints: true)
        try await withTestStore(dir, configure: { $0.uploadIds = SequentialUploadIDs(start: 1000) }) { store in
            _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("after"))
            #expect(throws: StoreError.self) { try CheckpointSigner.sign(store, signer, as: identity) }
            // The proof the rewritten log can give does not join the checkpoint an auditor kept.
            let old = try Checkpoint(note: signed.note, verifiedBy: signer.verifier)
            let (root, proof) = try store.read { (try $0.rootHash(size: 13), try $0.consistencyProof(first: 12, second: 13)) }
            #expect(!MerkleTree.verifyConsistency(first: old.size, second: 13, firstRoot: old.rootHash, secondRoot: root, proof: proof))
        }
        guard case .log(let text)? = Replayer.verify(directory: dir.path).failure else { Issue.record("the rewrite was not caught"); return }
        #expect(text.contains("first 12 events") && text.contains("rewritten"), "\(text)")
    }

    /// The checkpoint served is the later word on the log: one learned of earlier (a signing that
    /// read the log before another node's checkpoint was read) never replaces it, so the tree
    /// served never shrinks while the log grows; one learned of later stands even when smaller (a
    /// failover took the tail back), fresh from its own read, so callers do not each sign again.
    @Test func theCheckpointServed_isTheLaterWordOnTheLog() {
        let t0 = ContinuousClock.now, t1 = t0 + .seconds(1), t2 = t0 + .seconds(2)
        let small = SignedCheckpoint(size: 600, note: "small"), large = SignedCheckpoint(size: 700, note: "large")
        typealias Served = CheckpointSigner.Served
        // Another node's larger checkpoint, read at t2, then a signing that read the log at t1 ends.
        let keptElsewhere = Served(checkpoint: large, readAt: t0, seenAt: t2)
        #expect(CheckpointSigner.latest(after: keptElsewhere, Served(checkpoint: small, readAt: t1, seenAt: t1)) == keptElsewhere)
        let takenBack = CheckpointSigner.latest(after: Served(checkpoint: large, readAt: t0, seenAt: t0), Served(checkpoint: small, readAt: t1, seenAt: t1))
        #expect(takenBack.checkpoint == small && takenBack.readAt == t1)
        #expect(CheckpointSigner.latest(after: nil, keptElsewhere) == keptElsewhere)
    }

    @Test func aCheckpointPastTheLogsEnd_meansEventsWereRemoved() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir, uploads: 2)
        try await withTestStore(dir) { store in
            let o = LogIdentity(verifier: signer.verifier, origin: "o")
            _ = try store.keep(SignedCheckpoint(size: 9, note: try SignedNote.sign(Checkpoint(origin: "o", size: 9, rootHash: MerkleTree.emptyRoot).text, with: signer)), signedAs: o)
            #expect(throws: StoreError.self) { try CheckpointSigner.sign(store, signer, as: o) }
        }
        guard case .log(let text)? = Replayer.verify(directory: dir.path).failure else { Issue.record("not caught"); return }
        #expect(text.contains("checkpoint of 9 events but holds only 4"), "\(text)")
        // `audit consistency` to the log's own signed size says the log was cut, not that the auditor asked amiss.
        let proof = try Executables.run("upload-coordinator", ["audit", "consistency", "--data-dir", dir.path, "--from", "2"])
        #expect(proof.status != 0 && proof.stderr.contains("holds 4 events but signed a checkpoint of 9"), "\(proof.stderr)")
    }

    /// A log has one key and one origin: once it has signed, another key or origin is refused, by
    /// the signer and by the store's own transaction.
    @Test func aSecondKeyOrOrigin_isRefused() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir, uploads: 1)
        try await withTestStore(dir, configure: { $0.uploadIds = SequentialUploadIDs(start: 1000) }) { store in
            _ = try CheckpointSigner.sign(store, signer, as: identity)
            _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("next"))
            let otherKey = try NoteSigner.generate(name: "test.example/log")
            #expect(throws: StoreError.self) { try CheckpointSigner.sign(store, otherKey, as: LogIdentity(verifier: otherKey.verifier, origin: "test.example/log")) }
            #expect(throws: StoreError.self) { try CheckpointSigner.sign(store, signer, as: LogIdentity(verifier: signer.verifier, origin: "elsewhere")) }
            let forged = SignedCheckpoint(size: 4, note: try SignedNote.sign(Checkpoint(origin: "test.example/log", size: 4, rootHash: MerkleTree.emptyRoot).text, with: otherKey))
            #expect(throws: StoreError.self) { try store.keep(forged, signedAs: LogIdentity(verifier: otherKey.verifier, origin: "test.example/log")) }
            #expect(try store.read { try $0.latestSignedCheckpoint()?.size } == 3)
            #expect(try CheckpointSigner.sign(store, signer, as: identity).size == 4)
        }
    }

    /// A signing that failed (here: the log's checkpoints are another key's) is not tried again
    /// for an interval: each caller gets its failure, and the open endpoint starts no write each.
    @Test func aFailedSigning_isAnsweredAgain_forAnInterval_withoutSigningAgain() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir, uploads: 1)
        try await withTestStore(dir) { store in
            _ = try CheckpointSigner.sign(store, signer, as: LogIdentity(verifier: signer.verifier, origin: "test.example/log"))
            let impostor = try NoteSigner.generate(name: "test.example/log")
            let failing = CheckpointSigner(store: store, signer: impostor, origin: "test.example/log", interval: .seconds(3600))
            for _ in 0..<5 {
                await #expect(throws: StoreError.self) { _ = try await failing.current() }
            }
            #expect(await failing.signingsStarted == 1, "five callers, one signing")
            let quick = CheckpointSigner(store: store, signer: impostor, origin: "test.example/log", interval: .milliseconds(100))
            await #expect(throws: StoreError.self) { _ = try await quick.current() }
            try await Task.sleep(for: .milliseconds(150))
            await #expect(throws: StoreError.self) { _ = try await quick.current() }
            #expect(await quick.signingsStarted == 2, "tried again once the interval passed")
        }
    }

    /// The signer answers from the checkpoint at hand while it is younger than the interval, signs
    /// again after, and callers that arrive together share one signing.
    @Test func current_lagsTheLogByLessThanTheInterval_andCallersShareOneSigning() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir, uploads: 1)
        try await withTestStore(dir, configure: { $0.uploadIds = SequentialUploadIDs(start: 1000) }) { store in
            let slow = CheckpointSigner(store: store, signer: signer, origin: "test.example/log", interval: .seconds(3600))
            #expect(try await slow.current().size == 3)
            _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("a"))
            #expect(try await slow.current().size == 3, "within the interval, the checkpoint at hand")

            // A crowd at a signer with nothing at hand: one signs, the rest wait for it.
            let crowded = CheckpointSigner(store: store, signer: signer, origin: "test.example/log", interval: .seconds(3600))
            let together = try await withThrowingTaskGroup(of: SignedCheckpoint.self) { group in
                for _ in 0..<20 { group.addTask { try await crowded.current() } }
                return try await group.reduce(into: [SignedCheckpoint]()) { $0.append($1) }
            }
            #expect(Set(together.map(\.size)) == [4] && Set(together.map(\.note)).count == 1)
            #expect(await crowded.signingsStarted == 1, "twenty callers, one signing")

            let fast = CheckpointSigner(store: store, signer: signer, origin: "test.example/log", interval: .milliseconds(200))
            #expect(try await fast.current().size == 4)
            _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("b"))
            try await Task.sleep(for: .milliseconds(250))
            #expect(try await fast.current().size == 5, "past the interval, the log as it is now")
            #expect(try store.read { try $0.latestSignedCheckpoint()?.size } == 5)
            // The slow signer's own is 3, within its interval; another (a node or process sharing
            // the log) kept 5 since: a client sent to each in turn never sees the tree shrink.
            #expect(try await slow.current().size == 5)
        }
    }
}
