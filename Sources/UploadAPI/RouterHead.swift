import Hummingbird
import HTTPTypes

extension Router {
    /// Adds `GET path`, and `HEAD path` answered as RFC 9110 §9.3.2 asks: the GET's status and
    /// headers, without its body (monitors and load balancers probe with HEAD). Hummingbird's own
    /// `.autoGenerateHeadEndpoints` would say `Content-Length: 0` for a streamed answer (a feed),
    /// as if its GET were empty; here a streamed answer's HEAD keeps its chunked framing.
    @discardableResult
    func getAndHead(_ path: RouterPath, use handler: @escaping @Sendable (Request, Context) async throws -> Response) -> Self {
        get(path, use: handler)
        head(path) { request, context in
            let answer = try await handler(request, context)
            var head = Response(status: answer.status, headers: answer.headers, body: ResponseBody())
            // The empty body made it `Content-Length: 0`; a streamed GET has none, and NIO's
            // encoder, which knows the request was a HEAD, frames it as chunked and sends no body.
            if !answer.headers.contains(.contentLength) { head.headers[.contentLength] = nil }
            return head
        }
        return self
    }
}
