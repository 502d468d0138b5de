import AWSJSON
import ECRRequests
import Foundation
import LogHashing
import Logging
import NIOCore
import Testing
import UploadCore
@testable import UploadService
import UploadStore
import UploadTesting

/// A part's bytes are staged as they decode. When the base64 turns out malformed part way, what
/// was already written is cut back: staging holds only what the log records, nothing is recorded,
/// and the upload takes the part again.
/// A store with the repository `team/app` and one upload started in it, its blob store and its
/// service.
func withUpload(_ body: (any EventStore, BlobStore, UploadService, String) async throws -> Void) async throws {
    let dir = TemporaryDirectory()
    defer { dir.remove() }
    try await withTestStore(dir) { store in
        let blobs = try BlobStore(directory: dir.path)
        let service = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
        _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
        let uploadId = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
        try await body(store, blobs, service, uploadId)
    }
}

struct PartStagingTests {
    @Test func malformedBase64FoundPartWay_cutsStagingBack_recordsNothing_andTheUploadGoesOn() async throws {
        try await withUpload { store, blobs, service, uploadId in
            let bytes = [UInt8](repeating: 7, count: 200_000)
            let placement = try UploadLayerPart.Placement(
                repositoryName: "team/app", uploadId: uploadId, partFirstByte: 0, partLastByte: Int64(bytes.count - 1))
            var text = Array(Data(bytes).base64EncodedString().utf8)
            let good = text
            text[150_000] = UInt8(ascii: "*")
            let before = try store.read { try $0.lastPosition() }

            await #expect {
                _ = try await service.uploadLayerPart(placement, bytes: try Base64Part(text[...]), testMetadata())
            } throws: { $0 is SerializationError }
            let staged = (try? FileManager.default.attributesOfItem(atPath: blobs.stagingPath(uploadId))[.size] as? Int) ?? 0
            #expect(staged == 0, "the chunks decoded before the bad character were written, then cut back")
            #expect(try store.read { try $0.lastPosition() } == before, "nothing recorded")

            let accepted = try await service.uploadLayerPart(placement, bytes: try Base64Part(good[...]), testMetadata())
            #expect(accepted.lastByteReceived == UInt64(bytes.count - 1))
            #expect(try store.read { try $0.session(uploadId) }?.bytesReceived == UInt64(bytes.count))
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: blobs.stagingPath(uploadId)))) == bytes)
        }
    }
    /// Layer bytes stop short of the disk's reserve, even part way through a chunk of any size: it
    /// is refused (LimitExceededException), staging is cut back, nothing is recorded, and once
    /// there is room the same chunk is taken.
    @Test func aChunkThatWouldTakeTheDisksReserve_isRefusedPartWay_andWritesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            var blobs = try BlobStore(directory: dir.path)
            // A disk of 1 GiB reserved and 3 MiB more, less what staging holds: the real one's free
            // space moves as other tests write and delete.
            blobs.reservedDiskBytes = 1 << 30
            blobs.freeDiskBytes = { folder in
                let staged = (try? FileManager.default.contentsOfDirectory(atPath: folder + "/staging"))?.reduce(UInt64(0)) { total, name in
                    total + ((try? FileManager.default.attributesOfItem(atPath: folder + "/staging/" + name)[.size] as? UInt64) ?? 0)
                } ?? 0
                return (1 << 30) + (3 << 20) - min(staged, 3 << 20)
            }
            let full = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let started = try await full.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
            let upload = RepositoryUpload(started.repository, uploadId: started.uploadId)
            let mebibyte = [UInt8](repeating: 5, count: 1 << 20)
            let chunk = AsyncStream<ByteBuffer> { sender in
                for _ in 0..<64 { sender.yield(ByteBuffer(bytes: mebibyte)) }
                sender.finish()
            }
            let before = try store.read { try $0.lastPosition() }

            await #expect {
                _ = try await full.appendChunk(upload, range: nil, body: chunk, testMetadata())
            } throws: { ($0 as? CommandError)?.code == .limitExceeded }
            let staged = (try? FileManager.default.attributesOfItem(atPath: blobs.stagingPath(upload.uploadId))[.size] as? Int) ?? 0
            #expect(staged == 0, "what was written before the reserve was reached is cut back")
            #expect(try store.read { try $0.lastPosition() } == before, "nothing recorded")

            blobs.reservedDiskBytes = 0
            let roomy = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            let small = AsyncStream<ByteBuffer> { $0.yield(ByteBuffer(bytes: mebibyte)); $0.finish() }
            #expect(try await roomy.appendChunk(upload, range: nil, body: small, testMetadata()) == 1 << 20)
        }
    }
}

/// A completion refused for its digest leaves the upload open; a repeat of it is refused from what
/// the first one hashed, without reading (and copying) the whole layer again.
struct RefusedCompletionTests {
    @Test func aRepeatedCompletionWithAnotherDigest_isRefusedWithoutReadingTheLayerAgain() async throws {
        try await withUpload { store, blobs, service, uploadId in
            let layer = [UInt8](repeating: 1, count: 5_242_880) + [UInt8](repeating: 2, count: 100)
            var offset = 0
            for part in [layer[..<5_242_880], layer[5_242_880...]] {  // two parts: the layer is hashed at completion
                let placement = try UploadLayerPart.Placement(
                    repositoryName: "team/app", uploadId: uploadId, partFirstByte: Int64(offset), partLastByte: Int64(offset + part.count - 1))
                _ = try await service.uploadLayerPart(placement, bytes: try Base64Part(Array(Data(part).base64EncodedString().utf8)[...]), testMetadata())
                offset += part.count
            }
            func complete(_ digest: String) async throws -> String {
                try await service.completeLayerUpload(
                    try CompleteLayerUpload(repositoryName: "team/app", uploadId: uploadId, layerDigests: [digest]), testMetadata()).layerDigest
            }
            let wrong = Hex.sha256Digest(Array("another layer".utf8)), right = Hex.sha256Digest(layer)
            await #expect { _ = try await complete(wrong) } throws: { ($0 as? CommandError)?.code == .invalidLayer }
            // Were the layer read again, its staging, emptied here, would fail the repeat otherwise.
            let staging = blobs.stagingPath(uploadId)
            try Data().write(to: URL(fileURLWithPath: staging))
            await #expect { _ = try await complete(wrong) } throws: { ($0 as? CommandError)?.code == .invalidLayer }
            try Data(layer).write(to: URL(fileURLWithPath: staging))
            #expect(try await complete(right) == right, "the digest it names is still hashed, and taken")
            #expect(try store.read { try $0.session(uploadId) }?.state == .completed)
        }
    }

    /// A byte added and a wrong digest named again hashes the whole layer again: for uploads
    /// refused before, one such hash at a time in the process, the rest answered "try again"
    /// (ThrottlingException, TOOMANYREQUESTS), so that no client keeps the pool's threads.
    @Test func hashingARefusedUploadAgain_isOneAtATime() async throws {
        try await withUpload { store, _, _, uploadId in
            let refused = RefusedStagedDigests()
            let session = try #require(try store.read { try $0.session(uploadId) })
            #expect(!refused.hasRefused(uploadId))
            refused.remember("sha256:" + String(repeating: "0", count: 64), for: .init(session, .sha256))
            #expect(refused.hasRefused(uploadId) && !refused.hasRefused("another"))
            let (entered, enteredGate) = AsyncStream<Void>.makeStream()
            let (release, releaseGate) = AsyncStream<Void>.makeStream()
            async let first: Int = refused.hashingAgain {
                enteredGate.yield()
                for await _ in release { break }
                return 1
            }
            for await _ in entered { break }
            await #expect { _ = try await refused.hashingAgain { 2 } } throws: { ($0 as? StoreError)?.code == .overloaded }
            releaseGate.yield()
            #expect(try await first == 1)
            #expect(try await refused.hashingAgain { 3 } == 3, "free again")
        }
    }
}

/// A completion's whole-layer work (hashing and copying the layer) runs on threads of its own:
/// on NIO's shared pool, two large completions held every chunk's write and blob download behind
/// them for seconds. While those threads are busy, another upload's part still stages, and the
/// completion waits its turn.
struct BulkFileWorkTests {
    @Test(.timeLimit(.minutes(1)))
    func whileWholeLayerWorkIsBusy_partsStillStage_andTheCompletionWaitsItsTurn() async throws {
        try await withUpload { store, blobs, service, uploadId in
            let layer = [UInt8](repeating: 3, count: 5_242_880) + [UInt8](repeating: 4, count: 100)
            func stage(_ bytes: ArraySlice<UInt8>, at offset: Int, of upload: String) async throws {
                let placement = try UploadLayerPart.Placement(
                    repositoryName: "team/app", uploadId: upload, partFirstByte: Int64(offset), partLastByte: Int64(offset + bytes.count - 1))
                _ = try await service.uploadLayerPart(placement, bytes: Array(bytes), testMetadata())
            }
            try await stage(layer[..<5_242_880], at: 0, of: uploadId)  // two parts: the layer is hashed and copied at completion
            try await stage(layer[5_242_880...], at: 5_242_880, of: uploadId)

            let entered = Locked(0), release = DispatchSemaphore(value: 0)
            let occupiers = (0..<2).map { _ in
                Task { try await UploadService.bulk { entered.withLock { $0 += 1 }; release.wait() } }
            }
            while entered.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(5)) }
            let completed = Locked<String?>(nil)
            let completion = Task {
                let digest = try await service.completeLayerUpload(
                    try CompleteLayerUpload(repositoryName: "team/app", uploadId: uploadId, layerDigests: [Hex.sha256Digest(layer)]), testMetadata()).layerDigest
                completed.withLock { $0 = digest }
            }

            let other = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            try await stage(layer[..<1000], at: 0, of: other)
            #expect(try store.read { try $0.session(other) }?.bytesReceived == 1000, "a part stages while whole-layer work is busy")
            try await Task.sleep(for: .milliseconds(200))
            #expect(completed.withLock { $0 } == nil, "the completion waits for a whole-layer thread")

            release.signal()
            release.signal()
            for occupier in occupiers { try await occupier.value }
            try await completion.value
            #expect(completed.withLock { $0 } == Hex.sha256Digest(layer))
        }
    }
}
