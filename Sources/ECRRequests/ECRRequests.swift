public import AWSJSON
import Foundation
import LogHashing
public import UploadCore

/// ECR Public request bodies read into validated commands: the one mapping from the API's members
/// to the domain's commands, shared by the HTTP front end and the request fuzzer.
///
/// Each throws `SerializationError` for a member of the wrong JSON type and ``CommandError``
/// (`InvalidParameterException`) for a value the API does not allow.
public enum ECRRequests {
    public static func createRepository(_ body: AWSJSONBody) throws -> CreateRepository {
        try CreateRepository(repositoryName: body.string("repositoryName"))
    }

    public static func deleteRepository(_ body: AWSJSONBody) throws -> DeleteRepository {
        try DeleteRepository(
            registryId: Validation.accountRegistryId(body.string("registryId")),
            repositoryName: body.string("repositoryName"), force: body.bool("force") ?? false)
    }

    public static func initiateLayerUpload(_ body: AWSJSONBody) throws -> InitiateLayerUpload {
        try InitiateLayerUpload(registryId: body.string("registryId"), repositoryName: body.string("repositoryName"))
    }

    /// The command and the part's bytes (`layerPartBlob`, standard base64).
    public static func uploadLayerPart(_ body: AWSJSONBody) throws -> (command: UploadLayerPart, bytes: [UInt8]) {
        guard let text = try body.string("layerPartBlob") else { throw Validation.missing("layerPartBlob") }
        guard let data = Data(base64Encoded: text) else {
            throw CommandError(.invalidParameter, "layerPartBlob is not valid standard base64")
        }
        let bytes = [UInt8](data)
        let command = try UploadLayerPart(
            registryId: body.string("registryId"), repositoryName: body.string("repositoryName"),
            uploadId: body.string("uploadId"), partFirstByte: body.int64("partFirstByte"), partLastByte: body.int64("partLastByte"),
            partLength: UInt64(bytes.count), partDigest: Hex.sha256Digest(bytes))
        return (command, bytes)
    }

    public static func completeLayerUpload(_ body: AWSJSONBody) throws -> CompleteLayerUpload {
        try CompleteLayerUpload(
            registryId: body.string("registryId"), repositoryName: body.string("repositoryName"),
            uploadId: body.string("uploadId"), layerDigests: body.strings("layerDigests"))
    }

    public static func putImage(_ body: AWSJSONBody) throws -> PutImage {
        try PutImage(
            registryId: body.string("registryId"), repositoryName: body.string("repositoryName"),
            imageManifest: body.string("imageManifest"), imageManifestMediaType: body.string("imageManifestMediaType"),
            imageTag: body.string("imageTag"), imageDigest: body.string("imageDigest"))
    }

    public static func batchDeleteImage(_ body: AWSJSONBody) throws -> BatchDeleteImage {
        try BatchDeleteImage(registryId: body.string("registryId"), repositoryName: body.string("repositoryName"), imageIds: imageIds(body))
    }

    /// `imageIds`: a list of `{imageDigest?, imageTag?}`.
    public static func imageIds(_ body: AWSJSONBody) throws -> [ImageIdentifier]? {
        try body.objects("imageIds", stringMembers: ["imageDigest", "imageTag"])?.map {
            ImageIdentifier(imageDigest: $0["imageDigest"], imageTag: $0["imageTag"])
        }
    }
}
