import Crypto
import Foundation
import LMDBKit
import LogHashing
import PostgresKit
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// The store's behaviour, whichever backend keeps it: every test here runs against LMDB and
/// against PostgreSQL, and the first proves that the same commands give the same bytes on both.
struct StoreConformanceTests {
    /// A run of calls that records every kind of event: repositories, uploads with parts,
    /// completions, a forced delete, a refusal, an SDK retry, an image and a list of it, a mount,
    /// referrers, catalog data, tags and policies.
    static func workload(_ store: any EventStore) async throws {
        func submit(_ commands: [Command]) async throws -> [CommandOutcome] {
            try await store.append(commands.map { CommandSubmission($0, metadata: testMetadata()) }).map { try $0.get() }
        }
        let names = ["team/app", "team/web", "solo"]
        _ = try await submit(try names.map { .createRepository(try CreateRepository(repositoryName: $0)) })
        let started = try await submit(try (names + names).map { .initiateLayerUpload(try InitiateLayerUpload(repositoryName: $0)) })
        let uploads = started.compactMap { outcome -> (String, String)? in
            guard case .uploadInitiated(let e)? = outcome.events.first?.event else { return nil }
            return (e.repositoryName, e.uploadId)
        }
        let digest = "sha256:" + String(repeating: "ab", count: 32)
        _ = try await submit(try uploads.prefix(3).map { name, id in
            var part = try UploadLayerPart(repositoryName: name, uploadId: id, partFirstByte: 0, partLastByte: 1023, partLength: 1024, partDigest: digest)
            part.staged = true
            return .uploadLayerPart(part)
        })
        _ = try await submit(try uploads.prefix(2).enumerated().map { n, upload in
            let layer = "sha256:" + String(repeating: "0\(n)", count: 32)
            var complete = try CompleteLayerUpload(repositoryName: upload.0, uploadId: upload.1, layerDigests: [layer])
            complete.staged = .init(digest: layer, size: 1024)
            return .completeLayerUpload(complete)
        })
        let retried = RequestMetadata(requestId: "r-1", source: "test", principal: "AKIA1", invocationId: "inv-1", requestDigest: "d-1")
        for _ in 0..<2 {
            _ = try await store.execute(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "solo")), metadata: retried)
        }
        await #expect(throws: CommandError.self) {
            try await store.execute(.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "missing")), metadata: testMetadata())
        }
        _ = try await submit([.deleteRepository(try DeleteRepository(repositoryName: "team/web", force: true))])

        // An image and a list of it (a layer's media type, a reference that refuses a delete),
        // catalog data, tags and the registry's catalog data.
        let layer = "sha256:" + String(repeating: "00", count: 32)
        let image = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(layer)","size":1024},"layers":[]}"#
        let pushed = try PutImage(repositoryName: "team/app", imageManifest: image, imageTag: "v1")
        let list = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(pushed.imageDigest)","size":\#(image.utf8.count)}]}"#
        _ = try await submit([.putImage(pushed), .putImage(try PutImage(repositoryName: "team/app", imageManifest: list, imageTag: "all"))])
        // Listings read images without their manifests, and nothing else differs.
        let app = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        try store.read { snapshot in
            let whole = try #require(try snapshot.image(app, pushed.imageDigest))
            #expect(whole.imageManifest == image)
            var listed = whole
            listed.imageManifest = ""
            #expect(try snapshot.imageWithoutManifest(app, pushed.imageDigest) == listed)
            let absent = "sha256:" + String(repeating: "cd", count: 32)
            #expect(try snapshot.imageWithoutManifest(app, absent) == nil)
            // Many at once (a page of tags' images), in the order asked, a digest asked twice given twice.
            #expect(try snapshot.imagesWithoutManifests(app, [absent, pushed.imageDigest, pushed.imageDigest]) == [nil, listed, listed])
            #expect(try snapshot.imagesWithoutManifests(app, []).isEmpty)
            #expect(try snapshot.images(app, [pushed.imageDigest, absent]) == [whole, nil], "manifest and all")
            let web = RepositoryRef(registryId: testRegistryId, repositoryName: "team/web")
            #expect(try snapshot.imagesWithoutManifests(web, [pushed.imageDigest]) == [nil], "another repository's images are its own")
            let page = try snapshot.imagesWithoutManifests(in: app, after: nil, limit: 5)
            #expect(page.count == 2 && page.allSatisfy { $0.imageManifest.isEmpty })
            #expect(page.contains(listed))
        }
        // Each image's tags and the lists that name it are sets of their own: a second tag joins
        // the image's, a tag moved to another image leaves it, and a page of images' tags is one read.
        let listed = try PutImage(repositoryName: "team/app", imageManifest: list, imageTag: "latest")
        _ = try await submit([.putImage(try PutImage(repositoryName: "team/app", imageManifest: image, imageTag: "latest"))])
        #expect(try store.read { try $0.tags(of: pushed.imageDigest, in: app) } == ["latest", "v1"])
        _ = try await submit([.putImage(listed)])
        try store.read { snapshot in
            #expect(try snapshot.tags(of: pushed.imageDigest, in: app) == ["v1"])
            #expect(try snapshot.tags(of: listed.imageDigest, in: app) == ["all", "latest"])
            #expect(try snapshot.tag(app, "latest")?.imageDigest == listed.imageDigest)
            #expect(try snapshot.manifestLists(naming: pushed.imageDigest, in: app) == [listed.imageDigest])
            #expect(try snapshot.manifestLists(naming: listed.imageDigest, in: app) == [])
            let byDigest = [(pushed.imageDigest, ["v1"]), (listed.imageDigest, ["all", "latest"])].sorted { $0.0 < $1.0 }
            let (first, last) = (byDigest[0].0, byDigest[1].0)
            let pairs = try snapshot.imageTags(in: app, from: first, through: last).map { "\($0.digest) \($0.tag)" }
            #expect(pairs == byDigest.flatMap { digest, tags in tags.map { "\(digest) \($0)" } })
            #expect(try snapshot.imageTags(in: app, from: last, through: last).map(\.tag) == byDigest[1].1, "the range's ends are its own")
            // Many images' tags and many tags at once (DescribeImages' ids), in the order asked.
            let absent = "sha256:" + String(repeating: "cd", count: 32)
            #expect(try snapshot.tags(of: [listed.imageDigest, absent, pushed.imageDigest, listed.imageDigest], in: app) == [["all", "latest"], [], ["v1"], ["all", "latest"]])
            #expect(try snapshot.tags(of: [], in: app).isEmpty)
            let solo = RepositoryRef(registryId: testRegistryId, repositoryName: "solo")
            #expect(try snapshot.tags(of: [pushed.imageDigest], in: solo) == [[]], "another repository's tags are its own")
            #expect(try snapshot.tags(app, ["latest", "gone", "v1"]).map { $0?.imageDigest } == [listed.imageDigest, nil, pushed.imageDigest])
            #expect(try snapshot.tags(app, []).isEmpty)
        }
        let refused = try await submit([.batchDeleteImage(try BatchDeleteImage(repositoryName: "team/app", imageIds: [ImageIdentifier(imageDigest: pushed.imageDigest)]))])
        #expect(refused.first?.decision.imageFailures.first?.failureCode == .imageReferencedByManifestList)
        // Referrers of that image in another repository, which does not hold it (as the distribution
        // spec allows): two pushed, one deleted; the other stays listed to the end.
        let solo = RepositoryRef(registryId: testRegistryId, repositoryName: "solo")
        _ = try await submit([.mountLayer(MountLayer(into: solo, layerDigest: layer, from: .repository("team/app")))])
        // One layer looked up in many repositories at once (a mount without `from`): as one by one.
        try store.read { snapshot in
            let refs = [app, RepositoryRef(registryId: testRegistryId, repositoryName: "team/web"), solo, app]
            let together = try snapshot.layers(layer, in: refs)
            #expect(together == (try refs.map { try snapshot.layer($0, layer) }))
            #expect(together.map { $0 != nil } == [true, false, true, true])
        }
        let referrers = try ["sbom", "signature"].map { kind in
            let artifact = #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.\#(kind)","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"\#(layer)","size":1024},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(pushed.imageDigest)","size":1}}"#
            return try PutImage(repositoryName: "solo", imageManifest: artifact)
        }
        _ = try await submit(referrers.map { .putImage($0) })
        let both = referrers.map(\.imageDigest).sorted()
        #expect(try store.read { try $0.referrers(of: pushed.imageDigest, in: solo, after: nil, limit: 5) } == both)
        // A page at a time: after a digest, up to a limit, none of another subject's.
        #expect(try store.read { try $0.referrers(of: pushed.imageDigest, in: solo, after: nil, limit: 1) } == [both[0]])
        #expect(try store.read { try $0.referrers(of: pushed.imageDigest, in: solo, after: both[0], limit: 5) } == [both[1]])
        #expect(try store.read { try $0.referrers(of: pushed.imageDigest, in: solo, after: both[1], limit: 5) } == [])
        #expect(try store.read { try $0.referrers(of: layer, in: solo, after: nil, limit: 5) } == [])
        _ = try await submit([.batchDeleteImage(try BatchDeleteImage(repositoryName: "solo", imageIds: [ImageIdentifier(imageDigest: referrers[1].imageDigest)]))])
        #expect(try store.read { try $0.referrers(of: pushed.imageDigest, in: solo, after: nil, limit: 5) } == [referrers[0].imageDigest])
        // The same image in another repository: each repository's tags of it are its own.
        _ = try await submit([.putImage(try PutImage(repositoryName: "solo", imageManifest: image, imageTag: "solo"))])
        try store.read { snapshot throws in
            #expect(try snapshot.tags(of: pushed.imageDigest, in: solo) == ["solo"])
            #expect(try snapshot.tags(of: pushed.imageDigest, in: app) == ["v1"])
            #expect(try snapshot.imageTags(in: solo, from: pushed.imageDigest, through: pushed.imageDigest).map(\.tag) == ["solo"])
            #expect(try snapshot.imageTags(in: app, from: pushed.imageDigest, through: pushed.imageDigest).map(\.tag) == ["v1"])
        }
        let arn = "arn:aws:ecr-public::\(testRegistryId):repository/solo"
        _ = try await submit([
            .createRepository(try CreateRepository(
                repositoryName: "cat/alog", catalog: .init(description: "d", architectures: ["ARM 64"], logoImage: [1]),
                tags: ResourceTags([("team", "x")]))),
            .tagResource(try TagResource(resourceArn: arn, tags: [("a", "1"), ("b", "2")])),
            .untagResource(try UntagResource(resourceArn: arn, tagKeys: ["a"])),
            .putRepositoryCatalogData(try PutRepositoryCatalogData(repositoryName: "solo", catalog: .init(usageText: "u"))),
            .putRegistryCatalogData(try PutRegistryCatalogData(displayName: "Registry")),
            .setRepositoryPolicy(try SetRepositoryPolicy(repositoryName: "solo", policyText: #"{"Statement":{"Effect":"Deny","Principal":"*","Action":"ecr-public:PutImage"}}"#)),
            .setRepositoryPolicy(try SetRepositoryPolicy(repositoryName: "team/app", policyText: #"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#)),
            .deleteRepositoryPolicy(try DeleteRepositoryPolicy(repositoryName: "team/app")),
            .setRepositoryPolicy(try SetRepositoryPolicy(repositoryName: "team/app", policyText: #"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ecr-public:*"}}"#)),
        ])
        // By tag, in a batch of its own: the image a tag names is known only once the tag is read
        // (PostgreSQL reads both before deciding), and goes with its last tag; a tag that names
        // nothing is a failure of its own.
        let tagged = try PutImage(repositoryName: "team/app", imageManifest: String(image.dropLast()) + #","annotations":{"a":"gone"}}"#, imageTag: "gone")
        _ = try await submit([.putImage(tagged)])
        let byTag = try await submit([.batchDeleteImage(try BatchDeleteImage(
            repositoryName: "team/app", imageIds: [ImageIdentifier(imageTag: "gone"), ImageIdentifier(imageTag: "absent")]))])
        #expect(byTag.first?.decision.imageIds == [ImageIdentifier(imageDigest: tagged.imageDigest, imageTag: "gone")])
        #expect(byTag.first?.decision.imageFailures.map(\.failureCode) == [.imageNotFound])
        #expect(try store.read { try $0.image(app, tagged.imageDigest) } == nil)
        // In one batch, deletes that read what the batch's pushes changed (PostgreSQL reads the
        // tags, images and sets up front, and lays the batch's changes over them): a tag pushed
        // and deleted, the image pushed again and deleted by digest, pushed a third time; then an
        // index naming it, and its delete, refused for the index.
        let brief = try PutImage(repositoryName: "team/app", imageManifest: String(image.dropLast()) + #","annotations":{"a":"brief"}}"#, imageTag: "brief")
        func push(_ tag: String) throws -> Command { .putImage(try PutImage(repositoryName: "team/app", imageManifest: brief.imageManifest, imageTag: tag)) }
        func delete(_ id: ImageIdentifier) throws -> Command { .batchDeleteImage(try BatchDeleteImage(repositoryName: "team/app", imageIds: [id])) }
        let briefIndex = try PutImage(
            repositoryName: "team/app",
            imageManifest: #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(brief.imageDigest)","size":\#(brief.imageManifest.utf8.count)}]}"#,
            imageTag: "brief-all")
        let oneBatch = try await submit([
            try push("brief"), try delete(ImageIdentifier(imageTag: "brief")), try push("kept"), try delete(ImageIdentifier(imageDigest: brief.imageDigest)),
            try push("last"), .putImage(briefIndex), try delete(ImageIdentifier(imageDigest: brief.imageDigest)),
        ])
        #expect(oneBatch.map { $0.events.map(\.event.type) } == [
            [.imagePushed], [.imageUntagged, .imageDeleted], [.imagePushed], [.imageDeleted], [.imagePushed], [.imagePushed], [],
        ])
        #expect(oneBatch.last?.decision.imageFailures.map(\.failureCode) == [.imageReferencedByManifestList])
        try store.read { snapshot throws in
            #expect(try snapshot.tags(of: brief.imageDigest, in: app) == ["last"])
            #expect(try snapshot.manifestLists(naming: brief.imageDigest, in: app) == [briefIndex.imageDigest])
        }
        // The list deleted (its image freed), pushed again, and the repository deleted with both.
        let listDigest = try PutImage(repositoryName: "team/app", imageManifest: list).imageDigest
        _ = try await submit([.batchDeleteImage(try BatchDeleteImage(repositoryName: "team/app", imageIds: [ImageIdentifier(imageDigest: listDigest)]))])
        // A referrer in team/app too, which its forced delete takes with the rest.
        _ = try await submit([.putImage(try PutImage(repositoryName: "team/app", imageManifest: try #require(referrers.first).imageManifest))])
        #expect(try store.read { try $0.referrers(of: pushed.imageDigest, in: app, after: nil, limit: 5) } == [referrers[0].imageDigest])
        // In one batch: a tag written, then read back by the forced delete (PostgreSQL reads the
        // repository's tags before the batch changes them, and lays its changes over them).
        _ = try await submit([
            .putImage(try PutImage(repositoryName: "team/app", imageManifest: list, imageTag: "again")),
            .deleteRepository(try DeleteRepository(repositoryName: "team/app", force: true)),
        ])
        #expect(try store.read { try $0.referrers(of: pushed.imageDigest, in: app, after: nil, limit: 5) } == [])
    }

    /// What a store holds, byte for byte: every record, the Merkle root, the live tables' digest,
    /// and the digest of the tables folded again from the log.
    struct Contents: Equatable {
        let records: [[UInt8]]
        let root: String
        let liveDigest: String
        let foldedDigest: String
    }

    static func contents(_ store: any EventStore) throws -> Contents {
        let (records, events) = try store.read { snapshot in
            let last = try snapshot.lastPosition()
            return (try snapshot.eventRecords(from: 1, count: Int(last)), try snapshot.events())
        }
        var folded = InMemoryProjectionState()
        for envelope in events { try Projector.apply(envelope, to: &folded) }
        let live: SHA256.Digest =
            if let store = store as? Store { try store.liveProjectionDigest() } else { try (store as! PostgresStore).liveProjectionDigest() }
        return Contents(
            records: records, root: try store.merkleRoot().rootHash, liveDigest: Hex.encode(Array(live)),
            foldedDigest: Hex.encode(Array(ProjectionDigest.of(folded))))
    }

    /// `upload-replay`'s verify, on whichever backend `location` names.
    static func verify(_ location: TestStoreLocation) -> Replayer.Report {
        switch location.backend {
        case .lmdb: Replayer.verify(directory: location.directory.path)
        case .postgres: Replayer.verify(databaseURL: location.database!.url)
        }
    }

    @Test func theSameCommands_giveTheSameBytesRootAndProjections_onBothBackends() async throws {
        var results: [StoreBackend: Contents] = [:]
        var reports: [StoreBackend: Replayer.Report] = [:]
        for backend in StoreBackend.allCases {
            let location = try TestStoreLocation(backend)
            defer { location.remove() }
            results[backend] = try await location.withStore { store in
                try await Self.workload(store)
                return try Self.contents(store)
            }
            // And again after reopening: nothing is rebuilt differently.
            let reopened = try await location.withStore(configure: { $0.uploadIds = SequentialUploadIDs(start: 1000) }) { try Self.contents($0) }
            #expect(reopened == results[backend], "\(backend): reopening changed the store")
            reports[backend] = Self.verify(location)
        }
        let lmdb = try #require(results[.lmdb]), postgres = try #require(results[.postgres])
        #expect(lmdb.records.count > 15, "the workload ran")
        #expect(lmdb.records == postgres.records, "the same event bytes at the same positions")
        #expect(lmdb.root == postgres.root, "the same Merkle root")
        #expect(lmdb.liveDigest == postgres.liveDigest, "the same live projections")
        for contents in [lmdb, postgres] { #expect(contents.liveDigest == contents.foldedDigest, "the live tables are the fold of the log") }
        // upload-replay's verify passes on both, with the same root and digests.
        let lmdbReport = try #require(reports[.lmdb]), postgresReport = try #require(reports[.postgres])
        for report in [lmdbReport, postgresReport] {
            #expect(report.passed, "\(String(describing: report.failure))")
            #expect(report.events == UInt64(lmdb.records.count))
        }
        #expect(lmdbReport.merkleRoot == postgresReport.merkleRoot && lmdbReport.merkleRoot == lmdb.root)
        #expect(lmdbReport.rebuildDigests == postgresReport.rebuildDigests)
        #expect(lmdbReport.liveDigest == postgresReport.liveDigest && lmdbReport.liveDigest == lmdb.liveDigest)
    }

    /// The sweep reads every active upload's session (on PostgreSQL in one query, not one each
    /// while the append lock is held) and ends exactly the idle ones.
    @Test(arguments: StoreBackend.allCases)
    func theSweep_endsExactlyTheIdleUploads(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        let clock = TestClock()
        try await location.withStore(configure: { $0.clock = clock }) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            var idle: [String] = []
            for _ in 0..<3 {
                idle.append(try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId)
            }
            clock.advance(milliseconds: 60_000)
            let busy = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            clock.advance(milliseconds: 30_000)
            let outcome = try await store.execute(.expireIdleUploads(ExpireIdleUploads(idleMilliseconds: 60_000)), metadata: testMetadata())
            let expired = outcome.events.compactMap { if case .uploadExpired(let e) = $0.event { e.uploadId } else { nil } }
            #expect(expired == idle)
            #expect(try store.read { try $0.allActiveUploads() } == [busy])
        }
    }

    /// Projections another binary rebuilt in its own layout while this one has the store open (a
    /// rolling upgrade, or a second process on one folder) are refused to reads, which would
    /// misread them, as they are to writes, while the log is still read; they are read again once
    /// the layout is this binary's.
    @Test(arguments: StoreBackend.allCases)
    func projectionsOfAnotherLayout_areRefusedToReads(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let app = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
            #expect(try store.read { try $0.repository(app) } != nil)
            try Self.setProjectionLayout(Projector.version + 1, location, store)
            #expect { try store.read { try $0.repository(app) } } throws: {
                ($0 as? StoreError)?.code == .migration && "\($0)".contains("layout \(Projector.version + 1)")
            }
            #expect { try store.read { try $0.checkpoint() } } throws: { ($0 as? StoreError)?.code == .migration }
            #expect(try store.read { try $0.events(after: 0) }.count == 1, "the log is still read: a feed or an audit has nothing to misread")
            try Self.setProjectionLayout(Projector.version, location, store)
            #expect(try store.read { try $0.repository(app) } != nil, "read again once the layout is this binary's")
        }
    }

    /// Writes `version` as the projections' layout, as a binary of that layout rebuilding them would.
    static func setProjectionLayout(_ version: UInt32, _ location: TestStoreLocation, _ store: any EventStore) throws {
        switch location.backend {
        case .lmdb:
            let projections = try #require(store as? Store).projections
            try projections.environment.write { txn in
                var checkpoint = try ProjectionCheckpoint.read(txn, projections.schema)
                checkpoint.version = version
                try checkpoint.write(txn, projections.schema)
            }
        case .postgres:
            let connection = try PostgresConnection(url: try #require(location.database).url)
            try connection.query("UPDATE projection_state SET value = $1 WHERE name = 'version'", [.int64(Int64(version))])
        }
    }

    /// A command whose blobs were claimed longer ago than the lease is refused as it would commit,
    /// writing nothing (a collection may have removed them meanwhile: the claim is a fence); one
    /// claimed within the lease, and a retry answered from the window, are taken.
    @Test(arguments: StoreBackend.allCases)
    func aCommandWhoseBlobClaimOutlivedTheLease_isRefusedAndWritesNothing(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            let create = Command.createRepository(try CreateRepository(repositoryName: "team/app"))
            let retried = RequestMetadata(requestId: "r-1", source: "test", principal: "AKIA1", invocationId: "inv-1", requestDigest: "d-1")
            _ = try await store.execute(create, metadata: retried, claimedBlobsAt: .now)
            let late = ContinuousClock.now - BlobClaims.lease - .seconds(1)
            #expect(try await store.execute(create, metadata: retried, claimedBlobsAt: late).events.count == 1, "a retry names nothing new")
            let other = Command.createRepository(try CreateRepository(repositoryName: "team/other"))
            let error = await #expect(throws: StoreError.self) { try await store.execute(other, metadata: testMetadata(), claimedBlobsAt: late) }
            #expect(error?.code == .overloaded)
            #expect(try store.read { try $0.lastPosition() } == 1)
            _ = try await store.execute(other, metadata: testMetadata(), claimedBlobsAt: .now - BlobClaims.lease + .seconds(5))
            #expect(try store.read { try $0.lastPosition() } == 2)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aRefusedCommand_writesNothing(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let error = await #expect(throws: CommandError.self) {
                try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            }
            #expect(error?.code == .repositoryAlreadyExists)
            #expect(try store.read { try $0.lastPosition() } == 1)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aRetry_isAnsweredWithTheOriginalResult_andAnotherCallsId_isRefused(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let call = RequestMetadata(requestId: "r-1", source: "test", principal: "AKIA1", invocationId: "inv-1", requestDigest: "d-1")
            let first = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call)
            let retry = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: call)
            #expect(retry.uploadId == first.uploadId)
            #expect(try store.read { try $0.lastPosition() } == 2, "the retry wrote nothing")
            let other = RequestMetadata(requestId: "r-2", source: "test", principal: "AKIA1", invocationId: "inv-1", requestDigest: "d-2")
            let error = await #expect(throws: CommandError.self) {
                try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: other)
            }
            #expect(error?.code == .idempotentParameterMismatch)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func manyConcurrentCallers_getDensePositions_andEveryAnsweredUploadOnce(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<200 {
                    group.addTask { try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            let events = try store.read { try $0.events() }
            #expect(events.map(\.position) == Array(1...201))
            #expect(Set(ids).count == 200)
            #expect(Set(events.compactMap { if case .uploadInitiated(let e) = $0.event { e.uploadId } else { nil } }) == Set(ids))
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func theNewestInitiations_pageBackward_throughTheWholeIndex(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            for name in ["team/a", "team/b"] {
                _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: name)), metadata: testMetadata())
            }
            for index in 0..<7 {
                _ = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: index % 3 == 0 ? "team/a" : "team/b"), metadata: testMetadata())
            }
            let ascending = try store.read { try $0.initiationMarks(since: nil, until: nil) }
            #expect(ascending.count == 7)
            var pages: [[InitiationMark]] = []
            var cursor: StoreCursor?
            repeat {
                pages.append(try store.read { try $0.newestInitiationMarks(before: cursor, limit: 3) })
                cursor = pages.last?.last?.cursor
            } while pages.last?.count == 3
            #expect(pages.map(\.count) == [3, 3, 1])
            let newestFirst = pages.flatMap { $0 }
            #expect(newestFirst.map(\.position) == ascending.reversed().map(\.position))
            #expect(newestFirst.map(\.repository) == ascending.reversed().map(\.repository))
            #expect(newestFirst.map(\.recordedAt) == newestFirst.map(\.recordedAt).sorted(by: >))
            for mark in newestFirst {
                let envelope = try store.read { try $0.indexedEvent(at: mark.position) }
                guard case .uploadInitiated(let initiated) = envelope.event else { Issue.record("not an initiation at \(mark.position)"); continue }
                #expect(initiated.repository.description == mark.repository && envelope.recordedAt == mark.recordedAt)
            }
            #expect(throws: StoreError.self) { try store.read { try $0.indexedEvent(at: 100) } }
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func aFollower_isWokenByTheNextCommit(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            async let woken = store.waitForEvents(after: 0, timeout: .seconds(60))
            try await Task.sleep(for: .milliseconds(100))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            // Measured from the answer: on a loaded machine a first commit can take seconds.
            let committed = ContinuousClock.now
            #expect(await woken)
            #expect(ContinuousClock.now - committed < .seconds(20), "woken by the commit, not the 60 s timeout")
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func keptCheckpoints_keepOneIdentity(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        defer { location.remove() }
        try await location.withStore { store in
            let signer = try NoteSigner.generate(name: "example.com/log")
            let identity = LogIdentity(verifier: signer.verifier, origin: "example.com/log")
            // `serve` signs the empty tree when it starts on a new store.
            let empty = Checkpoint(origin: "example.com/log", size: 0, rootHash: MerkleTree.emptyRoot).text
            let first = SignedCheckpoint(size: 0, note: try SignedNote.sign(empty, with: signer))
            #expect(try store.keep(first, signedAs: identity) == first)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let root = try store.merkleRoot()
            let body = Checkpoint(origin: "example.com/log", size: root.treeSize, rootHash: try #require(Hex.decode(root.rootHash))).text
            let checkpoint = SignedCheckpoint(size: root.treeSize, note: try SignedNote.sign(body, with: signer))
            #expect(try store.keep(checkpoint, signedAs: identity) == checkpoint)
            #expect(try store.read { try $0.latestSignedCheckpoint() } == checkpoint)
            let stranger = try NoteSigner.generate(name: "example.com/log")
            #expect(throws: StoreError.self) {
                try store.keep(checkpoint, signedAs: LogIdentity(verifier: stranger.verifier, origin: "example.com/log"))
            }
        }
    }
}

extension StoreConformanceTests {
    /// The workload in a store at `location`, its tree then signed as example.com/log's: its contents.
    static func signedWorkload(in location: TestStoreLocation) async throws -> Contents {
        try await location.withStore { store in
            try await Self.workload(store)
            let signer = try NoteSigner.generate(name: "example.com/log")
            let root = try store.merkleRoot()
            let body = Checkpoint(origin: "example.com/log", size: root.treeSize, rootHash: try #require(Hex.decode(root.rootHash))).text
            _ = try store.keep(SignedCheckpoint(size: root.treeSize, note: try SignedNote.sign(body, with: signer)), signedAs: LogIdentity(verifier: signer.verifier, origin: "example.com/log"))
            return try Self.contents(store)
        }
    }

    /// copy-store: LMDB into PostgreSQL and back keeps every byte, position, checkpoint and the
    /// root; each copy replays to the same digests.
    @Test func aCopy_toPostgresAndBack_keepsEveryByteAndTheRoot() async throws {
        let lmdb = try TestStoreLocation(.lmdb), postgres = try TestStoreLocation(.postgres), back = try TestStoreLocation(.lmdb)
        defer { [lmdb, postgres, back].forEach { $0.remove() } }
        let original = try await Self.signedWorkload(in: lmdb)
        for (from, to) in [(lmdb, postgres), (postgres, back)] {
            do {  // the stores released before verify opens the copy
                let source = try from.open(), destination = try to.open()
                let report = try StoreCopy.copy(from: source, to: destination)
                #expect(report.events == UInt64(original.records.count) && report.signedCheckpoints == 1 && report.merkleRoot == original.root)
                #expect(try Self.contents(destination) == original, "\(to.backend): the same bytes, root and projections")
                #expect(throws: StoreError.self, "a store that holds events takes no copy") { try StoreCopy.copy(from: source, to: destination) }
                await source.close()
                await destination.close()
            }
            let report2 = Self.verify(to)
            #expect(report2.passed && report2.kept?.count == 1, "\(String(describing: report2.failure))")
        }
    }

    /// A node that opened the empty database before a copy into it began wrote into the copy (its
    /// sweeper's expiries) and signed a checkpoint of its own that the copy's were kept beside,
    /// under two keys for good. The copy's check that the database is empty and its mark are one
    /// step under the append lock now, and while the mark stands no node writes or signs.
    @Test func aNodeOpenBeforeACopyBegan_writesAndSignsNothingUntilItIsWhole() async throws {
        let lmdb = try TestStoreLocation(.lmdb), postgres = try TestStoreLocation(.postgres)
        defer { [lmdb, postgres].forEach { $0.remove() } }
        let original = try await Self.signedWorkload(in: lmdb)
        let node = try postgres.open()
        let signer = try NoteSigner.generate(name: "example.com/node")
        let identity = LogIdentity(verifier: signer.verifier, origin: "example.com/node")
        let empty = try node.merkleRoot()
        let body = Checkpoint(origin: "example.com/node", size: 0, rootHash: try #require(Hex.decode(empty.rootHash))).text
        let ownCheckpoint = SignedCheckpoint(size: 0, note: try SignedNote.sign(body, with: signer))
        do {
            let source = try lmdb.open(), destination = try postgres.open()
            let importer = try #require(destination as? PostgresStore)
            try importer.beginImport()
            #expect(throws: StoreError.self, "a second copy into it is refused") { try importer.beginImport() }
            let refused = await #expect(throws: StoreError.self, "no write while the copy is unfinished") {
                try await node.execute(.createRepository(try CreateRepository(repositoryName: "node/early")), metadata: testMetadata())
            }
            #expect(refused?.message.contains("copy-store that did not finish, or is still under way") == true, "\(String(describing: refused))")
            #expect(throws: StoreError.self, "no checkpoint of its own either") { try node.keep(ownCheckpoint, signedAs: identity) }
            try importer.finishImport()  // the copy itself begins again
            let report = try StoreCopy.copy(from: source, to: destination)
            #expect(report.merkleRoot == original.root && report.signedCheckpoints == 1)
            #expect(try Self.contents(destination) == original, "the copy is the source's alone")
            await source.close()
            await destination.close()
        }
        // Whole: the node is one of the copied log's, and its key is not the log's.
        #expect(throws: StoreError.self) { try node.keep(ownCheckpoint, signedAs: identity) }
        _ = try await node.execute(.createRepository(try CreateRepository(repositoryName: "node/later")), metadata: testMetadata())
        await node.close()
    }
}
