import Crypto
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing
import UploadCore
import UploadService
import UploadStore
import UploadTesting

/// Two nodes (two ``UploadService``s, each with locks of its own) on one store and one staging
/// folder, as PostgreSQL nodes on a shared filesystem, or two processes on one LMDB folder, run
/// them: one upload's parts take turns across them, so the bytes staged are the ones recorded.
struct SharedStagingTests {
    private static func digest(_ bytes: some Sequence<UInt8>) -> String {
        "sha256:" + SHA256.hash(data: Array(bytes)).map { String(format: "%02x", $0) }.joined()
    }

    private static func chunk(_ bytes: [UInt8]) -> AsyncStream<ByteBuffer> {
        AsyncStream { $0.yield(ByteBuffer(bytes: bytes)); $0.finish() }
    }

    private static func stagedBytes(_ blobs: BlobStore, _ uploadId: String) -> UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: blobs.stagingPath(uploadId))[.size] as? UInt64) ?? 0
    }

    /// Node A streams a chunk in; node B is sent a chunk for the same offset meanwhile. B waits for
    /// A's part to be recorded, then is refused (the upload has moved on). Without the shared lock B
    /// staged its bytes over A's, A's remaining bytes then landed over B's, B's digest was
    /// recorded, and the completion linked a file of mixed bytes as B's layer.
    @Test func aChunkSentToAnotherNode_waitsForTheOneStreamingIn_andTheLayerHoldsTheRecordedBytes() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let nodeA = UploadService(store: store, blobs: try BlobStore(directory: dir.path), logger: Logger(label: "a"))
            let nodeB = UploadService(store: store, blobs: BlobStore(existing: dir.path), logger: Logger(label: "b"))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let started = try await nodeA.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
            let upload = RepositoryUpload(started.repository, uploadId: started.uploadId)
            let size = 2 * UploadService.chunkBufferBytes
            let bytesA = [UInt8](repeating: 0xA, count: size), bytesB = [UInt8](repeating: 0xB, count: size)

            let (streamA, senderA) = AsyncStream<ByteBuffer>.makeStream()
            senderA.yield(ByteBuffer(bytes: bytesA[..<UploadService.chunkBufferBytes]))
            let chunkA = Task { try await nodeA.appendChunk(upload, range: nil, body: streamA, testMetadata()) }
            let deadline = ContinuousClock.now + .seconds(30)
            while Self.stagedBytes(nodeA.blobs, upload.uploadId) < UInt64(UploadService.chunkBufferBytes) {
                try #require(ContinuousClock.now < deadline, "node A never staged its first bytes")
                try await Task.sleep(for: .milliseconds(5))
            }

            let bFinished = Atomic(false)
            let chunkB = Task {
                defer { bFinished.store(true, ordering: .sequentiallyConsistent) }
                return try await nodeB.appendChunk(upload, range: 0...UInt64(size - 1), body: Self.chunk(bytesB), testMetadata())
            }
            try await Task.sleep(for: .milliseconds(300))
            let bFinishedEarly = bFinished.load(ordering: .sequentiallyConsistent)
            #expect(!bFinishedEarly, "B waits while A holds the upload")

            senderA.yield(ByteBuffer(bytes: bytesA[UploadService.chunkBufferBytes...]))
            senderA.finish()
            #expect(try await chunkA.value == UInt64(size))
            await #expect { _ = try await chunkB.value } throws: { ($0 as? ChunkOutOfRange)?.bytesReceived == UInt64(size) }

            let recorded = try #require(try store.read { try $0.session(upload.uploadId) }?.lastPart?.digest)
            #expect(recorded == Self.digest(bytesA))
            let completed = try await nodeB.finishUpload(upload, range: nil, body: Self.chunk([]), digest: recorded, testMetadata())
            let blob = try Data(contentsOf: URL(fileURLWithPath: nodeB.blobs.blobPath(completed.layerDigest)))
            #expect(Self.digest(blob) == completed.layerDigest, "the layer's bytes are the ones its digest names")
        }
    }

    /// The lock is the folder's, not the process's: another handle on the folder (another node)
    /// cannot take an upload's lock while it is held, takes another upload's, and takes it once
    /// it is given up.
    @Test func theStagingLock_isHeldAgainstEveryOtherHandleOnTheFolder() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let here = try BlobStore(directory: dir.path), there = BlobStore(existing: dir.path)
        let held = try #require(try here.tryLockStaging("upload-1"))
        #expect(try there.tryLockStaging("upload-1") == nil)
        #expect(try there.tryLockStaging("upload-2") != nil, "another upload is not held")
        held.release()
        #expect(try there.tryLockStaging("upload-1") != nil)
    }

    /// A node's start must not cut a staging file another node is writing: it is judged only
    /// under its lock, against the log as it is then.
    @Test func reconcile_leavesAStagingFileAnotherNodeHolds_andCutsItOnceReleased() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let blobs = try BlobStore(directory: dir.path), otherNode = BlobStore(existing: dir.path)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let id = try await store.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), metadata: testMetadata()).uploadId
            try blobs.writePart(uploadId: id, offset: 0, bytes: Array("staged, not yet recorded".utf8))

            let held = try #require(try otherNode.tryLockStaging(id))
            let whileHeld = try blobs.reconcile(with: store)
            #expect(whileHeld.truncatedStaging.isEmpty && whileHeld.removedStaging.isEmpty && whileHeld.missing.isEmpty)
            #expect(Self.stagedBytes(blobs, id) == 24, "the other node's part is left as it is")
            held.release()
            #expect(try blobs.reconcile(with: store).truncatedStaging == [id])
            #expect(Self.stagedBytes(blobs, id) == 0)
        }
    }
    /// A staging file linked as a blob whose completion never committed (a kill before it), on a
    /// disk already at its reserve: the start cuts it back to the nothing the log records by
    /// removing its name (copying nothing needs no room), and the blob stays whole. It used to ask
    /// for room to copy nothing, and the refusal stopped `serve` from starting at all.
    @Test func reconcile_onAFullDisk_removesALinkedStagingFileTheLogRecordsNothingOf_andKeepsTheBlob() async throws {
        try await withUpload { store, blobs, _, id in
            var blobs = blobs
            let layer = Array("a whole layer, never recorded".utf8)
            try blobs.writePart(uploadId: id, offset: 0, bytes: layer)
            #expect(try blobs.adoptStaged(blobs.stagingPath(id), digest: Self.digest(layer), size: UInt64(layer.count)))

            blobs.reservedDiskBytes = 1 << 30
            blobs.freeDiskBytes = { _ in 1 << 20 }
            let result = try blobs.reconcile(with: store)
            #expect(result.truncatedStaging == [id] && result.failed.isEmpty, "\(result)")
            #expect(!FileManager.default.fileExists(atPath: blobs.stagingPath(id)))
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: blobs.blobPath(Self.digest(layer))))) == layer)
        }
    }

    /// One staging file that cannot be put right (here: cut back to bytes it must copy, on a full
    /// disk) is reported, and the others are still reconciled.
    @Test func reconcile_reportsAFileItCannotPutRight_andGoesOnWithTheOthers() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            var blobs = try BlobStore(directory: dir.path)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let service = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            var ids: [String] = []
            for _ in 0..<2 {
                let started = try await service.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
                let upload = RepositoryUpload(started.repository, uploadId: started.uploadId)
                _ = try await service.appendChunk(upload, range: nil, body: Self.chunk(Array("recorded".utf8)), testMetadata())
                ids.append(started.uploadId)
            }
            let linked = ids.sorted()[0], plain = ids.sorted()[1]  // the failing one first, in the order reconcile visits
            let whole = Array("recorded, and more never recorded".utf8)
            try blobs.writePart(uploadId: linked, offset: 0, bytes: whole)
            #expect(try blobs.adoptStaged(blobs.stagingPath(linked), digest: Self.digest(whole), size: UInt64(whole.count)))
            try blobs.writePart(uploadId: plain, offset: 0, bytes: whole)

            blobs.reservedDiskBytes = 1 << 30
            blobs.freeDiskBytes = { _ in 1 << 20 }
            let result = try blobs.reconcile(with: store)
            #expect(result.failed.count == 1 && result.failed[0].contains(linked), "\(result)")
            #expect(result.truncatedStaging == [plain])
            #expect(Self.stagedBytes(blobs, plain) == 8 && Self.stagedBytes(blobs, linked) == UInt64(whole.count))
        }
    }

    /// A blob copy in progress (`.tmp-*`) may be another process's, which no lock covers: a
    /// start removes it only once it is an hour old, whether the store is LMDB or PostgreSQL.
    @Test func reconcile_removesABlobCopyOnlyOnceNoProcessCanStillBeMakingIt() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let blobs = try BlobStore(directory: dir.path)
            let (fresh, stale) = try (blobs.writeTemporary([1]), blobs.writeTemporary([2]))
            var hoursAgo = [timeval(tv_sec: time(nil) - 7200, tv_usec: 0), timeval(tv_sec: time(nil) - 7200, tv_usec: 0)]
            #expect(utimes(stale, &hoursAgo) == 0)
            _ = try blobs.reconcile(with: store)
            #expect(FileManager.default.fileExists(atPath: fresh), "another process may still be making it")
            #expect(!FileManager.default.fileExists(atPath: stale))
        }
    }
}
