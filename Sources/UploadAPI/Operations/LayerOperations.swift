import AWSJSON
import Crypto
import Foundation
import NIOPosix
import UploadCore
import UploadStore

extension ECRPublicService {
    func initiateLayerUpload(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let command = try InitiateLayerUpload(registryId: body.string("registryId"), repositoryName: body.string("repositoryName"))
        let (uploadId, partSize) = try await store.initiateLayerUpload(command, metadata: metadata)
        return .object([("partSize", .uint(partSize)), ("uploadId", .string(uploadId))])
    }

    /// Stages the part's bytes and syncs them, then records the part. An exact retry of the last
    /// accepted part is answered as before and writes nothing.
    func uploadLayerPart(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        guard let text = try body.string("layerPartBlob") else { throw Validation.missing("layerPartBlob") }
        guard let data = Data(base64Encoded: text) else {
            throw APIError.invalidParameter("layerPartBlob is not valid standard base64")
        }
        let bytes = [UInt8](data)
        let command = try UploadLayerPart(
            registryId: body.string("registryId"), repositoryName: body.string("repositoryName"),
            uploadId: body.string("uploadId"), partFirstByte: body.int64("partFirstByte"), partLastByte: body.int64("partLastByte"),
            partLength: UInt64(bytes.count), partDigest: Self.sha256(bytes))
        let registryId = try settings.resolveRegistry(command.registryId)
        try await uploadLocks.withLock(command.uploadId) {
            // A retry of this very part, already recorded: answer as before, write nothing.
            if case .layerPartUploaded(let p)? = try self.store.recordedOutcome(of: .uploadLayerPart(command), metadata)?.events.first?.event,
               p.uploadId == command.uploadId, p.partFirstByte == command.partFirstByte, p.partLastByte == command.partLastByte,
               p.partDigest == command.partDigest {
                return
            }
            let decision = try self.store.preflight(.uploadLayerPart(command))
            guard !decision.events.isEmpty else { return }  // an exact retry: already recorded
            try await self.blocking { try self.blobs.writePart(uploadId: command.uploadId, offset: command.partFirstByte, bytes: bytes) }
            do {
                _ = try await self.store.execute(.uploadLayerPart(command), metadata: metadata)
            } catch {
                // Refused after its bytes were staged: staging must hold only what the log records.
                let recorded = (try? self.store.read { try $0.session(command.uploadId)?.bytesReceived }) ?? nil
                self.blobs.truncateStaging(command.uploadId, to: recorded ?? command.partFirstByte)
                throw error
            }
        }
        return .object(sorting: [
            ("registryId", .string(registryId)), ("repositoryName", .string(command.repositoryName)),
            ("uploadId", .string(command.uploadId)), ("lastByteReceived", .uint(command.partLastByte)),
        ])
    }

    /// Checks the upload, hashes its staged bytes while copying them into the blob store, and
    /// records the layer; the staging file goes only after the event has committed.
    func completeLayerUpload(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let command = try CompleteLayerUpload(
            registryId: body.string("registryId"), repositoryName: body.string("repositoryName"),
            uploadId: body.string("uploadId"), layerDigests: body.strings("layerDigests"))
        let registryId = try settings.resolveRegistry(command.registryId)
        let digest = try await uploadLocks.withLock(command.uploadId) { [command] in
            if let recorded = try self.store.recordedOutcome(of: .completeLayerUpload(command), metadata),
               case .layerUploadCompleted(let done)? = recorded.events.first?.event {
                return done.layerDigest  // a retry of a recorded call: its staging is already gone
            }
            var command = command
            try self.store.preflight(.completeLayerUpload(command))
            let uploadId = command.uploadId
            let size = try self.store.read { try $0.session(uploadId)?.bytesReceived } ?? 0
            let (digest, temporary) = try await self.blocking { try self.blobs.hashAndCopyStaged(uploadId: uploadId, length: size) }
            command.staged = .init(digest: digest, size: size)
            do {
                try self.store.preflight(.completeLayerUpload(command))
                try await self.blocking { try self.blobs.commitBlob(temporary, digest: digest) }
            } catch {
                self.blobs.discard(temporary: temporary)
                throw error
            }
            _ = try await self.store.execute(.completeLayerUpload(command), metadata: metadata)
            self.blobs.removeStaging(command.uploadId)
            return digest
        }
        return .object(sorting: [
            ("registryId", .string(registryId)), ("repositoryName", .string(command.repositoryName)),
            ("uploadId", .string(command.uploadId)), ("layerDigest", .string(digest)),
        ])
    }

    /// One answer per digest: AVAILABLE with its size, UNAVAILABLE, or a failure for an empty or
    /// malformed digest. The digests have no pattern in the model, so none fails the whole call.
    func batchCheckLayerAvailability(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let registryId = try Validation.registryId(body.string("registryId"))
        let repositoryName = try Validation.repositoryName(body.string("repositoryName"))
        guard let digests = try body.strings("layerDigests") else { throw Validation.missing("layerDigests") }
        guard (1...100).contains(digests.count) else {
            throw APIError.invalidParameter("'layerDigests' must have between 1 and 100 items; it has \(digests.count).")
        }
        var layers: [JSONValue] = [], failures: [JSONValue] = []
        try store.read { reader in
            let ref = try Decider.existingRepository(registryId, repositoryName, state: reader.tables, settings: settings)
            for digest in digests {
                if digest.isEmpty {
                    failures.append(.object(sorting: [("layerDigest", .string(digest)), ("failureCode", .string("MissingLayerDigest")), ("failureReason", .string("The layer digest is empty"))]))
                } else if digest.count > 1000 || !Validation.isLayerDigest(digest) {
                    failures.append(.object(sorting: [("layerDigest", .string(digest)), ("failureCode", .string("InvalidLayerDigest")), ("failureReason", .string("The layer digest is not of the form algorithm:hex"))]))
                } else if let layer = try reader.tables.layer(ref, digest.lowercased()) {
                    layers.append(.object(sorting: [("layerDigest", .string(digest)), ("layerAvailability", .string("AVAILABLE")), ("layerSize", .uint(layer.layerSize))]))
                } else {
                    layers.append(.object(sorting: [("layerDigest", .string(digest)), ("layerAvailability", .string("UNAVAILABLE"))]))
                }
            }
        }
        return .object([("failures", .array(failures)), ("layers", .array(layers))])
    }

    /// Runs file I/O (writes, fsyncs, hashing whole layers) on NIO's thread pool, never on the
    /// cooperative pool, which has only as many threads as cores.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }

    static func sha256(_ bytes: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
