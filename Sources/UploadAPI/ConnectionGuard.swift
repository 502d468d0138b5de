import HTTPTypes
import Hummingbird
public import HummingbirdCore
public import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What one connection may hold, and for how long, before it is closed. `serve`'s flags.
public struct ConnectionLimits: Sendable {
    /// The longest a request head may take to arrive: from accept for a connection's first
    /// request, from its first byte for later ones.
    public var headerTimeout: Duration = .seconds(10)
    /// The longest a connection may go without progress: no byte read while one is awaited, or no
    /// byte written while a response waits for the client to read it (a feed reader that stopped
    /// reading; it resumes from its last position, so closing it loses nothing).
    public var idleTimeout: Duration = .seconds(60)
    /// The slowest a request body may arrive, on average since its head, once ``bodyRateGrace`` has passed.
    public var minimumBodyBytesPerSecond = 1024
    public var bodyRateGrace: Duration = .seconds(10)
    /// The most connections open at once; more are closed as soon as they are accepted.
    public var maximumConnections = 1000
    /// How often each connection's deadlines are checked.
    public var checkInterval: Duration = .milliseconds(500)

    public init() {}
}

/// Counts the open connections of one server, for ``ConnectionLimits/maximumConnections``.
public final class ConnectionCounter: Sendable {
    private let open = Atomic<Int>(0)
    public init() {}
    public var current: Int { open.load(ordering: .relaxed) }

    func admit(upTo maximum: Int) -> Bool {
        if open.wrappingAdd(1, ordering: .relaxed).newValue <= maximum { return true }
        open.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func release() { open.wrappingSubtract(1, ordering: .relaxed) }
}

/// Enforces ``ConnectionLimits`` on one connection: the connection cap, the header timeout, the
/// idle timeout and the minimum body rate. It sits after the HTTP codec, where it sees request
/// heads and response ends, and installs a ``RawTraffic`` twin at the front of the pipeline,
/// where it sees every byte read and every write the socket completes. Both run on the
/// connection's event loop, so they share state without locks.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum Request {
        /// Waiting for a request head since `since`; `firstByte` is when its first byte came.
        case awaitingHead(since: NIODeadline, firstByte: NIODeadline?, isFirstRequest: Bool)
        case readingBody(since: NIODeadline, bytes: Int)
        case complete
    }

    private let limits: ConnectionLimits
    private let counter: ConnectionCounter
    private let logger: Logger
    private var request = Request.awaitingHead(since: .now(), firstByte: nil, isFirstRequest: true)
    private var responseInFlight = false
    private var lastRead = NIODeadline.now()
    private var pendingWrites = 0
    private var lastWriteProgress = NIODeadline.now()
    private var admitted = false
    private var check: RepeatedTask?

    init(limits: ConnectionLimits, counter: ConnectionCounter, logger: Logger) {
        self.limits = limits
        self.counter = counter
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard counter.admit(upTo: limits.maximumConnections) else {
            logger.debug("connection refused", metadata: ["connections.maximum": "\(limits.maximumConnections)"])
            context.close(promise: nil)
            return
        }
        admitted = true
        try? context.pipeline.syncOperations.addHandler(RawTraffic(self), position: .first)
        let interval = TimeAmount(limits.checkInterval)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        check = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let (guardian, context) = loopBound.value
            if let reason = guardian.overdue(at: .now()) { guardian.close(context, reason) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        if admitted { counter.release() }
        admitted = false
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            request = .readingBody(since: .now(), bytes: 0)
            responseInFlight = true
        case .body(let buffer):
            if case .readingBody(let since, let bytes) = request { request = .readingBody(since: since, bytes: bytes + buffer.readableBytes) }
        case .end:
            request = .complete
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            responseInFlight = false
            if case .complete = request { request = .awaitingHead(since: .now(), firstByte: nil, isFirstRequest: false) }
        }
        context.write(data, promise: promise)
    }

    // Called by RawTraffic.
    fileprivate func bytesRead(at now: NIODeadline) {
        lastRead = now
        if case .awaitingHead(let since, nil, let first) = request { request = .awaitingHead(since: since, firstByte: now, isFirstRequest: first) }
    }

    fileprivate func writeStarted() { pendingWrites += 1 }

    fileprivate func writeEnded(at now: NIODeadline) {
        pendingWrites -= 1
        lastWriteProgress = now
    }

    /// Why the connection must close now, or `nil`.
    private func overdue(at now: NIODeadline) -> String? {
        let header = TimeAmount(limits.headerTimeout), idle = TimeAmount(limits.idleTimeout)
        if responseInFlight, pendingWrites > 0, now - lastWriteProgress > idle {
            return "the client read nothing of the response for the idle timeout"
        }
        switch request {
        case .awaitingHead(let since, let firstByte, let isFirstRequest) where !responseInFlight:
            if isFirstRequest, now - since > header { return "no request head within the header timeout" }
            if let firstByte, now - firstByte > header { return "the request head did not complete within the header timeout" }
            if now - since > idle { return "idle between requests for the idle timeout" }
        case .readingBody(let since, let bytes):
            let elapsed = now - since
            if now - lastRead > idle { return "no body byte for the idle timeout" }
            if elapsed > TimeAmount(limits.bodyRateGrace),
               Double(bytes) < Double(limits.minimumBodyBytesPerSecond) * Double(elapsed.nanoseconds) / 1e9 {
                return "the body arrived slower than the minimum rate"
            }
        default:
            break
        }
        return nil
    }

    private func close(_ context: ChannelHandlerContext, _ reason: String) {
        check?.cancel()
        check = nil
        logger.debug("connection closed", metadata: ["reason": "\(reason)", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        context.close(promise: nil)
    }

    /// The byte-level twin: reports reads and completed writes to its guard.
    final class RawTraffic: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        typealias OutboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        private let guardian: ConnectionGuard

        init(_ guardian: ConnectionGuard) { self.guardian = guardian }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guardian.bytesRead(at: .now())
            context.fireChannelRead(data)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            let completion = promise ?? context.eventLoop.makePromise()
            guardian.writeStarted()
            let guardian = NIOLoopBound(self.guardian, eventLoop: context.eventLoop)
            completion.futureResult.whenComplete { _ in guardian.value.writeEnded(at: .now()) }
            context.write(data, promise: completion)
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with every connection held to `limits`.
    public static func guardedHTTP1(limits: ConnectionLimits, counter: ConnectionCounter = ConnectionCounter(), logger: Logger) -> HTTPServerBuilder {
        .http1(configuration: .init(additionalChannelHandlers: [ConnectionGuard(limits: limits, counter: counter, logger: logger)]))
    }
}
