import Hummingbird

/// `X-Content-Type-Options: nosniff` on every answer, in one place: each says its type, and a
/// browser must not guess another (a pushed blob of HTML served as `application/octet-stream`, a
/// 404 that names the path it was asked for). Hummingbird's own answers (a path no route takes)
/// are thrown as errors: they are made into responses here, so that they say it too.
struct NoSniff<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        response.headers[ECRPublicService.contentTypeOptionsHeader] = "nosniff"
        return response
    }
}
