import Hummingbird

/// `X-Content-Type-Options: nosniff` on every answer, in one place: each says its type, and a
/// browser must not guess another (a pushed blob of HTML served as `application/octet-stream`, a
/// 404 that names the path it was asked for).
struct NoSniff<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[ECRPublicService.contentTypeOptionsHeader] = "nosniff"
        return response
    }
}
