import PostgresKit
import LogHashing
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// The PostgreSQL writer sends a batch in two round trips (``PostgresConnection/pipeline(_:)``) and
/// keeps the Merkle tree's right edge between batches instead of reading it back.
struct PostgresPipelineTests {
    @Test func aPipeline_returnsEachQuerysRows_inOrder() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let rows = try connection.pipeline([
            .init("SELECT $1::bigint", [.int64(7)]), .init("SELECT 'x'::text UNION ALL SELECT 'y'"), .init("SELECT $1::bytea", [.bytes([1, 2])]),
        ])
        #expect(rows.count == 3)
        #expect(try rows[0].int64(0, 0) == 7)
        #expect(rows[1].count == 2 && rows[1].text(0, 0) == "x" && rows[1].text(1, 0) == "y")
        #expect(rows[2].bytes(0, 0) == [1, 2])
        // Out of pipeline mode again: an ordinary query works.
        #expect(try connection.query("SELECT 1::bigint").int64(0, 0) == 1)
    }

    @Test func aFailingQuery_skipsThoseAfterIt_andItsCommitDoesNotHappen() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        try connection.execute("CREATE TABLE t (k bigint PRIMARY KEY)")
        let insert = "INSERT INTO t (k) VALUES ($1)"
        var thrown: PostgresError?
        do {
            try connection.pipeline([
                .init("BEGIN"), .init(insert, [.int64(1)]), .init(insert, [.int64(1)]), .init(insert, [.int64(3)]), .init("COMMIT"),
            ])
        } catch {
            thrown = error
        }
        #expect(thrown?.sqlState == "23505", "the duplicate key is the error thrown, not a skipped query's")
        #expect(connection.isUsable)
        #expect(!connection.isIdle, "the transaction is left failed, for the caller to roll back")
        try connection.execute("ROLLBACK")
        #expect(try connection.query("SELECT count(*) FROM t").int64(0, 0) == 0, "nothing before or after the failure was kept")
    }

    @Test func theRightEdge_isAllALaterBatchReads_andGivesTheTreeOneBatchWouldHaveBuilt() throws {
        // A database without the log's tables: a node read from it would fail.
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let records = (1...300).map { Array("record \($0)".utf8) }
        var whole = PostgresWriteTransaction(connection: connection, tail: 0)
        for (offset, record) in records.enumerated() { try whole.append(record: record, at: UInt64(offset + 1)) }
        // The same records in batches of many sizes, each begun from the last one's right edge.
        var edge: [MerkleNodeAddress: MerkleTree.Hash] = [:]
        var tail: UInt64 = 0
        for size in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 69] {
            var batch = PostgresWriteTransaction(connection: connection, tail: tail, rightEdge: edge)
            for position in (tail + 1)...(tail + UInt64(size)) { try batch.append(record: records[Int(position) - 1], at: position) }
            tail += UInt64(size)
            edge = batch.rightEdge()
        }
        #expect(tail == 300)
        #expect(edge == whole.rightEdge())
    }

    @Test func oneNode_batchAfterBatch_storesTheTreeTheEventsProve_evenWhenAnotherNodeWritesBetween() async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        try await PostgresStoreTests.withNodes(2, location) { nodes in
            _ = try await nodes[0].execute(try PostgresStoreTests.create("team/app"), metadata: testMetadata())
            // One command a batch, across many power-of-two boundaries; every ninth from the other
            // node, so that batches begin both from a kept edge and from a tail another node moved.
            for n in 1...150 {
                let node = nodes[n % 9 == 0 ? 1 : 0]
                _ = try await node.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata())
            }
        }
        // Verify recomputes every stored node from the events.
        let report = Replayer.verify(databaseURL: location.database!.url)
        #expect(report.passed, "\(String(describing: report.failure))")
        #expect(report.events == 151)
    }
}

struct BatchReadsTests {
    /// An upload begun in an earlier batch, which this batch's parts name.
    static let earlier = "0b6f3c1e-2a4d-4f8b-9e7c-5d1a2b3c4d5e"

    @Test func aBatch_readsItsNewIds_theRepositoriesItInitiatesIn_andTheUploadsItsPartsName_eachOnce() throws {
        let settings = DecisionSettings(defaultRegistryId: testRegistryId)
        let initiate = Command.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"))
        let elsewhere = Command.initiateLayerUpload(try InitiateLayerUpload(registryId: "999999999999", repositoryName: "team/app"))
        var part = try UploadLayerPart(
            repositoryName: "team/app", uploadId: Self.earlier, partFirstByte: 0, partLastByte: 9, partLength: 10, partDigest: "sha256:" + String(repeating: "ab", count: 32))
        part.staged = true
        let reads = BatchReads(commands: [
            (initiate, "u-1"), (initiate, "u-2"), (elsewhere, "u-3"), (.uploadLayerPart(part), nil), (.uploadLayerPart(part), nil),
            (.createRepository(try CreateRepository(repositoryName: "other/app")), nil),
        ], settings: settings)
        #expect(reads.sessions == ["u-1", "u-2", "u-3", Self.earlier].map { Array($0.utf8) })
        let repository = ProjectionKey.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app"))
        #expect(reads.repositories == [repository], "a registry id the settings refuse names nothing to read")
        #expect(reads.queries.count == 2)

        let cache = DecodedRecords()
        cache.remember(DecodedRecords.Key(.repositories, repository), nil, bytes: 0)
        cache.remember(DecodedRecords.Key(.sessions, Array(Self.earlier.utf8)), nil, bytes: 0)
        let lacking = reads.lacking(in: cache)
        #expect(lacking.sessions == ["u-1", "u-2", "u-3"].map { Array($0.utf8) })
        #expect(lacking.repositories.isEmpty && lacking.queries.count == 1)
        #expect(reads.lacking(in: nil).sessions.count == 4, "with no cache to keep, everything is read")
    }

    /// A PutImage's batch reads its repository, each blob its manifest names and the image it
    /// pushes (and an index's images), each once; what the cache knows is not read again.
    @Test func aPutImage_readsItsRepository_itsBlobs_andItsImages_eachOnce() throws {
        let settings = DecisionSettings(defaultRegistryId: testRegistryId)
        let config = "sha256:" + String(repeating: "0c", count: 32), layer = "sha256:" + String(repeating: "1a", count: 32)
        func descriptor(_ digest: String, _ size: Int) -> String {
            #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#(digest)","size":\#(size)}"#
        }
        let manifest = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":\#(descriptor(config, 2)),"layers":[\#(descriptor(layer, 5)),\#(descriptor(config, 2))]}"#
        let image = try PutImage(repositoryName: "team/app", imageManifest: manifest, imageTag: "v1")
        let index = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\#(descriptor(image.imageDigest, manifest.utf8.count))]}"#
        let list = try PutImage(repositoryName: "team/app", imageManifest: index, imageTag: "all")
        let reads = BatchReads(commands: [(.putImage(image), nil), (.putImage(image), nil), (.putImage(list), nil)], settings: settings)
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        #expect(reads.repositories == [ProjectionKey.repository(ref)])
        #expect(reads.layers == [config, layer].map { ProjectionKey.scoped(ref, $0) }, "the config once, though a layer names it too")
        #expect(reads.images == [image.imageDigest, list.imageDigest].map { ProjectionKey.scoped(ref, $0) })
        #expect(reads.queries.count == 3)
        let cache = DecodedRecords()
        cache.remember(DecodedRecords.Key(.layers, ProjectionKey.scoped(ref, config)), nil, bytes: 0)
        #expect(reads.lacking(in: cache).layers == [ProjectionKey.scoped(ref, layer)])
    }

    /// A BatchDeleteImage's batch reads its repository, each image it names by digest with its
    /// sets (its tags, the lists that name it: two ranges), and each tag it names, each once; an
    /// invalid digest names nothing to read.
    @Test func aBatchDeleteImage_readsItsImagesWithTheirSets_andItsTags_eachOnce() throws {
        let settings = DecisionSettings(defaultRegistryId: testRegistryId)
        let x = "sha256:" + String(repeating: "ab", count: 32), z = "sha256:" + String(repeating: "ef", count: 32)
        let delete = Command.batchDeleteImage(try BatchDeleteImage(repositoryName: "team/app", imageIds: [
            ImageIdentifier(imageDigest: x.uppercased()), ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageDigest: x, imageTag: "v1"),
            ImageIdentifier(imageDigest: "sha256:nothex"), ImageIdentifier(imageDigest: z),
        ]))
        let reads = BatchReads(commands: [(delete, nil), (delete, nil)], settings: settings)
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        #expect(reads.repositories == [ProjectionKey.repository(ref)])
        #expect(reads.images == [x, z].map { ProjectionKey.scoped(ref, $0) })
        #expect(reads.imageSets == [x, z].map { ProjectionKey.scoped(ref, ProjectionKey.memberItem($0, "")) })
        #expect(reads.tags == [ProjectionKey.scoped(ref, "v1")])
        #expect(reads.queries.count == 3 + 2, "repositories, images, tags; then every image's tags, and every image's lists")
        let cache = DecodedRecords()
        cache.remember(DecodedRecords.Key(.imageTags, ProjectionKey.scoped(ref, "v1")), nil, bytes: 0)
        let lacking = reads.lacking(in: cache)
        #expect(lacking.tags.isEmpty && lacking.imageSets == reads.imageSets, "a range is read again in each batch")
    }

    /// A forced DeleteRepository's batch reads the tags of every image of the repository at once
    /// (each image's delete reads them), whatever the cache holds; a delete without force, none.
    @Test func aForcedDelete_readsItsRepositorysTagsOfEveryImage_inOneQuery() throws {
        let settings = DecisionSettings(defaultRegistryId: testRegistryId)
        let reads = BatchReads(commands: [
            (.deleteRepository(try DeleteRepository(repositoryName: "team/app", force: true)), nil),
            (.deleteRepository(try DeleteRepository(repositoryName: "team/web")), nil),
        ], settings: settings)
        let prefix = ProjectionKey.repositoryPrefix(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app"))
        #expect(reads.tagsOfEveryImage == [prefix])
        #expect(reads.queries.count == 1 && reads.lacking(in: DecodedRecords()).tagsOfEveryImage == [prefix])
    }

    /// A batch's changes under a prefix, in key order, however they interleave with the reads
    /// that order them (a forced delete reads a prefix, deletes under it, and reads the next).
    @Test func aBatchsChanges_underAPrefix_comeInKeyOrder_beforeAndAfterItsFirstRead() {
        let changes = PostgresTables.Changes()
        func key(_ text: String) -> [UInt8] { Array(text.utf8) }
        changes.change(.tagsByImage, key("r\u{0}b\u{0}2"), to: [1])
        changes.change(.tagsByImage, key("r\u{0}a\u{0}1"), to: nil)
        changes.change(.imageTags, key("r\u{0}b"), to: [9])
        #expect(changes.changes(in: .tagsByImage, under: key("r\u{0}b\u{0}")).map(\.key) == [key("r\u{0}b\u{0}2")])
        changes.change(.tagsByImage, key("r\u{0}b\u{0}1"), to: nil)
        changes.change(.tagsByImage, key("r\u{0}c\u{0}1"), to: [3])
        changes.change(.tagsByImage, key("r\u{0}b\u{0}2"), to: nil)  // changed again: one entry, its last value
        let underB = changes.changes(in: .tagsByImage, under: key("r\u{0}b\u{0}"))
        #expect(underB.map(\.key) == [key("r\u{0}b\u{0}1"), key("r\u{0}b\u{0}2")] && underB.allSatisfy { $0.value == nil })
        #expect(changes.changes(in: .tagsByImage, under: key("r\u{0}")).map(\.key) == ["r\u{0}a\u{0}1", "r\u{0}b\u{0}1", "r\u{0}b\u{0}2", "r\u{0}c\u{0}1"].map(key))
        #expect(changes.changes(in: .imageTags, under: key("r")).map(\.value) == [[9]], "each table's own")
        changes.clear()
        #expect(changes.changes(in: .tagsByImage, under: []).isEmpty)
    }
}

extension BatchReadsTests {
    @Test func theAnswer_isKeptAsTheTransactionsReads_foundAbsentOrLeftForTheCommandToFail() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        try connection.execute("CREATE TABLE projection_entries (tbl text NOT NULL, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (tbl, key))")
        let at = Timestamp(millisecondsSinceEpoch: 1_700_000_000_000)
        func summary(_ name: String, active: UInt64) -> RepositorySummary {
            RepositorySummary(
                registryId: testRegistryId, repositoryName: name, createdAt: at, createdPosition: 1, uploadsInitiated: active,
                activeSessions: active, lastActivityAt: at, lastPosition: 1, layerCount: 0, imageCount: 0)
        }
        let stored = Array("stored".utf8), absent = Array("absent".utf8), broken = Array("broken".utf8), known = Array("known".utf8)
        var insert = PostgresTables.entryRows()
        insert.append(.text(ProjectionTable.repositories.rawValue), .bytes(stored), .bytes(summary("stored", active: 3).encoded()))
        insert.append(.text(ProjectionTable.repositories.rawValue), .bytes(broken), .bytes([0xFF, 0xFF, 0xFF]))
        insert.append(.text(ProjectionTable.repositories.rawValue), .bytes(known), .bytes(summary("known", active: 9).encoded()))
        try insert.run(on: connection)

        let cache = DecodedRecords()
        cache.remember(DecodedRecords.Key(.repositories, known), summary("known", active: 1), bytes: 0)
        let tables = PostgresTables(connection: connection, decoded: cache)
        let keys = [stored, absent, broken, known]
        let query = try #require(PostgresTables.recordsQuery(.repositories, keys: keys))
        tables.noteRecords(.repositories, keys: keys, found: try connection.query(query.sql, query.parameters), as: RepositorySummary.self)

        #expect(cache.records[DecodedRecords.Key(.repositories, stored)].flatMap { $0 as? RepositorySummary }?.activeSessions == 3)
        #expect(cache.records[DecodedRecords.Key(.repositories, absent)].map { $0 == nil } == true, "known absent")
        #expect(cache.records[DecodedRecords.Key(.repositories, broken)] == nil, "left unread, for the command that reads it to fail alone")
        #expect(cache.records[DecodedRecords.Key(.repositories, known)].flatMap { $0 as? RepositorySummary }?.activeSessions == 1, "what the transaction knew stays")
        #expect(cache.bytesHeld == summary("stored", active: 3).encoded().count, "the bytes of what was kept, for the cache's bound")
        #expect(throws: CodecError.self) { try tables.record(.repositories, broken, as: RepositorySummary.self) }
    }

    /// The ranges a batch reads whole, one query per table for every image: each image's keys kept
    /// as its own, and read back without a query (the table is gone by then), as are the keys of
    /// a narrower prefix inside a range read under a repository's prefix.
    @Test func rangesReadTogether_areKeptEachUnderItsPrefix_andServeNarrowerReads() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        try connection.execute("CREATE TABLE projection_entries (tbl text NOT NULL, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (tbl, key))")
        let app = ProjectionKey.repositoryPrefix(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app"))
        func set(_ digest: String) -> [UInt8] { app + Array(ProjectionKey.memberItem(digest, "").utf8) }
        let (x, y, z) = ("sha256:" + String(repeating: "1", count: 64), "sha256:" + String(repeating: "2", count: 64), "sha256:" + String(repeating: "3", count: 64))
        var insert = PostgresTables.entryRows()
        for key in [set(x) + Array("a".utf8), set(x) + Array("b".utf8), set(z) + Array("c".utf8), app + Array("sha256:0".utf8)] {
            insert.append(.text(ProjectionTable.tagsByImage.rawValue), .bytes(key), .bytes([]))
        }
        try insert.run(on: connection)
        let query = try #require(PostgresTables.keysUnderEachQuery(.tagsByImage, prefixes: [set(x), set(y), set(z)]))
        let tables = PostgresTables(connection: connection, decoded: DecodedRecords())
        tables.noteKeys(.tagsByImage, under: [set(x), set(y), set(z)], found: try connection.query(query.sql, query.parameters))
        // A name too long to key plainly: its prefix is a hash, whose bytes may hold 0x00 too.
        let web = ProjectionKey.repositoryPrefix(RepositoryRef(registryId: testRegistryId, repositoryName: "team/" + String(repeating: "w", count: 80)))
        #expect(web.first == 0xFF)
        tables.noteKeys(.tagsByImage, prefix: web, found: [])
        try connection.execute("DROP TABLE projection_entries")
        #expect(try tables.keys(in: .tagsByImage, withPrefix: set(x)) == [set(x) + Array("a".utf8), set(x) + Array("b".utf8)])
        #expect(try tables.keys(in: .tagsByImage, withPrefix: set(y)).isEmpty)
        #expect(try tables.keys(in: .tagsByImage, withPrefix: set(z)) == [set(z) + Array("c".utf8)])
        #expect(try tables.keys(in: .tagsByImage, withPrefix: web + Array(ProjectionKey.memberItem(x, "").utf8)).isEmpty, "inside a repository's range")
        #expect(throws: (any Error).self) { try tables.keys(in: .tagsByImage, withPrefix: app) }
    }

    /// The images a batch's tags name are read once the tags are: each found tag's image, with its
    /// sets, unless it was read already; an absent tag names nothing.
    @Test func theImagesTagsName_areReadInTheRoundTripAfterTheTags() throws {
        let database = try TemporaryDatabase()
        defer { database.remove() }
        let connection = try PostgresConnection(url: database.url)
        let settings = DecisionSettings(defaultRegistryId: testRegistryId)
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        let x = "sha256:" + String(repeating: "ab", count: 32), y = "sha256:" + String(repeating: "cd", count: 32)
        let at = Timestamp(millisecondsSinceEpoch: 1_700_000_000_000)
        let delete = Command.batchDeleteImage(try BatchDeleteImage(repositoryName: "team/app", imageIds: [
            ImageIdentifier(imageTag: "v1"), ImageIdentifier(imageTag: "v2"), ImageIdentifier(imageTag: "gone"), ImageIdentifier(imageDigest: y),
        ]))
        let reads = BatchReads(commands: [(delete, nil)], settings: settings)
        let cache = DecodedRecords()
        for (tag, digest) in [("v1", x), ("v2", y)] {
            cache.remember(DecodedRecords.Key(.imageTags, ProjectionKey.scoped(ref, tag)), TagRecord(imageDigest: digest, createdAt: at), bytes: 0)
        }
        cache.remember(DecodedRecords.Key(.imageTags, ProjectionKey.scoped(ref, "gone")), nil, bytes: 0)
        // No table exists: a read would fail, and its tag would be skipped. Every key is known.
        let next = reads.imagesNamedByTags(in: PostgresTables(connection: connection, decoded: cache))
        #expect(next.images == [ProjectionKey.scoped(ref, x)], "y was asked for by its digest")
        #expect(next.imageSets == [ProjectionKey.scoped(ref, ProjectionKey.memberItem(x, ""))])
        #expect(next.tags.isEmpty && next.queries.count == 3)
    }
}

/// Another node's invocation marks reach a writer in one of two ways: asked for up front, when its
/// commit has been notified (or the last batch met another node's events), or read in a round trip
/// of their own when only the tail shows them. Each is taken here by design, not by a listener's
/// timing: the writer under test has a notifier no listener feeds.
struct PostgresRetryWindowPathTests {
    /// A writer of its own on `location`'s database, with `notifier` telling it of other commits.
    static func writer(_ location: TestStoreLocation, _ notifier: CommitNotifier) -> (GroupCommitWriter, PostgresCommitter) {
        var configuration = testConfiguration(location.directory)
        configuration.uploadIds = SequentialUploadIDs(start: 9 << 32)
        let committer = PostgresCommitter(url: location.database!.url, configuration: configuration, notifier: notifier)
        return (GroupCommitWriter(committer: committer, configuration: configuration, notifier: notifier), committer)
    }

    @Test(arguments: [false, true])
    func aRetryOfAnotherNodesCall_isAnsweredWithItsResult_whetherItsCommitWasNotifiedOrNot(notified: Bool) async throws {
        let location = try TestStoreLocation(.postgres)
        defer { location.remove() }
        let other = try location.open()
        let notifier = CommitNotifier()
        let (writer, committer) = Self.writer(location, notifier)
        do {
            _ = try await other.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let initiate = Command.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"))
            // Two batches of the writer's own: after the second, it expects no one else's events
            // (the first began with no cache, so the second asked for the marks up front).
            for _ in 0..<2 {
                let own = await writer.submit([CommandSubmission(initiate, metadata: testMetadata())])
                #expect(try own[0].get().events.count == 1)
            }
            let call = RequestMetadata(requestId: "r-1", source: "test", principal: "AKIA1", invocationId: "inv-other", requestDigest: "d-1")
            let first = try await other.execute(initiate, metadata: call)
            let tail = try other.read { try $0.lastPosition() }
            if notified { notifier.committed(upTo: tail) }
            let readAloneBefore = committer.marksReadAlone

            let retry = try await writer.submit([CommandSubmission(initiate, metadata: call)])[0].get()
            #expect(retry.isRetry)
            #expect(retry.decision == first.decision, "the original answer, the same upload id")
            #expect(try other.read { try $0.lastPosition() } == tail, "the retry wrote nothing")
            #expect(committer.marksReadAlone - readAloneBefore == (notified ? 0 : 1), "the marks came by the path under test")
        } catch {
            await writer.shutdown()
            await other.close()
            throw error
        }
        await writer.shutdown()
        await other.close()
    }
}
