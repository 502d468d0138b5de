import Foundation
import LMDBKit
import Testing
import UploadCore
import UploadMigrations
@testable import UploadStore
import UploadTesting

/// Stores written by earlier layouts (Tests/Fixtures/stores, committed, never regenerated) open,
/// migrate, verify, and still answer their retries with the current binary.
struct LayoutFixtureTests {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/stores")
    static let registry = "000000000000"

    /// A scratch copy of the fixture, so that no test writes to the committed file.
    static func copy(_ layout: String) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory("layout")
        try FileManager.default.copyItem(
            atPath: fixtures.appendingPathComponent("\(layout)/data.mdb").path, toPath: dir.path + "/data.mdb")
        return dir
    }

    /// A second attempt of the call recorded at `position`: its command, with the recorded
    /// principal, invocation id and request digest under a new request id, as an SDK retry sends it.
    static func retry(of recorded: EventEnvelope) -> RequestMetadata {
        RequestMetadata(
            requestId: UUID().uuidString, source: "http", principal: recorded.metadata.principal,
            invocationId: recorded.metadata.invocationId, requestDigest: recorded.metadata.requestDigest)
    }

    /// A store the binaries before a marking migration last wrote holds nothing it marks: what only
    /// reads (ReadOnlyStore, upload-replay) reads it as it is, unmigrated; a writer migrates it.
    @Test func aStoreWithoutItsMarkingMigrations_isReadAsItIs_andMigratedByAWriter() async throws {
        let dir = TemporaryDirectory("layout")
        defer { dir.remove() }
        let store = dir.path
        for file in ["data.mdb", "projections"] {
            try FileManager.default.copyItem(atPath: Self.fixtures.appendingPathComponent("layout-0011-p12-every-event/\(file)").path, toPath: store + "/" + file)
        }
        let pending = Set(UploadMigrations.migrator.identifiers).subtracting(try Store.appliedMigrations(directory: store))
        #expect(pending == UploadMigrations.markingMigrations && !pending.isEmpty)
        #expect(try ReadOnlyStore(directory: store).read { try $0.lastPosition() } == 40)
        let report = Replayer.verify(directory: store)
        #expect(report.failure == nil && report.events == 40, "\(String(describing: report.failure))")
        #expect(try Store.appliedMigrations(directory: store).count == UploadMigrations.migrator.identifiers.count - pending.count, "read, not migrated")
        try await withTestStore(dir, configure: { $0.settings = DecisionSettings(defaultRegistryId: Self.registry) }) { writer in
            let applied = try writer.appliedMigrations()
            #expect(applied == UploadMigrations.migrator.identifiers)
        }
    }

    /// Both fixtures hold the same calls (`make-store.py`), written by different layouts.
    @Test(arguments: ["layout-0006", "layout-0008", "layout-0009"])
    func layout_migrates_verifies_andAnswersItsRetries(layout: String) async throws {
        let dir = try Self.copy(layout)
        defer { dir.remove() }
        let clock = TestClock()
        try await withTestStore(dir, configure: {
            $0.settings = DecisionSettings(defaultRegistryId: Self.registry)
            $0.clock = clock
        }) { store in
            #expect(try store.appliedMigrations() == UploadMigrations.migrator.identifiers)
            for retired in [
                "invocations", "repository-uploads", "repository-initiations", "merkle-nodes", "sessions", "repositories",
                "active-uploads", "layers", "images", "image-tags", "initiations", "invocation-marks", "projection-state",
            ] {
                #expect(try store.environment.read { try $0.openDatabase(retired) } == nil, "retired by 0007…0010: \(retired)")
            }
            let log = try store.read { try $0.events(after: 0) }
            // The retries come a minute after the fixture was written: inside the retry window.
            clock.set(Timestamp(millisecondsSinceEpoch: log.last!.recordedAt.millisecondsSinceEpoch + 60_000))
            #expect(log.map(\.event.type) == [
                .repositoryCreated, .uploadInitiated, .layerPartUploaded, .layerUploadCompleted,
                .uploadInitiated, .layerPartUploaded, .layerUploadCompleted, .imagePushed,
                .uploadInitiated, .layerPartUploaded, .repositoryCreated, .uploadInitiated, .uploadAborted, .repositoryDeleted,
            ])
            let app = RepositoryRef(registryId: Self.registry, repositoryName: "fixture/app")
            let active = try store.read { try $0.activeUploads(in: app) }
            #expect(active.count == 1)
            #expect(try store.read { try $0.session(active[0]) }?.partCount == 1)
            #expect(try store.read { try $0.tag(app, "v1") } != nil)
            // The audit index, rebuilt by time alone, still answers per repository.
            #expect(try store.initiations(repository: app).map(\.position) == [2, 5, 9])
            let gone = RepositoryRef(registryId: Self.registry, repositoryName: "fixture/gone")
            #expect(try store.initiations(repository: gone).map(\.position) == [12])
            #expect(try store.initiations().map(\.position) == [2, 5, 9, 12])

            // One event per call, and a call of two events (DeleteRepository with force).
            let initiation = log[8]
            let again = try await store.execute(
                .initiateLayerUpload(try InitiateLayerUpload(repositoryName: "fixture/app")), metadata: Self.retry(of: initiation))
            #expect(again.isRetry && again.events == [initiation])
            let deletion = try await store.execute(
                .deleteRepository(try DeleteRepository(repositoryName: "fixture/gone", force: true)), metadata: Self.retry(of: log[12]))
            #expect(deletion.isRetry && deletion.events == Array(log[12...13]))
            #expect(try store.read { try $0.lastPosition() } == 14, "retries write nothing")

            // Past the window's time bound the same call is taken as new.
            clock.advance(milliseconds: RetryWindow.default.duration.milliseconds)
            let late = try await store.execute(
                .initiateLayerUpload(try InitiateLayerUpload(repositoryName: "fixture/app")), metadata: Self.retry(of: initiation))
            #expect(!late.isRetry && late.events.map(\.position) == [15])
        }
        let report = Replayer.verify(directory: dir.path)
        #expect(report.passed, "\(report.failure.map(String.init(describing:)) ?? "")")
        #expect(report.events == 15)
    }

    /// The corpus's stores that hold every event type the log had when each was made
    /// (`make-store.py`'s registry era on).
    static let everyEventStores = LayoutCorpusTests.folders.filter { $0.hasSuffix("-every-event") }

    static func log(of folder: String) async throws -> [EventEnvelope] {
        let dir = try copy(folder)
        defer { dir.remove() }
        return try await withTestStore(dir) { store in try store.read { try $0.events(after: 0) } }
    }

    /// Every event type is in some store of the corpus, so that a change that can no longer read
    /// one of them fails here. A new type fails this until a store holding it is added.
    @Test func theCorpusHoldsEveryEventType() async throws {
        var held = Set<EventType>()
        for folder in Self.everyEventStores { held.formUnion(try await Self.log(of: folder).map(\.event.type)) }
        let missing = Set(EventType.allCases).subtracting(held)
        #expect(missing.isEmpty, "a new event type needs a store of the corpus that holds it (Tests/Fixtures/stores/README.md): \(missing)")
    }

    /// A store of every event type (an expiry, registry pushes, a mount, a referrer, a deleted
    /// manifest, catalog data, resource tags, policies): its projections, rebuilt by this code,
    /// read back what the calls made.
    @Test(arguments: everyEventStores)
    func theStoreOfEveryEventType_readsBackWhatItsCallsMade(folder: String) async throws {
        let dir = try Self.copy(folder)
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.settings = DecisionSettings(defaultRegistryId: Self.registry) }) { store in
            let log = try store.read { try $0.events(after: 0) }
            #expect(log.filter { $0.metadata.source == "oci" }.count >= 10, "the registry's pushes, cancel, mount and manifests")
            let app = RepositoryRef(registryId: Self.registry, repositoryName: "fixture/app")
            let other = RepositoryRef(registryId: Self.registry, repositoryName: "fixture/other")
            try store.read { snapshot in
                let v1 = try #require(try snapshot.tag(app, "v1")).imageDigest
                #expect(try snapshot.referrers(of: v1, in: app, after: nil, limit: 10).count == 1, "the artifact whose subject is v1")
                #expect(try snapshot.tag(app, "v2") == nil, "untagged by BatchDeleteImage")
                #expect(try snapshot.tags(of: v1, in: app) == ["v1"], "v2 pushed on v1's image, then untagged")
                // The stores made since projection layout 10 hold a manifest list of v1's image.
                let multi = try snapshot.tag(app, "multi")?.imageDigest
                // Since layout 11's, a second list was pushed and deleted: it names nothing now.
                #expect(try snapshot.manifestLists(naming: v1, in: app) == (multi.map { [$0] } ?? []))
                #expect(try LayoutCorpusTests.expected(folder).projectionLayout < 10 || multi != nil)
                #expect(try snapshot.tag(other, "scratch") == nil && snapshot.imageDigests(in: other).isEmpty, "deleted by the registry's DELETE")
                let mounted = try #require(log.lazy.compactMap { $0.event.payload as? LayerMounted }.first)
                #expect(try snapshot.layer(other, mounted.layerDigest)?.layerSize == mounted.layerSize)
                let details = try #require(try snapshot.details(app))
                #expect(details.description == "The fixture's repository" && details.tagKeys == ["keep"] && details.policyText != nil)
                #expect(try snapshot.details(other)?.policyText == nil, "set, then deleted")
                #expect(try snapshot.registryCatalog(Self.registry)?.displayName == "fixture-registry")
                let expired = try #require(log.lazy.compactMap { $0.event.payload as? UploadExpired }.first)
                #expect(try snapshot.session(expired.uploadId)?.state == .expired)
                #expect(try snapshot.activeUploads(in: app).count == 1)
            }
        }
    }
}
