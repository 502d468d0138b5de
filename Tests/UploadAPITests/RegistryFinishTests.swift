import Crypto
import Foundation
import Logging
import NIOCore
import Testing
import UploadCore
@testable import UploadService
import UploadStore
import UploadTesting

/// A registry client's final chunk and its completion (`PUT …?digest=` with a body): when the chunk
/// is the whole layer, named by its digest, the part and the completion commit together, in one
/// transaction; in every other case they commit one after the other. The events are the same
/// either way.
struct RegistryFinishTests {
    private func withRegistryUpload(
        storage: (@Sendable (BlobStore) -> any BlobStorage)? = nil, longestUploadWait: Duration = UploadLocks.standardWait,
        _ body: @Sendable (_ service: UploadService, _ store: Store, _ blobs: BlobStore, _ upload: RepositoryUpload) async throws -> Void
    ) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { store in
            let blobs = try BlobStore(directory: dir.path)
            let service = UploadService(store: store, blobs: blobs, storage: storage?(blobs), logger: Logger(label: "test"), longestUploadWait: longestUploadWait)
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let started = try await service.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
            try await body(service, store, blobs, RepositoryUpload(started.repository, uploadId: started.uploadId))
        }
    }

    private static func chunk(_ bytes: [UInt8]) -> AsyncStream<ByteBuffer> {
        AsyncStream { $0.yield(ByteBuffer(bytes: bytes)); $0.finish() }
    }

    private static func digest(_ bytes: [UInt8]) -> String { "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    private static func recorded(_ store: Store, after position: UInt64) throws -> [String] {
        try store.read { try $0.events(after: position) }.map { "\(type(of: $0.event.payload))" }
    }

    @Test func theWholeLayerInOneChunk_commitsItsPartAndItsCompletionTogether() async throws {
        try await withRegistryUpload { service, store, blobs, upload in
            let bytes = [UInt8](repeating: 3, count: 70_000)
            let (before, transactions) = (try store.read { try $0.lastPosition() }, store.writerStatistics.transactions)
            let completed = try await service.finishUpload(upload, range: nil, body: Self.chunk(bytes), digest: Self.digest(bytes), testMetadata())
            #expect(completed.layerDigest == Self.digest(bytes))
            #expect(store.writerStatistics.transactions == transactions + 1, "one commit for the part and the completion")
            #expect(try Self.recorded(store, after: before) == ["LayerPartUploaded", "LayerUploadCompleted"])
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: blobs.blobPath(Self.digest(bytes))))) == bytes)
            #expect(!FileManager.default.fileExists(atPath: blobs.stagingPath(upload.uploadId)), "staging goes once the layer is recorded")
        }
    }

    /// A chunk past the registry's cap on chunks is refused before a byte of it is read, and the
    /// upload still completes with an empty final chunk.
    @Test func aChunkPastTheCap_isRefusedUnread_andTheUploadStillCompletes() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir, configure: { $0.settings.maximumRegistryChunks = 1 }) { store in
            let blobs = try BlobStore(directory: dir.path)
            let service = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            _ = try await store.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let started = try await service.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
            let upload = RepositoryUpload(started.repository, uploadId: started.uploadId), first: [UInt8] = [1, 2, 3]
            _ = try await service.appendChunk(upload, range: nil, body: Self.chunk(first), testMetadata())
            let refusal = await #expect(throws: CommandError.self) {
                try await service.appendChunk(upload, range: nil, declaredLength: 1, body: BodyNeverRead(), testMetadata())
            }
            #expect(refusal?.code == .invalidLayerPart)
            // Of no declared length (chunked), it is refused at its first byte, nothing of it staged.
            let unsaid = await #expect(throws: CommandError.self) { try await service.appendChunk(upload, range: nil, body: Self.chunk([4, 5, 6]), testMetadata()) }
            #expect(unsaid?.code == .invalidLayerPart)
            #expect(try FileManager.default.attributesOfItem(atPath: blobs.stagingPath(upload.uploadId))[.size] as? Int == first.count)
            let completed = try await service.finishUpload(upload, range: nil, body: Self.chunk([]), digest: Self.digest(first), testMetadata())
            #expect(completed.layerDigest == Self.digest(first))
        }
    }

    @Test func aChunkAfterOthers_commitsItsPartThenTheCompletion() async throws {
        try await withRegistryUpload { service, store, blobs, upload in
            let first = [UInt8](repeating: 1, count: 1000), last = [UInt8](repeating: 2, count: 500)
            _ = try await service.appendChunk(upload, range: nil, body: Self.chunk(first), testMetadata())
            let (before, transactions) = (try store.read { try $0.lastPosition() }, store.writerStatistics.transactions)
            let completed = try await service.finishUpload(upload, range: 1000...1499, body: Self.chunk(last), digest: Self.digest(first + last), testMetadata())
            #expect(completed.layerDigest == Self.digest(first + last))
            #expect(store.writerStatistics.transactions == transactions + 2)
            #expect(try Self.recorded(store, after: before) == ["LayerPartUploaded", "LayerUploadCompleted"])
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: blobs.blobPath(Self.digest(first + last))))) == first + last)
        }
    }

    /// A request to the same upload that waits while the final chunk streams in does not come
    /// between the chunk and its completion: before, it took the lock once the part committed
    /// and held it while its own chunk streamed in, so the completion waited past its bound and
    /// was refused as overloaded, and the upload, its chunk recorded, was cancelled.
    @Test(.timeLimit(.minutes(1))) func anotherRequestWaiting_doesNotComeBetweenTheFinalChunkAndItsCompletion() async throws {
        try await withRegistryUpload(longestUploadWait: .seconds(20)) { service, store, blobs, upload in
            let first = [UInt8](repeating: 1, count: 1000), last = [UInt8](repeating: 2, count: 500)
            _ = try await service.appendChunk(upload, range: nil, body: Self.chunk(first), testMetadata())
            let before = try store.read { try $0.lastPosition() }
            let finalChunk = HeldChunk(last), otherChunk = HeldChunk([7])
            let finishing = Task {
                try await service.finishUpload(upload, range: 1000...1499, body: finalChunk, digest: Self.digest(first + last), testMetadata())
            }
            await finalChunk.waitUntilRead()  // the final chunk holds the upload's lock, streaming in
            let other = Task { try await service.appendChunk(upload, range: nil, body: otherChunk, testMetadata()) }
            // Until the other request waits (at most its bound: on a host loaded past it, it gives up;
            // a cooperative pool held up by other tests once kept it from starting for 5 s).
            let looked = ContinuousClock.now
            var queued = false
            while ContinuousClock.now - looked < .seconds(20) {
                if await service.uploadLocks.local.waiterCount(upload.uploadId) >= 1 { queued = true; break }
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(queued, "the other request queued behind the final chunk: the interleaving this test is about")
            finalChunk.end()
            #expect(try await finishing.value.layerDigest == Self.digest(first + last))
            otherChunk.end()
            // Behind the completion: the upload has ended by the time it is let in, or (on a
            // loaded host) it waited past its bound.
            await #expect { _ = try await other.value } throws: {
                ($0 as? CommandError)?.code == .uploadNotFound || ($0 as? StoreError)?.code == .overloaded
            }
            #expect(try Self.recorded(store, after: before) == ["LayerPartUploaded", "LayerUploadCompleted"])
        }
    }

    /// A digest that is not the chunk's: the part is recorded (the bytes came), the completion is
    /// refused, and nothing enters the blob store under either digest. The upload ends: the same
    /// `PUT` again would record its chunk a second time.
    @Test func aWrongDigest_recordsThePart_refusesTheCompletion_storesNoBlob_andEndsTheUpload() async throws {
        try await withRegistryUpload { service, store, blobs, upload in
            let bytes = [UInt8](repeating: 9, count: 4096), named = Self.digest([1])
            let before = try store.read { try $0.lastPosition() }
            await #expect {
                _ = try await service.finishUpload(upload, range: nil, body: Self.chunk(bytes), digest: named, testMetadata())
            } throws: { ($0 as? CommandError)?.code == .invalidLayer }
            #expect(try Self.recorded(store, after: before) == ["LayerPartUploaded", "UploadAborted"])
            #expect(try store.read { try $0.session(upload.uploadId) }?.bytesReceived == UInt64(bytes.count))
            #expect(try store.read { try $0.session(upload.uploadId) }?.state == .aborted)
            #expect(!FileManager.default.fileExists(atPath: blobs.stagingPath(upload.uploadId)))
            for digest in [named, Self.digest(bytes)] { #expect(!FileManager.default.fileExists(atPath: blobs.blobPath(digest))) }
        }
    }

    /// A blob the repository already holds, pushed again in one chunk: the upload ends as the
    /// client asked (UploadAborted, `layerAlreadyExists`), in the same one commit, and the answer
    /// names the blob.
    @Test func aBlobTheRepositoryHolds_pushedAgainWhole_endsItsUploadInOneCommit() async throws {
        try await withRegistryUpload { service, store, _, upload in
            let bytes = [UInt8](repeating: 5, count: 2048)
            _ = try await service.finishUpload(upload, range: nil, body: Self.chunk(bytes), digest: Self.digest(bytes), testMetadata())
            let again = try await service.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
            let (before, transactions) = (try store.read { try $0.lastPosition() }, store.writerStatistics.transactions)
            let completed = try await service.finishUpload(
                RepositoryUpload(again.repository, uploadId: again.uploadId), range: nil, body: Self.chunk(bytes), digest: Self.digest(bytes), testMetadata())
            #expect(completed.layerDigest == Self.digest(bytes))
            #expect(store.writerStatistics.transactions == transactions + 1)
            #expect(try Self.recorded(store, after: before) == ["LayerPartUploaded", "UploadAborted"])
        }
    }

    /// A call that carries an SDK's invocation id: the part keeps it, the completion goes without
    /// (two commands of one call under one id would be taken for a retry, and the second refused).
    @Test func anInvocationId_staysWithThePart_andTheCompletionIsNotTakenForItsRetry() async throws {
        try await withRegistryUpload { service, store, _, upload in
            let bytes = [UInt8](repeating: 4, count: 3000)
            var metadata = testMetadata()
            metadata.invocationId = "8f1c3c1e-0000-4000-8000-000000000001"
            let before = try store.read { try $0.lastPosition() }
            let completed = try await service.finishUpload(upload, range: nil, body: Self.chunk(bytes), digest: Self.digest(bytes), metadata)
            #expect(completed.layerDigest == Self.digest(bytes))
            let events = try store.read { try $0.events(after: before) }
            #expect(events.map(\.metadata.invocationId) == [metadata.invocationId, nil])
        }
    }

    /// A blob store that cannot link (another file system): the ordinary path, the part then the
    /// completion, which copies the staged bytes.
    @Test func aBlobStoreThatCannotLink_completesTheOrdinaryWay() async throws {
        try await withRegistryUpload(storage: { Unlinkable(blobs: $0, failing: false) }) { service, store, blobs, upload in
            let bytes = [UInt8](repeating: 6, count: 5000)
            let (before, transactions) = (try store.read { try $0.lastPosition() }, store.writerStatistics.transactions)
            let completed = try await service.finishUpload(upload, range: nil, body: Self.chunk(bytes), digest: Self.digest(bytes), testMetadata())
            #expect(completed.layerDigest == Self.digest(bytes))
            #expect(store.writerStatistics.transactions == transactions + 2)
            #expect(try Self.recorded(store, after: before) == ["LayerPartUploaded", "LayerUploadCompleted"])
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: blobs.blobPath(Self.digest(bytes))))) == bytes)
        }
    }

    /// A link that fails (an I/O error): the part is recorded once, the completion reports the
    /// error, and the upload ends with its staged bytes (a retry would record the chunk again).
    @Test func aLinkThatFails_recordsThePartOnce_reportsTheError_andEndsTheUpload() async throws {
        try await withRegistryUpload(storage: { Unlinkable(blobs: $0, failing: true) }) { service, store, blobs, upload in
            let bytes = [UInt8](repeating: 8, count: 5000)
            let before = try store.read { try $0.lastPosition() }
            await #expect(throws: Unlinkable.Failure.self) {
                _ = try await service.finishUpload(upload, range: nil, body: Self.chunk(bytes), digest: Self.digest(bytes), testMetadata())
            }
            #expect(try Self.recorded(store, after: before) == ["LayerPartUploaded", "UploadAborted"])
            #expect(!FileManager.default.fileExists(atPath: blobs.stagingPath(upload.uploadId)))
        }
    }
}

/// The blob store, but one whose links fail: it cannot link (`false`), or its link fails (throws).
private struct Unlinkable: BlobStorage {
    struct Failure: Error {}
    let blobs: BlobStore
    let failing: Bool
    func blobSize(_ digest: String) -> UInt64? { blobs.blobSize(digest) }
    func claimBlob(_ digest: String) throws -> UInt64? { try blobs.claimBlob(digest) }
    func markUsed(_ digests: [String]) throws { try blobs.markUsed(digests) }
    func commitBlob(_ temporary: String, digest: String) throws { try blobs.commitBlob(temporary, digest: digest) }
    func adoptStaged(_ path: String, digest: String, size: UInt64) throws -> Bool {
        if failing { throw Failure() }
        return false
    }
    func openBlob(_ digest: String) throws -> any BlobReader { try blobs.openBlob(digest) }
}

/// A body the test expects never to be read.
private struct BodyNeverRead: AsyncSequence, Sendable {
    struct AsyncIterator: AsyncIteratorProtocol {
        mutating func next() async throws -> ByteBuffer? {
            Issue.record("the body was read")
            return nil
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
}

/// A chunk whose bytes arrive only when the test says: it reports when it is first read (its
/// request then holds the upload's lock) and ends on ``end()``.
private struct HeldChunk: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: [UInt8]
    private let read: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    private let ended: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        read = AsyncStream.makeStream()
        ended = AsyncStream.makeStream()
    }

    func waitUntilRead() async { for await _ in read.stream { break } }
    func end() { ended.continuation.finish() }

    struct AsyncIterator: AsyncIteratorProtocol {
        let chunk: HeldChunk
        var done = false
        mutating func next() async throws -> ByteBuffer? {
            guard !done else { return nil }
            done = true
            chunk.read.continuation.yield()
            for await _ in chunk.ended.stream {}
            return ByteBuffer(bytes: chunk.bytes)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(chunk: self) }
}
