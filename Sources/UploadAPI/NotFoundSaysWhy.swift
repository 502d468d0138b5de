import Hummingbird

/// A path no route serves (or one ``ExactPaths`` refuses) is 404 with a line saying so, as every
/// other refusal says why: the router's own 404 has no body and no type, and a client reading it
/// (a tlog verifier asking for `/log/tile/0/004/`) sees nothing to go on.
struct NotFoundSaysWhy<Context: RequestContext>: RouterMiddleware {
    static var message: String {
        "Not found: nothing is served at this path. The AWS API answers POST requests with X-Amz-Target; the registry is under /v2/; see the README for the feeds, /log/ and the pages.\n"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            return Response(
                status: .notFound, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: Self.message)))
        }
    }
}
