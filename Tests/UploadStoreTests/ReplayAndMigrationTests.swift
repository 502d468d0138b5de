import Crypto
import Foundation
import LMDBKit
import LogHashing
import Testing
@testable import UploadCore
import UploadMigrations
@testable import UploadStore
import UploadTesting

/// Replay equality, tamper detection, and upgrades from earlier migration steps.
struct ReplayAndMigrationTests {
    /// A store with repositories, uploads, a forced delete: every event type.
    func populate(_ dir: TemporaryDirectory) async throws {
        try await withTestStore(dir) { store in
            for name in ["team/app", "team/web", "solo"] {
                _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: name)), metadata: testMetadata())
            }
            for name in ["team/app", "team/web", "team/web", "solo"] {
                _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: name), metadata: testMetadata())
            }
            _ = try await store.execute(.deleteRepository(try DeleteRepository(repositoryName: "team/web", force: true)), metadata: testMetadata())
        }
    }

    /// Opens the store's log environment directly, behind the coordinator's back.
    func tamper(_ dir: TemporaryDirectory, _ body: (Transaction) throws -> Void) throws {
        let env = try Environment(directory: dir.path)
        try env.write { txn in try body(txn) }
    }

    /// Makes the record at `position` one that does not decode whole: the first byte of its user
    /// agent (`tests/1`, which no projection reads) is no longer UTF-8.
    func breakUserAgent(_ txn: Transaction, at position: UInt64) throws {
        let events = try #require(try txn.openDatabase("events"))
        var bytes = try #require(try txn.get(events, BigEndian.bytes(position)))
        let at = try #require(bytes.indices.first { bytes[$0...].starts(with: Array("tests/1".utf8)) })
        bytes[at] = 0xFF
        try txn.put(events, BigEndian.bytes(position), bytes)
    }

    /// Opens the store's projection environment directly, behind the coordinator's back.
    func tamperProjections(_ dir: TemporaryDirectory, _ body: (Transaction) throws -> Void) throws {
        let env = try Environment(directory: dir.path + "/projections")
        try env.write { txn in try body(txn) }
    }

    @Test func replay_ofAnUntouchedStore_matchesTwiceAndLive() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        let report = Replayer.verify(directory: dir.path)
        #expect(report.passed, "\(String(describing: report.failure))")
        #expect(report.events == 10)
        #expect(report.eventsScanned == 20)
        #expect(report.rebuildDigests.count == 2 && Set(report.rebuildDigests + [report.liveDigest!]).count == 1)
    }

    /// The state does not depend on how the writer batched the commands: the same calls, committed
    /// one per transaction or several to a transaction, give the same log, Merkle root, live tables
    /// and rebuilds, byte for byte (the digests are of the bytes).
    @Test func theSameCalls_committedInAnyBatches_giveTheSameLogTablesAndRebuilds() async throws {
        func run(maxBatchSize: Int) async throws -> (Replayer.Report, transactions: Int) {
            let dir = TemporaryDirectory()
            defer { dir.remove() }
            let transactions = try await withTestStore(dir, configure: {
                $0.maxBatchSize = maxBatchSize
                $0.clock = TestClock()
                $0.uploadIds = SequentialUploadIDs()
            }) { store in
                try await StoreConformanceTests.workload(store)
                return store.writerStatistics.transactions
            }
            return (Replayer.verify(directory: dir.path), transactions)
        }
        let (one, oneTransactions) = try await run(maxBatchSize: 1)
        let (many, manyTransactions) = try await run(maxBatchSize: 4096)
        #expect(oneTransactions > manyTransactions, "the batching differed: \(oneTransactions) against \(manyTransactions) transactions")
        for report in [one, many] { #expect(report.passed, "\(String(describing: report.failure))") }
        #expect(one.events == many.events && one.events > 15)
        #expect(one.merkleRoot == many.merkleRoot, "the same log")
        #expect(one.liveDigest == many.liveDigest, "the same live tables")
        #expect(one.rebuildDigests == many.rebuildDigests)
    }

    /// Verify proves every record decodes whole, metadata included, though neither rebuild's fold
    /// reads the user agent: a user agent that is not UTF-8 is log damage, named by position.
    @Test func verify_refusesMetadataThatDoesNotDecode_evenWhereNoProjectionReadsIt() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamper(dir) { txn in
            let events = try txn.openDatabase("events")!
            try breakUserAgent(txn, at: 6)
            // The Merkle tree made again over the changed record, as one rewriting history would:
            // what is left to catch it is decoding every record whole.
            let schema = try Schema(txn)
            try txn.clear(schema.merkleNodes)
            var position: UInt64 = 1
            while let record = try txn.get(events, BigEndian.bytes(position)) {
                try MerkleLog.append(txn, schema, position: position, record: record)
                position += 1
            }
        }
        let report = Replayer.verify(directory: dir.path)
        guard case .log(let reason)? = report.failure else {
            Issue.record("not caught: \(String(describing: report.failure))")
            return
        }
        #expect(reason.contains("the event at position 6 does not decode"), "\(reason)")
        // Verify's whole decoding names it as undecodable, in whichever range it falls; a replay,
        // which reads only what projections read, folds it.
        let env = try Environment(directory: dir.path, configuration: .readOnly)
        let schema = try env.read { try Schema($0) }
        try env.read { txn in
            let size = try EventLog.tail(txn, schema)?.position ?? 0
            try Replayer.decodeWhole(txn, schema, positions: 1...5)
            try Replayer.decodeWhole(txn, schema, positions: 7...size)
            do {
                try Replayer.decodeWhole(txn, schema, positions: 4...size)
                Issue.record("a record that does not decode whole was folded")
            } catch let failure as Replayer.Failure {
                #expect(failure.description.contains("the event at position 6 does not decode"), "\(failure)")
            }
            _ = try Replayer.rebuild(txn, schema, upTo: size, tick: {})
        }
    }

    /// Verify's two threads share the whole decoding in ranges; whichever order they run in, the
    /// record named is the first in the log that does not decode, and the Merkle check runs once.
    @Test func sharedChecks_nameTheFirstRecordThatDoesNotDecode_whicheverRangeRanFirst() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamper(dir) { txn in
            for position: UInt64 in [7, 3] { try breakUserAgent(txn, at: position) }
        }
        let env = try Environment(directory: dir.path, configuration: .readOnly)
        let schema = try env.read { try Schema($0) }
        let size = try env.read { try EventLog.tail($0, schema)?.position ?? 0 }
        #expect(size >= 8)
        for lastFirst in [false, true] {
            let ticks = Locked(0)
            let shared = SharedChecks(merkle: MerkleVerification(size: size), size: size, schema: schema, minimumRange: 2, lastFirst: lastFirst) {
                ticks.withLock { $0 += 1 }
            }
            // Two helpers, as verify's two threads, each in a snapshot of its own.
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<2 { group.addTask { try? env.read { shared.help($0) } } }
            }
            // The records changed, so the stored tree no longer matches them. It was checked once (a
            // tick per event); the ranges that hold the two records stopped at them (a tick per
            // record decoded before).
            guard case .failure(let merkle) = shared.merkleOutcome else { Issue.record("the Merkle check passed over changed records"); return }
            #expect("\(merkle)".contains("position 3"), "\(merkle)")
            #expect((Int(size) + 1...2 * Int(size) - 2).contains(ticks.withLock { $0 }))
            guard case .failure(let decoding) = shared.wholeDecodingOutcome else { Issue.record("a record that does not decode passed"); return }
            #expect("\(decoding)".contains("the event at position 3 does not decode"), "\(decoding)")
        }
    }

    @Test func replay_neverWritesToTheStore() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        let file = dir.path + "/data.mdb"
        let before = SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: file)))
        #expect(Replayer.verify(directory: dir.path).passed)
        #expect(SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: file))) == before)
    }

    /// Folding on another thread than the one decoding, in chunks of any size, gives the same
    /// tables as folding in line, and names the same first event it cannot fold.
    @Test(arguments: [1, 3, 4, 1024])
    func rebuild_foldedApartInChunks_equalsTheRebuildInLine(chunk: Int) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        func rebuilds() throws -> (inLine: Result<[UInt8], Replayer.Failure>, apart: Result<[UInt8], Replayer.Failure>) {
            let env = try Environment(directory: dir.path, configuration: .readOnly)
            let schema = try env.read { try Schema($0) }
            return try env.read { txn in
                let size = try EventLog.tail(txn, schema)?.position ?? 0
                func digest(_ apart: Bool) -> Result<[UInt8], Replayer.Failure> {
                    Result {
                        Array(ProjectionDigest.of(try Replayer.rebuild(txn, schema, upTo: size, foldingApart: apart, chunk: chunk, tick: {})))
                    }.mapError { $0 as! Replayer.Failure }
                }
                return (digest(false), digest(true))
            }
        }
        let untouched = try rebuilds()
        #expect(try untouched.inLine.get() == untouched.apart.get())
        // Event 5 (an initiation in team/web) moved to a repository that does not exist.
        try tamper(dir) { txn in
            let events = try txn.openDatabase("events")!
            let envelope = try EventEnvelope(position: 5, decoding: try #require(try txn.get(events, BigEndian.bytes(5))))
            guard case .uploadInitiated(let e) = envelope.event else { Issue.record("event 5 is \(envelope.event.type.name)"); return }
            let moved = UploadInitiated(uploadId: e.uploadId, partSize: e.partSize, registryId: e.registryId, repositoryName: "team/nowhere", initiatedAt: e.initiatedAt)
            try txn.put(events, BigEndian.bytes(5), EventEnvelope(position: 5, recordedAt: envelope.recordedAt, metadata: envelope.metadata, event: .uploadInitiated(moved)).encoded())
        }
        let damaged = try rebuilds()
        guard case .failure(.log(let inLine)) = damaged.inLine, case .failure(.log(let apart)) = damaged.apart else {
            Issue.record("not caught: \(damaged)")
            return
        }
        #expect(inLine == apart && inLine.contains("position 5"), "\(inLine) / \(apart)")
        // A later event that does not decode at all: the earlier one the fold refuses is still the
        // first problem named, though the decoder meets the later one before the folder the earlier.
        try tamper(dir) { txn in
            let events = try txn.openDatabase("events")!
            var bytes = try #require(try txn.get(events, BigEndian.bytes(9)))
            bytes[bytes.count - 1] ^= 0xff
            try txn.put(events, BigEndian.bytes(9), bytes)
        }
        let twice = try rebuilds()
        guard case .failure(.log(let first)) = twice.inLine, case .failure(.log(let firstApart)) = twice.apart else {
            Issue.record("not caught: \(twice)")
            return
        }
        #expect(first == firstApart && first.contains("position 5"), "\(first) / \(firstApart)")
    }

    @Test func replay_catchesAProjectionValueAlteredBehindTheCoordinatorsBack() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        let key = Array("00000000-0000-4000-8000-000000000001".utf8)
        try tamperProjections(dir) { txn in
            let sessions = try txn.openDatabase("sessions")!
            var session = try UploadSession(decoding: try #require(try txn.get(sessions, key)))
            session.partSize = 1
            try txn.put(sessions, key, session.encoded())
        }
        let report = Replayer.verify(directory: dir.path)
        guard case .mismatch(let text)? = report.failure else { Issue.record("not caught: \(report)"); return }
        #expect(text.contains("table sessions") && text.contains("00000000-0000-4000-8000-000000000001"))
        #expect(report.failure?.exitCode == 1)
    }

    @Test func replay_catchesAMissingAndAnInventedProjectionEntry() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamperProjections(dir) { txn in try txn.delete(try txn.openDatabase("repositories")!, Array("123456789012/solo".utf8)) }
        guard case .mismatch(let missing)? = Replayer.verify(directory: dir.path).failure else { Issue.record("deletion not caught"); return }
        #expect(missing.contains("123456789012/solo") && missing.contains("only the rebuilt state has it"))

        try tamperProjections(dir) { txn in
            let repos = try txn.openDatabase("repositories")!
            let solo = try #require(try txn.get(repos, Array("123456789012/team/app".utf8)))
            try txn.put(repos, Array("123456789012/solo".utf8), solo)  // put something back, but wrong
            try txn.put(repos, Array("123456789012/zzz".utf8), solo)
        }
        guard case .mismatch(let text)? = Replayer.verify(directory: dir.path).failure else { Issue.record("invention not caught"); return }
        #expect(text.contains("123456789012/solo"), "the first difference is named first: \(text)")
    }

    @Test func replay_namesThePositionOfADamagedOrMissingEvent() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamper(dir) { txn in
            let events = try txn.openDatabase("events")!
            var bytes = try #require(try txn.get(events, BigEndian.bytes(5)))
            bytes[bytes.count - 1] ^= 0xff
            try txn.put(events, BigEndian.bytes(5), bytes)
        }
        guard case .log(let damaged)? = Replayer.verify(directory: dir.path).failure else { Issue.record("damage not caught"); return }
        #expect(damaged.contains("position 5"))

        try tamper(dir) { txn in try txn.delete(try txn.openDatabase("events")!, BigEndian.bytes(3)) }
        let report = Replayer.verify(directory: dir.path)
        guard case .log(let gap)? = report.failure else { Issue.record("gap not caught"); return }
        #expect(gap.contains("position 3 is missing"))
        #expect(report.failure?.exitCode == 2)
    }

    /// Keys where no position belongs are named as log damage, not trusted: the log's size comes from
    /// its last key, and the Merkle check (which sizes a buffer by it) runs only over a log a rebuild
    /// found dense. A key of position 0, and one far past the tail, each in a log of their own.
    @Test(arguments: [UInt64(0), 1 << 40])
    func verify_namesAStrayPositionKey_andChecksNothingPastIt(position: UInt64) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamper(dir) { txn in
            let events = try txn.openDatabase("events")!
            try txn.put(events, BigEndian.bytes(position), try #require(try txn.get(events, BigEndian.bytes(1))))
        }
        let report = Replayer.verify(directory: dir.path)
        guard case .log(let text)? = report.failure else { Issue.record("not caught: \(String(describing: report.failure))"); return }
        #expect(text.contains(position == 0 ? "position 1 is missing (the next event is at 0)" : "is at \(position)"), "\(text)")
    }

    /// The initiations index with two marks' repositories swapped listed one repository's
    /// initiation under another's filter, with exit 0. Each listed mark is now checked against the
    /// event it names, which the listing reads anyway.
    @Test func anInitiationsIndexThatNamesAnotherRepository_isRefused() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamperProjections(dir) { txn in
            let index = try txn.openDatabase("initiations")!
            var entries: [(key: [UInt8], value: [UInt8])] = []
            try txn.scan(index) { entries.append((Array($0), Array($1))); return true }
            let (app, solo) = (try #require(entries.first), try #require(entries.last))
            try txn.put(index, app.key, solo.value)
            try txn.put(index, solo.key, app.value)
        }
        try await withTestStore(dir) { store in
            let refused = #expect(throws: StoreError.self) { _ = try store.initiations(repository: RepositoryRef(registryId: testRegistryId, repositoryName: "solo")) }
            #expect(refused?.code == .corrupt && refused?.message.contains("the log holds another event there") == true, "\(String(describing: refused))")
            #expect(throws: StoreError.self) { _ = try store.initiations() }
        }
    }

    /// A key in a report reaches the operator's terminal: a time's or position's bytes were
    /// written raw, control characters and all.
    @Test func aKeyInAReport_showsNoControlCharacter() {
        #expect(ProjectionKey.readable(Array("team/app".utf8) + [0, 0x01, 0x1B, UInt8(ascii: "\\"), 0xFF]) == "team/app|\\x01\\x1B\\x5C\\xFF")
    }

    /// A checkpoint that claims less than the tables hold (or more than the log holds) is caught.
    @Test func replay_catchesACheckpointThatDisagreesWithTheTables() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamperProjections(dir) { txn in try txn.put(try txn.openDatabase("projection-state")!, Array("checkpoint".utf8), BigEndian.bytes(9)) }
        guard case .mismatch(let behind)? = Replayer.verify(directory: dir.path).failure else { Issue.record("not caught"); return }
        #expect(behind.contains("at position 9 but the log ends at 10, and no store is open"), "\(behind)")
        // With a store registered (one open, or killed between its commits), a lag is allowed, but
        // the tables must then be what the log held at the checkpoint.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(1)) }
        guard case .mismatch(let wrongTables)? = Replayer.verify(directory: dir.path).failure else { Issue.record("not caught"); return }
        #expect(wrongTables.contains("only the rebuilt state has it"), "\(wrongTables)")
        try tamperProjections(dir) { txn in try txn.put(try txn.openDatabase("projection-state")!, Array("checkpoint".utf8), BigEndian.bytes(11)) }
        guard case .mismatch(let ahead)? = Replayer.verify(directory: dir.path).failure else { Issue.record("not caught"); return }
        #expect(ahead.contains("checkpoint says position 11") && ahead.contains("log ends at 10"), "\(ahead)")
    }

    /// Projections copied from another store, of the same layout and at the same position (that
    /// store's folder restored under this log, or two stores' files mixed up): refused at open and
    /// by verify, naming the position whose event they did not fold; removed as the refusal says,
    /// they are rebuilt from this log.
    @Test func projectionsOfAnotherLog_atTheSamePosition_areRefused_untilRemoved() async throws {
        let (dir, other) = (TemporaryDirectory(), TemporaryDirectory())
        defer { dir.remove(); other.remove() }
        for (store, name) in [(dir, "team/app"), (other, "team/other")] {
            try await withTestStore(store) { store in
                _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: name)), metadata: testMetadata())
            }
        }
        try FileManager.default.removeItem(atPath: dir.path + "/projections")
        try FileManager.default.copyItem(atPath: other.path + "/projections", toPath: dir.path + "/projections")
        let refused = await #expect(throws: StoreError.self) { try await withTestStore(dir) { _ in } }
        #expect(refused?.code == .corrupt && refused?.message.contains("written from another log: the event at position 1") == true, "\(String(describing: refused))")
        guard case .mismatch(let verified)? = Replayer.verify(directory: dir.path).failure else { Issue.record("not caught by verify"); return }
        #expect(verified.contains("written from another log: the event at position 1"), "\(verified)")

        try FileManager.default.removeItem(atPath: dir.path + "/projections")  // as the refusal says
        let app = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        try await withTestStore(dir) { store throws in
            #expect(try store.read { try $0.checkpoint() } == 1)
            #expect(try store.read { try $0.repository(app) } != nil)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/two")), metadata: testMetadata())
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    /// Tables a version before the leaf wrote (none recorded) open as they are, and the next write
    /// records it. One that writes after this version (a roll-back) leaves the leaf at an earlier
    /// position, where it is still checked: this log's event there opens, another log's is refused.
    /// One of another shape is taken as none.
    @Test func aLeafNeverRecorded_orLeftBehindByAnOlderVersion_isCheckedWhereItWasRecorded() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        let leafKey = Array("leaf".utf8)
        func recorded() throws -> [UInt8]? {
            let env = try Environment(directory: dir.path + "/projections")
            return try env.read { txn in try txn.get(try txn.openDatabase("projection-state")!, leafKey).map(Array.init) }
        }
        func record(_ bytes: [UInt8]?) throws {
            try tamperProjections(dir) { txn in
                let state = try txn.openDatabase("projection-state")!
                if let bytes { try txn.put(state, leafKey, bytes) } else { _ = try txn.delete(state, leafKey) }
            }
        }
        let written = try #require(try recorded())
        #expect(written.prefix(8).elementsEqual(BigEndian.bytes(10)) && written.count == 40, "position 10 and its leaf")
        try record(nil)
        try await withTestStore(dir) { _ in }
        #expect(try recorded() == nil, "an open with nothing to fold writes nothing")
        try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/later")), metadata: testMetadata())
        }
        let later = try #require(try recorded())
        #expect(later.prefix(8).elementsEqual(BigEndian.bytes(11)))

        let firstLeaf = try Environment(directory: dir.path).read { txn in
            try #require(try txn.get(try txn.openDatabase("merkle-tree")!, MerkleTree.nodeKey(level: 0, index: 0))).map { $0 }
        }
        try record(BigEndian.bytes(1) + firstLeaf)
        try await withTestStore(dir) { _ in }  // this log's event at 1: opens
        #expect(Replayer.verify(directory: dir.path).passed)
        try record(BigEndian.bytes(1) + firstLeaf.map { $0 ^ 1 })
        let refused = await #expect(throws: StoreError.self) { try await withTestStore(dir) { _ in } }
        #expect(refused?.message.contains("the event at position 1 they folded is not this log's") == true, "\(String(describing: refused))")
        // A record of another shape (damage) is taken as none, and the next write's replaces it.
        try record(Array(firstLeaf.prefix(20)))
        try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/after")), metadata: testMetadata())
        }
        #expect(try recorded()?.prefix(8).elementsEqual(BigEndian.bytes(12)) == true)
    }

    /// A store of a repository and one upload's initiation, whose `file` (the log's, or the
    /// projections') is then put back as it was before the initiation: one of the two environments
    /// a step behind the other. - Returns: the upload's id.
    func initiatingThenRestoring(_ file: String, in dir: TemporaryDirectory) async throws -> String {
        let earlier = TemporaryDirectory()
        defer { earlier.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
        }
        try FileManager.default.copyItem(atPath: dir.path + "/" + file, toPath: earlier.path + "/data.mdb")
        let uploadId = try await withTestStore(dir) { store in
            try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
        }
        try FileManager.default.removeItem(atPath: dir.path + "/" + file)
        try FileManager.default.copyItem(atPath: earlier.path + "/data.mdb", toPath: dir.path + "/" + file)
        return uploadId
    }

    /// The log restored alone from an older copy, under projections written from more events: a
    /// rebuild at open dropped the only trace of the events lost, and the next checkpoint, signed at
    /// a size already signed, forked the log. Refused, saying how to serve the log as it stands;
    /// done so, it opens at the log's tail.
    @Test func aLogRestoredAloneFromAnOlderCopy_isRefusedAtOpen_untilItsProjectionsAreRemoved() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        _ = try await initiatingThenRestoring("data.mdb", in: dir)
        let refused = await #expect(throws: StoreError.self) { try await withTestStore(dir) { _ in } }
        #expect(refused?.code == .corrupt && refused?.message.contains("written from 2 events, but the log holds 1") == true, "\(String(describing: refused))")
        // Of an older layout too, which an open that may migrate rebuilt as a matter of course.
        try tamperProjections(dir) { txn in
            try txn.put(try txn.openDatabase("projection-state")!, Array("version".utf8), Array(BigEndian.bytes(UInt64(Projector.version - 1)).suffix(4)))
        }
        let older = await #expect(throws: StoreError.self) { try await withTestStore(dir) { _ in } }
        #expect(older?.message.contains("written from 2 events, but the log holds 1") == true, "\(String(describing: older))")
        try FileManager.default.removeItem(atPath: dir.path + "/projections")  // as the refusal says
        try await withTestStore(dir) { store throws in #expect(try store.read { try $0.checkpoint() } == 1) }
    }

    /// Projections a step behind the log, as a process that died between its log's commit and its
    /// projections' leaves them: verify compares them at their checkpoint, and the next open folds
    /// the rest in from the log.
    @Test func projectionsBehindTheLog_verifyAtTheirCheckpoint_andCatchUpAtOpen() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let uploadId = try await initiatingThenRestoring("projections/data.mdb", in: dir)
        #expect(Replayer.verify(directory: dir.path).failure?.exitCode == 1, "behind the log, with no store open to catch up")
        // The store that died between its commits is still registered.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(1)) }

        let behind = Replayer.verify(directory: dir.path)
        #expect(behind.passed, "\(String(describing: behind.failure))")
        #expect(behind.events == 2 && behind.checkpoint == 1)
        try await withTestStore(dir) { store throws in
            #expect(try store.read { try $0.checkpoint() } == 2)
            #expect(try store.read { try $0.session(uploadId) } != nil)
        }
        let caughtUp = Replayer.verify(directory: dir.path)
        #expect(caughtUp.passed && caughtUp.checkpoint == 2)
    }

    /// A projections' commit that fails after the log's loses nothing: the command is answered (the
    /// log holds it) and a read after the answer sees it (the writer folds it in at once); when
    /// that fails too, a read that answers a request is refused, and asks the writer (at most once
    /// a second) for a transaction that folds it in, recording nothing; any later command's
    /// transaction folds it in before deciding, and a retry of the call is answered with its
    /// original result. No flag of this process says the projections are behind: the read finds
    /// it in the stores' own state, so a lag another process on the folder left is found alike.
    @Test func aProjectionsCommitFailingAfterTheLogs_losesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let failuresLeft = Locked(0)
        let failing: @Sendable () -> Bool = { failuresLeft.withLock { left in defer { left = max(0, left - 1) }; return left > 0 } }
        func call(_ invocation: String) -> RequestMetadata {
            RequestMetadata(requestId: "req-\(invocation)", source: "test", userAgent: "tests/1", invocationId: invocation)
        }
        try await withTestStore(dir, configure: { $0.failProjectionCommit = failing }) { store throws in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            failuresLeft.withLock { $0 = 1 }  // the batch's commit fails; the catch-up after it does not
            let first = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call("inv-1"))
            #expect(try store.read { try $0.session(first.uploadId) } != nil, "a read after the answer sees the write")

            failuresLeft.withLock { $0 = 2 }  // both fail: the projections stay behind the log
            let second = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call("inv-2"))
            #expect(try store.read { try $0.session(second.uploadId) } == nil)
            #expect(try store.statistics().checkpointLag == 1)
            // So a read that answers a request is refused, not answered without the write; the
            // transaction its refusal asks for fails too here (its commit and the fold after it).
            failuresLeft.withLock { $0 = 2 }
            let refused = #expect(throws: StoreError.self) { try store.readAnswering { try $0.session(second.uploadId) } }
            #expect(refused?.code == .viewsBehind && refused?.message.contains("is the disk full?") == true)
            let asked = ContinuousClock.now + .seconds(10)
            while failuresLeft.withLock({ $0 }) > 0, ContinuousClock.now < asked { try await Task.sleep(for: .milliseconds(5)) }
            #expect(failuresLeft.withLock { $0 } == 0, "the writer tried")
            #expect(throws: StoreError.self) { try store.readAnswering { try $0.session(second.uploadId) } }
            // An auditor still sees the initiation, read from the log past the projections.
            let tail = try store.read { try $0.lastPosition() }
            #expect(try store.initiations().map(\.position).suffix(2) == [tail - 1, tail])
            #expect(try store.initiationPosition(of: second.uploadId) == tail)
            #expect(try store.initiations(repository: RepositoryRef(registryId: testRegistryId, repositoryName: "team/other")).isEmpty)
            #expect(try store.initiations(until: Timestamp(millisecondsSinceEpoch: 0)).isEmpty)
            // A second on, a refused read asks again, and then reads are answered, with no write
            // asked for by a caller, and nothing recorded.
            try await Task.sleep(for: .milliseconds(1100))
            let answered = ContinuousClock.now + .seconds(10)
            while (try? store.readAnswering({ try $0.session(second.uploadId) })) == nil, ContinuousClock.now < answered {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(try store.readAnswering { try $0.session(second.uploadId) } != nil)
            #expect(try store.statistics().checkpointLag == 0 && store.read { try $0.lastPosition() } == tail, "nothing recorded")

            let third = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call("inv-3"))
            #expect(try store.statistics().checkpointLag == 0)
            #expect(try store.read { try $0.session(second.uploadId) } != nil && store.read { try $0.session(third.uploadId) } != nil)
            #expect(try store.read { try $0.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")) }?.activeSessions == 3)
            let retried = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call("inv-2"))
            #expect(retried.uploadId == second.uploadId)
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    /// A store that cannot name its boot syncs its own commits: it neither hides the unsynced
    /// writer of a known boot nor judges anything torn, and is counted apart while open.
    @Test func aStoreWithoutABootId_leavesTheKnownBootsWritersAlone() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.bootId = "boot-1" }) { _ in }
        // A store of boot-1 that is still open, or was killed.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(1)) }
        try await withTestStore(dir, configure: { $0.bootId = BootID.unknown }) { store in
            #expect(!store.rebuiltTornProjections)
            let writers = try store.environment.read { txn in try UnsyncedProjectionWriters.state(txn, store.schema, bootId: BootID.unknown) }
            #expect(writers.writersOpen && !writers.mayBeTorn)
        }
        try await withTestStore(dir, configure: { $0.bootId = "boot-2" }) { store in
            #expect(store.rebuiltTornProjections, "boot-1's unclosed writer is still counted")
        }
    }

    /// A projections file shorter than its last commit (left so by an older version when that
    /// commit freed a large record) refused the whole store, and told its operator to restore a
    /// backup: it is rebuilt from the log when no other writer has it open, and refused as before
    /// while one is counted (open, or killed with it open), since removing it would pull it from
    /// under that writer.
    @Test func aProjectionsFileCutShort_isRebuiltFromTheLog_unlessAnotherWriterIsCounted() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await Self.writeAnUploadInBoot1(dir)
        let file = dir.path + "/projections/data.mdb"
        #expect(try #require(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) > 16_384)
        #expect(truncate(file, 16_384) == 0)
        // Another writer of boot-1, still open or killed: refused, and left as it was.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(1)) }
        var configuration = testConfiguration(dir)
        configuration.bootId = "boot-1"
        let refused = try #require(throws: (any Error).self) { try Store(configuration) }
        #expect("\(refused)".contains("shorter than"), "\(refused)")
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int == 16_384)
        // Alone: rebuilt, and what the log holds is read back.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(0)) }
        try await withTestStore(dir, configure: { $0.bootId = "boot-1" }) { store in
            let repository = try store.read { try $0.repository(RepositoryRef(registryId: "123456789012", repositoryName: "team/app")) }
            #expect(repository?.activeSessions == 1 && repository?.uploadsInitiated == 1)
        }
        #expect(Replayer.verify(directory: dir.path, bootId: "boot-1").passed)
    }

    /// Closing twice at once unregisters the store once, and neither call returns before it has:
    /// another process's registration stays.
    @Test func closingTwiceAtOnce_unregistersOnce() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { _ in }
        func writers(_ environment: Environment) throws -> UInt64? {
            try environment.read { txn in
                try txn.get(try txn.openDatabase("projection-writers")!, Array("writers".utf8)).flatMap(BigEndian.uint64)
            }
        }
        #expect(try writers(Environment(directory: dir.path, configuration: .readOnly)) == 0)
        // Another process of this boot, still open.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(1)) }
        let store = try Store(testConfiguration(dir))
        #expect(try writers(store.environment) == 2)
        let first = Task { await store.close() }
        await store.close()
        #expect(try writers(store.environment) == 1, "a second close returns once the first has unregistered")
        await first.value
        await store.close()
        #expect(try writers(store.environment) == 1)
    }

    /// A repository and an upload, written by a store of the boot "boot-1" that then closed.
    static func writeAnUploadInBoot1(_ dir: TemporaryDirectory) async throws {
        try await withTestStore(dir, configure: { $0.bootId = "boot-1" }) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata())
        }
    }

    /// After the machine restarts, projections that a store wrote unsynced and never closed may be
    /// torn: the next open rebuilds them from the log, and verify refuses them until then. A store
    /// that closed cleanly synced them: they are kept as they are.
    @Test func projectionsLeftUnsyncedAcrossARestartOfTheMachine_areRebuilt_cleanlyClosedOnesKept() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await Self.writeAnUploadInBoot1(dir)
        let before = Replayer.verify(directory: dir.path, bootId: "boot-1")
        #expect(before.passed)
        let writtenByTheWriter = try #require(before.liveDigest)
        // A harmless mark in the tables shows whether they were kept or rebuilt.
        let mark = Array("123456789012/zz-mark".utf8)
        func putMark() throws {
            try tamperProjections(dir) { txn in
                let repos = try txn.openDatabase("repositories")!
                try txn.put(repos, mark, try #require(try txn.get(repos, Array("123456789012/team/app".utf8))))
            }
        }
        func hasMark() throws -> Bool {
            try Environment(directory: dir.path + "/projections", configuration: .readOnly).read { txn in
                try txn.get(try txn.openDatabase("repositories")!, mark) != nil
            }
        }
        try putMark()
        try await withTestStore(dir, configure: { $0.bootId = "boot-2" }) { store in
            #expect(!store.rebuiltTornProjections, "every writer of boot-1 closed cleanly")
        }
        #expect(try hasMark())

        // A writer of boot-2 that never closed: the log still counts it.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(1)) }
        #expect(Replayer.verify(directory: dir.path, bootId: "boot-2").failure?.exitCode == 1, "the mark is still there, as in boot-2")
        let refused = Replayer.verify(directory: dir.path, bootId: "boot-3")
        guard case .unusable(let text)? = refused.failure else { Issue.record("torn projections were read: \(refused)"); return }
        #expect(text.contains("machine restarted"))
        try await withTestStore(dir, configure: { $0.bootId = "boot-3" }) { store throws in
            #expect(store.rebuiltTornProjections)
            #expect(try store.read { try $0.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")) } != nil)
        }
        #expect(try !hasMark())
        let rebuilt = Replayer.verify(directory: dir.path, bootId: "boot-3")
        #expect(rebuilt.passed)
        #expect(rebuilt.liveDigest == writtenByTheWriter, "the rebuild at open writes what the writer wrote, byte for byte")
    }

    /// An open that fails after it counted itself as a writer (here its projections cannot be
    /// opened) stops counting: no writer will close it, and the next boot must not take the
    /// projections for torn.
    @Test func anOpenThatFails_doesNotStayCountedAsAnUnsyncedWriter() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await Self.writeAnUploadInBoot1(dir)
        let projections = dir.path + "/projections", aside = dir.path + "/projections-aside"
        try FileManager.default.moveItem(atPath: projections, toPath: aside)
        FileManager.default.createFile(atPath: projections, contents: Data("not a folder".utf8))
        var configuration = testConfiguration(dir)
        configuration.bootId = "boot-1"
        #expect(throws: (any Error).self) { _ = try Store(configuration) }
        try FileManager.default.removeItem(atPath: projections)
        try FileManager.default.moveItem(atPath: aside, toPath: projections)
        try await withTestStore(dir, configure: { $0.bootId = "boot-2" }) { store in
            #expect(!store.rebuiltTornProjections, "no writer of boot-1 is left counted")
        }
    }

    /// Projections that cannot be read (torn by a restart of the machine, or never built) are not
    /// compared, but the log is checked all the same, as an operator wants first after a crash:
    /// its damage is reported as such (exit 2), and a sound log's report holds its root and both
    /// rebuilds, failing only for the projections (exit 3).
    @Test func projectionsThatCannotBeRead_leaveTheLogsChecksToRun() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await Self.writeAnUploadInBoot1(dir)
        let sound = Replayer.verify(directory: dir.path, bootId: "boot-1")
        #expect(sound.passed && sound.merkleRoot != nil)
        // A writer of boot-1 that never closed, and the machine restarted since.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("projection-writers")!, Array("writers".utf8), BigEndian.bytes(1)) }
        let torn = Replayer.verify(directory: dir.path, bootId: "boot-2")
        guard case .unusable(let text)? = torn.failure else { Issue.record("torn projections: \(torn)"); return }
        #expect(text.contains("machine restarted"))
        #expect(torn.events == 2 && torn.merkleRoot == sound.merkleRoot && torn.rebuildDigests == sound.rebuildDigests, "the log was checked")
        #expect(torn.liveDigest == nil && torn.checkpoint == nil, "the projections were not read")
        try FileManager.default.removeItem(atPath: dir.path + "/projections")
        let neverBuilt = Replayer.verify(directory: dir.path, bootId: "boot-1")
        #expect(neverBuilt.failure?.exitCode == 3 && neverBuilt.merkleRoot == sound.merkleRoot)
        // Damage to the log is reported as such, projections or not.
        try tamper(dir) { txn in try txn.put(try txn.openDatabase("events")!, BigEndian.bytes(UInt64(1) << 62), [0]) }
        let damaged = Replayer.verify(directory: dir.path, bootId: "boot-2")
        guard case .log? = damaged.failure else { Issue.record("damage to the log went unreported: \(damaged)"); return }
    }

    /// Upgrade: a store made at migration step 0001 (a log, no projections) gains its projection
    /// tables on open, built from the events it already has.
    @Test func open_aStoreFromAnEarlierMigrationStep_upgradesAndBuildsProjections() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let at = Timestamp(millisecondsSinceEpoch: 1_796_083_200_000)
        let uploadId = "00000000-0000-4000-8000-0000000000aa"
        do {
            let env = try Environment(directory: dir.path)
            try UploadMigrations.migrator.migrate(env, upTo: "0001-create-event-log")
            #expect(try env.read { try UploadMigrations.migrator.status($0) } == .pending(Array(UploadMigrations.migrator.identifiers.dropFirst())))
            let events: [Event] = [
                .repositoryCreated(RepositoryCreated(registryId: testRegistryId, repositoryName: "old/app", createdAt: at)),
                .uploadInitiated(UploadInitiated(uploadId: uploadId, partSize: 10_485_760, registryId: testRegistryId, repositoryName: "old/app", initiatedAt: at)),
            ]
            try env.write { txn in
                let log = try txn.openDatabase("events")!
                for (i, event) in events.enumerated() {
                    let envelope = EventEnvelope(position: UInt64(i + 1), recordedAt: at, metadata: testMetadata(), event: event)
                    try txn.put(log, BigEndian.bytes(envelope.position), envelope.encoded(), options: .append)
                }
            }
        }
        try await withTestStore(dir) { store in
            #expect(try store.appliedMigrations() == UploadMigrations.migrator.identifiers)
            #expect(try store.read { try $0.session(uploadId) }?.repositoryName == "old/app")
            #expect(try store.read { try $0.checkpoint() } == 2)
            let next = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "old/app"), metadata: testMetadata())
            #expect(try store.read { try $0.events(after: 2) }.first?.position == 3)
            #expect(try store.read { try $0.session(next.uploadId) } != nil)
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    /// A store written before the Merkle tree existed gains it on upgrade, computed over its
    /// events, and the events are not rewritten.
    @Test func upgrade_fromBeforeTheMerkleTree_computesItOverExistingEvents_withoutRewritingThem() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let at = Timestamp(millisecondsSinceEpoch: 1_796_083_200_000)
        var records: [[UInt8]] = []
        do {
            let env = try Environment(directory: dir.path)
            try UploadMigrations.migrator.migrate(env, upTo: "0003-create-image-tables")
            try env.write { txn in
                let log = try txn.openDatabase("events")!
                let events: [Event] = [
                    .repositoryCreated(RepositoryCreated(registryId: testRegistryId, repositoryName: "old/app", createdAt: at)),
                    .uploadInitiated(UploadInitiated(uploadId: "00000000-0000-4000-8000-0000000000aa", partSize: 1, registryId: testRegistryId, repositoryName: "old/app", initiatedAt: at)),
                    .uploadInitiated(UploadInitiated(uploadId: "00000000-0000-4000-8000-0000000000bb", partSize: 1, registryId: testRegistryId, repositoryName: "old/app", initiatedAt: at)),
                ]
                for (i, event) in events.enumerated() {
                    let record = EventEnvelope(position: UInt64(i + 1), recordedAt: at, metadata: testMetadata(), event: event).encoded()
                    records.append(record)
                    try txn.put(log, BigEndian.bytes(UInt64(i + 1)), record, options: .append)
                }
            }
        }
        try await withTestStore(dir) { store in
            let leaves = records.enumerated().map { MerkleTree.leafHash(position: UInt64($0.offset + 1), record: $0.element) }
            let expected = MerkleTree.nodeHash(MerkleTree.nodeHash(leaves[0], leaves[1]), leaves[2])
            #expect(try store.merkleRoot() == (3, Hex.encode(expected)))
            let stored = try store.read { try $0.events() }.map { $0.encoded() }
            #expect(stored == records, "the events are byte for byte as written")
            #expect(try store.initiations().count == 2, "the audit index covers old events")
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    @Test func open_aStoreWrittenByANewerBinary_isRefusedClearly() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        try tamper(dir) { txn in
            try txn.put(try txn.openDatabase(StoreMigrator.migrationsDatabaseName)!, Array("0099-from-the-future".utf8), [0, 0, 0, 99])
        }
        let error = #expect(throws: StoreError.self) { _ = try Store(testConfiguration(dir)) }
        #expect(error?.code == .migration)
        #expect(error?.message.contains("newer upload-coordinator") == true && error?.message.contains("0099-from-the-future") == true)
        #expect(Replayer.verify(directory: dir.path).failure?.exitCode == 3)
    }

    @Test func open_withMigrateOnOpenOff_refusesAStoreThatNeedsMigrations() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        do {
            let env = try Environment(directory: dir.path)
            try UploadMigrations.migrator.migrate(env, upTo: "0001-create-event-log")
        }
        var config = testConfiguration(dir)
        config.migrateOnOpen = false
        let error = #expect(throws: StoreError.self) { _ = try Store(config) }
        #expect(error?.message.contains("0002-create-projections") == true)
    }

    /// A changed projection layout version makes the next open rebuild the tables from the log.
    @Test func open_withAnOutdatedProjectionLayout_rebuildsFromTheLog() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await populate(dir)
        let live = Replayer.verify(directory: dir.path).liveDigest
        try tamperProjections(dir) { txn in
            let state = try txn.openDatabase("projection-state")!
            try txn.put(state, Array("version".utf8), [0, 0, 0, 0])
            try txn.clear(try txn.openDatabase("sessions")!)
        }
        try await withTestStore(dir) { _ in }
        let report = Replayer.verify(directory: dir.path)
        #expect(report.passed)
        #expect(report.liveDigest == live)
    }

    /// Projections of another layout than this binary's, with every table there (a store a newer
    /// or older binary serves): refused by a reader that needs them; read as empty, at position 0,
    /// by a reader of the log alone, which then finds the initiation in the log.
    @Test func projectionsOfAnotherLayout_areRefused_orReadAsEmpty() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let app = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        let uploadId = try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            return try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
        }
        #expect(try ReadOnlyStore(directory: dir.path).initiations().map(\.position) == [2], "the current layout reads as it is")
        func setLayout(_ version: UInt32) throws {  // the handle closes as it returns: one per process
            let projections = try ProjectionEnvironment(dataDirectory: dir.path, like: .init(), bootId: BootID.unknown)
            try projections.environment.write { txn in
                var checkpoint = try ProjectionCheckpoint.read(txn, projections.schema)
                checkpoint.version = version
                try checkpoint.write(txn, projections.schema)
            }
        }
        try setLayout(Projector.version + 1)

        let error = #expect(throws: StoreError.self) { _ = try ReadOnlyStore(directory: dir.path) }
        #expect(error?.code == .migration && error?.message.contains("of layout \(Projector.version + 1)") == true)
        do {  // the reader closes at its end: one handle per process
            let logReader = try ReadOnlyStore(directory: dir.path, unreadableProjections: .readAsEmpty)
            #expect(try logReader.read { try $0.checkpoint() } == 0)
            #expect(try logReader.read { try $0.repository(app) } == nil, "nothing of the other layout is read")
            #expect(try logReader.initiations().map(\.position) == [2])
            #expect(try logReader.initiationPosition(of: uploadId) == 2)
            #expect(try logReader.initiations(repository: app, until: Timestamp(millisecondsSinceEpoch: 0)).isEmpty)
            #expect(try logReader.merkleRoot().treeSize == 2)
        }
        // Not a difference found (exit 1, "projections differ"): the store cannot be checked by
        // this binary (exit 3), as for a monitoring job left on one version during an upgrade.
        for layout in [Projector.version + 1, Projector.version - 1] {
            try setLayout(layout)
            let report = Replayer.verify(directory: dir.path)
            guard case .unusable(let reason)? = report.failure else {
                Issue.record("layout \(layout): \(String(describing: report.failure))")
                continue
            }
            #expect(reason.contains("of layout \(layout)"), "\(reason)")
        }
    }

    /// A writer never rebuilds a newer binary's projections down to its own layout (the newer
    /// process would then refuse every batch), and one that may not migrate (`audit checkpoint`)
    /// never rebuilds an older binary's up: both refuse and leave the tables as they were. An
    /// open that may migrate rebuilds an older layout.
    @Test func projectionsOfANewerLayout_orOfAnOlderOneWithoutMigrating_areLeftAsTheyWere() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
        }
        func layout(setTo version: UInt32? = nil) throws -> UInt32? {  // the handle closes as it returns: one per process
            let projections = try ProjectionEnvironment(dataDirectory: dir.path, like: .init(), bootId: BootID.unknown)
            return try projections.environment.write { txn in
                var checkpoint = try ProjectionCheckpoint.read(txn, projections.schema)
                if let version { checkpoint.version = version }
                try checkpoint.write(txn, projections.schema)
                return checkpoint.version
            }
        }
        for (version, migrating, refusal) in [
            (Projector.version + 1, true, "newer than this binary's"), (Projector.version - 1, false, "older than this binary's"),
        ] {
            _ = try layout(setTo: version)
            let error = await #expect(throws: StoreError.self) { try await withTestStore(dir, configure: { $0.migrateOnOpen = migrating }) { _ in } }
            #expect(error?.code == .migration && error?.message.contains(refusal) == true, "\(String(describing: error))")
            #expect(try layout() == version, "the tables are left as they were")
        }
        try await withTestStore(dir) { _ in }
        #expect(try layout() == Projector.version, "rebuilt by an open that may migrate")
        #expect(Replayer.verify(directory: dir.path).passed)
    }
}
