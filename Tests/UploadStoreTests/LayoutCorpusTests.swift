import Foundation
import LMDBKit
import Testing
import UploadCore
import UploadMigrations
@testable import UploadStore
import UploadTesting

/// The golden corpus: one small store for every layout the product has had (Tests/Fixtures/stores,
/// each written by the binary of its layout and never regenerated; the README there says how).
/// Each is migrated, as a copy, by today's code and must give the replay digests and the Merkle
/// root its `expected.json` records.
struct LayoutCorpusTests {
    /// What a fixture's `expected.json` records.
    struct Expected: Decodable {
        let madeBy: String
        let migrations: [String]
        let projectionLayout: UInt32
        let events: UInt64
        let rebuildDigest: String
        let liveDigest: String
        let merkleRoot: String
        let treeSize: UInt64
        /// The signed checkpoints the writing binary kept (since migration 0011).
        let signedCheckpoints: Int?
    }

    static let folders: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: LayoutFixtureTests.fixtures.path)) ?? []
        return names.filter { $0.hasPrefix("layout-") }.sorted()
    }()

    static func expected(_ folder: String) throws -> Expected {
        let url = LayoutFixtureTests.fixtures.appendingPathComponent("\(folder)/expected.json")
        return try JSONDecoder().decode(Expected.self, from: Data(contentsOf: url))
    }

    @Test func theCorpusHoldsEveryLayoutUpToTheCurrentOne() throws {
        let layouts = try Self.folders.map { try Self.expected($0) }
        let current = layouts.filter { $0.migrations == UploadMigrations.migrator.identifiers && $0.projectionLayout == Projector.version }
        #expect(!current.isEmpty, "the current layout (\(UploadMigrations.latest), projections \(Projector.version)) needs a store in Tests/Fixtures/stores")
        // Every count of migrations a release shipped, from the first store with a projection.
        let counts = Set(layouts.map(\.migrations.count))
        #expect(counts.isSuperset(of: Set(2...UploadMigrations.migrator.identifiers.count)), "missing: \(Set(2...UploadMigrations.migrator.identifiers.count).subtracting(counts).sorted())")
        #expect(Set(layouts.map(\.projectionLayout)).isSuperset(of: Set(1...Projector.version)))
        for layout in layouts {
            #expect(Array(UploadMigrations.migrator.identifiers.prefix(layout.migrations.count)) == layout.migrations, "a shipped migration was renamed or reordered")
        }
    }

    @Test(arguments: folders)
    func aCopyMigratesAndReplaysToTheRecordedDigestsAndRoot(folder: String) async throws {
        let expected = try Self.expected(folder)
        let dir = TemporaryDirectory("corpus")
        defer { dir.remove() }
        let source = LayoutFixtureTests.fixtures.appendingPathComponent(folder).path
        try FileManager.default.copyItem(atPath: source + "/data.mdb", toPath: dir.path + "/data.mdb")
        if FileManager.default.fileExists(atPath: source + "/projections/data.mdb") {
            try FileManager.default.createDirectory(atPath: dir.path + "/projections", withIntermediateDirectories: false)
            try FileManager.default.copyItem(atPath: source + "/projections/data.mdb", toPath: dir.path + "/projections/data.mdb")
        }
        #expect(try Store.appliedMigrations(directory: dir.path) == expected.migrations, "the fixture is of the layout it claims")
        try await withTestStore(dir) { store in
            #expect(try store.appliedMigrations() == UploadMigrations.migrator.identifiers)
            let (size, root) = try store.merkleRoot()
            #expect(size == expected.treeSize && root == expected.merkleRoot)
            if let kept = expected.signedCheckpoints {
                #expect(try store.read { try $0.signedCheckpoints() }.count == kept, "no signed checkpoint is lost in migrating")
            }
        }
        let report = Replayer.verify(directory: dir.path)
        #expect(report.passed, "\(report.failure.map(String.init(describing:)) ?? "")")
        #expect(report.events == expected.events)
        #expect(report.rebuildDigests.allSatisfy { $0 == expected.rebuildDigest } && !report.rebuildDigests.isEmpty)
        #expect(report.liveDigest == expected.liveDigest)
        #expect(report.merkleRoot == expected.merkleRoot)
    }

    /// The corpus's stores of every event type, copied into PostgreSQL, replay there to the
    /// digests and the root each records: both backends read every event type alike.
    @Test(arguments: LayoutFixtureTests.everyEventStores)
    func theStoreOfEveryEventType_copiedToPostgres_replaysToItsRecordedDigestsAndRoot(folder: String) async throws {
        let expected = try Self.expected(folder)
        let source = try LayoutFixtureTests.copy(folder), postgres = try TestStoreLocation(.postgres)
        defer { source.remove(); postgres.remove() }
        try await withTestStore(source) { lmdb in
            let destination = try postgres.open()
            let report = try StoreCopy.copy(from: lmdb, to: destination)
            await destination.close()
            #expect(report.events == expected.events && report.merkleRoot == expected.merkleRoot)
            #expect(report.signedCheckpoints == expected.signedCheckpoints)
        }
        let replayed = Replayer.verify(databaseURL: postgres.database!.url)
        #expect(replayed.passed, "\(replayed.failure.map(String.init(describing:)) ?? "")")
        #expect(replayed.rebuildDigests.allSatisfy { $0 == expected.rebuildDigest } && !replayed.rebuildDigests.isEmpty)
        #expect(replayed.liveDigest == expected.liveDigest && replayed.merkleRoot == expected.merkleRoot)
    }
}
