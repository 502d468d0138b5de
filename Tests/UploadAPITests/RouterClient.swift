import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import UploadAPI

/// Sends requests straight to a router's responder, in process, as HummingbirdTesting's `.router`
/// mode does: the body in 32 KiB pieces, the answer's body collected whole.
///
/// Hand-written because HummingbirdTesting also carries its live mode's HTTP client:
/// AsyncHTTPClient, swift-nio-ssl and a second copy of BoringSSL, about a quarter of every cold
/// build of the tests, for requests these tests never send over a socket (the end-to-end suite does).
/// Its bodies are not a connection's: `/events/stream`, which watches the connection close, is for
/// the end-to-end suite (Hummingbird stops at a precondition for such a body).
struct RouterClient: Sendable {
    struct Answer {
        let status: HTTPResponse.Status
        let headers: HTTPFields
        let body: ByteBuffer
    }

    let responder: RouterResponder<APIRequestContext>
    let logger = Logger(label: "test")

    init(router: Router<APIRequestContext>) {
        responder = router.buildResponder()
    }

    func execute<Value>(
        uri: String, method: HTTPRequest.Method, headers: HTTPFields = [:], body: ByteBuffer? = nil,
        _ read: (Answer) async throws -> Value
    ) async throws -> Value {
        var headers = headers
        if let body { headers[.contentLength] = String(body.readableBytes) }
        // The whole body is queued before the responder reads, so that an answer given without
        // reading it (a refusal) leaves nothing waiting.
        let (pieces, queue) = AsyncStream.makeStream(of: ByteBuffer.self)
        if var body {
            while body.readableBytes > 0, let piece = body.readSlice(length: min(32 * 1024, body.readableBytes)) {
                queue.yield(piece)
            }
        }
        queue.finish()
        let request = Request(
            head: HTTPRequest(method: method, scheme: "http", authority: "localhost", path: uri, headerFields: headers),
            body: RequestBody(asyncSequence: pieces))
        let context = APIRequestContext(source: ApplicationRequestContextSource(channel: NIOAsyncTestingChannel(), logger: logger))
        let response: Response
        do {
            response = try await responder.respond(to: request, context: context)
        } catch {
            response = Response(status: .internalServerError)
        }
        let collected = CollectedBody()
        try await response.body.write(collected)
        let answer = Answer(status: response.status, headers: response.headers, body: collected.bytes.withLockedValue { $0 })
        return try await read(answer)
    }
}

/// An answer's body, written by the responder and read once it is done.
private final class CollectedBody: ResponseBodyWriter, Sendable {
    let bytes = NIOLockedValueBox(ByteBuffer())

    func write(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        bytes.withLockedValue { $0.writeBuffer(&buffer) }
    }

    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
