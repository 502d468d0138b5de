import LMDBKit
import Testing
@testable import UploadCore
@testable import UploadStore
import UploadTesting

/// Readers of a data folder that never write it: what they refuse, and what a reader of the log
/// alone reads where the projections cannot be read.
struct ReadOnlyStoreTests {
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
        let logReader = try ReadOnlyStore(directory: dir.path, unreadableProjections: .readAsEmpty)
        #expect(try logReader.read { try $0.checkpoint() } == 0)
        #expect(try logReader.read { try $0.repository(app) } == nil, "nothing of the other layout is read")
        #expect(try logReader.initiations().map(\.position) == [2])
        #expect(try logReader.initiationPosition(of: uploadId) == 2)
        #expect(try logReader.initiations(repository: app, until: Timestamp(millisecondsSinceEpoch: 0)).isEmpty)
        #expect(try logReader.merkleRoot().treeSize == 2)
    }
}
