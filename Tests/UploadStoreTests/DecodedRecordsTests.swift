import LMDBKit
import Testing
import UploadCore
@testable import UploadStore
import UploadTesting

/// The writer's tables keep what a transaction has read, decoded, and keep it in step with what
/// the transaction writes; a new transaction starts with nothing kept.
struct DecodedRecordsTests {
    @Test func readsAfterWritesAndDeletes_seeTheWrites_andANewTransactionReadsTheMap() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let ref = RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")
        try await withTestStore(dir) { store in
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let written: RepositorySummary? = try store.projections.environment.write { txn in
                var tables = LMDBTables(txn: txn, schema: store.projections.schema, caching: true)
                var summary = try #require(try tables.repository(ref))
                #expect(try tables.session("no-such-upload") == nil)  // absent, and kept as absent
                summary.uploadsInitiated = 41
                try tables.put(summary)
                #expect(try tables.repository(ref)?.uploadsInitiated == 41, "a read after a write sees the write")
                try tables.removeRepository(ref)
                #expect(try tables.repository(ref) == nil, "a read after a delete sees the delete")
                summary.uploadsInitiated = 42
                try tables.put(summary)
                return try tables.repository(ref)
            }
            #expect(written?.uploadsInitiated == 42)
            // What the map holds, read afresh by another transaction, is what was written last.
            #expect(try store.read { try $0.repository(ref) }?.uploadsInitiated == 42)
        }
    }
}
