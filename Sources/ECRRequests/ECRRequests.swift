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
    /// The command, and the logo's bytes when its catalog data has one (the service keeps them
    /// as a blob before the command is decided).
    public static func createRepository(_ body: AWSJSONBody) throws -> (command: CreateRepository, logo: [UInt8]?) {
        let catalog = try body.structure("catalogData").map(catalogData)
        return (try CreateRepository(repositoryName: body.string("repositoryName"), catalog: catalog?.input, tags: ResourceTags(tags(body))), catalog?.logo)
    }

    public static func putRepositoryCatalogData(_ body: AWSJSONBody) throws -> (command: PutRepositoryCatalogData, logo: [UInt8]?) {
        let catalog = try body.structure("catalogData").map(catalogData)
        return (try PutRepositoryCatalogData(registryId: body.string("registryId"), repositoryName: body.string("repositoryName"), catalog: catalog?.input), catalog?.logo)
    }

    /// RepositoryCatalogDataInput.
    static func catalogData(_ body: AWSJSONBody) throws -> (input: RepositoryCatalogInput, logo: [UInt8]?) {
        let logo = try body.blob("logoImageBlob")
        let input = try RepositoryCatalogInput(
            description: body.string("description"), architectures: body.strings("architectures"),
            operatingSystems: body.strings("operatingSystems"), logoImage: logo, aboutText: body.string("aboutText"),
            usageText: body.string("usageText"))
        return (input, logo)
    }

    public static func tagResource(_ body: AWSJSONBody) throws -> TagResource {
        try TagResource(resourceArn: body.string("resourceArn"), tags: tags(body))
    }

    public static func untagResource(_ body: AWSJSONBody) throws -> UntagResource {
        try UntagResource(resourceArn: body.string("resourceArn"), tagKeys: body.strings("tagKeys"))
    }

    public static func putRegistryCatalogData(_ body: AWSJSONBody) throws -> PutRegistryCatalogData {
        try PutRegistryCatalogData(displayName: body.string("displayName"))
    }

    /// `tags`: a list of `{Key, Value}`.
    static func tags(_ body: AWSJSONBody) throws -> [(key: String?, value: String?)]? {
        try body.objects("tags", stringMembers: ["Key", "Value"])?.map { (key: $0["Key"], value: $0["Value"]) }
    }

    public static func deleteRepository(_ body: AWSJSONBody) throws -> DeleteRepository {
        try DeleteRepository(
            registryId: Validation.accountRegistryId(body.string("registryId")),
            repositoryName: body.string("repositoryName"), force: body.bool("force") ?? false)
    }

    public static func initiateLayerUpload(_ body: AWSJSONBody) throws -> InitiateLayerUpload {
        try InitiateLayerUpload(registryId: body.string("registryId"), repositoryName: body.string("repositoryName"))
    }

    /// Where the part goes, and its bytes (`layerPartBlob`, standard base64), read in place.
    public static func uploadLayerPart(_ body: AWSJSONBody) throws -> (placement: UploadLayerPart.Placement, bytes: Base64Part) {
        guard let text = try body.stringBytes("layerPartBlob") else { throw Validation.missing("layerPartBlob") }
        let placement = try UploadLayerPart.Placement(
            registryId: body.string("registryId"), repositoryName: body.string("repositoryName"),
            uploadId: body.string("uploadId"), partFirstByte: body.int64("partFirstByte"), partLastByte: body.int64("partLastByte"))
        return (placement, try Base64Part(text))
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
