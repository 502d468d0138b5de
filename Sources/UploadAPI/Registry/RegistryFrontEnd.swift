import Foundation
public import Hummingbird
import HTTPTypes
import Logging
import NIOCore
import UploadCore
public import UploadService
import UploadStore

/// The OCI Distribution API (v1.1) under `/v2/`, and the token endpoint `/token`, on the same
/// address as the AWS JSON API. Each client action is the command its ECR counterpart sends,
/// through the same application layer (``UploadService``), recorded with `source: oci`:
/// a blob upload is InitiateLayerUpload, its chunks parts, its final `PUT` CompleteLayerUpload,
/// a manifest `PUT` is PutImage; cancels, mounts and deletes are commands too.
///
/// Installed as the router's first middleware (``RegistryFrontEnd/Dispatch``), so that its paths
/// never reach the AWS API's `POST /` catch-all.
public final class RegistryFrontEnd: Sendable {
    static let apiVersionHeader = HTTPField.Name("Docker-Distribution-API-Version")!
    /// The id of the request, on every answer to a request on a registry endpoint: the events it
    /// recorded carry it (`metadata.requestId`), and so does the server's log line when it failed.
    static let requestIdHeader = HTTPField.Name("X-Request-Id")!
    static let uploadUUIDHeader = HTTPField.Name("Docker-Upload-UUID")!
    static let contentDigestHeader = HTTPField.Name("Docker-Content-Digest")!
    static let subjectHeader = HTTPField.Name("OCI-Subject")!
    static let tagHeader = HTTPField.Name("OCI-Tag")!
    static let filtersAppliedHeader = HTTPField.Name("OCI-Filters-Applied")!

    let service: UploadService
    let authority: RegistryAuthority
    let logger: Logger
    let metrics: ServiceMetrics
    /// Whether a push to a repository that does not exist creates it (`--create-repositories-on-push`).
    let createsRepositoriesOnPush: Bool
    /// The scheme and host clients reach this server by (`--public-url`, e.g. behind a TLS proxy),
    /// for the token realm of its challenges; `nil`: `http://` and the Host the client used.
    let publicURL: String?

    public init(
        service: UploadService, authority: RegistryAuthority, logger: Logger, metrics: ServiceMetrics = ServiceMetrics(),
        createsRepositoriesOnPush: Bool = false, publicURL: String? = nil
    ) {
        self.publicURL = publicURL
        self.service = service
        self.authority = authority
        self.logger = logger
        self.metrics = metrics
        self.createsRepositoriesOnPush = createsRepositoriesOnPush
    }

    var registryId: String { service.settings.defaultRegistryId }

    /// Sends `/v2` and `/token` requests to the front end; everything else goes on.
    public struct Dispatch<Context: RequestContext & RemoteAddressRequestContext>: RouterMiddleware {
        let frontEnd: RegistryFrontEnd
        public init(_ frontEnd: RegistryFrontEnd) { self.frontEnd = frontEnd }

        public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            // A call of the AWS API (awscli given `--endpoint-url http://host/v2/`) is the AWS
            // API's, which serves any path: answered in the registry's JSON, awscli showed nothing.
            guard RegistryFrontEnd.serves(path: request.uri.path), request.headers[ECRPublicService.targetHeader] == nil else {
                return try await next(request, context)
            }
            return await frontEnd.respond(to: request, remoteAddress: context.remoteAddress)
        }
    }

    /// Whether `path` is the registry's (the API under `/v2/` and its token endpoint), not the AWS API's.
    static func serves(path: String) -> Bool { path == "/v2" || path.hasPrefix("/v2/") || path == "/token" }

    /// One request's route, parsed from its path.
    enum Route {
        case ping
        case token
        case startUpload(name: String)
        case upload(name: String, uploadId: String)
        case blob(name: String, digest: String)
        case manifest(name: String, reference: String)
        case tags(name: String)
        case referrers(name: String, digest: String)

        /// Parses from the right, since a repository name may itself hold `blobs` or `manifests`.
        init?(path: String) {
            if path == "/token" { self = .token; return }
            guard path == "/v2" || path.hasPrefix("/v2/") else { return nil }
            var parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(2).map(String.init)
            if path.hasSuffix("/") { parts.removeLast() }  // `/v2/<name>/blobs/uploads/`
            if parts.isEmpty || parts == [""] { self = .ping; return }
            func name(dropping count: Int) -> String? {
                guard parts.count > count else { return nil }
                return parts.dropLast(count).joined(separator: "/")
            }
            let n = parts.count
            if n >= 3, parts[n - 2] == "tags", parts[n - 1] == "list", let name = name(dropping: 2) {
                self = .tags(name: name)
            } else if n >= 3, parts[n - 2] == "blobs", parts[n - 1] == "uploads", let name = name(dropping: 2) {
                self = .startUpload(name: name)
            } else if n >= 4, parts[n - 3] == "blobs", parts[n - 2] == "uploads", let name = name(dropping: 3) {
                self = .upload(name: name, uploadId: parts[n - 1])
            } else if n >= 3, let name = name(dropping: 2) {
                switch parts[n - 2] {
                case "blobs": self = .blob(name: name, digest: parts[n - 1])
                case "manifests": self = .manifest(name: name, reference: parts[n - 1])
                case "referrers": self = .referrers(name: name, digest: parts[n - 1])
                default: return nil
                }
            } else {
                return nil
            }
        }

        /// The endpoints, as metrics and logs name them.
        enum Endpoint: String, CaseIterable {
            case ping, token, startUpload = "start_upload", upload, blob, manifest, tags, referrers
        }

        var endpoint: Endpoint {
            switch self {
            case .ping: .ping
            case .token: .token
            case .startUpload: .startUpload
            case .upload: .upload
            case .blob: .blob
            case .manifest: .manifest
            case .tags: .tags
            case .referrers: .referrers
            }
        }

        /// The endpoint's name in metrics.
        var name: String { endpoint.rawValue }

        var context: RegistryError.Context {
            switch self {
            case .ping, .token, .tags: .tags
            case .startUpload, .upload: .upload
            case .blob: .blob
            case .manifest, .referrers: .manifest
            }
        }
    }

    /// What a handler knows of its request.
    struct Call {
        let request: Request
        let remoteAddress: SocketAddress?
        let requestId: String
        var principal: String?

        /// The first value of query parameter `name`.
        func first(_ name: String) -> String? { request.uri.queryParameters.get(name) }

        func metadata() -> RequestMetadata {
            RequestMetadata(
                requestId: requestId, source: "oci", userAgent: RequestMetadata.recorded(userAgent: request.headers[.userAgent]),
                sourceAddress: remoteAddress?.recordedForm,
                principal: principal)
        }
    }

    /// Answers one request. Never throws: every failure becomes a spec-shaped error.
    func respond(to request: Request, remoteAddress: SocketAddress?) async -> Response {
        // Decoded, as distribution reads a path: a client that escapes its segments (`%3A` in a
        // digest, `%2F` in a name) names the same endpoint. A malformed escape names none.
        // The id the request's events record, and its log line if it fails; every answer names it.
        let requestId = RandomUUIDs.next()
        guard let route = request.uri.path.removingPercentEncoding.flatMap(Route.init(path:)) else {
            metrics.countRegistryRequest(endpoint: "unknown", outcome: RegistryError.Code.unsupported.rawValue)
            var response = Self.errorResponse(RegistryError(.unsupported, "No registry endpoint has this path", status: .notFound), request)
            response.headers[Self.requestIdHeader] = requestId
            return response
        }
        let start = ContinuousClock.now
        defer { metrics.timeRegistryRequest(endpoint: route.name, since: start) }
        do {
            var response = try await answer(request, route, remoteAddress: remoteAddress, requestId: requestId)
            if Self.readsOnly.contains(request.method) { try AnswerHolding.checkHeld() }  // a write's answer is always sent
            metrics.countRegistryRequest(endpoint: route.name, outcome: "ok")
            response.headers[Self.requestIdHeader] = requestId
            return response
        } catch let refusal as OAuthTokenRefusal {
            metrics.countRegistryRequest(endpoint: route.name, outcome: refusal.code.rawValue)
            var response = refusal.response(request)
            response.headers[Self.requestIdHeader] = requestId
            return response
        } catch {
            let registryError = RegistryError.from(error, in: route.context)
            if registryError.status.code >= 500, let heldBack = LogLimiter.requestFailures.admit(to: logger) {
                logger.error("registry request failed", metadata: [
                    "request.id": "\(requestId)", "request.method": "\(request.method)", "request.endpoint": "\(route.name)",
                    "error": "\(error)", "lines.held.back": "\(heldBack)"])
            }
            metrics.countRegistryRequest(endpoint: route.name, outcome: registryError.code.rawValue)
            var response = Self.errorResponse(registryError, request)
            response.headers[Self.requestIdHeader] = requestId
            return response
        }
    }

    /// The answer to a request on `route`, or the failure that becomes its error.
    private func answer(_ request: Request, _ route: Route, remoteAddress: SocketAddress?, requestId: String) async throws -> Response {
        var call = Call(request: request, remoteAddress: remoteAddress, requestId: requestId)
        switch route {
        case .token:
            return try await token(call)
        case .ping:
            guard Self.readsOnly.contains(request.method) else { throw Self.methodNotAllowed(allowing: Self.readsOnly) }
            call.principal = try authenticate(call, for: nil)
            return Self.response(.ok, .object([]), request)
        case .startUpload(let name):
            call.principal = try authenticate(call, for: (name, .push))
            let ref = try repository(name)
            guard request.method == .post else { throw Self.methodNotAllowed(allowing: [.post]) }
            // A monolithic upload or a mount records the part and the completion too.
            let completes = call.first("digest") != nil || call.first("mount") != nil
            try await authorize(call, ref, completes ? ["InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload"] : ["InitiateLayerUpload"])
            return try await startUpload(call, ref)
        case .upload(let name, let uploadId):
            call.principal = try authenticate(call, for: (name, .push))
            let ref = try repository(name)
            // A PUT may carry the last chunk.
            try await authorize(call, ref, request.method == .put ? ["UploadLayerPart", "CompleteLayerUpload"] : ["UploadLayerPart"])
            guard let id = try? Validation.uploadId(uploadId) else {
                throw RegistryError(.blobUploadUnknown, "There is no upload session '\(uploadId)'")
            }
            return try await upload(call, RepositoryUpload(ref, uploadId: id))
        case .blob(let name, let digest):
            call.principal = try authenticate(call, for: (name, request.method == .delete ? .delete : .pull))
            let ref = try repository(name)
            try await authorize(call, ref, [request.method == .delete ? "BatchDeleteImage" : "GetDownloadUrlForLayer"])
            return try await blob(call, ref, digest: digest)
        case .manifest(let name, let reference):
            let action: RegistryAction = switch request.method { case .put: .push; case .delete: .delete; default: .pull }
            call.principal = try authenticate(call, for: (name, action))
            let ref = try repository(name)
            try await authorize(call, ref, [action == .push ? "PutImage" : action == .delete ? "BatchDeleteImage" : "BatchGetImage"])
            return try await manifest(call, ref, reference: reference)
        case .tags(let name):
            call.principal = try authenticate(call, for: (name, .pull))
            let ref = try repository(name)
            guard Self.readsOnly.contains(request.method) else { throw Self.methodNotAllowed(allowing: Self.readsOnly) }
            try await authorize(call, ref, ["DescribeImageTags"])
            return try await tags(call, ref)
        case .referrers(let name, let digest):
            call.principal = try authenticate(call, for: (name, .pull))
            let ref = try repository(name)
            guard Self.readsOnly.contains(request.method) else { throw Self.methodNotAllowed(allowing: Self.readsOnly) }
            do {
                try await authorize(call, ref, ["BatchGetImage"])
            } catch let hidden as CommandError where hidden.code == .repositoryNotFound {
                // A repository a stranger may not read is, to it, one that does not exist, which
                // lists no referrers (never a 404): a 404 here would tell it the repository is there.
                return try await referrers(call, ref, digest: digest, hidden: true)
            }
            return try await referrers(call, ref, digest: digest)
        }
    }

    /// 405, with the methods the endpoint takes (RFC 9110 §15.5.6: a 405 must list them).
    static func methodNotAllowed(allowing methods: [HTTPRequest.Method], _ message: String = "This endpoint does not take that method") -> RegistryError {
        var error = RegistryError(.unsupported, message)
        error.headers[.allow] = methods.map(\.rawValue).joined(separator: ", ")
        return error
    }

    static let readsOnly: [HTTPRequest.Method] = [.get, .head]

    /// The repository a path names, in the default registry; `NAME_INVALID` when it is not a name.
    func repository(_ name: String) throws -> RepositoryRef {
        guard let name = try? Validation.repositoryName(name) else {
            throw RegistryError(.nameInvalid, "'\(name)' is not a repository name: 2 to 205 characters of [a-z0-9] parts joined by '.', '_', '-' and '/'")
        }
        return RepositoryRef(registryId: registryId, repositoryName: name)
    }

    /// A push to a repository that does not exist creates it, under `--create-repositories-on-push`.
    func createIfAllowed(_ ref: RepositoryRef, _ call: Call) async throws {
        guard createsRepositoriesOnPush, try await service.reading({ try $0.repository(ref) }) == nil else { return }
        do {
            _ = try await service.createRepository(CreateRepository(repositoryName: ref.repositoryName), call.metadata())
        } catch let refusal as CommandError where refusal.code == .repositoryAlreadyExists {
            // Another push created it first.
        }
    }

    // MARK: Answers

    static func response(_ status: HTTPResponse.Status, _ body: JSONValue, _ request: Request, headers: HTTPFields = [:], contentType: String = "application/json") -> Response {
        var headers = headers
        headers[.contentType] = contentType
        return response(status, ByteBuffer(bytes: body.utf8), request, headers: headers)
    }

    static func response(_ status: HTTPResponse.Status, _ body: ByteBuffer, _ request: Request, headers: HTTPFields) -> Response {
        var headers = headers
        headers[apiVersionHeader] = "registry/2.0"
        if request.method == .head {
            if headers[.contentLength] == nil { headers[.contentLength] = String(body.readableBytes) }
            return Response(status: status, headers: headers, body: ResponseBody())
        }
        return Response(status: status, headers: headers, body: ECRPublicService.piecewise(body))
    }

    /// An answer with no body (`202`, `201`, `204`).
    static func empty(_ status: HTTPResponse.Status, _ request: Request, headers: HTTPFields) -> Response {
        var headers = headers
        headers[.contentLength] = "0"
        return response(status, ByteBuffer(), request, headers: headers)
    }

    static func errorResponse(_ error: RegistryError, _ request: Request) -> Response {
        response(error.status, error.body, request, headers: error.headers)
    }

    /// `Range` as the spec writes an upload's progress: `0-<last byte>` (`0-0` when it holds none).
    static func rangeHeader(_ bytesReceived: UInt64) -> String { "0-\(bytesReceived == 0 ? 0 : bytesReceived - 1)" }

    static func uploadLocation(_ upload: RepositoryUpload) -> String { "/v2/\(upload.repository.repositoryName)/blobs/uploads/\(upload.uploadId)" }
}
