import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Testing
@testable import UploadAPI
@testable import UploadCore
@testable import UploadStore
import UploadService
import UploadTesting

/// Dispatch and error mapping, through the router in process (`RouterClient`).
struct DispatchTests {
    /// Runs `body` against the API over a fresh store.
    func withAPI(
        addMiddleware: (Router<APIRequestContext>) -> Void = { _ in },
        _ body: @escaping @Sendable (RouterClient, Store) async throws -> Void
    ) async throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let store = try Store(testConfiguration(dir))
        let service = ECRPublicService(service: UploadService(store: store, blobs: try BlobStore(directory: dir.path), logger: Logger(label: "test")), logger: Logger(label: "test"))
        do {
            try await body(RouterClient(router: service.router(addMiddleware: addMiddleware)), store)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }

    static func call(
        _ client: RouterClient, _ target: String?, _ json: String, headers extra: HTTPFields = [:]
    ) async throws -> (status: HTTPResponse.Status, headers: HTTPFields, body: [String: Any]) {
        var headers = extra
        headers[.contentType] = "application/x-amz-json-1.1"
        if let target { headers[HTTPField.Name("X-Amz-Target")!] = target }
        return try await client.execute(uri: "/", method: .post, headers: headers, body: ByteBuffer(string: json)) { response in
            let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any] ?? [:]
            return (response.status, response.headers, object)
        }
    }

    static let errorType = HTTPField.Name("x-amzn-ErrorType")!

    @Test func unknownOrMissingTarget_isUnknownOperationException() async throws {
        try await withAPI { client, _ in
            for target in ["SpencerFrontendService.Nope", "OtherService.InitiateLayerUpload", nil] as [String?] {
                let r = try await Self.call(client, target, "{}")
                #expect(r.status == .badRequest)
                #expect(r.body["__type"] as? String == "UnknownOperationException")
                #expect(r.headers[Self.errorType] == "UnknownOperationException")
            }
        }
    }

    @Test func malformedJSONOrWrongMemberType_isSerializationException_andWritesNothing() async throws {
        try await withAPI { client, store in
            for json in ["{", "[1]", #"{"repositoryName": 7}"#, #"{"repositoryName": ["a"]}"#] {
                let r = try await Self.call(client, "SpencerFrontendService.CreateRepository", json)
                #expect(r.status == .badRequest)
                #expect(r.body["__type"] as? String == "SerializationException", "\(json)")
            }
            #expect(try store.read { try $0.lastPosition() } == 0)
        }
    }

    @Test func initiateLayerUpload_answersTheSeedShape_andRecordsRequestMetadata() async throws {
        try await withAPI { client, store in
            _ = try await Self.call(client, "SpencerFrontendService.CreateRepository", #"{"repositoryName": "team/app"}"#)
            let r = try await Self.call(
                client, "SpencerFrontendService.InitiateLayerUpload", #"{"repositoryName": "team/app"}"#,
                headers: [.userAgent: "aws-cli/1.45.11", HTTPField.Name("amz-sdk-invocation-id")!: "inv-7"])
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/x-amz-json-1.1")
            #expect(r.headers[HTTPField.Name("x-amzn-RequestId")!]?.count == 36)
            #expect(r.body["uploadId"] as? String == "00000000-0000-4000-8000-000000000001")
            #expect(r.body["partSize"] as? Int == 10_485_760)
            let event = try #require(try store.read { try $0.events() }.last)
            #expect(event.metadata.source == "http")
            #expect(event.metadata.userAgent == "aws-cli/1.45.11")
            #expect(event.metadata.invocationId == "inv-7")
            #expect(event.metadata.requestId == r.headers[HTTPField.Name("x-amzn-RequestId")!])
        }
    }

    @Test func refusedCommand_isA400WithTypeAndMessage_andWritesNothing() async throws {
        try await withAPI { client, store in
            let r = try await Self.call(client, "SpencerFrontendService.InitiateLayerUpload", #"{"repositoryName": "team/app"}"#)
            #expect(r.status == .badRequest)
            #expect(r.headers[Self.errorType] == "RepositoryNotFoundException")
            #expect(r.body["__type"] as? String == "RepositoryNotFoundException")
            #expect(r.body["message"] as? String == "The repository with name 'team/app' does not exist in the registry with id '123456789012'")
            #expect(try store.read { try $0.lastPosition() } == 0)
        }
    }

    @Test func invalidLayerPart_carriesTheShapesExtraMembers() async throws {
        try await withAPI { client, _ in
            _ = try await Self.call(client, "SpencerFrontendService.CreateRepository", #"{"repositoryName": "team/app"}"#)
            let id = try await Self.call(client, "SpencerFrontendService.InitiateLayerUpload", #"{"repositoryName": "team/app"}"#).body["uploadId"] as! String
            let r = try await Self.call(
                client, "SpencerFrontendService.UploadLayerPart",
                #"{"repositoryName": "team/app", "uploadId": "\#(id)", "partFirstByte": 5, "partLastByte": 9, "layerPartBlob": "aGVsbG8="}"#)
            #expect(r.body["__type"] as? String == "InvalidLayerPartException")
            #expect(r.body["lastValidByteReceived"] as? Int == 0)
            #expect(r.body["uploadId"] as? String == id)
            #expect(r.body["registryId"] as? String == "123456789012")
            let notBase64 = try await Self.call(
                client, "SpencerFrontendService.UploadLayerPart",
                #"{"repositoryName": "team/app", "uploadId": "\#(id)", "partFirstByte": 0, "partLastByte": 4, "layerPartBlob": "not base64!"}"#)
            #expect(notBase64.body["__type"] as? String == "SerializationException")
            let fractional = try await Self.call(
                client, "SpencerFrontendService.UploadLayerPart",
                #"{"repositoryName": "team/app", "uploadId": "\#(id)", "partFirstByte": 0.5, "partLastByte": 4, "layerPartBlob": "aGVsbG8="}"#)
            #expect(fractional.body["__type"] as? String == "SerializationException")
        }
    }

    /// The authentication seam: a middleware that names the principal gets it into every event.
    @Test func principalSetByAMiddleware_isRecordedWithTheEvent() async throws {
        struct NamePrincipal: RouterMiddleware {
            func handle(_ request: Request, context: APIRequestContext, next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
                var context = context
                context.principal = "AKIDEXAMPLE"
                return try await next(request, context)
            }
        }
        try await withAPI(addMiddleware: { $0.add(middleware: NamePrincipal()) }) { client, store in
            _ = try await Self.call(client, "SpencerFrontendService.CreateRepository", #"{"repositoryName": "team/app"}"#)
            #expect(try store.read { try $0.events() }.first?.metadata.principal == "AKIDEXAMPLE")
        }
    }

    /// botocore retries a 500 five times; only server faults may be one.
    @Test func statusMapping_is400ForEveryClientError_and500OnlyForServerException() {
        for code in CommandError.Code.allCases {
            let api = APIError.from(CommandError(code, "m"))
            #expect(api.type == code.rawValue)
            #expect(api.status == (code == .server ? .internalServerError : .badRequest), "\(code)")
        }
        let failure = APIError.from(StoreError(.io, "disk"))
        #expect(failure.type == "ServerException" && failure.status == .internalServerError)
        let overloaded = APIError.from(StoreError(.overloaded, "queue full"))
        #expect(overloaded.type == "ThrottlingException" && overloaded.status == .badRequest, "400, so SDKs back off and retry")
    }

    /// The registry tells a refusal that passes (503 with `Retry-After`, as distribution does),
    /// saying why, from a fault that will not (500), whose words (which may name the server's
    /// files) it keeps to its log.
    @Test func registryErrors_fromTheStore_sayWhetherToRetry_andNameNoFile() {
        let cases: [(StoreError.Code, RegistryError.Code, HTTPResponse.Status, String?, Bool)] = [
            (.viewsBehind, .unavailable, .serviceUnavailable, "1", true), (.overloaded, .tooManyRequests, .tooManyRequests, "1", true),
            (.closed, .unavailable, .serviceUnavailable, "1", false),
            (.io, .unknown, .internalServerError, nil, false), (.corrupt, .unknown, .internalServerError, nil, false),
            (.migration, .unknown, .internalServerError, nil, false),
        ]
        for (store, code, status, retryAfter, saysWhy) in cases {
            let error = RegistryError.from(StoreError(store, "the store at /srv/data says (\(store))"), in: .manifest)
            #expect(error.code == code && error.status == status && error.headers[.retryAfter] == retryAfter, "\(store)")
            #expect(error.message.contains("/srv/data") == saysWhy, "\(store): \(error.message)")
        }
        // The database unreachable (a restart, a failover) passes too; the store's words stay in its log.
        let outage = RegistryError.from(StoreError(.io, "connect to db.internal:5432 refused", isForCallers: true, passing: StoreError.databaseUnreachable), in: .blob)
        #expect(outage.code == .unavailable && outage.status == .serviceUnavailable && outage.headers[.retryAfter] == "1")
        #expect(!outage.message.contains("db.internal"))
        // So do descriptors run out (connections and streams give them back).
        let descriptors = RegistryError.from(StoreError(.io, "open /srv/data/staging/u: Too many open files", passing: StoreError.passing(errno: EMFILE)), in: .upload)
        #expect(descriptors.code == .unavailable && descriptors.headers[.retryAfter] == "1" && !descriptors.message.contains("/srv"), "\(descriptors.message)")
        #expect(StoreError.passing(errno: EIO) == nil && StoreError.passing(errno: ENOSPC) == nil, "a fault that stays is no passing one")
    }

    /// A body the server could not spool was answered "the request body could not be read", which
    /// blames the client's body: the answer says what failed, without the server's paths.
    @Test func aBodyTheServerCouldNotSpool_isAnsweredWithWhy_andNoPath() {
        for (code, says) in [(ENOSPC, "disk is full"), (EMFILE, "too many files open"), (EIO, "its log says why")] {
            let error = APIError.from(SpoolError("cannot create a spool file in /srv/data/spool", errno: code))
            #expect(error.type == "ServerException" && error.message.contains(says) && !error.message.contains("/srv"), "\(code): \(error.message)")
        }
    }
}
