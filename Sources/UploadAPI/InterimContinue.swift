import Hummingbird
import NIOCore

/// `100 Continue` for a client that sent `Expect: 100-continue` (curl does for bodies past 1 MiB,
/// and otherwise waits a second before it sends one; RFC 9110 §10.1.1). It is sent when the
/// handler first reads the body (``ClientBody``), never sooner: a request refused unread (an
/// unknown key, a body declared too large, an upload that does not exist) is answered with its
/// refusal alone, and its body is never sent. The connection guard writes it, and only while that
/// request's body is still to come (``ConnectionGuard``).
struct InterimContinue: Sendable {
    /// The request being answered, when it expects a `100 Continue`; set by ``Middleware``.
    @TaskLocal static var ofThisRequest: InterimContinue?

    let channel: any Channel

    /// Asks the connection guard to send `100 Continue`, if the client still waits for it.
    func send() { channel.triggerUserOutboundEvent(ConnectionGuard.SendContinue(), promise: nil) }

    /// Runs each request that carries an `Expect` header with its ``ofThisRequest`` set.
    struct Middleware: RouterMiddleware {
        func handle(_ request: Request, context: APIRequestContext, next: (Request, APIRequestContext) async throws -> Response) async throws -> Response {
            guard request.headers[.expect] != nil else { return try await next(request, context) }
            return try await InterimContinue.$ofThisRequest.withValue(InterimContinue(channel: context.channel)) {
                try await next(request, context)
            }
        }
    }
}
