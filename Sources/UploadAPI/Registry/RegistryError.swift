import Hummingbird
import HTTPTypes
import UploadCore
import UploadService
import UploadStore

/// An error as the OCI distribution spec reports it: a status, and a body of
/// `{"errors": [{"code", "message", "detail"}]}` with one of the spec's codes.
struct RegistryError: Error {
    enum Code: String {
        case blobUnknown = "BLOB_UNKNOWN"
        case blobUploadInvalid = "BLOB_UPLOAD_INVALID"
        case blobUploadUnknown = "BLOB_UPLOAD_UNKNOWN"
        case digestInvalid = "DIGEST_INVALID"
        case manifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
        case manifestInvalid = "MANIFEST_INVALID"
        case manifestUnknown = "MANIFEST_UNKNOWN"
        case nameInvalid = "NAME_INVALID"
        case nameUnknown = "NAME_UNKNOWN"
        case sizeInvalid = "SIZE_INVALID"
        case unauthorized = "UNAUTHORIZED"
        case denied = "DENIED"
        case unsupported = "UNSUPPORTED"
        case tooManyRequests = "TOOMANYREQUESTS"
        /// Not one of the spec's codes, but distribution's for a refusal that passes (503 with
        /// `Retry-After`): the store cannot answer now (its views catching up with the log, the
        /// server stopping, a fault that passes: ``StoreError/passing``), and a retry soon should succeed.
        case unavailable = "UNAVAILABLE"
        /// Not one of the spec's codes: a failure of this server, never of the request.
        case unknown = "UNKNOWN"
    }

    let code: Code
    let message: String
    let status: HTTPResponse.Status
    /// Headers the answer must carry (`Range` on a 416, `WWW-Authenticate` on a 401).
    var headers = HTTPFields()

    init(_ code: Code, _ message: String, status: HTTPResponse.Status? = nil) {
        self.code = code
        self.message = message
        self.status = status ?? Self.status(of: code)
        if code == .tooManyRequests || code == .unavailable { headers[.retryAfter] = "1" }
    }

    private static func status(of code: Code) -> HTTPResponse.Status {
        switch code {
        case .blobUnknown, .blobUploadUnknown, .manifestUnknown, .nameUnknown: .notFound
        case .blobUploadInvalid, .digestInvalid, .manifestBlobUnknown, .manifestInvalid, .nameInvalid, .sizeInvalid: .badRequest
        case .unauthorized: .unauthorized
        case .denied: .forbidden
        case .unsupported: .methodNotAllowed
        case .tooManyRequests: .tooManyRequests
        case .unavailable: .serviceUnavailable
        case .unknown: .internalServerError
        }
    }

    /// Where an error arose, so that a domain refusal gets the code that names the right thing.
    enum Context { case blob, upload, manifest, tags }

    /// Maps any error to its registry shape.
    static func from(_ error: any Error, in context: Context) -> RegistryError {
        switch error {
        case let registry as RegistryError:
            return registry
        case let denied as AccessDenied:
            return RegistryError(.denied, denied.message)
        case let refusal as CommandError:
            switch refusal.code {
            case .repositoryNotFound, .registryNotFound: return RegistryError(.nameUnknown, refusal.message)
            case .uploadNotFound: return RegistryError(.blobUploadUnknown, refusal.message)
            case .invalidLayer, .imageDigestDoesNotMatch: return RegistryError(.digestInvalid, refusal.message)
            case .layersNotFound, .referencedImagesNotFound:
                return RegistryError(context == .manifest ? .manifestBlobUnknown : .blobUnknown, refusal.message)
            case .imageNotFound: return RegistryError(.manifestUnknown, refusal.message)
            case .invalidLayerPart, .layerPartTooSmall, .emptyUpload: return RegistryError(.blobUploadInvalid, refusal.message)
            case .invalidParameter, .invalidTagParameter, .tooManyTags:
                return RegistryError(context == .manifest ? .manifestInvalid : context == .upload ? .blobUploadInvalid : .nameInvalid, refusal.message)
            case .limitExceeded: return RegistryError(.tooManyRequests, refusal.message)
            case .repositoryAlreadyExists, .repositoryNotEmpty, .layerAlreadyExists, .imageAlreadyExists, .idempotentParameterMismatch,
                 .repositoryPolicyNotFound:
                return RegistryError(.denied, refusal.message)
            case .server: return RegistryError(.unknown, refusal.message)
            }
        case let outOfRange as ChunkOutOfRange:
            var error = RegistryError(.blobUploadInvalid, outOfRange.message, status: .rangeNotSatisfiable)
            error.headers[.range] = RegistryFrontEnd.rangeHeader(outOfRange.bytesReceived)
            return error
        case let mismatch as ChunkLengthMismatch:
            var error = RegistryError(.sizeInvalid, mismatch.message)
            error.headers[.range] = RegistryFrontEnd.rangeHeader(mismatch.bytesReceived)
            return error
        case let failure as StoreError:
            // Refusals that pass say why (``StoreError/messageForCallers``); a fault is logged,
            // and answered without the store's words: even those written for callers are the AWS
            // API's (an invocation id's retry), and pulls need no credentials.
            switch failure.code {
            case .overloaded: return RegistryError(.tooManyRequests, failure.messageForCallers ?? failure.message)
            case .viewsBehind, .closed: return RegistryError(.unavailable, failure.messageForCallers ?? failure.message)
            case .io where failure.passing != nil: return RegistryError(.unavailable, "\(failure.passing!); try again")
            case .io, .corrupt, .migration: return RegistryError(.unknown, "The request could not be completed")
            }
        case let spent as AnswerBudgetSpent:
            return RegistryError(.tooManyRequests, spent.description)
        case is CancellationError:  // the server is stopping (as APIError's)
            return RegistryError(.tooManyRequests, "The request was cancelled: the server is stopping; try again")
        case let tooLarge as LayerTooLarge:
            return RegistryError(.sizeInvalid, tooLarge.description, status: .contentTooLarge)
        case let http as any HTTPResponseError where http.status == .contentTooLarge:
            return RegistryError(context == .manifest ? .manifestInvalid : .sizeInvalid, "The request body is too large", status: .contentTooLarge)
        case is RequestBodyEnded:
            return RegistryError(context == .manifest ? .manifestInvalid : .blobUploadInvalid, "The request body ended before all of it arrived")
        default:
            return RegistryError(.unknown, "The request could not be completed")
        }
    }

    var body: JSONValue {
        .object([("errors", .array([.object([("code", .string(code.rawValue)), ("message", .string(message)), ("detail", .object([]))])]))])
    }
}
