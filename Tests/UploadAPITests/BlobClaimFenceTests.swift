import AWSJSON
import Crypto
import ECRRequests
import Foundation
import Logging
import NIOCore
import Testing
import UploadCore
@testable import UploadService
import UploadStore
import UploadTesting

/// Every path that claims a blob and then records an event naming it hands the writer when it
/// claimed (``UploadStore/BlobClaims``): with the lease cut to nothing, each is refused as
/// overloaded and records nothing; a path that forgot would commit, naming a blob a collection
/// may have removed since its claim.
struct BlobClaimFenceTests {
    private static func digest(_ bytes: [UInt8]) -> String { "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    private static func chunk(_ bytes: [UInt8]) -> AsyncStream<ByteBuffer> {
        AsyncStream { $0.yield(ByteBuffer(bytes: bytes)); $0.finish() }
    }

    /// A service on a store whose lease has always passed, with `team/app` created.
    private func withLeaseGone(_ body: @Sendable (_ service: UploadService, _ store: Store, _ blobs: BlobStore) async throws -> Void) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.blobClaimLease = .zero }) { store in
            let blobs = try BlobStore(directory: dir.path)
            let service = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            try await body(service, store, blobs)
        }
    }

    /// `call` is refused as overloaded, and no event it would have recorded naming a blob is in the log.
    private static func fenced(_ store: Store, _ what: Comment, _ call: () async throws -> Void) async throws {
        let error = await #expect(throws: StoreError.self, what) { try await call() }
        #expect(error?.code == .overloaded, what)
        let named = try store.read { try $0.events(after: 0) }.filter {
            [.layerUploadCompleted, .layerMounted, .repositoryCatalogDataPut].contains($0.event.type)
        }
        #expect(named.isEmpty, what)
    }

    private static func newUpload(_ service: UploadService) async throws -> RepositoryUpload {
        let started = try await service.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
        return RepositoryUpload(started.repository, uploadId: started.uploadId)
    }

    @Test func everyPathThatClaimsABlob_isFencedByTheLease() async throws {
        try await withLeaseGone { service, store, blobs in
            let layer = [UInt8](repeating: 7, count: 50_000)
            // The AWS API's completion of one part: its staging file linked as the blob.
            let single = try await Self.newUpload(service)
            let placement = try UploadLayerPart.Placement(repositoryName: "team/app", uploadId: single.uploadId, partFirstByte: 0, partLastByte: Int64(layer.count - 1))
            _ = try await service.uploadLayerPart(placement, bytes: try Base64Part(Array(Data(layer).base64EncodedString().utf8)[...]), testMetadata())
            try await Self.fenced(store, "a completion linking its one part") {
                _ = try await service.completeLayerUpload(
                    try CompleteLayerUpload(repositoryName: "team/app", uploadId: single.uploadId, layerDigests: [Self.digest(layer)]), testMetadata())
            }
            // Two chunks, then an empty final PUT: the layer copied, synced and kept.
            let chunked = try await Self.newUpload(service)
            _ = try await service.appendChunk(chunked, range: nil, body: Self.chunk(Array(layer[..<20_000])), testMetadata())
            _ = try await service.appendChunk(chunked, range: nil, body: Self.chunk(Array(layer[20_000...])), testMetadata())
            try await Self.fenced(store, "a completion copying its parts") {
                _ = try await service.finishUpload(chunked, range: nil, body: Self.chunk([]), digest: Self.digest(layer), testMetadata())
            }
            // The registry's final PUT holding the whole layer, and its monolithic POST.
            let whole = try await Self.newUpload(service)
            let other = [UInt8](repeating: 8, count: 30_000)
            try await Self.fenced(store, "a final PUT of the whole layer") {
                _ = try await service.finishUpload(whole, range: nil, body: Self.chunk(other), digest: Self.digest(other), testMetadata())
            }
            let app = whole.repository
            try await Self.fenced(store, "a monolithic push") {
                _ = try await service.pushWholeLayer(
                    into: app, range: nil, declaredLength: nil, body: Self.chunk(other), digest: Self.digest(other),
                    initiate: { try await Self.newUpload(service).uploadId }, testMetadata())
            }
            // A mount of a blob the folder holds.
            try blobs.commitBlob(try blobs.writeTemporary(layer), digest: Self.digest(layer))
            try await Self.fenced(store, "a mount") {
                try await service.mountLayer(Self.digest(layer), into: app, from: nil, testMetadata())
            }
            // A logo, kept anew and kept before.
            let body = #"{"repositoryName": "team/app", "catalogData": {"logoImageBlob": "\#(Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3]).base64EncodedString())"}}"#
            let request = try ECRRequests.putRepositoryCatalogData(try AWSJSONBody(Array(body.utf8)))
            for attempt in ["a logo kept anew", "a logo kept before"] {
                try await Self.fenced(store, Comment(rawValue: attempt)) {
                    _ = try await service.putRepositoryCatalogData(request.command, logo: request.logo, testMetadata())
                }
            }
        }
    }
}
