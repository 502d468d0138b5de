/// Why a command was refused. Nothing is written for a refused command.
///
/// `code` is the error's name in the ECR Public API (the seed's names), so every front end shows
/// the same name; `message` says what to change.
public struct CommandError: Error, Equatable, Sendable, CustomStringConvertible {
    /// ECR Public error shapes this domain can raise. A plain enum on purpose: the API's mapping
    /// to HTTP status is an exhaustive switch that must break the build when a case is added.
    public enum Code: String, Sendable, CaseIterable {
        case invalidParameter = "InvalidParameterException"
        case registryNotFound = "RegistryNotFoundException"
        case repositoryNotFound = "RepositoryNotFoundException"
        case repositoryAlreadyExists = "RepositoryAlreadyExistsException"
        case repositoryNotEmpty = "RepositoryNotEmptyException"
        case uploadNotFound = "UploadNotFoundException"
        case invalidLayerPart = "InvalidLayerPartException"
        case layerPartTooSmall = "LayerPartTooSmallException"
        case invalidLayer = "InvalidLayerException"
        case emptyUpload = "EmptyUploadException"
        case layerAlreadyExists = "LayerAlreadyExistsException"
        case layersNotFound = "LayersNotFoundException"
        case referencedImagesNotFound = "ReferencedImagesNotFoundException"
        case imageAlreadyExists = "ImageAlreadyExistsException"
        case imageDigestDoesNotMatch = "ImageDigestDoesNotMatchException"
        case imageNotFound = "ImageNotFoundException"
        case limitExceeded = "LimitExceededException"
        case invalidTagParameter = "InvalidTagParameterException"
        case tooManyTags = "TooManyTagsException"
        case repositoryPolicyNotFound = "RepositoryPolicyNotFoundException"
        /// An `amz-sdk-invocation-id` already used by a different call (operation, principal or body).
        case idempotentParameterMismatch = "IdempotentParameterMismatchException"
        case server = "ServerException"
    }

    /// The members InvalidLayerPartException carries besides its message.
    public struct LayerPartContext: Equatable, Sendable {
        public let registryId: String
        public let repositoryName: String
        public let uploadId: String
        public let lastValidByteReceived: UInt64
    }

    public let code: Code
    public let message: String
    public var layerPart: LayerPartContext?

    public init(_ code: Code, _ message: String, layerPart: LayerPartContext? = nil) {
        self.code = code
        self.message = message
        self.layerPart = layerPart
    }

    /// The refusal of a completion whose layer is not any digest the caller named.
    public static func layerDigestMismatch(calculated digest: String) -> CommandError {
        CommandError(.invalidLayer, "None of the provided layer digests match the calculated layer digest \(digest)")
    }

    /// The API's error name, e.g. `RepositoryNotFoundException`.
    public var name: String { code.rawValue }
    public var description: String { "\(name): \(message)" }
}
