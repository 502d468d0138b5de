import Hummingbird

/// A path no route serves is 404 with a line saying so, as every other refusal says why: the
/// router's own 404 has no body and no type, and a client reading it (a tlog verifier asking for
/// `/log/tile/0/004/`) sees nothing to go on. Installed after the AWS API's and the registry's
/// middlewares, which answer their own requests, so that it costs their calls nothing.
struct NotFoundSaysWhy<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            return NotFoundAnswer.response
        }
    }
}

/// The 404 of a path nothing serves (``NotFoundSaysWhy``, ``ExactPaths``).
enum NotFoundAnswer {
    static var response: Response {
        Response(
            status: .notFound, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: message)))
    }

    static let message = "Not found: nothing is served at this path. The AWS API answers POST requests with X-Amz-Target; the registry is under /v2/; see the README for the feeds, /log/ and the pages.\n"
}
