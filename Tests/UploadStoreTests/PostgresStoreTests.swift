import Foundation
import LMDBKit
import LogHashing
import Logging
import PostgresKit
import UploadMigrations
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// What only the PostgreSQL backend does: several nodes on one database, and a log the database
/// itself keeps append-only.
struct PostgresStoreTests {
    static func create(_ name: String) throws -> Command { .createRepository(try CreateRepository(repositoryName: name)) }

    /// Opens `count` stores on one database: the nodes of a deployment, each with its own writer.
    static func withNodes<T>(_ count: Int, _ location: TestStoreLocation, _ body: ([any EventStore]) async throws -> T) async throws -> T {
        var nodes: [any EventStore] = []
        for n in 0..<count { nodes.append(try location.open { $0.uploadIds = SequentialUploadIDs(start: UInt64(n + 1) << 32) }) }
        do {
            let result = try await body(nodes)
            for node in nodes { await node.close() }
            return result
        } catch {
            for node in nodes { await node.close() }
            throw error
        }
    }

    /// What logs and errors show of a database's address: never its password, however given.
    @Test func addressesAreShownWithoutTheirPasswords() {
        let addresses = [
            "postgres://ops:s3cret@db:5432/uc",
            "postgres://ops@db/uc?sslmode=require&password=s3cret",
            "host=db user=ops password=s3cret dbname=uc",
            "host=db user=ops password = 's3cret and more' dbname=uc",
            "host=db\nuser=ops\npassword=s3cret",
            "host=db sslpassword=s3cret",
        ]
        for address in addresses {
            let shown = PostgresConnection.withoutPassword(address)
            #expect(!shown.contains("s3cret") && !shown.contains("more") && shown.contains("password=***") && shown.contains("host=db"), "\(shown)")
        }
        #expect(PostgresConnection.withoutPassword("postgres://ops@db:5432/uc").split(separator: " ").sorted() == ["dbname=uc", "host=db", "port=5432", "user=ops"])
        #expect(!PostgresConnection.withoutPassword("postgres://ops:s3cret@db:bad-port/uc").contains("s3cret"))
        // libpq's words for a URL it cannot read quote where it stopped: a password's bare `%`.
        for unreadable in ["postgres://ops:My%Secret@127.0.0.1:1/uc", "postgres://ops:pa%ss-Secret@127.0.0.1:1/uc"] {
            let refused = #expect(throws: PostgresError.self) { try PostgresConnection(url: unreadable) }
            #expect(refused.map { !"\($0)".contains("Secret") && "\($0)".contains("cannot be read as a connection string") } == true, "\(String(describing: refused))")
        }
    }

    /// What a batch's caller is told of a database fault that passes: a connection never made, or
    /// a read-only session, kept nothing; a connection cut during the batch may have been cut after
    /// its commit; a fault of the statement itself does not pass.
    @Test func aBatchsDatabaseFault_saysWhetherItPassesAndWhetherTheWriteMayHaveBeenKept() {
        let cases: [(PostgresError, String?)] = [
            (PostgresError(sqlState: nil, message: "refused", operation: "connect", connecting: true), StoreError.databaseUnreachable),
            (PostgresError(sqlState: "25006", message: "read-only transaction", operation: "INSERT"), StoreError.databaseUnreachable),
            (PostgresError(sqlState: nil, message: "server closed the connection", operation: "COMMIT"), StoreError.databaseUnreachableDuringAWrite),
            (PostgresError(sqlState: "57P01", message: "terminating connection", operation: "COMMIT"), StoreError.databaseUnreachableDuringAWrite),
            (PostgresError(sqlState: "23505", message: "duplicate key", operation: "INSERT"), nil),
        ]
        for (failure, passing) in cases { #expect(PostgresCommitter.passing(failure) == passing, "\(failure)") }
    }

    /// copy-store's guard, read without migrating: what a database a store has written holds,
    /// the checkpoint a node signs of its empty log as it stops included.
    @Test func heldLog_isNamedOnceAStoreHasWrittenEventsOrACheckpoint() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let url = try #require(location.database?.url)
        #expect(try PostgresStore.heldLog(url: url) == nil, "an empty database")
        try await Self.withNodes(1, location) { nodes in
            #expect(try PostgresStore.heldLog(url: url) == nil, "tables, but no event")
            try PostgresLog.checkpointRows([SignedCheckpoint(size: 0, note: "the empty tree's")]).run(on: try PostgresConnection(url: url))
            #expect(try PostgresStore.heldLog(url: url)?.hasPrefix("a checkpoint of its empty log, which a node") == true)
            _ = try await nodes[0].execute(try Self.create("team/app"), metadata: testMetadata())
        }
        #expect(try PostgresStore.heldLog(url: url) == "an event")
    }

    @Test func twoNodes_appendingAtOnce_keepOneDenseLogAndOneTree() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await Self.withNodes(2, location) { nodes in
            _ = try await nodes[0].execute(try Self.create("team/app"), metadata: testMetadata())
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for n in 0..<300 {
                    let node = nodes[n % 2]
                    group.addTask { try await node.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(Set(ids).count == 300)
            for node in nodes {
                let events = try node.read { try $0.events() }
                #expect(events.map(\.position) == Array(1...301), "every node reads the one dense log")
                #expect(try node.read { try $0.activeUploads(in: RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")) }.count == 300)
            }
            #expect(try nodes[0].merkleRoot().rootHash == nodes[1].merkleRoot().rootHash)
        }
        let report = Replayer.verify(databaseURL: location.database!.url)
        #expect(report.passed, "\(String(describing: report.failure))")
        #expect(report.events == 301)
    }

    @Test func anUpload_startedOnOneNode_takesAPartOnAnother_andCompletesOnAThird() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await Self.withNodes(3, location) { nodes in
            _ = try await nodes[0].execute(try Self.create("team/app"), metadata: testMetadata())
            let id = try await nodes[0].initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            var part = try UploadLayerPart(
                repositoryName: "team/app", uploadId: id, partFirstByte: 0, partLastByte: 9, partLength: 10, partDigest: "sha256:" + String(repeating: "ab", count: 32))
            part.staged = true
            _ = try await nodes[1].execute(.uploadLayerPart(part), metadata: testMetadata())
            let layer = "sha256:" + String(repeating: "cd", count: 32)
            var complete = try CompleteLayerUpload(repositoryName: "team/app", uploadId: id, layerDigests: [layer])
            complete.staged = .init(digest: layer, size: 10)
            _ = try await nodes[2].execute(.completeLayerUpload(complete), metadata: testMetadata())
            let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
            #expect(try nodes[0].read { try $0.layer(ref, layer) } != nil, "the first node reads the third's write at once")
            #expect(try nodes[1].read { try $0.session(id) }?.state == .completed)
        }
    }

    @Test func aRetry_sentToAnotherNode_isAnsweredWithTheOriginalResult() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await Self.withNodes(2, location) { nodes in
            _ = try await nodes[0].execute(try Self.create("team/app"), metadata: testMetadata())
            let call = RequestMetadata(requestId: "r-1", source: "test", principal: "AKIA1", invocationId: "inv-1", requestDigest: "d-1")
            let first = try await nodes[0].initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call)
            let retry = try await nodes[1].initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call)
            #expect(retry.uploadId == first.uploadId)
            #expect(try nodes[1].read { try $0.lastPosition() } == 2, "the retry wrote nothing")
        }
    }

    @Test func aFollowerOnOneNode_isWokenByAnotherNodesCommit() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await Self.withNodes(2, location) { nodes in
            // The second node's listener connected before the commit it must hear of.
            let listener = try #require(nodes[1] as? PostgresStore)
            for _ in 0..<100 where !listener.hearsOtherNodes { try await Task.sleep(for: .milliseconds(100)) }
            #expect(listener.hearsOtherNodes)
            async let woken = nodes[1].waitForEvents(after: 0, timeout: .seconds(60))
            _ = try await nodes[0].execute(try Self.create("team/app"), metadata: testMetadata())
            let committed = ContinuousClock.now
            #expect(await woken)
            #expect(ContinuousClock.now - committed < .seconds(20), "woken by NOTIFY, not by the 60 s timeout")
        }
    }

    /// A failover to a standby that had not received the last commits puts other events at
    /// positions a node has seen. The node must decide from the log as it now stands, not from
    /// what it cached of the lost history: an upload the log no longer holds is unknown, a retry of
    /// a lost call is decided anew, and a follower is not woken for events the log no longer has.
    @Test func afterAFailoverThatLostCommits_aNodeDecidesFromTheLogAsItNowStands() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let primary = try #require(location.database)
        try await location.withStore { _ = try await $0.execute(try Self.create("team/app"), metadata: testMetadata()) }
        let standby = try TemporaryDatabase(copying: primary)  // it never receives what follows
        defer { standby.remove() }
        let node = try location.open { $0.uploadIds = SequentialUploadIDs(start: 1 << 32) }
        do {
            let call = RequestMetadata(requestId: "r-lost", source: "test", principal: "AKIA1", invocationId: "inv-lost", requestDigest: "d-lost")
            let lost = try await node.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call).uploadId
            _ = try await node.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("r-lost-2"))
            try primary.exchange(with: standby)
            // Another node, after the failover, puts its own event at the position the lost one had.
            try await location.withStore(configure: { $0.uploadIds = SequentialUploadIDs(start: 2 << 32) }) {
                _ = try await $0.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("r-other"))
            }
            // The writer checks a connection idle for 1 s before it sends a batch; the listener
            // reconnects, and reads the log's tail at least once a second.
            try await Task.sleep(for: .seconds(2.5))
            let waiting = ContinuousClock.now
            _ = await node.waitForEvents(after: 2, timeout: .seconds(2))
            #expect(ContinuousClock.now - waiting > .seconds(1.5), "woken at once by position 3, which the log lost")
            // The other node writes position 3 too: the tail is where this node's caches stood,
            // with other events, which only their witness (the leaf there) tells apart.
            try await location.withStore(configure: { $0.uploadIds = SequentialUploadIDs(start: 3 << 32) }) {
                _ = try await $0.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata("r-other-2"))
            }
            try await Task.sleep(for: .seconds(1.2))
            var part = try UploadLayerPart(
                repositoryName: "team/app", uploadId: lost, partFirstByte: 0, partLastByte: 9, partLength: 10, partDigest: "sha256:" + String(repeating: "ab", count: 32))
            part.staged = true
            await #expect { _ = try await node.execute(.uploadLayerPart(part), metadata: testMetadata("r-part")) } throws: {
                ($0 as? CommandError)?.code == .uploadNotFound
            }
            let retry = try await node.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call).uploadId
            #expect(retry != lost, "decided anew: the log holds no upload \(lost)")
            #expect(try node.read { try $0.session(retry) } != nil)
            #expect(try node.read { try $0.lastPosition() } == 4)
            await node.close()
        } catch {
            await node.close()
            throw error
        }
        let report = Replayer.verify(databaseURL: primary.url)
        #expect(report.passed, "\(String(describing: report.failure))")
        #expect(report.events == 4)
    }

    /// A checkpoint is signed from a snapshot read before the append lock: a failover that lost
    /// commits may take its tree back before it is kept. Kept, it would stop every later signing
    /// for good; so it is kept only of the tree the log holds under that lock.
    @Test func aCheckpointOfATreeTheLogNoLongerHolds_isNotKept() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            _ = try await store.execute(try Self.create("team/other"), metadata: testMetadata())
            let signer = try NoteSigner.generate(name: "example.com/log")
            let identity = LogIdentity(verifier: signer.verifier, origin: "example.com/log")
            func signed(_ size: UInt64, _ root: MerkleTree.Hash) throws -> SignedCheckpoint {
                SignedCheckpoint(size: size, note: try SignedNote.sign(Checkpoint(origin: "example.com/log", size: size, rootHash: root).text, with: signer))
            }
            let root = try #require(Hex.decode(try store.merkleRoot().rootHash))
            #expect(throws: StoreError.self, "past the log's end") { try store.keep(try signed(3, root), signedAs: identity) }
            #expect(throws: StoreError.self, "another tree of that size") { try store.keep(try signed(2, MerkleTree.emptyRoot), signedAs: identity) }
            #expect(try store.read { try $0.latestSignedCheckpoint() } == nil)
            let held = try signed(2, root)
            #expect(try store.keep(held, signedAs: identity) == held)
        }
    }

    /// A read that meets a connection the server closed runs again on a newly opened one, not on
    /// another pooled connection the server closed too (as a restart closes them all).
    @Test func aReadAfterThePoolsConnectionsWereClosed_isAnswered() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            // Three reads, each inside the one before: the pool holds three connections after.
            try store.read { _ in try store.read { _ in try store.read { _ in } } }
            let admin = try PostgresConnection(url: location.database!.url)
            let ended = try admin.query("""
                SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = '' AND state = 'idle') AS t
                """)
            #expect(try ended.int64(0, 0) >= 3)
            #expect(try store.read { try $0.lastPosition() } == 1)
        }
    }

    /// Any role that can connect may NOTIFY the log's channel: a made-up tail must not stand as
    /// the node's tail (2^64 − 1 woke every feed at once, for ever); the log's own tail does.
    @Test func aNotificationOfAMadeUpTail_wakesNoFollower() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            let listener = try #require(store as? PostgresStore)
            for _ in 0..<100 where !listener.hearsOtherNodes { try await Task.sleep(for: .milliseconds(100)) }
            #expect(listener.hearsOtherNodes, "listening, so the notification below is heard")
            try PostgresConnection(url: location.database!.url).execute("NOTIFY \(PostgresLog.channel), '\(UInt64.max)'")
            try await Task.sleep(for: .milliseconds(600))  // the listener has heard it
            let started = ContinuousClock.now
            _ = await store.waitForEvents(after: 1, timeout: .seconds(2))
            #expect(ContinuousClock.now - started > .seconds(1.5), "woken by a position no event has")
            // The control: another node's real commit wakes it.
            try await location.withStore { other in _ = try await other.execute(try Self.create("team/other"), metadata: testMetadata()) }
            let woken = ContinuousClock.now
            _ = await store.waitForEvents(after: 1, timeout: .seconds(30))
            #expect(ContinuousClock.now - woken < .seconds(10), "another node's commit wakes the follower, long before the wait's end")
        }
    }

    /// A rebuild writes the tables a statement at a time as they fill: more rows than one
    /// statement holds come back exactly as the writers left them.
    @Test func aRebuildOfMoreRowsThanAStatementHolds_writesTheTablesAsTheyWere() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            for _ in 0..<60 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<64 { group.addTask { _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()) } }
                    try await group.waitForAll()
                }
            }
        }
        let admin = try PostgresConnection(url: location.database!.url)
        let digest = "SELECT count(*), md5(string_agg(tbl || encode(key, 'hex') || encode(value, 'hex'), ',' ORDER BY tbl, key)) FROM projection_entries"
        let before = try admin.query(digest)
        let (rows, hash) = (try before.int64(0, 0), before.text(0, 1))
        #expect(rows > Int64(PostgresRowBatch.rowsPerStatement), "\(rows) rows")
        try admin.query("UPDATE projection_state SET value = 0 WHERE name = 'position'")  // behind the log: rebuilt at the next open
        try await location.withStore { _ in }
        let after = try admin.query(digest)
        #expect(try after.int64(0, 0) == rows)
        #expect(after.text(0, 1) == hash)
        #expect(try admin.query("SELECT value FROM projection_state WHERE name = 'position'").int64(0, 0) == 1 + 60 * 64)
    }

    /// Projection tables past the log (which they commit with) mean events were taken out of it:
    /// rebuilt silently, they lost the only trace, and the next checkpoint forked the log. Refused,
    /// saying how to serve the log as it stands; done so, it opens and rebuilds them.
    @Test func projectionsPastTheLog_areRefusedAtOpen_untilTheOperatorClearsTheirState() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata()) }
        let admin = try PostgresConnection(url: location.database!.url)
        try admin.query("UPDATE projection_state SET value = 3 WHERE name = 'position'")
        let error = #expect(throws: StoreError.self) { _ = try location.open() }
        #expect(error?.code == .corrupt && error?.message.contains("written from 3 events, but the log holds 1") == true, "\(String(describing: error))")
        #expect(try admin.query("SELECT value FROM projection_state WHERE name = 'position'").int64(0, 0) == 3, "left as it was")
        // Of an older layout too, which an open that may migrate rebuilt as a matter of course.
        try admin.query("UPDATE projection_state SET value = $1 WHERE name = 'version'", [.int64(Int64(Projector.version) - 1)])
        let older = #expect(throws: StoreError.self) { _ = try location.open() }
        #expect(older?.message.contains("written from 3 events, but the log holds 1") == true, "\(String(describing: older))")
        try admin.query("DELETE FROM projection_state WHERE name IN ('position', 'version')")  // as the refusal says
        try await location.withStore { store throws in #expect(try store.read { try $0.checkpoint() } == 1) }
    }

    /// A node of an older binary among newer ones must not rebuild the tables down to its layout
    /// (the newer nodes would then refuse every batch, and rebuild them up, in turn).
    @Test func aNodeOfAnOlderLayout_refusesToStart_andLeavesTheTables() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata()) }
        let newer = Int64(Projector.version) + 1
        let admin = try PostgresConnection(url: location.database!.url)
        try admin.query("UPDATE projection_state SET value = $1 WHERE name = 'version'", [.int64(newer)])
        let error = #expect(throws: StoreError.self) { _ = try location.open() }
        #expect(error?.code == .migration && error?.message.contains("newer than this binary's") == true)
        #expect(try admin.query("SELECT value FROM projection_state WHERE name = 'version'").int64(0, 0) == newer)
        #expect(try admin.query("SELECT count(*) FROM projection_entries").int64(0, 0) > 0, "the tables are left as they were")
    }

    /// A process that may not migrate (`audit checkpoint`) does not rebuild an older binary's
    /// tables up to its layout either: the older nodes would refuse every batch.
    @Test func anOpenThatMayNotMigrate_leavesTablesOfAnOlderLayout() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata()) }
        let older = Int64(Projector.version) - 1
        let admin = try PostgresConnection(url: location.database!.url)
        try admin.query("UPDATE projection_state SET value = $1 WHERE name = 'version'", [.int64(older)])
        let error = #expect(throws: StoreError.self) { _ = try location.open { $0.migrateOnOpen = false } }
        #expect(error?.code == .migration && error?.message.contains("older than this binary's") == true)
        #expect(try admin.query("SELECT value FROM projection_state WHERE name = 'version'").int64(0, 0) == older)
        try await location.withStore { _ in }
        #expect(try admin.query("SELECT value FROM projection_state WHERE name = 'version'").int64(0, 0) == Int64(Projector.version))
    }

    /// An auditor's reader needs nothing but SELECT: it opens with a role that may only read, sees
    /// what the nodes wrote, and refuses a database whose projections are of another layout.
    @Test func aReader_needsNoMoreThanSelect() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata())
            _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata())
        }
        let url = location.database!.url
        let role = "auditor_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        let admin = try PostgresConnection(url: url)
        try admin.execute("CREATE ROLE \(role) LOGIN")
        defer {
            _ = try? admin.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \(role)")
            _ = try? admin.execute("DROP ROLE IF EXISTS \(role)")
        }
        try admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO \(role)")
        let asAuditor = url.replacingOccurrences(of: "://postgres@", with: "://\(role)@")
        #expect(asAuditor != url)
        let reader = try PostgresReader(url: asAuditor)
        #expect(try reader.initiations().map(\.position) == [2])
        #expect(try reader.merkleRoot().treeSize == 2)
        let figures = try reader.statistics()
        #expect(figures.logPosition == 2 && figures.checkpointLag == 0 && figures.repositories == 1 && figures.activeSessions == 1)
        // A copy-store that did not finish is read by nothing: its log may stop short.
        try admin.query("INSERT INTO projection_state (name, value) VALUES ('copy_store_unfinished', 1)")
        let unfinished = #expect(throws: StoreError.self) { _ = try PostgresReader(url: asAuditor, unreadableProjections: .readAsEmpty) }
        #expect(unfinished?.message.contains("did not finish") == true)
        try admin.query("DELETE FROM projection_state WHERE name = 'copy_store_unfinished'")
        #expect(throws: (any Error).self, "the role may only read") { try PostgresConnection(url: asAuditor).execute("DELETE FROM projection_state") }
        try admin.query("UPDATE projection_state SET value = value + 1 WHERE name = 'version'")
        let error = #expect(throws: StoreError.self) { _ = try PostgresReader(url: asAuditor) }
        #expect(error?.code == .migration && error?.message.contains("layout") == true)
        // A reader of the log alone reads them as empty, and finds the initiation in the log.
        let logReader = try PostgresReader(url: asAuditor, unreadableProjections: .readAsEmpty)
        #expect(try logReader.initiations().map(\.position) == [2])
        #expect(try logReader.read { try $0.checkpoint() } == 0 && logReader.read { try $0.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")) } == nil)
        let figures2 = try logReader.statistics()
        #expect(figures2.checkpointLag == 2 && figures2.repositories == 0, "nothing of the other layout is counted")
    }

    @Test func theLog_refusesUpdateAndDelete_andVerifyCatchesARewrittenRecord() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in
            for name in ["a", "b", "c"] { _ = try await store.execute(try Self.create("team/\(name)"), metadata: testMetadata()) }
        }
        let connection = try PostgresConnection(url: location.database!.url)
        for statement in ["UPDATE events SET record = record WHERE position = 2", "DELETE FROM events WHERE position = 3", "DELETE FROM merkle_nodes"] {
            #expect(throws: PostgresError.self, "\(statement)") { try connection.execute(statement) }
        }
        // A superuser can drop the guard; verify still names the damage.
        try connection.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        try connection.execute("UPDATE events SET record = set_byte(record, length(record) - 1, get_byte(record, length(record) - 1) # 1) WHERE position = 2")
        let report = Replayer.verify(databaseURL: location.database!.url)
        guard case .log(let message)? = report.failure else {
            Issue.record("expected log damage, got \(String(describing: report.failure))")
            return
        }
        #expect(message.contains("positions 2 through 2"), "\(message)")
    }

    /// A database the binaries before a marking migration last wrote (its row taken away here) is
    /// read as it is by a reader and by verify, and migrated by the next node; any other pending
    /// migration still stops a reader.
    @Test func aDatabaseWithoutItsMarkingMigrations_isReadAsItIs_andMigratedByANode() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await location.withStore { store in _ = try await store.execute(try Self.create("team/app"), metadata: testMetadata()) }
        let url = location.database!.url
        let admin = try PostgresConnection(url: url)
        #expect(!PostgresMigrations.markingMigrations.isEmpty)
        for mark in PostgresMigrations.markingMigrations {
            try admin.query("DELETE FROM upload_coordinator_migrations WHERE identifier = $1", [.text(mark)])
        }
        #expect(try PostgresReader(url: url).read { try $0.lastPosition() } == 1)
        let report = Replayer.verify(databaseURL: url)
        #expect(report.failure == nil && report.events == 1, "\(String(describing: report.failure))")
        #expect(Set(PostgresMigrations.migrations.map(\.identifier)).subtracting(try PostgresStore.appliedMigrations(url: url)) == PostgresMigrations.markingMigrations)
        try await location.withStore { _ in }
        #expect(try PostgresStore.appliedMigrations(url: url) == PostgresMigrations.migrations.map(\.identifier))
        try admin.query("DELETE FROM upload_coordinator_migrations WHERE identifier = '0002-create-projections'")
        let error = #expect(throws: StoreError.self) { _ = try PostgresReader(url: url) }
        #expect(error?.code == .migration)
    }

    @Test func migrations_applyOnce_underTheLock_whenNodesStartTogether() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let url = location.database!.url
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { _ = try PostgresMigrations.migrate(try PostgresConnection(url: url)) }
            }
            try await group.waitForAll()
        }
        #expect(try PostgresStore.appliedMigrations(url: url) == PostgresMigrations.migrations.map(\.identifier))
    }

    /// A node starting beside one that migrates a new database looks for the migrations table,
    /// then for other tables, in two statements: the other's first migration could commit in
    /// between, and the new node refused the database as another program's (3 of 160 nodes started
    /// eight at a time). Tables and no migration now wait for the migration running, and are
    /// looked at again.
    @Test func aNodeThatFindsTablesButNoMigration_looksAgainOnceTheMigrationRunningEnds() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let url = location.database!.url
        let migrating = try PostgresConnection(url: url)
        try migrating.query("SELECT pg_advisory_lock($1)", [.int64(PostgresMigrations.lockKey)])
        try migrating.execute("CREATE TABLE events (position bigint)")  // as the other node's first looks
        let starting = Task { try PostgresMigrations.status(try PostgresConnection(url: url)) }
        // Until the starting node waits for the lock (the old code refused at once, and ended).
        let deadline = ContinuousClock.now + .seconds(30)
        while try migrating.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").count == 0 {
            guard ContinuousClock.now < deadline else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        try migrating.execute("DROP TABLE events")
        try PostgresMigrations.migrate(migrating)  // the lock is the session's own, taken again
        try migrating.query("SELECT pg_advisory_unlock($1)", [.int64(PostgresMigrations.lockKey)])
        #expect(try await starting.value == .current)
        // Another program's tables, with no migration running, are still refused.
        let other = try TestStoreLocation(.postgres)
        defer { other.remove() }
        try PostgresConnection(url: other.database!.url).execute("CREATE TABLE events (position bigint)")
        #expect(throws: MigrationError.self) { try PostgresMigrations.status(try PostgresConnection(url: other.database!.url)) }
    }
}

extension PostgresStoreTests {
    /// The expiry sweeper's duty: one node leads at a time, and the lead moves when it closes.
    @Test func oneNodeLeadsADuty_andTheLeadMovesWhenItsHolderGoes() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let first = try location.open(), second = try location.open()
        let leads = [first.leads(.expirySweep), second.leads(.expirySweep)]
        #expect(leads.filter { $0 }.count == 1, "exactly one leads: \(leads)")
        #expect(first.leads(.expirySweep) == leads[0] && second.leads(.expirySweep) == leads[1], "the lead stays where it is")
        let (holder, other) = leads[0] ? (first, second) : (second, first)
        await holder.close()
        #expect(other.leads(.expirySweep), "the other node takes the lead once its holder closed")
        await other.close()
    }

    /// A running holder keeps its lead however long it goes without asking (its timer touches the
    /// connection); one that stands frozen (here: a holder without the timer) loses it once its
    /// connection has sat idle past the limit, and finds it taken when it asks again. (A frozen
    /// holder kept it for as long as it stood still, and no node swept.)
    @Test func aRunningHolderKeepsItsLead_aFrozenOneLosesIt() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let url = location.database!.url, logger = Logger(label: "leadership-test")
        func node(touching: Bool) -> PostgresLeadership {
            PostgresLeadership(url: url, answerLimit: nil, logger: logger, keepAliveInterval: touching ? .seconds(1) : nil, idleLimit: .seconds(6))
        }
        /// Asks until `node` leads (a closed holder's server process may not have let go yet).
        func leadsWithin(_ limit: Duration, _ node: PostgresLeadership) async throws -> Bool {
            let asked = ContinuousClock.now
            while ContinuousClock.now - asked < limit {
                if node.leads(.expirySweep) { return true }
                try await Task.sleep(for: .milliseconds(500))
            }
            return false
        }
        let running = node(touching: true), other = node(touching: true)
        #expect(running.leads(.expirySweep))
        try await Task.sleep(for: .seconds(13))  // more than twice the idle limit without an ask
        #expect(!other.leads(.expirySweep), "a running holder keeps its lead between asks")
        running.resign()
        let frozen = node(touching: false)
        #expect(try await leadsWithin(.seconds(30), frozen))
        #expect(try await leadsWithin(.seconds(60), other), "the server ended the frozen holder's connection, and its lock")
        #expect(!frozen.leads(.expirySweep), "thawed, it finds the lead taken")
        other.resign()
    }
}
