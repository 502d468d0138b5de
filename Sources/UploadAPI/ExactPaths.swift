import Hummingbird

/// Each page, feed and log route answers at one path, as written. Hummingbird's router skips empty
/// segments and a trailing `/`, so `//metrics`, `/metrics/` and `/gallery//audit` reached the
/// route, past a proxy in front that denies `/metrics` or `/gallery/audit` by prefix or exact
/// match (RFC 3986 makes them other paths; haproxy, Envoy and Traefik do not merge slashes). Such
/// a path is 404, as the registry answers `//v2/`. The gallery's own `/gallery/` is the one
/// trailing `/` served. The AWS API's `POST`s are not judged: AWS serves any path.
struct ExactPaths<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post || Self.isExact(request.uri.path) else { throw HTTPError(.notFound) }
        return try await next(request, context)
    }

    static func isExact(_ path: String) -> Bool {
        guard !path.contains("//") else { return false }
        return path == "/" || path == "/gallery/" || !path.hasSuffix("/")
    }
}
