import ECRRequests
import Foundation
import LogHashing
import Logging
import NIOCore
import Synchronization
import Testing
import UploadCore
import UploadService
import UploadStore
import UploadTesting

/// A store whose answer to a part is lost (a PostgreSQL commit cut by the answer limit while the
/// server still finishes it): the caller hears a failure first, and the part commits after. Every
/// other call goes to the real store underneath.
final class AnswerLostStore: EventStore {
    let real: any EventStore
    private let late = Mutex<[(commit: Task<Void, Never>, gate: AsyncStream<Void>.Continuation)]>([])

    init(_ real: any EventStore) { self.real = real }

    /// The parts whose answers were lost, committed now.
    func commitLateParts() async {
        for (commit, gate) in late.withLock({ $0 }) {
            gate.finish()
            await commit.value
        }
    }

    func append(_ submissions: [CommandSubmission]) async -> [Result<CommandOutcome, any Error>] {
        guard submissions.contains(where: { if case .uploadLayerPart = $0.command { true } else { false } }) else {
            return await real.append(submissions)
        }
        let real = self.real
        // Committed only once the caller has heard its failure, and read the store after it.
        let gate = AsyncStream<Void>.makeStream()
        late.withLock { $0.append((Task { for await _ in gate.stream {}; _ = await real.append(submissions) }, gate.continuation)) }
        return submissions.map { _ in .failure(StoreError(.io, "the connection was lost: it may or may not have been kept")) }
    }

    var settings: DecisionSettings { real.settings }
    var commitsMayLandLate: Bool { real.commitsMayLandLate }
    var clock: any Clock { real.clock }
    func read<T>(_ body: (any StoreSnapshot) throws -> T) throws -> T { try real.read(body) }
    func waitForEvents(after position: UInt64, timeout: Duration) async -> Bool { await real.waitForEvents(after: position, timeout: timeout) }
    func stopFollowers() { real.stopFollowers() }
    var followersStopped: Bool { real.followersStopped }
    func statistics() throws -> StoreStatistics { try real.statistics() }
    func keep(_ checkpoint: SignedCheckpoint, signedAs identity: LogIdentity) throws -> SignedCheckpoint { try real.keep(checkpoint, signedAs: identity) }
    func appliedMigrations() throws -> [String] { try real.appliedMigrations() }
    var migrationsAppliedAtOpen: [String] { real.migrationsAppliedAtOpen }
    func leads(_ duty: StoreDuty) -> Bool { real.leads(duty) }
    func close() async { await real.close() }
}

struct LostCommitAnswerTests {
    /// Staging was cut back after any failure, from a read that could not yet see the part's
    /// commit: the log then recorded bytes the disk no longer held, and the upload could never
    /// complete. Staging is now cut back only when the part is known not to be in the log.
    @Test func aPartWhoseAnswerWasLost_keepsItsStagedBytes_forTheCommitThatLandsAfter() async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        try await withTestStore(dir) { real in
            let store = AnswerLostStore(real)
            let blobs = try BlobStore(directory: dir.path)
            let service = UploadService(store: store, blobs: blobs, logger: Logger(label: "test"))
            _ = try await real.execute(.createRepository(try CreateRepository(repositoryName: "team/app")), metadata: testMetadata())
            let started = try await service.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata())
            let layer = [UInt8](repeating: 9, count: 300_000)

            // The registry's chunk, and the AWS API's part, of two uploads.
            let upload = RepositoryUpload(started.repository, uploadId: started.uploadId)
            await #expect(throws: StoreError.self) {
                _ = try await service.appendChunk(upload, range: nil, body: AsyncStream { $0.yield(ByteBuffer(bytes: layer)); $0.finish() }, testMetadata())
            }
            let other = try await service.initiateLayerUpload(try InitiateLayerUpload(repositoryName: "team/app"), testMetadata()).uploadId
            let placement = try UploadLayerPart.Placement(repositoryName: "team/app", uploadId: other, partFirstByte: 0, partLastByte: Int64(layer.count - 1))
            await #expect(throws: StoreError.self) {
                _ = try await service.uploadLayerPart(placement, bytes: try Base64Part(Array(Data(layer).base64EncodedString().utf8)[...]), testMetadata())
            }

            await store.commitLateParts()
            for uploadId in [started.uploadId, other] {
                #expect(try real.read { try $0.session(uploadId) }?.bytesReceived == UInt64(layer.count), "the part committed after all")
                let staged = try Array(Data(contentsOf: URL(fileURLWithPath: blobs.stagingPath(uploadId))))
                let holdsThePart = staged == layer  // a Bool: a failed comparison of the arrays would diff them for minutes
                #expect(holdsThePart, "the staged bytes the log records are still there (\(staged.count) bytes staged)")
            }
        }
    }
}
