import AWSJSON
import Crypto
import Foundation
import LogHashing
public import Hummingbird
import HTTPTypes
import Logging
import NIOCore
import UploadCore
public import UploadService
import UploadStore

/// ECR Public's API over AWS JSON 1.1: `POST /`, dispatched on `X-Amz-Target:
/// SpencerFrontendService.<Operation>`. Each operation reads its request into a command
/// (`ECRRequests`), asks the application layer (``UploadService``), and writes the answer.
public final class ECRPublicService: Sendable {
    public static let targetPrefix = "SpencerFrontendService."
    static let targetHeader = HTTPField.Name("X-Amz-Target")!
    static let requestIdHeader = HTTPField.Name("x-amzn-RequestId")!
    static let errorTypeHeader = HTTPField.Name("x-amzn-ErrorType")!
    static let invocationIdHeader = HTTPField.Name("amz-sdk-invocation-id")!
    /// `X-Content-Type-Options`, `nosniff` on every answer (``NoSniff``).
    static let contentTypeOptionsHeader = HTTPField.Name("X-Content-Type-Options")!

    typealias Operation = @Sendable (ECRPublicService, AWSJSONBody, RequestMetadata) async throws -> JSONValue

    /// Every operation this service answers, by name.
    static let operations: [String: Operation] = [
        "CreateRepository": { try await $0.createRepository($1, $2) },
        "DescribeRepositories": { try await $0.describeRepositories($1, $2) },
        "DeleteRepository": { try await $0.deleteRepository($1, $2) },
        "DescribeRegistries": { try await $0.describeRegistries($1, $2) },
        "GetAuthorizationToken": { try await $0.getAuthorizationToken($1, $2) },
        "InitiateLayerUpload": { try await $0.initiateLayerUpload($1, $2) },
        "UploadLayerPart": { try await $0.uploadLayerPart($1, $2) },
        "CompleteLayerUpload": { try await $0.completeLayerUpload($1, $2) },
        "BatchCheckLayerAvailability": { try await $0.batchCheckLayerAvailability($1, $2) },
        "PutImage": { try await $0.putImage($1, $2) },
        "DescribeImages": { try await $0.describeImages($1, $2) },
        "DescribeImageTags": { try await $0.describeImageTags($1, $2) },
        "BatchDeleteImage": { try await $0.batchDeleteImage($1, $2) },
        "GetRepositoryCatalogData": { try await $0.getRepositoryCatalogData($1, $2) },
        "PutRepositoryCatalogData": { try await $0.putRepositoryCatalogData($1, $2) },
        "GetRegistryCatalogData": { try await $0.getRegistryCatalogData($1, $2) },
        "PutRegistryCatalogData": { try await $0.putRegistryCatalogData($1, $2) },
        "TagResource": { try await $0.tagResource($1, $2) },
        "UntagResource": { try await $0.untagResource($1, $2) },
        "ListTagsForResource": { try await $0.listTagsForResource($1, $2) },
        "SetRepositoryPolicy": { try await $0.setRepositoryPolicy($1, $2) },
        "GetRepositoryPolicy": { try await $0.getRepositoryPolicy($1, $2) },
        "DeleteRepositoryPolicy": { try await $0.deleteRepositoryPolicy($1, $2) },
    ]

    /// The longest a request body not yet authenticated may take to arrive, by default
    /// (`--max-unsigned-body-seconds`; ``SpooledBody/defaultLongestArrival`` says why).
    public static let defaultLongestUnsignedArrival = SpooledBody.defaultLongestArrival

    /// The operations that write nothing: an answer of theirs the budget of answers held for slow
    /// readers cannot take is refused (``AnswerHolding``). Any other's is sent all the same.
    static let reads: Set<String> = [
        "DescribeRepositories", "DescribeRegistries", "GetAuthorizationToken", "BatchCheckLayerAvailability", "DescribeImages",
        "DescribeImageTags", "GetRepositoryCatalogData", "GetRegistryCatalogData", "ListTagsForResource", "GetRepositoryPolicy",
    ]

    /// The operations whose first attempt can change what authorised it (the repository and its
    /// policy gone, another policy set), with the refusal their caller now meets: a denied call of
    /// one, carrying an invocation id, still goes to the writer, which answers it only as the exact
    /// retry of a call it holds (``CommandSubmission/refusalUnlessRetry``), so that an SDK's retry
    /// after a lost answer is not denied. Each sends its command before it reads or writes anything.
    static let answeredAsRetriesWhenDenied: [String: @Sendable (ECRPublicService, AWSJSONBody, RequestMetadata, AccessDenied) async throws -> JSONValue] = [
        "DeleteRepository": { try await $0.deleteRepository($1, $2, refusalUnlessRetry: $3) },
        "SetRepositoryPolicy": { try await $0.setRepositoryPolicy($1, $2, refusalUnlessRetry: $3) },
        "DeleteRepositoryPolicy": { try await $0.deleteRepositoryPolicy($1, $2, refusalUnlessRetry: $3) },
    ]

    /// ECR Public's operations this coordinator does not serve: none since all 23 of the model
    /// are, but a name added here is answered UnsupportedCommandException, as the model says.
    static let unsupported: Set<String> = []

    let service: UploadService
    let logger: Logger
    let metrics: ServiceMetrics
    let authentication: Authentication
    /// Where bodies of requests not yet authenticated go past ``SpooledBody/memoryLimit``.
    let spoolDirectory: String
    let spoolBudget: ByteBudget
    /// Answers held in memory for slow readers (``AnswerHolding``).
    let answerBudget: ByteBudget
    /// The longest a body not yet authenticated may take to arrive (``SpooledBody``).
    let longestUnsignedArrival: Duration
    /// The registry front end (the OCI distribution API) on the same address, and the authority
    /// behind GetAuthorizationToken's passwords.
    public let registry: RegistryFrontEnd
    /// Signs the checkpoints `/log/checkpoint` serves; without one, none is served.
    let checkpoints: CheckpointSigner?
    /// The address each `repositoryUri` and `logoUrl` names.
    let endpoint: PublicEndpoint
    /// The pages' sign-in (``PageSession``), under a key derived from the registry's.
    let pageSession: PageSession

    /// How requests prove who sent them.
    public enum Authentication: Sendable {
        /// Nothing is checked and no principal is recorded. Only for loopback (see `serve`).
        case anonymous
        /// AWS Signature Version 4 with the operator's keys; the access key id is the principal.
        case sigV4(SigV4Verifier)
    }

    var settings: DecisionSettings { service.settings }
    var store: any EventStore { service.store }

    public init(
        service: UploadService, logger: Logger, metrics: ServiceMetrics = ServiceMetrics(),
        authentication: Authentication = .anonymous, spoolBudget: ByteBudget = .spool(),
        answerBudget: ByteBudget = .answers(), longestUnsignedArrival: Duration = defaultLongestUnsignedArrival,
        registry: RegistryFrontEnd? = nil, checkpoints: CheckpointSigner? = nil, endpoint: PublicEndpoint = PublicEndpoint()
    ) {
        self.endpoint = endpoint
        self.registry = registry ?? RegistryFrontEnd(
            service: service, authority: RegistryAuthority(
                authentication: authentication, key: SymmetricKey(size: .bits256), clock: service.store.clock,
                registryId: service.settings.defaultRegistryId),
            logger: logger, metrics: metrics)
        self.service = service
        self.logger = logger
        self.metrics = metrics
        metrics.startRequestCounts(operations: Self.operations.keys, endpoints: RegistryFrontEnd.Route.Endpoint.allCases.map(\.rawValue))
        self.authentication = authentication
        self.spoolBudget = spoolBudget
        self.answerBudget = answerBudget
        self.longestUnsignedArrival = longestUnsignedArrival
        self.checkpoints = checkpoints
        pageSession = PageSession(
            registryTokenKey: self.registry.authority.key, clock: service.store.clock, authentication: authentication,
            secure: self.registry.publicURL?.hasPrefix("https://") == true, signOuts: PageSignOuts(folder: service.blobs.directory, logger: logger))
        spoolDirectory = service.blobs.directory + "/spool"
        try? FileManager.default.createDirectory(atPath: spoolDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        SpooledBody.removeLeftovers(in: spoolDirectory)
    }

    /// The principal of a request without a body (a feed's GET): a middleware's, else the SigV4
    /// signer's; `nil` when anonymous.
    func principal(of request: Request, context: APIRequestContext) throws -> String? {
        if let principal = context.principal { return principal }
        guard case .sigV4(let verifier) = authentication else { return nil }
        return try verifier.verify(
            method: request.method.rawValue, authority: request.head.authority, path: request.uri.path, query: request.uri.query ?? "",
            headers: request.headers, body: [])
    }

    /// Reads the body of a request and authenticates it. A request from an unknown key, or with a
    /// malformed signature, is refused before a byte of its body is read; the rest is read into
    /// a ``SpooledBody`` (bounded memory) and checked against its signature before anything uses it.
    /// - Returns: the body and who signed it (`nil` when anonymous).
    func authenticatedBody(_ request: Request, context: APIRequestContext) async throws -> (body: [UInt8], principal: String?) {
        guard case .sigV4(let verifier) = authentication, context.principal == nil else {
            let buffer = try await ClientBody(request, limit: context.maxUploadSize).collect(upTo: context.maxUploadSize)
            return (Array(buffer.readableBytesView), context.principal)
        }
        try verifier.precheck(method: request.method.rawValue, headers: request.headers)
        let ensureRoom = { [blobs = service.blobs] (bytes: Int) throws in
            do { try blobs.ensureRoom(for: UInt64(bytes)) } catch let refusal as CommandError {
                throw CommandError(refusal.code, "The server's disk is nearly full; no more request bodies are taken until space is freed")
            }
        }
        // A body that says it will be spooled is refused now when the disk cannot take its first
        // mebibyte, before a client that sent `Expect: 100-continue` is asked for it.
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > SpooledBody.memoryLimit {
            try ensureRoom(min(declared, 1 << 20))
        }
        let spooled = try await SpooledBody(
            reading: ClientBody(request, limit: context.maxUploadSize), limit: context.maxUploadSize, spoolDirectory: spoolDirectory, budget: spoolBudget,
            from: ConnectionsByAddress.key(of: context.remoteAddress), longestArrival: longestUnsignedArrival, ensureRoom: ensureRoom)
        let principal = try verifier.verify(
            method: request.method.rawValue, authority: request.head.authority, path: request.uri.path, query: request.uri.query ?? "",
            headers: request.headers, payloadHash: spooled.sha256)
        return (try spooled.bytes(), principal)
    }

    /// The router: `POST /` (any path, as AWS ignores it) to ``respond(to:context:)``, behind
    /// whatever `addMiddleware` installs first (where request authentication goes; see
    /// ``APIRequestContext/principal``). `noopRoute` adds `POST /noop` for `upload-bench`.
    public func router(noopRoute: Bool = false, addMiddleware: (Router<APIRequestContext>) -> Void = { _ in }) -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: RequestLog())
        router.add(middleware: NoSniff())
        router.add(middleware: AnswerHolding.Middleware(budget: answerBudget))
        router.add(middleware: InterimContinue.Middleware())
        if case .anonymous = authentication {
            let publicURLHost = registry.publicURL.flatMap { URL(string: $0)?.host.map(LoopbackHostGuard<APIRequestContext>.withoutBrackets) }
            let configured = [endpoint.configuredHost, publicURLHost].compactMap { $0?.lowercased() }
            router.add(middleware: LoopbackHostGuard<APIRequestContext>(configuredHosts: Set(configured)))
        }
        router.add(middleware: RegistryFrontEnd.Dispatch(registry))
        router.add(middleware: ExactPaths())
        addMiddleware(router)
        router.add(middleware: AWSCallsAtAnyPath(service: self, except: noopRoute ? "/noop" : nil))
        router.add(middleware: NotFoundSaysWhy())
        addFeedRoutes(to: router)
        addTransparencyLogRoutes(to: router)
        addLogoRoute(to: router)
        addPageRoutes(to: router)
        if noopRoute { router.post("/noop") { request, context in try await self.noop(request, context) } }
        router.post("/") { request, context in await self.respond(to: request, context: context) }
        router.post("**") { request, context in await self.respond(to: request, context: context) }
        return router
    }

    /// A call of the AWS API (a `POST` naming its operation in `X-Amz-Target`) is answered at any
    /// path, as AWS serves it, whatever route the path matched: a path with a route of another
    /// method (`/events`, `/metrics`, `/gallery/`) answered such a call with an empty 404, which
    /// botocore reads as an error without a code. Hummingbird attaches a router's middleware to
    /// the routes added after it, so every route is added after this one. `except` is the
    /// benchmark's no-op route.
    struct AWSCallsAtAnyPath: RouterMiddleware {
        let service: ECRPublicService
        let except: String?

        func handle(_ request: Request, context: APIRequestContext, next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
            guard request.method == .post, request.headers[ECRPublicService.targetHeader] != nil, request.uri.path != except else {
                return try await next(request, context)
            }
            return await service.respond(to: request, context: context)
        }
    }

    /// Answers one request. Never throws: every failure becomes an AWS-shaped error response.
    public func respond(to request: Request, context: APIRequestContext) async -> Response {
        let requestId = RandomUUIDs.next()
        // The operation's name for metrics and logs: one of a closed set, and only once the request
        // is authenticated, so that no sender can mint label values.
        var operationLabel = ServiceMetrics.unknownOperation
        let start = ContinuousClock.now
        defer { metrics.timeRequest(operation: operationLabel, since: start) }
        do {
            let (bytes, principal) = try await authenticatedBody(request, context: context)
            let target = request.headers[Self.targetHeader]
            guard let target, target.hasPrefix(Self.targetPrefix) else { throw APIError.unknownOperation(target) }
            let name = String(target.dropFirst(Self.targetPrefix.count))
            guard var operation = Self.operations[name] else {
                if Self.unsupported.contains(name) {
                    operationLabel = name
                    throw APIError(type: "UnsupportedCommandException", message: "The action \(name) isn't supported by this coordinator.", status: .badRequest)
                }
                throw APIError.unknownOperation(target)
            }
            operationLabel = name
            let invocationId = try Self.invocationId(request.headers)
            let body = try AWSJSONBody(bytes)
            do {
                try await authorize(name, body, principal: principal)
            } catch let denied as AccessDenied {
                guard invocationId != nil, let retryOnly = Self.answeredAsRetriesWhenDenied[name] else { throw denied }
                operation = { try await retryOnly($0, $1, $2, denied) }
            }
            let metadata = RequestMetadata(
                requestId: requestId, source: "http", userAgent: RequestMetadata.recorded(userAgent: request.headers[.userAgent]),
                sourceAddress: context.remoteAddress?.recordedForm,
                principal: principal, invocationId: invocationId,
                requestDigest: invocationId.map { _ in Self.requestDigest(operation: name, body: bytes) })
            let result = try await operation(self, body, metadata)
            let response = Self.response(.ok, result, requestId: requestId)
            if Self.reads.contains(name) { try AnswerHolding.checkHeld() }  // a write's answer is always sent
            metrics.countRequest(operation: name, outcome: "ok")
            // The body's upload id only when it is one: an operation that takes none ignores any text sent there.
            let uploadId = ((try? body.string("uploadId")) ?? nil).flatMap { try? Validation.uploadId($0) }
            context.logger.debug("answered", metadata: Self.logMetadata(requestId, name, "ok", uploadId: uploadId))
            return response
        } catch {
            let api = APIError.from(error).modeled(for: operationLabel)
            metrics.countRequest(operation: operationLabel, outcome: api.type)
            let operation = operationLabel
            if api.status == .internalServerError {
                if let heldBack = LogLimiter.requestFailures.admit(to: logger) {
                    var metadata = Self.logMetadata(requestId, operation, api.type, error: "\(error)")
                    metadata["lines.held.back"] = "\(heldBack)"
                    context.logger.error("request failed", metadata: metadata)
                }
            } else {
                context.logger.debug("refused", metadata: Self.logMetadata(requestId, operation, api.type))
            }
            return Self.errorResponse(api, requestId: requestId)
        }
    }

    /// `amz-sdk-invocation-id`: absent (the call is simply not deduplicated), or 1 to 64 printable
    /// ASCII characters (SDKs send a UUID); anything else is refused before it reaches the store.
    static func invocationId(_ headers: HTTPFields) throws -> String? {
        let values = headers[values: invocationIdHeader]
        guard let value = values.first else { return nil }
        guard values.count == 1, (1...64).contains(value.utf8.count), value.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw APIError.invalidParameter("The amz-sdk-invocation-id header must be one value of 1 to 64 printable ASCII characters")
        }
        return value
    }

    /// What a call asked for, to tell its retries (the same digest) from another call reusing its
    /// invocation id: hex of the first 16 bytes of SHA-256 over the operation, a newline and the body.
    static func requestDigest(operation: String, body: [UInt8]) -> String {
        var hasher = SHA256()
        hasher.update(data: Array((operation + "\n").utf8))
        hasher.update(data: body)
        return Hex.encode(hasher.finalize().prefix(16))
    }

    /// The floor an operation is measured against: the same server, request and headers, the body
    /// collected, an answer of InitiateLayerUpload's size; no parsing, no store.
    func noop(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        _ = request.headers[Self.targetHeader]
        _ = try await request.body.collect(upTo: context.maxUploadSize)
        let body: JSONValue = .object([("partSize", .uint(10_485_760)), ("uploadId", .string("00000000-0000-0000-0000-000000000000"))])
        return Self.response(.ok, body, requestId: RandomUUIDs.next())
    }

    /// Log metadata under swift-log's dotted keys.
    static func logMetadata(_ requestId: String, _ operation: String, _ outcome: String, uploadId: String? = nil, error: String? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["request.id": "\(requestId)", "request.operation": "\(operation)", "request.outcome": "\(outcome)"]
        if let uploadId { metadata["upload.id"] = "\(uploadId)" }
        if let error { metadata["error"] = "\(error)" }
        return metadata
    }

    /// Answers a feed request (a GET) once it is authenticated, for keys of this registry only
    /// (a feed shows every repository); failures become AWS-shaped errors.
    func authenticated(_ request: Request, _ context: APIRequestContext, _ answer: () async throws -> Response) async -> Response {
        do {
            try registry.authority.access.checkRegistryWide(try principal(of: request, context: context), action: "ReadFeeds")
            let response = try await answer()
            try AnswerHolding.checkHeld()
            return response
        } catch {
            let api = APIError.from(error), requestId = RandomUUIDs.next()
            if api.status == .internalServerError, let heldBack = LogLimiter.requestFailures.admit(to: logger) {
                var metadata = Self.logMetadata(requestId, request.uri.path, api.type, error: "\(error)")
                metadata["lines.held.back"] = "\(heldBack)"
                logger.error("feed request failed", metadata: metadata)
            }
            return Self.errorResponse(api, requestId: requestId)
        }
    }

    /// `error` as an AWS-shaped answer.
    static func errorResponse(_ error: any Error) -> Response { errorResponse(APIError.from(error), requestId: RandomUUIDs.next()) }

    static func errorResponse(_ api: APIError, requestId: String) -> Response {
        var response = response(api.status, api.body, requestId: requestId)
        response.headers[errorTypeHeader] = api.type
        return response
    }

    static func response(_ status: HTTPResponse.Status, _ body: JSONValue, requestId: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/x-amz-json-1.1"
        headers[requestIdHeader] = requestId
        return Response(status: status, headers: headers, body: piecewise(ByteBuffer(bytes: body.utf8)))
    }

    /// The most bytes written at once. A write's completion is how the connection guard sees that
    /// a client reads, so a reader must take one piece per idle timeout, whatever the answer's size.
    static let pieceBytes = 16 * 1024

    /// `buffer` as a body written in pieces of ``pieceBytes``, its bytes counted as held in the
    /// request's ``AnswerHolding`` for as long as the body lives (one piece or less is not: it is
    /// handed to the connection at once).
    static func piecewise(_ buffer: ByteBuffer) -> ResponseBody {
        guard buffer.readableBytes > pieceBytes else { return ResponseBody(byteBuffer: buffer) }
        let held = AnswerHolding.current?.hold(buffer.readableBytes)
        return ResponseBody(contentLength: buffer.readableBytes) { writer in
            try await write(buffer, to: &writer)
            try await writer.finish(nil)
            withExtendedLifetime(held) {}  // captured: given back when the body goes, written or not
        }
    }

    /// Writes `buffer` in pieces of at most ``pieceBytes``, each when the connection takes it.
    /// Each piece is a copy: a slice would keep the whole buffer alive until its last piece is
    /// written, and the connection may queue every piece before it sends the first (NIO's
    /// backpressure reaches the writer a moment late), so that what is queued, which the guard
    /// counts (``AnswerHolding``), would be less than what is held.
    static func write(_ buffer: ByteBuffer, to writer: inout any ResponseBodyWriter) async throws {
        var buffer = buffer
        while let piece = buffer.readSlice(length: min(pieceBytes, buffer.readableBytes)), piece.readableBytes > 0 {
            try await writer.write(ByteBuffer(bytes: piece.readableBytesView))
        }
    }
}
