import Foundation
import Logging
import Testing
import UploadAPI
@testable import UploadCore
@testable import UploadStore
import UploadService
import UploadTesting

struct ExpiryTests {
    /// Expiry is decided when the sweeper runs, by the injected clock, and recorded as events;
    /// replay only reads them. The staged bytes go after the events commit.
    /// A store on `clock` with the repository `team/app`, its blob store and its service; the
    /// log verified afterwards.
    func withSweptStore(_ body: (Store, BlobStore, UploadService, TestClock) async throws -> Void) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let clock = TestClock()
        try await withTestStore(dir, configure: { $0.clock = clock }) { store in
            let blobs = try BlobStore(directory: dir.path)
            let service = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            try await body(store, blobs, service, clock)
        }
        #expect(Replayer.verify(directory: dir.path).passed)
    }

    @Test func sweeper_expiresOnlyIdleUploads_recordsUploadExpired_andDeletesTheirStaging() async throws {
        try await withSweptStore { store, blobs, service, clock in
            let old = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            try blobs.writePart(uploadId: old, offset: 0, bytes: [1, 2, 3])
            clock.advance(milliseconds: 23 * 3_600_000)
            let fresh = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId

            #expect(try await service.expireIdleUploads(idleMilliseconds: 24 * 3_600_000).isEmpty, "nothing is idle for 24 h yet")
            clock.advance(milliseconds: 2 * 3_600_000)
            #expect(try await service.expireIdleUploads(idleMilliseconds: 24 * 3_600_000) == [old])
            #expect(try store.read { try $0.session(old) }?.state == .expired)
            #expect(try store.read { try $0.session(fresh) }?.state == .active)
            #expect(!FileManager.default.fileExists(atPath: blobs.stagingPath(old)))
            let last = try #require(try store.read { try $0.events() }.last)
            #expect(last.event.type == .uploadExpired && last.metadata.source == "sweeper")
            #expect(try store.read { try $0.repository(RepositoryRef(registryId: testRegistryId, repositoryName: "team/app")) }?.activeSessions == 1)
        }
    }

    /// A chunk streaming into an upload holds its staging lock, here or on another node: the
    /// upload is not idle, however long ago the log last heard of it, and is spared until the lock goes.
    @Test func sweeper_sparesAnUploadAChunkIsStreamingInto() async throws {
        try await withSweptStore { store, blobs, service, clock in
            let streaming = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            let abandoned = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            clock.advance(milliseconds: 25 * 3_600_000)
            let chunk = try #require(try blobs.tryLockStaging(streaming), "the chunk's writer holds the upload's lock")
            try blobs.writePart(uploadId: streaming, offset: 0, bytes: [1, 2, 3])  // its first bytes, not yet recorded
            #expect(try await service.expireIdleUploads(idleMilliseconds: 24 * 3_600_000) == [abandoned])
            #expect(try store.read { try $0.session(streaming) }?.state == .active)
            chunk.release()
            #expect(try await service.expireIdleUploads(idleMilliseconds: 24 * 3_600_000) == [streaming])
        }
    }
}
