import Logging
import NIOCore
import NIOPosix
public import UploadCore
import UploadStore

/// A registry client's chunk that does not start where its upload has reached (or whose
/// `Content-Range` is no range). Nothing of it is recorded; the client resumes at `bytesReceived`.
public struct ChunkOutOfRange: Error, Sendable {
    /// The bytes the upload holds: the only offset its next chunk may start at.
    public let bytesReceived: UInt64
    public let message: String

    public init(bytesReceived: UInt64, message: String) {
        self.bytesReceived = bytesReceived
        self.message = message
    }
}

/// A registry client's chunk that starts where its upload has reached, but does not hold as many
/// bytes as its `Content-Range` says. Nothing of it is recorded; sent again, it is refused again,
/// so it is no out-of-order chunk to resume (the spec's 416) but a malformed one.
public struct ChunkLengthMismatch: Error, Sendable {
    /// The bytes the upload holds.
    public let bytesReceived: UInt64
    public let message: String
}

/// What the registry front end (the OCI distribution API) asks beyond ECR's operations: chunks
/// streamed as they arrive, cancel and mount. Each is the same command, decided by the same store,
/// as its ECR counterpart, under the registry's part rules (``PartRules/registry``).
extension UploadService {
    /// The bytes an active upload of `upload.repository` holds so far; `UploadNotFoundException` otherwise.
    public func bytesReceived(_ upload: RepositoryUpload) async throws -> UInt64 {
        try await activeSession(upload).bytesReceived
    }

    /// The session of an active upload of `upload.repository`; `UploadNotFoundException` otherwise.
    private func activeSession(_ upload: RepositoryUpload) async throws -> UploadSession {
        try await reading { snapshot in
            guard let session = try snapshot.session(upload.uploadId), session.state == .active, session.repository == upload.repository else {
                throw Self.uploadNotFound(upload)
            }
            return session
        }
    }

    /// Stages a chunk as it arrives, at the offset the upload has reached, then records it as one
    /// part (LayerPartUploaded). Memory per chunk in flight is bounded by ``chunkBufferBytes`` plus
    /// what the connection buffers; a chunk of any size streams through. A chunk that fails part
    /// way (the client went away) or is refused leaves staging as the log records it.
    /// - Parameters:
    ///   - range: where the client says the chunk starts and ends (`Content-Range`), when it says.
    ///   - declaredLength: the chunk's length as its request says (`Content-Length`), when it says:
    ///     checked before a byte of it is read.
    /// - Returns: the bytes the upload holds afterwards.
    public func appendChunk<Body: AsyncSequence & Sendable>(
        _ upload: RepositoryUpload, range: ClosedRange<UInt64>?, declaredLength: UInt64? = nil, body: Body, _ metadata: RequestMetadata
    ) async throws -> UInt64 where Body.Element == ByteBuffer {
        try await uploadLocks.withLock(upload.uploadId) {
            let chunk = try await self.stageChunk(upload, range: range, declaredLength: declaredLength, body: body)
            if let part = chunk.part { try await self.record(part, metadata) }
            return chunk.offset + (chunk.part?.partLength ?? 0)
        }
    }

    /// The final chunk of a registry upload (the body of its `PUT`; it may be empty) and the
    /// upload's completion as the layer `digest` names.
    ///
    /// When the chunk is the whole layer and its sha256 digest is the one named, its staged file is
    /// linked into the blob store first (keeping its staging name, as
    /// ``BlobStorage/adoptStaged(_:digest:size:)`` does; in the same trip to the thread pool as the
    /// chunk's last write and sync), and the part and the completion are
    /// submitted together: the writer decides them one after the other, as two calls would be, in
    /// one transaction (``GroupCommitWriter`` does not split a submission that fits in a batch):
    /// one commit instead of two, the same events. Otherwise (a chunk after others, another digest,
    /// a blob store that cannot link) the part commits, then the completion as
    /// ``completeLayerUpload(_:_:)`` makes it.
    ///
    /// The chunk and the completion run under the upload's lock, held once: no other request to the
    /// upload comes between them. A completion that fails after its chunk committed cancels the
    /// upload (the same `PUT` again would record the chunk twice); one refused with no chunk
    /// leaves it open.
    ///
    /// A part refused after the link (the upload cancelled or expired while the chunk streamed in),
    /// or a crash between the link and the commit, leaves the blob in the blob store with no layer
    /// naming it, as a completion refused after its link does: it is never served, since a blob is
    /// read only through a layer a repository holds, and `garbage-collect` removes it.
    public func finishUpload<Body: AsyncSequence & Sendable>(
        _ upload: RepositoryUpload, range: ClosedRange<UInt64>?, declaredLength: UInt64? = nil, body: Body, digest: String, _ metadata: RequestMetadata
    ) async throws -> LayerCompleted where Body.Element == ByteBuffer {
        let completion = CompleteLayerUpload(registryUpload: upload, digest: digest)
        let layerDigest = try await uploadLocks.withLock(upload.uploadId) {
            let chunk = try await self.stageChunk(upload, range: range, declaredLength: declaredLength, body: body, adoptingAs: completion)
            // Under the chunk's own lock: another request to the upload cannot come between the
            // chunk and its completion, so the completion never waits (and is never refused as
            // overloaded) behind a chunk streaming in.
            return try await self.recordFinalChunk(chunk.part, adoptedAt: chunk.adoptedAt, completing: completion, in: upload, metadata)
        }
        return LayerCompleted(repository: upload.repository, uploadId: upload.uploadId, layerDigest: layerDigest)
    }

    /// A monolithic push (`POST …?digest=` with the body), staged and hashed (in the digest's
    /// algorithm, sha256 or sha512) before anything is recorded: bytes that are not the layer
    /// `digest` names are refused (InvalidLayerException, the registry's `DIGEST_INVALID`) with
    /// nothing written, no upload started and no repository made on push. Then `initiate` starts
    /// the upload (making the repository, on push), the staged file becomes its staging, and it
    /// completes as ``finishUpload(_:range:declaredLength:body:digest:_:)`` completes a final
    /// chunk. Until then the bytes wait under a name of the staging folder that no upload has
    /// (``BlobStore/wholeLayerPrefix``), which staging's tidying (at start-up and while serving)
    /// removes once an hour old.
    /// - Parameter initiate: starts the upload; its id.
    public func pushWholeLayer<Body: AsyncSequence & Sendable>(
        into repository: RepositoryRef, range: ClosedRange<UInt64>?, declaredLength: UInt64?, body: Body, digest: String,
        initiate: () async throws -> String, _ metadata: RequestMetadata
    ) async throws -> LayerCompleted where Body.Element == ByteBuffer {
        if let refusal = chunkHeadRefusal(at: 0, range: range, declaredLength: declaredLength) { throw refusal }
        let waiting = BlobStore.wholeLayerPrefix + RandomUUIDs.next()
        let algorithm = DigestAlgorithm(of: digest) ?? .sha256
        let writer = blobs.stagingWriter(uploadId: waiting, offset: 0, hashingIn: algorithm)
        // The part's digest is sha256, as every part's; the layer's is in the algorithm named.
        let staged: (length: UInt64, digest: String, layerDigest: String)
        do {
            let rest = try await streamBody(body, into: writer, at: 0, range: range, declaredLength: declaredLength)
            staged = try await Self.blocking { [rest] in
                try writer.write(rest)
                let (length, digest) = try writer.finish(syncingItsName: false)
                return (length, digest, writer.digest(in: algorithm))
            }
        } catch {
            writer.abandon()
            blobs.removeStaging(waiting)
            throw error
        }
        guard staged.layerDigest == digest else {
            blobs.removeStaging(waiting)
            throw CommandError.layerDigestMismatch(calculated: staged.layerDigest)
        }
        let uploadId: String
        do { uploadId = try await initiate() } catch {
            blobs.removeStaging(waiting)
            throw error
        }
        let upload = RepositoryUpload(repository, uploadId: uploadId)
        let completion = CompleteLayerUpload(registryUpload: upload, digest: digest)
        do {
            let layerDigest = try await uploadLocks.withLock(uploadId) {
                guard staged.length > 0 else {
                    self.blobs.removeStaging(waiting)
                    return try await self.recordFinalChunk(nil, adoptedAt: nil, completing: completion, in: upload, metadata)
                }
                // Ended meanwhile (its repository deleted): its bytes must not become its staging,
                // nor a blob no event names.
                _ = try await self.activeSession(upload)
                let adoptedAt = try await Self.blocking {
                    try self.blobs.becomeStaging(waiting, of: uploadId)
                    let adoptedAt = self.adopt(uploadId, as: completion, digest: staged.digest, length: staged.length)
                    if adoptedAt == nil { try writer.syncName() }
                    return adoptedAt
                }
                var part = UploadLayerPart(.init(registryChunkOf: upload, at: 0, length: staged.length), partLength: staged.length, partDigest: staged.digest)
                part.staged = true
                return try await self.recordFinalChunk(part, adoptedAt: adoptedAt, completing: completion, in: upload, metadata)
            }
            return LayerCompleted(repository: repository, uploadId: uploadId, layerDigest: layerDigest)
        } catch {
            // The client never learns this upload's id, so nothing else could end it.
            blobs.removeStaging(waiting)
            try? await cancelUpload(upload, metadata)
            // Nor could it have ended it: its repository was deleted meanwhile (UploadAborted,
            // repositoryDeleted), which is what the client is told, not of an upload it never saw.
            // (Under --create-repositories-on-push a deletion before the push would have made the
            // repository again; this one came after the body was read, and the client pushes again.)
            if let ended = error as? CommandError, ended.code == .uploadNotFound { throw Decider.repositoryNotFound(repository) }
            throw error
        }
    }

    /// Records a registry upload's final chunk, staged and synced (`nil` when it held no bytes),
    /// and the upload's completion, under the upload's lock: together when the chunk was made the
    /// blob (`adoptedAt`: when, its claim for the writer's fence), else one after the other.
    /// - Returns: the layer's digest.
    private func recordFinalChunk(
        _ part: UploadLayerPart?, adoptedAt: ContinuousClock.Instant?, completing completion: CompleteLayerUpload, in upload: RepositoryUpload,
        _ metadata: RequestMetadata
    ) async throws -> String {
        // An invocation id names one call's one command: the part keeps it (a retry of the
        // request finds its part), the completion goes without (else it would be taken for a
        // retry of the part, and refused as one with other parameters).
        var completionMetadata = metadata
        completionMetadata.invocationId = nil
        guard let part else { return try await complete(completion, in: upload.repository, completionMetadata) }
        guard let adoptedAt else {
            try await record(part, metadata)
            do {
                return try await complete(completion, in: upload.repository, completionMetadata)
            } catch {
                // The chunk is recorded: the same PUT again (after a 429's Retry-After, say)
                // would add it a second time. So the upload ends, as distribution ends one
                // whose final PUT fails, and the client starts again. At best: a cancel refused
                // too (a writer queue still full) leaves it open, and the chunk sent again
                // fails the digest's check.
                try? await cancelUpload(upload, completionMetadata)
                throw error
            }
        }
        var whole = completion
        whole.staged = .init(digest: part.partDigest, size: part.partLength)
        let results = await store.append([
            CommandSubmission(.uploadLayerPart(part), metadata: metadata),
            CommandSubmission(.completeLayerUpload(whole), metadata: completionMetadata, claimedBlobsAt: adoptedAt),
        ])
        if case .failure(let error) = results[0] {
            // An answer lost (not a refusal) may hide a commit that names the staged file.
            if !Self.isKnownUnrecorded(error) { try? await Self.blocking { try BlobStore.syncDirectory(self.blobs.staging) } }
            await cutBackStaging(upload.uploadId, orTo: 0, after: error)
            throw error
        }
        do {
            return try completedDigest(whole, events: results[1].get().events)
        } catch {
            // The log names the staged part now: its name is made durable, as a part's is
            // (after the commit, not before it: a crash of the machine in between leaves an
            // upload the log says holds bytes whose staging name is gone, whose client was
            // told nothing, and whose bytes the blob keeps).
            try? await Self.blocking { try BlobStore.syncDirectory(self.blobs.staging) }
            try? await cancelUpload(upload, completionMetadata)  // as above
            throw error
        }
    }

    /// A chunk staged at the offset the upload has reached, its bytes synced, not yet recorded;
    /// its part is `nil` when it held no bytes. Called under the upload's lock.
    /// - Parameter completion: the completion that follows the chunk, if one does. When the chunk
    ///   is the whole layer it names, its staged file is made that blob in the same trip to the
    ///   thread pool (``BlobStorage/adoptStaged(_:digest:size:)``), and `adoptedAt` says when. A link
    ///   that fails is left to the ordinary path, which links again and reports it.
    private func stageChunk<Body: AsyncSequence & Sendable>(
        _ upload: RepositoryUpload, range: ClosedRange<UInt64>?, declaredLength: UInt64?, body: Body, adoptingAs completion: CompleteLayerUpload? = nil
    ) async throws -> (offset: UInt64, part: UploadLayerPart?, adoptedAt: ContinuousClock.Instant?) where Body.Element == ByteBuffer {
        let session = try await activeSession(upload)
        let offset = session.bytesReceived
        let adoptable = offset == 0 ? completion : nil
        // Past the cap a chunk is refused before its bytes are read when it says it has some, else
        // at its first byte, as the decider would refuse its part (an empty final chunk adds no
        // part: the upload still completes).
        let pastTheCap = settings.refusesAnotherChunk(after: session.partCount).map { CommandError(.invalidLayerPart, $0) }
        if let pastTheCap, let declaredLength, declaredLength > 0 { throw pastTheCap }
        if let refusal = chunkHeadRefusal(at: offset, range: range, declaredLength: declaredLength) { throw refusal }
        let writer = blobs.stagingWriter(uploadId: upload.uploadId, offset: offset)
        let staged: (length: UInt64, digest: String, adoptedAt: ContinuousClock.Instant?)
        do {
            let pending = try await streamBody(body, into: writer, at: offset, range: range, declaredLength: declaredLength, pastTheCap: pastTheCap)
            staged = try await Self.blocking { [pending] in
                try writer.write(pending)
                // A whole layer made its blob commits with its completion, which names the blob:
                // its staging name need not be durable (a sync of the directory saved), unless
                // it is not made the blob, or the completion is refused (``finishUpload``).
                let (length, digest) = try writer.finish(syncingItsName: adoptable == nil)
                let adoptedAt = length > 0 ? adoptable.flatMap { self.adopt(upload.uploadId, as: $0, digest: digest, length: length) } : nil
                if length > 0, adoptable != nil, adoptedAt == nil { try writer.syncName() }
                return (length, digest, adoptedAt)
            }
        } catch {
            writer.abandon()
            await cutBackStaging(upload.uploadId, orTo: offset)
            throw error
        }
        guard staged.length > 0 else { return (offset, nil, nil) }
        var part = UploadLayerPart(.init(registryChunkOf: upload, at: offset, length: staged.length), partLength: staged.length, partDigest: staged.digest)
        part.staged = true
        return (offset, part, staged.adoptedAt)
    }

    /// Streams a chunk's body into `writer` (which starts at `offset`), a buffer of
    /// ``chunkBufferBytes`` at a time, refusing it as soon as it holds more than its
    /// `Content-Range` says (or any byte, past the part cap), and at its end when it holds fewer.
    /// - Returns: the bytes read but not yet written, for the caller's last write, which it makes
    ///   with the file's finish in one trip to the thread pool.
    private func streamBody<Body: AsyncSequence & Sendable>(
        _ body: Body, into writer: BlobStore.StagingWriter, at offset: UInt64, range: ClosedRange<UInt64>?, declaredLength: UInt64?,
        pastTheCap: CommandError? = nil
    ) async throws -> [UInt8] where Body.Element == ByteBuffer {
        // The bytes `Content-Range` says the chunk holds, less one (`last - first` cannot overflow,
        // where their count can: `0-18446744073709551615`).
        let declaredSpan = range.map { $0.upperBound - $0.lowerBound }
        func heldOtherThanDeclared(_ held: UInt64, soFar: Bool = false) -> ChunkLengthMismatch {
            Self.heldOtherThanDeclared(at: offset, range!, held: soFar ? "at least \(held) bytes the chunk held" : "the \(held) bytes the chunk held")
        }
        // A chunk that may hold bytes shows in the staging folder before they come (the expiry
        // sweeper spares what it finds there locked), however slowly they do.
        if declaredLength != 0 { try await Self.blocking { try writer.openFile() } }
        var pending: [UInt8] = []
        pending.reserveCapacity(Self.chunkBufferBytes)
        var received: UInt64 = 0
        for try await buffer in body {
            if let pastTheCap, buffer.readableBytes > 0 { throw pastTheCap }
            received += UInt64(buffer.readableBytes)
            // A body longer than it said is refused as soon as it is, not once it is staged.
            if let declaredSpan, received > 0, received - 1 > declaredSpan { throw heldOtherThanDeclared(received, soFar: true) }
            pending.append(contentsOf: buffer.readableBytesView)
            if pending.count >= Self.chunkBufferBytes {
                try await Self.blocking { [pending] in try writer.write(pending) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        if let declaredSpan, received == 0 || received - 1 != declaredSpan { throw heldOtherThanDeclared(received) }
        return pending
    }

    /// What a chunk's head alone refuses, at `offset`, the bytes its upload holds: decided before
    /// its body is read (and so before a client that sent `Expect: 100-continue` is asked for it),
    /// and, for a monolithic `POST`, before its repository or session is made. `nil` when the
    /// body may be read.
    public func chunkHeadRefusal(at offset: UInt64, range: ClosedRange<UInt64>?, declaredLength: UInt64?) -> (any Error)? {
        if let range, range.lowerBound != offset {
            return ChunkOutOfRange(bytesReceived: offset, message: "The chunk must start at byte \(offset), where the upload has reached")
        }
        guard let declaredLength else { return nil }
        if let range, declaredLength == 0 || declaredLength - 1 != range.upperBound - range.lowerBound {
            return Self.heldOtherThanDeclared(at: offset, range, held: "the \(declaredLength) bytes its Content-Length declares")
        }
        // An empty chunk (a final PUT's) adds nothing, whatever the upload holds.
        guard declaredLength > 0 else { return nil }
        let limit = blobs.maximumLayerBytes
        if offset > limit || declaredLength > limit - offset { return LayerTooLarge(maximumBytes: limit) }
        // A disk past its reserve refuses the chunk's first mebibyte now, not once it is sent (a
        // streamed chunk, its length unsaid, at its first byte).
        do { try blobs.ensureRoom(for: min(declaredLength, 1 << 20)) } catch { return error }
        return nil
    }

    private static func heldOtherThanDeclared(at offset: UInt64, _ range: ClosedRange<UInt64>, held: String) -> ChunkLengthMismatch {
        ChunkLengthMismatch(bytesReceived: offset, message: "Content-Range \(range.lowerBound)-\(range.upperBound) does not cover \(held)")
    }

    /// Makes a staged file holding a whole layer the blob `completion` names. On NIO's thread pool.
    /// - Returns: when it claimed the blob (for the writer's fence, ``UploadStore/BlobClaims``);
    ///   `nil` when it is not that layer or cannot be linked.
    private func adopt(_ uploadId: String, as completion: CompleteLayerUpload, digest: String, length: UInt64) -> ContinuousClock.Instant? {
        guard completion.names(digest) else { return nil }
        let claimedAt = ContinuousClock.now
        do {
            return try storage.adoptStaged(blobs.stagingPath(uploadId), digest: digest, size: length) ? claimedAt : nil
        } catch {
            logger.debug("the whole layer could not be linked at once; completing it the ordinary way", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Records a staged chunk's part; refused, staging is cut back to what the log records.
    private func record(_ part: UploadLayerPart, _ metadata: RequestMetadata) async throws {
        do {
            _ = try await store.execute(.uploadLayerPart(part), metadata: metadata)
        } catch {
            await cutBackStaging(part.uploadId, orTo: part.partFirstByte, after: error)
            throw error
        }
    }

    /// How many bytes of a streamed chunk are gathered before each write to staging.
    public static let chunkBufferBytes = 1 << 20

    /// Ends an upload at its client's request (UploadAborted, `cancelled`) and deletes its staged
    /// bytes, without waiting for a chunk streaming in (see ``cutBackStaging(_:orTo:)``).
    public func cancelUpload(_ upload: RepositoryUpload, _ metadata: RequestMetadata) async throws {
        _ = try await store.execute(.cancelLayerUpload(CancelLayerUpload(upload)), metadata: metadata)
        blobs.removeStaging(upload.uploadId)
    }

    /// Mounts the layer `digest` into `repository` from the repository named `source`, or from
    /// the blob store when `nil` (the caller has seen it there). Its blob is claimed first, as
    /// every blob an event will name is (``BlobStorage/claimBlob(_:)``), once the source (or the
    /// repository itself, when the mount has nothing to do) is seen to hold the layer. One neither
    /// holds, or whose blob cannot be claimed, is refused (LayersNotFoundException): the client
    /// uploads it instead.
    public func mountLayer(_ digest: String, into repository: RepositoryRef, from source: String?, _ metadata: RequestMetadata) async throws {
        let held = try await reading { snapshot in
            try snapshot.layer(repository, digest) != nil
                || source.map { try snapshot.layer(RepositoryRef(registryId: repository.registryId, repositoryName: $0), digest) != nil } ?? true
        }
        let claimedAt = ContinuousClock.now
        guard held, let size = (try? await claimBlob(digest)) ?? nil else {
            throw CommandError(.layersNotFound, "The layer \(digest) is not in the repository with name '\(source ?? repository.repositoryName)'")
        }
        let from = source.map(MountLayer.Source.repository) ?? .blobStore(size: size)
        _ = try await store.execute(.mountLayer(MountLayer(into: repository, layerDigest: digest, from: from)), metadata: metadata, claimedBlobsAt: claimedAt)
    }

    static func uploadNotFound(_ upload: RepositoryUpload) -> CommandError {
        CommandError(.uploadNotFound, "The upload with id '\(upload.uploadId)' does not exist or has ended in the repository with name '\(upload.repository.repositoryName)'")
    }
}
