import AWSJSON
import Hummingbird
import UploadCore
import UploadService
import UploadStore

/// An error as AWS JSON 1.1 reports it: HTTP status, `__type` (the only field botocore reads for
/// the code), `message`, and any extra members of the error shape.
struct APIError: Error {
    let type: String
    let message: String
    let status: HTTPResponse.Status
    var members: [(String, JSONValue)] = []

    static func serialization(_ message: String) -> APIError {
        APIError(type: "SerializationException", message: message, status: .badRequest)
    }

    /// A ServerException: a fault of the server's (a store that failed, an answer it should not
    /// have given), never the caller's doing.
    static func server(_ message: String) -> APIError {
        APIError(type: CommandError.Code.server.rawValue, message: message, status: .internalServerError)
    }

    static func invalidParameter(_ message: String) -> APIError {
        APIError(type: CommandError.Code.invalidParameter.rawValue, message: message, status: .badRequest)
    }

    static func unknownOperation(_ target: String?) -> APIError {
        APIError(
            type: "UnknownOperationException",
            message: target.map { "The operation '\($0)' is not known; X-Amz-Target must be SpencerFrontendService.<Operation>" }
                ?? "The X-Amz-Target header is missing; it must be SpencerFrontendService.<Operation>",
            status: .badRequest)
    }

    /// The operations whose model lists `RegistryNotFoundException`: the layer operations and
    /// PutImage. The others list `InvalidParameterException` for it, and an SDK that types its
    /// errors by operation (aws-sdk-go-v2) could match nothing else.
    static let modelRegistryNotFound: Set<String> = ["BatchCheckLayerAvailability", "CompleteLayerUpload", "InitiateLayerUpload", "PutImage", "UploadLayerPart"]

    /// This error as `operation`'s model lists it: a registry this server does not serve is
    /// `InvalidParameterException` where the model has no `RegistryNotFoundException`.
    func modeled(for operation: String) -> APIError {
        guard type == CommandError.Code.registryNotFound.rawValue, !Self.modelRegistryNotFound.contains(operation) else { return self }
        return APIError(type: CommandError.Code.invalidParameter.rawValue, message: message, status: status, members: members)
    }

    /// Maps any error to its AWS shape. Only store failures are 500 (botocore retries those).
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let api as APIError:
            return api
        case let bad as SerializationError:
            return .serialization(bad.description)
        case let denied as AccessDenied:
            return APIError(type: "AccessDeniedException", message: denied.message, status: .forbidden)
        case let refusal as CommandError:
            var api = APIError(type: refusal.name, message: refusal.message, status: status(of: refusal.code))
            if let part = refusal.layerPart {
                api.members = [
                    ("registryId", .string(part.registryId)), ("repositoryName", .string(part.repositoryName)),
                    ("uploadId", .string(part.uploadId)), ("lastValidByteReceived", .uint(part.lastValidByteReceived)),
                ]
            }
            return api
        case let failure as StoreError where failure.code == .overloaded:
            // 400 ThrottlingException: botocore backs off and retries it.
            return APIError(type: "ThrottlingException", message: failure.message, status: .badRequest)
        case let failure as StoreError:
            return .server(failure.messageForCallers ?? unexplained)
        case let tooLarge as LayerTooLarge:
            return APIError(type: CommandError.Code.limitExceeded.rawValue, message: tooLarge.description, status: .badRequest)
        case is RequestBodyEnded:
            return .serialization("The request body ended before all of it arrived")
        case let spent as AnswerBudgetSpent:
            return APIError(type: "ThrottlingException", message: spent.description, status: .badRequest)
        case is CancellationError:
            // The request's task was cancelled, as every one is when the server stops: a retry
            // (to another node, or once it is back) is what the client should do.
            return APIError(type: "ThrottlingException", message: "The request was cancelled: the server is stopping; try again", status: .badRequest)
        case let spool as SpoolError:
            // Its text names server paths: keep it in the log, not in the answer.
            return APIError(type: CommandError.Code.server.rawValue, message: spool.messageForCallers, status: .internalServerError)
        case let http as any HTTPResponseError where http.status == .contentTooLarge:
            return APIError(type: "RequestEntityTooLargeException", message: "The request body is larger than the 30,000,000 bytes accepted", status: .contentTooLarge)
        default:
            return .server(unexplained)
        }
    }

    /// A fault's answer: its own words stay in the server's log (they may name its files; the
    /// line, when the log's limit lets it through, carries the answer's request id).
    static let unexplained = "The server could not complete the request; its log says why"

    /// Exhaustive on purpose: a new error code must be given its status here.
    static func status(of code: CommandError.Code) -> HTTPResponse.Status {
        switch code {
        case .server: .internalServerError
        case .invalidParameter, .registryNotFound, .repositoryNotFound, .repositoryAlreadyExists, .repositoryNotEmpty,
             .uploadNotFound, .invalidLayerPart, .layerPartTooSmall, .invalidLayer, .emptyUpload, .layerAlreadyExists,
             .layersNotFound, .referencedImagesNotFound, .imageAlreadyExists, .imageDigestDoesNotMatch, .imageNotFound,
             .limitExceeded, .idempotentParameterMismatch, .invalidTagParameter, .tooManyTags, .repositoryPolicyNotFound:
            .badRequest
        }
    }

    var body: JSONValue {
        .object(sorting: [("__type", .string(type)), ("message", .string(message))] + members.map { ($0.0, $0.1) })
    }
}
