import Hummingbird
import HTTPTypes
import NIOCore
import ServiceLifecycle
import UploadCore
import UploadStore

/// Read-only HTTP feeds for other services: the log (a page, or followed live) and the
/// projections, each with the position it reflects.
extension ECRPublicService {
    static let pageLimit = 10_000

    func addFeedRoutes(to router: Router<APIRequestContext>) {
        router.get("/events") { request, context in self.authenticated(request, context) { try self.eventsPage(request) } }
        router.get("/events/stream") { request, context in self.authenticated(request, context) { try self.eventStream(request) } }
        router.get("/projections/sessions/:uploadId") { request, context in
            self.authenticated(request, context) { try self.sessionProjection(context.parameters.require("uploadId")) }
        }
        router.get("/projections/repositories/:registryId/**") { request, context in
            self.authenticated(request, context) {
                try self.repositoryProjection(context.parameters.require("registryId"), context.parameters.getCatchAll().joined(separator: "/"))
            }
        }
        // Open, as Prometheus scrapes unsigned: counts and sizes only, no audit data.
        router.get("/metrics") { _, _ in try self.metricsResponse() }
    }

    /// `GET /events?after=POS&limit=N`: up to N events (at most 10,000) after POS, as NDJSON.
    func eventsPage(_ request: Request) throws -> Response {
        let after = try Self.query(request, "after") ?? 0
        let limit = Int(min(try Self.query(request, "limit") ?? 1000, UInt64(Self.pageLimit)))
        let events = try store.read { try $0.events(after: after, limit: limit) }
        let text = events.map { $0.json.text + "\n" }.joined()
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// `GET /events/stream?after=POS`: every event after POS as NDJSON, then each new one as it
    /// commits, until the client goes or the server shuts down. Each line is written only when
    /// the connection takes it (backpressure); events are read from the log, never buffered for
    /// the consumer, so a slow consumer costs the writer nothing and resumes from any position.
    func eventStream(_ request: Request) throws -> Response {
        let after = try Self.query(request, "after") ?? 0
        let store = self.store
        let body = ResponseBody { writer in
            try await withGracefulShutdownHandler {
                var position = after
                while !store.followersStopped {  // checked per page, so catching up stops on shutdown too
                    let page = try store.read { try $0.events(after: position, limit: 256) }
                    for envelope in page {
                        try await writer.write(ByteBuffer(string: envelope.json.text + "\n"))
                        position = envelope.position
                    }
                    if page.isEmpty, await !store.waitForEvents(after: position) { break }
                }
            } onGracefulShutdown: {
                store.stopFollowers()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: body)
    }

    func sessionProjection(_ uploadId: String) throws -> Response {
        let (position, session) = try store.read { (try $0.checkpoint(), try $0.session(uploadId.lowercased())) }
        guard let session else { return Self.notFound("No upload session with id '\(uploadId)'") }
        return Self.json(.object([("position", .uint(position)), ("session", session.json)]))
    }

    func repositoryProjection(_ registryId: String, _ name: String) throws -> Response {
        let ref = RepositoryRef(registryId: registryId, repositoryName: name)
        let (position, repository) = try store.read { (try $0.checkpoint(), try $0.repository(ref)) }
        guard let repository else { return Self.notFound("No repository '\(name)' in registry '\(registryId)'") }
        return Self.json(.object([("position", .uint(position)), ("repository", repository.json)]))
    }

    static func query(_ request: Request, _ name: String) throws -> UInt64? {
        guard let raw = request.uri.queryParameters[name[...]] else { return nil }
        guard let value = UInt64(raw) else {
            throw HTTPError(.badRequest, message: "'\(name)' must be a whole number; got '\(raw)'")
        }
        return value
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.text)))
    }

    static func notFound(_ message: String) -> Response {
        json(.object([("__type", .string("ResourceNotFoundException")), ("message", .string(message))]), status: .notFound)
    }
}
