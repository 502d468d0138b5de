import NIOCore
import NIOPosix
public import UploadCore
import UploadStore

/// A registry client's chunk that does not start where its upload has reached, or does not hold
/// as many bytes as its `Content-Range` said. Nothing of it is recorded.
public struct ChunkOutOfRange: Error, Sendable {
    /// The bytes the upload holds: the only offset its next chunk may start at.
    public let bytesReceived: UInt64
    public let message: String
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
    ///   - range: where the client says the chunk starts and ends (`Content-Range`), when it says.
    /// - Returns: the bytes the upload holds afterwards.
    public func appendChunk<Body: AsyncSequence & Sendable>(
        _ upload: RepositoryUpload, range: ClosedRange<UInt64>?, body: Body, _ metadata: RequestMetadata
    ) async throws -> UInt64 where Body.Element == ByteBuffer {
        try await uploadLocks.withLock(upload.uploadId) {
            let offset = try self.bytesReceived(upload)
            if let range, range.lowerBound != offset {
                throw ChunkOutOfRange(bytesReceived: offset, message: "The chunk must start at byte \(offset), where the upload has reached")
            }
            let writer = self.blobs.stagingWriter(uploadId: upload.uploadId, offset: offset)
            let staged: (length: UInt64, digest: String)
            do {
                var pending: [UInt8] = []
                pending.reserveCapacity(Self.chunkBufferBytes)
                for try await buffer in body {
                    pending.append(contentsOf: buffer.readableBytesView)
                    if pending.count >= Self.chunkBufferBytes {
                        try await Self.blocking { [pending] in try writer.write(pending) }
                        pending.removeAll(keepingCapacity: true)
                    }
                }
                staged = try await Self.blocking { [pending] in try writer.write(pending); return try writer.finish() }
                if let range, staged.length != UInt64(range.count) {
                    throw ChunkOutOfRange(bytesReceived: offset, message: "Content-Range \(range.lowerBound)-\(range.upperBound) covers \(range.count) bytes but the chunk held \(staged.length)")
                }
            } catch {
                writer.abandon()
                self.cutBackStaging(upload.uploadId, orTo: offset)
                throw error
            }
            guard staged.length > 0 else { return offset }
            var command = UploadLayerPart(
                .init(registryChunkOf: upload, at: offset, length: staged.length), partLength: staged.length, partDigest: staged.digest)
            command.staged = true
            do {
                _ = try await self.store.execute(.uploadLayerPart(command), metadata: metadata)
            } catch {
                self.cutBackStaging(upload.uploadId, orTo: offset)
                throw error
            }
            return offset + staged.length
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

    /// Mounts a layer into a repository (LayerMounted; nothing when it is already there). Refused
    /// with `LayersNotFoundException` when the source does not hold it.
    public func mountLayer(_ command: MountLayer, _ metadata: RequestMetadata) async throws {
        _ = try await store.execute(.mountLayer(command), metadata: metadata)
    }

    static func uploadNotFound(_ upload: RepositoryUpload) -> CommandError {
        CommandError(.uploadNotFound, "The upload with id '\(upload.uploadId)' does not exist or has ended in the repository with name '\(upload.repository.repositoryName)'")
    }
}
