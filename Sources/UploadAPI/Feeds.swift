import Hummingbird
import HTTPTypes
import Foundation
import LogHashing
import NIOCore
import NIOPosix
import ServiceLifecycle
import UploadCore
import UploadStore
import UploadService

/// Read-only HTTP feeds for other services: the log (a page, or followed live) and the
/// projections, each with the position it reflects.
extension ECRPublicService {
    static let pageLimit = 10_000
    /// Events read and encoded per slice of a feed, at most.
    static let sliceEvents = 256
    /// A slice ends early once its events' records hold this many bytes: a run of large events
    /// (manifests of up to 4 MiB) costs each reader a few of them at a time, not 256.
    static let sliceBytes = EventEnvelope.pageBytes
    /// How often `/events/stream` sends an empty line while the log is quiet, unless asked.
    static let defaultHeartbeatSeconds: UInt64 = 30
    static let longestHeartbeatSeconds: UInt64 = 3600
    /// How long a stream without heartbeats (`heartbeat=0`) stays open while the log is quiet:
    /// nothing is written to it then, so a consumer that went away is never noticed, and the
    /// stream would read the store twice a second until the next commit. It ends instead, and the
    /// consumer reconnects with its cursor, as after any end.
    static let quietStreamWithoutHeartbeatSeconds: Int64 = 600

    /// Where feeds read and encode the log: one thread of its own at a lower priority, so that no
    /// number of readers catching up takes the cooperative pool or the event loops from API
    /// requests. Readers share it a slice at a time, in turn.
    static let feedPool = lowPriorityThread()

    /// One thread of its own, at a lower priority than the threads API requests run on.
    static func lowPriorityThread() -> NIOThreadPool {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        // Its only thread. On Linux a nice value belongs to a thread, and `who == 0` is the caller.
        pool.submit { _ in _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10) }
        return pool
    }

    /// One low-priority thread for a kind of request that reads much of the store for one answer
    /// (gallery pages, referrers), admitting at most `limit` of them at once, waiting or running:
    /// past it a request is refused at once (``Busy``), so that a burst waits a bounded time and
    /// never takes the threads other requests and file work run on.
    final class AdmittingThread: Sendable {
        struct Busy: Error {}
        let limit: Int
        private let pool = lowPriorityThread()
        private let admitted = Locked(0)

        init(limit: Int) { self.limit = limit }

        /// How many requests are admitted now.
        var inFlight: Int { admitted.withLock { $0 } }

        /// `work` on the thread, if fewer than ``limit`` requests, less `keepingFree`, are admitted.
        /// - Throws: ``Busy`` otherwise.
        func run<T: Sendable>(keepingFree reserved: Int = 0, _ work: @escaping @Sendable () throws -> T) async throws -> T {
            let entered = admitted.withLock { count in
                guard count < limit - reserved else { return false }
                count += 1
                return true
            }
            guard entered else { throw Busy() }
            defer { admitted.withLock { $0 -= 1 } }
            return try await pool.runIfActive(work)
        }
    }

    /// Up to `limit` events after `position` as NDJSON, read and encoded on ``feedPool``. Each
    /// line carries the event's `leafHash` (hex), its leaf in the transparency log: what a consumer
    /// gives back with its position (``checkCursor(after:leafHash:in:)``) to learn that the log no
    /// longer holds what it read.
    /// - Parameters:
    ///   - sent: the leaf of the event at `position`, when this feed sent it: a slice that finds
    ///     another event there is not read (``FeedTakenBack``).
    ///   - check: run first in the slice's snapshot (a consumer's cursor, ``openingSlice(after:leafHash:limit:)``).
    /// - Returns: the bytes, and the position and leaf of the last event in them (`position` and
    ///   `sent` when none).
    func feedSlice(
        after position: UInt64, sent: [UInt8]? = nil, limit: Int, check: (@Sendable (any StoreSnapshot) throws -> Void)? = nil
    ) async throws -> FeedSlice {
        let store = self.store
        return try await Self.feedPool.runIfActive { () throws -> FeedSlice in
            let (events, leaves) = try store.read { snapshot throws -> ([EventEnvelope], [[UInt8]]) in
                try check?(snapshot)
                let events = try snapshot.events(after: position, limit: limit, byteBudget: Self.sliceBytes)
                // The leaf at `position` too, when this feed sent it, read in the same snapshot:
                // between two slices a failover may have taken the log back and other events have
                // filled it up to or past this feed's position. (A log below it holds no leaf there;
                // the caller sees the tail below its position.)
                let checked = try sent != nil && position > 0 && (!events.isEmpty || snapshot.lastPosition() >= position)
                var leaves = try snapshot.merkleNodes(level: 0, indices: (checked ? position - 1 : position)..<position + UInt64(events.count))
                guard leaves.count == events.count + (checked ? 1 : 0) else {
                    throw StoreError(.corrupt, "the Merkle tree holds \(leaves.count) leaves for the events after \(position), not \(events.count)")
                }
                if checked, leaves.removeFirst() != sent { throw FeedTakenBack() }
                return (events, leaves)
            }
            var buffer = ByteBuffer()
            for (envelope, leaf) in zip(events, leaves) {
                buffer.writeBytes(envelope.json(adding: [("leafHash", .string(Hex.encode(leaf)))]).utf8)
                buffer.writeInteger(UInt8(ascii: "\n"))
            }
            return FeedSlice(lines: buffer, last: events.last?.position ?? position, leaf: leaves.last ?? sent)
        }
    }

    /// A slice of a feed: its lines, and the position and leaf of its last event (the position it
    /// was read after, and the leaf sent there, when it holds none).
    struct FeedSlice: Sendable {
        var lines: ByteBuffer
        var last: UInt64
        var leaf: [UInt8]?
    }

    /// A feed's first slice, read before its answer starts, so that a cursor the log does not hold
    /// and a store failure are AWS-shaped errors rather than an empty or cut-off body. The cursor is
    /// checked (``checkCursor(after:leafHash:in:)``) in the slice's own snapshot, so that no
    /// failover can come between the check and the events read.
    /// - Returns: the slice, and the log's last position in its snapshot (``logLastPositionHeader``).
    func openingSlice(after: UInt64, leafHash: String?, limit: Int) async throws -> (slice: FeedSlice, tail: UInt64) {
        let tail = Locked<UInt64>(0)
        // The consumer's leaf stands as the last sent: an empty slice carries it on to the next.
        let slice = try await feedSlice(after: after, sent: leafHash.flatMap(Hex.decode), limit: limit) { snapshot in
            try Self.checkCursor(after: after, leafHash: leafHash, in: snapshot)
            let last = try snapshot.lastPosition()
            tail.withLock { $0 = last }
        }
        return (slice, tail.withLock { $0 })
    }

    /// The log's last position when a feed's answer began: a page whose last line is below it was
    /// cut short (by its limit, or by the answer's byte budget), not the log's end so far.
    static let logLastPositionHeader = HTTPField.Name("Log-Last-Position")!

    /// The log no longer holds the last event a feed sent: a failover or a restore took it back.
    /// The feed ends; the consumer's reconnection with its cursor is refused (``checkCursor(after:leafHash:in:)``).
    struct FeedTakenBack: Error {}

    /// Checks a consumer's cursor (``UploadStore/StoreSnapshot/checkCursor(after:leaf:)``): the
    /// consumer must then read again from a position the log holds.
    /// - Throws: `InvalidParameterException` naming what differs.
    static func checkCursor(after: UInt64, leafHash: String?, in snapshot: any StoreSnapshot) throws {
        do {
            try snapshot.checkCursor(after: after, leaf: leafHash.map { Hex.decode($0) ?? [] })
        } catch let refusal as LogCursorRefusal {
            switch refusal {
            case .pastTheEnd(let tail):
                throw APIError.invalidParameter("The query parameter 'after' is \(after), past the log's last position \(tail): this log does not hold the events read up to it (it was restored, or failed over); read again from a position it holds")
            case .malformedLeaf:
                throw APIError.invalidParameter("The query parameter 'leafHash' must be 64 hexadecimal digits: the leafHash of the event at 'after', as the feed gave it")
            case .leafAtZero:
                throw APIError.invalidParameter("The query parameter 'leafHash' names the event at 'after', and there is none at position 0")
            case .takenBack:
                throw takenBack(after)
            }
        }
    }

    static func takenBack(_ after: UInt64) -> APIError {
        APIError.invalidParameter("The event at position \(after) is not the one whose leafHash was given: this log no longer holds the event read there (it was restored, or failed over); read again from a position it holds")
    }

    func addFeedRoutes(to router: Router<APIRequestContext>) {
        router.getAndHead("/events") { request, context in await self.authenticated(request, context) { try await self.eventsPage(request) } }
        router.getAndHead("/events/stream") { request, context in await self.authenticated(request, context) { try await self.eventStream(request) } }
        // The router leaves segments percent-encoded: `team%2Fapp` (a name quoted as one segment)
        // and `te%61m/app` name team/app, as in the registry's paths.
        router.getAndHead("/projections/sessions/:uploadId") { request, context in
            await self.authenticated(request, context) {
                try await self.sessionProjection(Self.percentDecoded(try context.parameters.require("uploadId")))
            }
        }
        router.getAndHead("/projections/repositories/:registryId/**") { request, context in
            await self.authenticated(request, context) {
                try await self.repositoryProjection(
                    Self.percentDecoded(try context.parameters.require("registryId")),
                    Self.percentDecoded(context.parameters.getCatchAll().joined(separator: "/")))
            }
        }
        // Open, as Prometheus scrapes unsigned: counts and sizes only, no audit data.
        router.getAndHead("/metrics") { _, _ in await self.openAnswer { try await self.metricsResponse() } }
    }

    /// `GET /events?after=POS&limit=N`: up to N events (at most 10,000) after POS, as NDJSON,
    /// read a slice at a time like a stream.
    func eventsPage(_ request: Request) async throws -> Response {
        let after = try Self.query(request, "after") ?? 0
        let limit = Int(min(try Self.query(request, "limit") ?? 1000, UInt64(Self.pageLimit)))
        // The body is written after the request's holding is no longer the task's.
        let holding = AnswerHolding.current
        let (first, tail) = try await openingSlice(after: after, leafHash: try Self.text(request, "leafHash"), limit: min(limit, Self.sliceEvents))
        // Its lines go with the slice given to the body; the body keeps only where they end.
        let (firstLines, firstLast, firstLeaf) = (try OpeningSlice(first.lines, holding: holding), first.last, first.leaf)
        let body = ResponseBody { writer in
            try await firstLines.write(to: &writer)
            var (position, leaf) = (firstLast, firstLeaf)
            var remaining = limit - Int(firstLast - after)
            // An empty first slice is the end of the log; a short one may just be its end so far.
            while remaining > 0, firstLast != after {
                let next: FeedSlice
                do { next = try await self.feedSlice(after: position, sent: leaf, limit: min(remaining, Self.sliceEvents)) } catch is FeedTakenBack { break }
                // A slice the budget cannot take ends the page, as the log's end does: the
                // consumer reads on from the last event it was sent.
                guard next.last != position, try await Self.writeSlice(next.lines, holding: holding, to: &writer) else { break }
                remaining -= Int(next.last - position)
                (position, leaf) = (next.last, next.leaf)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson", Self.logLastPositionHeader: String(tail)], body: body)
    }

    /// `GET /events/stream?after=POS`: every event after POS as NDJSON, then each new one as it
    /// commits, until the client goes or the server shuts down. Each line is written only when
    /// the connection takes it (backpressure); events are read from the log, never buffered for
    /// the consumer, so a slow consumer costs the writer nothing and resumes from any position.
    ///
    /// While the log is quiet, an empty line is sent every `heartbeat` seconds (30 unless the
    /// query says; 0 sends none, and ends the stream after ``quietStreamWithoutHeartbeatSeconds``
    /// of quiet), so that proxies keep the stream open and a reader that is gone is noticed
    /// without waiting for the next event. Consumers skip empty lines. A reader that is gone is
    /// noticed within a second whatever the heartbeat, when its connection's input closes: a
    /// client that goes does not cancel its request, and its stream would otherwise read the log
    /// twice a second until its next line. The connection closes after the stream (`Connection:
    /// close`), so that nothing pipelined behind it waits unanswered; such a request also ends
    /// the watch for the input's close, and the stream then notices a reader gone at its next write.
    func eventStream(_ request: Request) async throws -> Response {
        let after = try Self.query(request, "after") ?? 0
        let heartbeat = try Self.query(request, "heartbeat") ?? Self.defaultHeartbeatSeconds
        guard heartbeat <= Self.longestHeartbeatSeconds else {
            throw APIError.invalidParameter("The query parameter 'heartbeat' must be 0 to \(Self.longestHeartbeatSeconds) seconds; got \(heartbeat)")
        }
        let heartbeatInterval = heartbeat == 0 ? nil : Duration.seconds(Int64(heartbeat))
        let store = self.store
        // A position past the log's end, or an event other than the one the consumer read there,
        // means the log was taken back (a failover, a restore): it must read again from one it holds.
        // The body is written after the request's holding is no longer the task's.
        let holding = AnswerHolding.current
        let (first, tail) = try await openingSlice(after: after, leafHash: try Self.text(request, "leafHash"), limit: Self.sliceEvents)
        // Its lines go with the slice given to the body; the body keeps only where they end.
        let (firstLines, firstLast, firstLeaf) = (try OpeningSlice(first.lines, holding: holding), first.last, first.leaf)
        let metrics = self.metrics
        let body = ResponseBody { writer in
            metrics.countStream(.events, by: 1)
            defer { metrics.countStream(.events, by: -1) }
            let readerGone = Locked(false)
            try await request.body.consumeWithInboundCloseHandler({ _ in try await withGracefulShutdownHandler {
                try await firstLines.write(to: &writer)
                var (position, leaf) = (firstLast, firstLeaf)
                var lastWritten = ContinuousClock.now
                while !store.followersStopped {  // checked per slice, so catching up stops on shutdown too
                    let slice: FeedSlice
                    // The log no longer holds what this stream sent: it ends, and the consumer's
                    // reconnection with its cursor is refused.
                    do { slice = try await self.feedSlice(after: position, sent: leaf, limit: Self.sliceEvents) } catch is FeedTakenBack { break }
                    if slice.last == position {
                        // The log was taken back below what this consumer read (a failover that
                        // lost commits): the stream ends, and its reconnection is refused above.
                        if try await Self.feedPool.runIfActive({ try store.read { try $0.lastPosition() } }) < position { break }
                        if let heartbeatInterval, ContinuousClock.now - lastWritten >= heartbeatInterval {
                            try await writer.write(ByteBuffer(integer: UInt8(ascii: "\n")))
                            lastWritten = .now
                        }
                        if heartbeatInterval == nil, ContinuousClock.now - lastWritten >= .seconds(Self.quietStreamWithoutHeartbeatSeconds) { break }
                        if readerGone.withLock({ $0 }) { break }
                        // Wakes at least once a second, to read what another process appended.
                        if await !store.waitForEvents(after: position) { break }
                        continue
                    }
                    // Waits while the client is not reading. A slice the budget cannot take ends
                    // the stream; the consumer resumes from its cursor.
                    guard try await Self.writeSlice(slice.lines, holding: holding, to: &writer) else { break }
                    lastWritten = .now
                    (position, leaf) = (slice.last, slice.leaf)
                }
            } onGracefulShutdown: {
                store.stopFollowers()
            } }, onInboundClosed: { readerGone.withLock { $0 = true } })
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson", .connection: "close", Self.logLastPositionHeader: String(tail)], body: body)
    }

    func sessionProjection(_ uploadId: String) async throws -> Response {
        let (position, session) = try await service.reading { (try $0.checkpoint(), try $0.session(uploadId.lowercased())) }
        guard let session else { return Self.notFound("No upload session with id '\(uploadId)'") }
        return Self.json(.object([("position", .uint(position)), ("session", session.json)]))
    }

    func repositoryProjection(_ registryId: String, _ name: String) async throws -> Response {
        let ref = RepositoryRef(registryId: registryId, repositoryName: name)
        let (position, repository) = try await service.reading { (try $0.checkpoint(), try $0.repository(ref)) }
        guard let repository else { return Self.notFound("No repository '\(name)' in registry '\(registryId)'") }
        return Self.json(.object([("position", .uint(position)), ("repository", repository.json)]))
    }

    static func percentDecoded(_ segment: some StringProtocol) throws -> String {
        guard let decoded = segment.removingPercentEncoding else {
            throw APIError.invalidParameter("The path is not percent-encoded UTF-8: '\(Validation.quoted(String(segment.prefix(64))))'")
        }
        return decoded
    }

    static func query(_ request: Request, _ name: String) throws -> UInt64? {
        guard let raw = try single(request, name) else { return nil }
        guard let value = canonicalNumber(raw) else {
            throw APIError.invalidParameter("The query parameter '\(name)' must be a whole number from 0 to \(UInt64.max); got '\(Validation.quoted(String(raw.prefix(64))))'")
        }
        return value
    }

    /// `text` as a decimal whole number written one way: digits, no leading zero but of 0 itself.
    /// `UInt64(_:)` also takes a sign and leading zeros, so a cursor, a proof or a page had many
    /// spellings (`+3`, `-0`, `003`), each its own URL to cache and compare.
    static func canonicalNumber(_ text: some StringProtocol) -> UInt64? {
        guard text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }), text == "0" || !text.hasPrefix("0") else { return nil }
        return UInt64(text)
    }

    /// A query parameter's text; `nil` when it is absent or empty (as a client that always sends it may).
    static func text(_ request: Request, _ name: String) throws -> String? {
        try single(request, name).flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A query parameter given at most once: of two, a proxy or client may keep either, and a
    /// cursor read one way would resume somewhere else.
    static func single(_ request: Request, _ name: String) throws -> String? {
        let values = request.uri.queryParameters.getAll(name)
        guard values.count <= 1 else { throw APIError.invalidParameter("The query parameter '\(name)' is given \(values.count) times; give it once") }
        return values.first
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: piecewise(ByteBuffer(bytes: value.utf8)))
    }

    static func notFound(_ message: String) -> Response {
        json(.object([("__type", .string("ResourceNotFoundException")), ("message", .string(message))]), status: .notFound)
    }
}
