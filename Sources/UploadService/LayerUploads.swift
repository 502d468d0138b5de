import Crypto
import NIOPosix
public import UploadCore
import UploadStore

extension UploadService {
    public func initiateLayerUpload(_ command: InitiateLayerUpload, _ metadata: RequestMetadata) async throws -> UploadStarted {
        let started = try await store.execute(.initiateLayerUpload(command), metadata: metadata)
            .events.first(UploadInitiated.self, recordedBy: "InitiateLayerUpload")
        return UploadStarted(repository: started.repository, uploadId: started.uploadId, partSize: started.partSize)
    }

    /// Records a part of an upload: its bytes are staged at their offset and synced first, and
    /// only when the upload expects exactly this part next; otherwise the store answers (a retry of
    /// a recorded call, or the refusal) without a byte written. Bytes staged for a part the store
    /// then refuses are cut back off.
    /// - Parameter bytes: the part's bytes, read once, a chunk at a time: hashed while they are
    ///   staged (or only hashed, when the upload does not expect them), never held whole here.
    public func uploadLayerPart(_ part: UploadLayerPart.Placement, bytes: some PartBytes, _ metadata: RequestMetadata) async throws -> PartAccepted {
        let ref = RepositoryRef(registryId: try settings.resolveRegistry(part.registryId), repositoryName: part.repositoryName)
        try await uploadLocks.withLock(part.uploadId) {
            let session = try await self.reading { try $0.session(part.uploadId) }
            var command: UploadLayerPart
            if let session, session.expects(part, length: bytes.byteCount, in: ref, settings: self.settings) {
                let (uploadId, offset) = (part.uploadId, part.partFirstByte)
                do {
                    let digest = try await Self.blocking { try self.blobs.writePart(uploadId: uploadId, offset: offset, bytes: bytes) }
                    command = UploadLayerPart(part, partLength: bytes.byteCount, partDigest: digest)
                } catch {
                    // Malformed part way (or a failed write): staging holds only what the log records.
                    let blobs = self.blobs
                    _ = try? await Self.blocking { blobs.truncateStaging(uploadId, to: offset) }
                    throw error
                }
                command.staged = true
            } else {
                let digest = try await Self.blocking { try BlobStore.digest(of: bytes) }
                command = UploadLayerPart(part, partLength: bytes.byteCount, partDigest: digest)
            }
            do {
                _ = try await self.store.execute(.uploadLayerPart(command), metadata: metadata)
            } catch where command.staged {
                await self.cutBackStaging(command.uploadId, orTo: command.partFirstByte, after: error)
                throw error
            }
        }
        return PartAccepted(repository: ref, uploadId: part.uploadId, lastByteReceived: part.partLastByte)
    }

    /// Completes an upload: when it is ready, puts its staged bytes into the blob store (a single
    /// part's file is linked, its digest known; more parts are hashed while copied), and records the
    /// layer; the staging file goes only after the event has committed.
    /// When it is not, the store answers (a retry of a recorded call, or the refusal).
    public func completeLayerUpload(_ command: CompleteLayerUpload, _ metadata: RequestMetadata) async throws -> LayerCompleted {
        let ref = RepositoryRef(registryId: try settings.resolveRegistry(command.registryId), repositoryName: command.repositoryName)
        let digest = try await uploadLocks.withLock(command.uploadId) { [command] in
            try await self.complete(command, in: ref, metadata)
        }
        return LayerCompleted(repository: ref, uploadId: command.uploadId, layerDigest: digest)
    }

    /// ``completeLayerUpload(_:_:)``'s work, under the upload's lock, which the caller holds.
    /// - Returns: the layer's digest.
    func complete(_ command: CompleteLayerUpload, in ref: RepositoryRef, _ metadata: RequestMetadata) async throws -> String {
        var command = command
        var temporary: String?
        defer { if let temporary { self.blobs.discard(temporary: temporary) } }
        let uploadId = command.uploadId
        var claimedAt: ContinuousClock.Instant?  // when the blob was claimed, for the writer's fence (BlobClaims)
        if let session = try await self.reading({ try $0.session(uploadId) }), session.isReadyToComplete(in: ref, rules: command.rules) {
            let size = session.bytesReceived
            // ECR's CompleteLayerUpload names sha256 digests; a registry client names one digest, in its algorithm.
            let algorithm = command.rules == .registry ? DigestAlgorithm(of: command.layerDigests[0]) ?? .sha256 : .sha256
            // One part: its digest, computed as it was staged, is the layer's, and its staging
            // file holds exactly the layer. It is linked into the blob store, not copied (a
            // digest the caller did not name is refused without entering the blob store).
            if algorithm == .sha256, session.partCount == 1, let part = session.lastPart, part.firstByte == 0, part.lastByte + 1 == size {
                let digest = part.digest
                var inPlace = !command.names(digest)
                if !inPlace {
                    claimedAt = .now
                    inPlace = try await Self.blocking { try self.storage.adoptStaged(self.blobs.stagingPath(uploadId), digest: digest, size: size) }
                }
                if inPlace { command.staged = .init(digest: digest, size: size) }
            }
            let hashed = RefusedStagedDigests.Key(session, algorithm)
            if command.staged == nil, let known = self.refusedDigests.digest(hashed), !command.names(known) {
                command.staged = .init(digest: known, size: size)  // refused again, unread
            }
            if command.staged == nil {
                let digest: String
                do {
                    let hash = { try await Self.bulk { try self.blobs.hashAndCopyStaged(uploadId: uploadId, length: size, algorithm: algorithm) } }
                    let copy: String
                    (digest, copy) = self.refusedDigests.hasRefused(uploadId) ? try await self.refusedDigests.hashingAgain(hash) : try await hash()
                    temporary = copy
                    // A layer the caller did not name is refused without entering the blob store.
                    if command.names(digest) {
                        claimedAt = try await Self.bulk {
                            try BlobStore.syncFile(copy)  // only now: a refused copy is dropped unsynced
                            let claimedAt = ContinuousClock.now  // after the sync, which may take long: the claim is the commit's
                            try self.storage.commitBlob(copy, digest: digest)
                            return claimedAt
                        }
                    }
                } catch {
                    // A cancel, an expiry or a deleted repository removes staging, and the copy
                    // being made of it, without the upload's lock: for an upload that ended
                    // meanwhile the store answers (UploadNotFoundException), not this failure.
                    guard try await self.reading({ try $0.session(uploadId) })?.state == .active else {
                        return try self.completedDigest(command, events: try await self.store.execute(.completeLayerUpload(command), metadata: metadata).events)
                    }
                    throw error
                }
                command.staged = .init(digest: digest, size: size)
                if !command.names(digest) { self.refusedDigests.remember(digest, for: hashed) }
            }
        }
        let outcome = try await self.store.execute(.completeLayerUpload(command), metadata: metadata, claimedBlobsAt: claimedAt)
        return try self.completedDigest(command, events: outcome.events)
    }

    /// The layer a committed completion recorded; its staging file goes, which the log no longer
    /// needs: also on a retry answered from the log (whose first attempt's outcome was unknown,
    /// and which never reached this).
    func completedDigest(_ command: CompleteLayerUpload, events: [EventEnvelope]) throws -> String {
        let ended = events.contains { envelope in
            switch envelope.event {
            case .layerUploadCompleted(let e): e.uploadId == command.uploadId
            case .uploadAborted(let e): e.uploadId == command.uploadId
            default: false
            }
        }
        if command.staged != nil || ended {
            blobs.removeStaging(command.uploadId)
        }
        // A registry client's push of a layer the repository holds ends its upload without one.
        if command.rules == .registry, let staged = command.staged,
           events.contains(where: { ($0.event.payload as? UploadAborted)?.reason == .layerAlreadyExists }) {
            return staged.digest
        }
        return try events.first(LayerUploadCompleted.self, recordedBy: "CompleteLayerUpload").layerDigest
    }

    /// Ends every upload idle for `idleMilliseconds` (by the store's clock) with UploadExpired,
    /// then deletes the expired uploads' staged bytes, which the log no longer needs once the
    /// events have committed. Spares an upload whose staging lock is held, here or by another
    /// process or node: a chunk is streaming into it (a layer in one `PATCH` may take longer than
    /// the expiry), which records its activity when it ends. - Returns: the expired upload ids.
    @discardableResult
    public func expireIdleUploads(idleMilliseconds: Int64) async throws -> [String] {
        var expired: [String] = []
        while true {
            // A probe is a lock request (a round trip to the lock manager on NFS): off the pool.
            let command = ExpireIdleUploads(idleMilliseconds: idleMilliseconds, sparing: try await Self.blocking { [blobs] in try blobs.uploadsBeingWritten() })
            let metadata = RequestMetadata(requestId: "sweep-\(store.clock.now().millisecondsSinceEpoch)", source: "sweeper")
            let outcome = try await store.execute(.expireIdleUploads(command), metadata: metadata)
            for case .uploadExpired(let e) in outcome.events.map(\.event) {
                blobs.removeStaging(e.uploadId)  // not under the upload's lock: see cutBackStaging
                expired.append(e.uploadId)
            }
            if outcome.events.count < command.limit { return expired }  // less than a full sweep: none left
        }
    }

    /// Makes staging hold what the log records for an upload after a part whose bytes were staged
    /// was refused (or failed part way): cut back to the bytes recorded (`fallback` for an upload the
    /// log does not know), or removed once the upload has ended; left as it is when the store
    /// cannot be read. An upload that ends (expired, aborted,
    /// cancelled) loses its staging file without waiting for the upload's lock, which a chunk
    /// streaming in may hold for long; that chunk is then refused when it commits, and lands here.
    /// Off the cooperative pool, as every read and file change is: it runs when the store fails,
    /// which is when a PostgreSQL read may wait longest.
    /// - Parameter failure: why the part was not recorded, when it went to the store. Only a
    ///   refusal, or a command the store never took, is known not to be in the log; after any
    ///   other failure (a PostgreSQL commit whose answer was lost) it may commit yet, after a read
    ///   here would find it absent, so staging is left as it is.
    func cutBackStaging(_ uploadId: String, orTo fallback: UInt64, after failure: (any Error)? = nil) async {
        if let failure, !Self.isKnownUnrecorded(failure) { return }
        // Unread (the store is failing): the write's outcome is unknown, so staging is left as it
        // is. Bytes past the recorded length are harmless: the next part is written at the
        // recorded offset, and completion reads the recorded length only.
        let session: UploadSession?
        do { session = try await reading { try $0.session(uploadId) } } catch { return }
        let blobs = self.blobs
        _ = try? await Self.blocking {
            if let session, session.state != .active {
                blobs.removeStaging(uploadId)
            } else {
                blobs.truncateStaging(uploadId, to: session?.bytesReceived ?? fallback)
            }
        }
    }

    /// Whether a command that failed with `error` is known not to be in the log: the decider
    /// refused it, or the writer never took it (its queue was full).
    static func isKnownUnrecorded(_ error: any Error) -> Bool {
        error is CommandError || (error as? StoreError)?.code == .overloaded
    }

    /// Runs file I/O (a part's or chunk's write and sync, a blob's piece, a lock) on NIO's thread
    /// pool, never on the cooperative pool, which has only as many threads as cores.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }

    /// Runs file work whose time grows with a layer's size (hashing and copying a whole layer,
    /// syncing the copy; tidying all of staging) on ``BulkFileWork/threads``, not NIO's pool:
    /// there, two completions of large layers held every blob download's next piece, and every
    /// chunk's write, behind them for seconds.
    static func bulk<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await BulkFileWork.threads.runIfActive(body)
    }
}

enum BulkFileWork {
    /// At most two whole-layer jobs run at once; more wait their turn here (each a request
    /// waiting for its completion). Process-wide and never stopped, as ``NetworkReads/threads``.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()
}
