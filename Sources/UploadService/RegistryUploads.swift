import NIOCore
import NIOPosix
public import UploadCore
import UploadStore

/// A registry client's chunk that does not start where its upload has reached.
public struct ChunkOutOfOrder: Error, Sendable {
    /// The bytes the upload holds: the only offset its next chunk may start at.
    public let bytesReceived: UInt64
}

/// What the registry front end (the OCI distribution API) asks beyond ECR's operations: chunks
/// streamed as they arrive, cancel and mount. Each is the same command, decided by the same store,
/// as its ECR counterpart, under the registry's part rules (``PartRules/registry``).
extension UploadService {
    /// The bytes an active upload of `upload.repository` holds so far; `UploadNotFoundException` otherwise.
    public func bytesReceived(_ upload: RepositoryUpload) throws -> UInt64 {
        try read { snapshot in
            guard let session = try snapshot.session(upload.uploadId), session.state == .active, session.repository == upload.repository else {
                throw Self.uploadNotFound(upload)
            }
            return session.bytesReceived
        }
    }

    /// Stages a chunk as it arrives, at the offset the upload has reached, then records it as one
    /// part (LayerPartUploaded). Memory per chunk in flight is bounded by ``chunkBufferBytes`` plus
    /// what the connection buffers; a chunk of any size streams through. A chunk that fails part
    /// way (the client went away) or is refused leaves staging as the log records it.
    /// - Parameters:
    ///   - claimedOffset: where the client says the chunk starts (`Content-Range`), when it says.
    /// - Returns: the bytes the upload holds afterwards.
    public func appendChunk<Body: AsyncSequence & Sendable>(
        _ upload: RepositoryUpload, claimedOffset: UInt64?, body: Body, _ metadata: RequestMetadata
    ) async throws -> UInt64 where Body.Element == ByteBuffer {
        try await uploadLocks.withLock(upload.uploadId) {
            let offset = try self.bytesReceived(upload)
            if let claimedOffset, claimedOffset != offset { throw ChunkOutOfOrder(bytesReceived: offset) }
            let writer = try self.blobs.stagingWriter(uploadId: upload.uploadId, offset: offset)
            let staged: (length: UInt64, digest: String)
            do {
                var pending: [UInt8] = []
                pending.reserveCapacity(Self.chunkBufferBytes)
                for try await buffer in body {
                    pending.append(contentsOf: buffer.readableBytesView)
                    if pending.count >= Self.chunkBufferBytes {
                        let full = pending
                        try await Self.blocking { try writer.write(full) }
                        pending.removeAll(keepingCapacity: true)
                    }
                }
                let last = pending
                staged = try await Self.blocking { try writer.write(last); return try writer.finish() }
            } catch {
                writer.abandon()
                self.blobs.truncateStaging(upload.uploadId, to: offset)
                throw error
            }
            guard staged.length > 0 else { return offset }
            var command = UploadLayerPart(
                .init(registryChunkOf: upload, at: offset, length: staged.length), partLength: staged.length, partDigest: staged.digest)
            command.staged = true
            do {
                _ = try await self.store.execute(.uploadLayerPart(command), metadata: metadata)
            } catch {
                let recorded = (try? self.read { try $0.session(upload.uploadId)?.bytesReceived }) ?? nil
                self.blobs.truncateStaging(upload.uploadId, to: recorded ?? offset)
                throw error
            }
            return offset + staged.length
        }
    }

    /// How many bytes of a streamed chunk are gathered before each write to staging.
    public static let chunkBufferBytes = 1 << 20

    /// Ends an upload at its client's request (UploadAborted, `cancelled`) and deletes its staged bytes.
    public func cancelUpload(_ upload: RepositoryUpload, _ metadata: RequestMetadata) async throws {
        try await uploadLocks.withLock(upload.uploadId) {
            _ = try await self.store.execute(.cancelLayerUpload(CancelLayerUpload(upload)), metadata: metadata)
            self.blobs.removeStaging(upload.uploadId)
        }
    }

    /// Mounts a layer into a repository (LayerMounted; nothing when it is already there). Refused
    /// with `LayersNotFoundException` when the source does not hold it.
    public func mountLayer(_ command: MountLayer, _ metadata: RequestMetadata) async throws {
        _ = try await store.execute(.mountLayer(command), metadata: metadata)
    }

    static func uploadNotFound(_ upload: RepositoryUpload) -> CommandError {
        CommandError(.uploadNotFound, "The upload with id '\(upload.uploadId)' does not exist or has ended in the repository with name '\(upload.repository.repositoryName)'")
    }
}
