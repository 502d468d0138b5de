import Hummingbird

/// Each page, feed and log route answers at one path, as written. Hummingbird's router skips empty
/// segments and a trailing `/`, so `//metrics`, `/metrics/` and `/gallery//audit` reached the
/// route, past a proxy in front that denies `/metrics` or `/gallery/audit` by prefix or exact
/// match (RFC 3986 makes them other paths; haproxy, Envoy and Traefik do not merge slashes). Such
/// a path is 404, as the registry answers `//v2/`. The gallery's own `/gallery/` is the one
/// trailing `/` served. The AWS API's calls (a `POST` naming its operation in `X-Amz-Target`) are
/// not judged: AWS serves any path. A page's `POST` (signing in) is.
struct ExactPaths<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let callsTheAPI = request.method == .post && request.headers[ECRPublicService.targetHeader] != nil
        guard callsTheAPI || Self.isExact(request.uri.path) else { return NotFoundAnswer.response }
        return try await next(request, context)
    }

    static func isExact(_ path: String) -> Bool {
        guard !path.contains("//") else { return false }
        return path == "/" || path == "/gallery/" || !path.hasSuffix("/")
    }
}
