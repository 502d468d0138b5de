import AWSJSON
import ECRRequests
import UploadCore
import UploadService

extension ECRPublicService {
    func initiateLayerUpload(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let started = try await service.initiateLayerUpload(ECRRequests.initiateLayerUpload(body), metadata)
        return .object([("partSize", .uint(started.partSize)), ("uploadId", .string(started.uploadId))])
    }

    func uploadLayerPart(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let (placement, bytes) = try ECRRequests.uploadLayerPart(body)
        let accepted = try await service.uploadLayerPart(placement, bytes: bytes, metadata)
        return .object(sorting: [
            ("registryId", .string(accepted.repository.registryId)), ("repositoryName", .string(accepted.repository.repositoryName)),
            ("uploadId", .string(accepted.uploadId)), ("lastByteReceived", .uint(accepted.lastByteReceived)),
        ])
    }

    func completeLayerUpload(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let completed = try await service.completeLayerUpload(ECRRequests.completeLayerUpload(body), metadata)
        return .object(sorting: [
            ("registryId", .string(completed.repository.registryId)), ("repositoryName", .string(completed.repository.repositoryName)),
            ("uploadId", .string(completed.uploadId)), ("layerDigest", .string(completed.layerDigest)),
        ])
    }

    /// One answer per digest: AVAILABLE with its size, UNAVAILABLE, or a failure for an empty or
    /// malformed digest. The digests have no pattern in the model, so only one past its length
    /// bound (1,000) fails the whole call.
    func batchCheckLayerAvailability(_ body: AWSJSONBody, _ metadata: RequestMetadata) async throws -> JSONValue {
        let registryId = try Validation.registryId(body.string("registryId"))
        let repositoryName = try Validation.repositoryName(body.string("repositoryName"))
        guard let digests = try body.strings("layerDigests") else { throw Validation.missing("layerDigests") }
        guard (1...100).contains(digests.count) else {
            throw APIError.invalidParameter("'layerDigests' must have between 1 and 100 items; it has \(digests.count).")
        }
        // The model's length bound (code points, as Smithy counts) refuses the call, as every
        // bound does; only the form of a digest within it is a failure of its own.
        for (index, digest) in digests.enumerated() {
            try Validation.length(digest, member: "layerDigests.\(index + 1).member", min: 0, max: 1000)
        }
        let (layers, failures) = try await service.reading { [self] snapshot in
            let ref = try Decider.existingRepository(registryId, repositoryName, state: snapshot, settings: settings)
            var layers: [JSONValue] = [], failures: [JSONValue] = []
            for digest in digests {
                if digest.isEmpty {
                    failures.append(.object(sorting: [("layerDigest", .string(digest)), ("failureCode", .string("MissingLayerDigest")), ("failureReason", .string("The layer digest is empty"))]))
                } else if !Validation.isLayerDigest(digest) {
                    failures.append(.object(sorting: [("layerDigest", .string(digest)), ("failureCode", .string("InvalidLayerDigest")), ("failureReason", .string("The layer digest is not of the form algorithm:hex"))]))
                } else if let layer = try snapshot.layer(ref, digest.lowercased()) {
                    layers.append(.object(sorting: [
                        ("layerDigest", .string(digest)), ("layerAvailability", .string("AVAILABLE")), ("layerSize", .uint(layer.layerSize)),
                        ("mediaType", layer.mediaType.map(JSONValue.string)),
                    ]))
                } else {
                    layers.append(.object(sorting: [("layerDigest", .string(digest)), ("layerAvailability", .string("UNAVAILABLE"))]))
                }
            }
            return (layers, failures)
        }
        return .object([("failures", .array(failures)), ("layers", .array(layers))])
    }
}
