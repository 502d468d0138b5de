import Foundation
import HTTPTypes
import Hummingbird
public import HummingbirdCore
public import Logging
import NIOCore
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import Synchronization

/// What one connection may hold, and for how long, before it is closed. `serve`'s flags.
public struct ConnectionLimits: Sendable {
    /// The longest a request head may take to arrive: from accept for a connection's first
    /// request, from its first byte for later ones.
    public var headerTimeout: Duration = .seconds(10)
    /// The longest a connection may go without progress: no byte read while one is awaited, or no
    /// write completed while one waits for the client to read it (a feed reader that stopped
    /// reading; it resumes from its last position, so closing it loses nothing). A write completes
    /// when all of it is in the kernel: answers are written in pieces of 16 KiB
    /// (``ECRPublicService/pieceBytes``; a blob's are 64 KiB), and the kernel takes more once
    /// less than half of `TCP_NOTSENT_LOWAT`'s 128 KiB waits, so a reader must take about 128 KiB
    /// per idle timeout. The time between requests runs from when an answer has gone out.
    public var idleTimeout: Duration = .seconds(60)
    /// The slowest a request body may arrive: its average over each ``bodyRateWindow``,
    /// from its head on (so bytes sent early cannot buy a stall later).
    public var minimumBodyBytesPerSecond = 1024
    public var bodyRateWindow: Duration = .seconds(10)
    /// The most connections open at once; more are closed as soon as they are accepted.
    public var maximumConnections = 1000
    /// The most connections open at once from one client address (an IPv6 client's /64, which one
    /// host is usually given whole), so that one client cannot take every connection: slow
    /// readers of large blobs hold theirs for as long as they keep reading.
    public var maximumConnectionsPerAddress = 128
    /// How often each connection's deadlines are checked.
    public var checkInterval: Duration = .milliseconds(500)

    public init() {}
}

/// A count shared by all connections that may not pass `limit`: open connections
/// (``ConnectionLimits/maximumConnections``), and the bytes all connections hold (in ``ByteBudget``).
public final class CappedCount: Sendable {
    public let limit: Int
    private let used = Atomic<Int>(0)

    public init(limit: Int) { self.limit = limit }

    /// Counts `amount` more. - Returns: `false`, counting nothing, when that would pass the limit.
    func take(_ amount: Int) -> Bool {
        if used.wrappingAdd(amount, ordering: .relaxed).newValue <= limit { return true }
        used.wrappingSubtract(amount, ordering: .relaxed)
        return false
    }

    /// Counts `amount` more, past the limit too.
    func add(_ amount: Int) { used.wrappingAdd(amount, ordering: .relaxed) }

    func give(_ amount: Int) { used.wrappingSubtract(amount, ordering: .relaxed) }

    /// What is counted now.
    var current: Int { used.load(ordering: .relaxed) }
}

/// Open connections counted by client address, each capped at
/// ``ConnectionLimits/maximumConnectionsPerAddress``. Holds an entry only while it is above zero.
final class ConnectionsByAddress: Sendable {
    let limit: Int
    private let counts = Mutex<[[UInt8]: Int]>([:])

    init(limit: Int) { self.limit = limit }

    /// Counts one more connection from `address`. - Returns: `false`, counting nothing, at the limit.
    func take(_ address: [UInt8]) -> Bool {
        counts.withLock { counts in
            let count = counts[address, default: 0]
            guard count < limit else { return false }
            counts[address] = count + 1
            return true
        }
    }

    func give(_ address: [UInt8]) {
        counts.withLock { counts in
            let count = counts[address, default: 0] - 1
            counts[address] = count > 0 ? count : nil
        }
    }

    /// The part of `address` the cap counts by: an IPv4 address whole (an IPv4-mapped IPv6 one as
    /// IPv4), an IPv6 address's first 64 bits. `nil` for what has no IP address (a Unix socket).
    static func key(of address: SocketAddress?) -> [UInt8]? {
        guard let text = address?.ipAddress else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, text, &bytes) == 1 { return Array(bytes[0..<4]) }
        guard inet_pton(AF_INET6, text, &bytes) == 1 else { return nil }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF { return Array(bytes[12..<16]) }
        return Array(bytes[0..<8])
    }
}

/// Enforces ``ConnectionLimits`` on one connection: the connection cap, the header timeout, the
/// idle timeout and the minimum body rate. It sits after the HTTP codec, where it sees request
/// heads and ends and response ends, and installs a ``RawTraffic`` twin at the front of the
/// pipeline, where it sees every byte read and every write the socket completes. Both run on the
/// connection's event loop, so they share state without locks. It also installs
/// ``HTTP1Framing`` before the conversion to HTTP types, so that the heads it sees say
/// `connection: close` whenever the connection ends after their answer.
///
/// Requests may be pipelined, and the server may answer before it has read a whole body (a
/// refusal before reading it), so the guard counts requests whose answer has not ended rather
/// than assuming one request at a time.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Why the server ended a connection itself: the `reason` label of
    /// `upload_coordinator_connections_closed_total` (a closed set, so no client adds a series).
    enum CloseReason: String, CaseIterable, Sendable {
        case connectionLimit = "connection_limit"
        case addressLimit = "address_limit"
        case headerTimeout = "header_timeout"
        case idleTimeout = "idle_timeout"
        case responseUnread = "response_unread"
        case bodyIdle = "body_idle"
        case bodyTooSlow = "body_too_slow"
        case bodyHeldBack = "body_held_back"
        case notClosedAfterLastAnswer = "not_closed_after_last_answer"
        /// Refused by ``HTTP1Framing`` (a request the server must not act on): its refusal,
        /// written, ends the connection.
        case framingRefused = "framing_refused"
        case internalError = "internal_error"

        var explanation: String {
            switch self {
            case .connectionLimit: "more connections than --max-connections"
            case .addressLimit: "more connections from one address than --max-connections-per-address"
            case .headerTimeout: "the request head did not arrive whole within the header timeout"
            case .idleTimeout: "idle between requests for the idle timeout"
            case .responseUnread: "the client read nothing of the response for the idle timeout"
            case .bodyIdle: "no body byte for the idle timeout"
            case .bodyTooSlow: "the body arrived slower than the minimum rate"
            case .bodyHeldBack: "the server held the body back for twice the idle timeout"
            case .notClosedAfterLastAnswer: "the client did not close for the header timeout after the answer that ended the connection"
            case .framingRefused: "a request whose framing the server must refuse"
            case .internalError: "its HTTP/1 framing rules could not be installed"
            }
        }
    }

    /// What the connection is reading.
    private enum Reading {
        /// The next request head, awaited since `since`; `firstByte` is when its first byte came.
        case head(since: NIODeadline, firstByte: NIODeadline?)
        /// A body, with the bytes of the current rate window (which started at `windowStart`).
        case body(windowStart: NIODeadline, windowBytes: Int)
    }

    private let limits: ConnectionLimits
    /// Open connections, capped at ``ConnectionLimits/maximumConnections``.
    private let connections: CappedCount
    private let connectionsByAddress: ConnectionsByAddress
    /// What this connection is counted under in `connectionsByAddress`, once admitted.
    fileprivate private(set) var addressKey: [UInt8]?
    /// Answers held for clients (``AnswerHolding``): the bytes queued for this connection count in it.
    fileprivate let answers: ByteBudget?
    private let logger: Logger
    private let metrics: ServiceMetrics
    /// Whether why the server ends this connection has been counted (``ends(_:)``).
    private var endCounted = false
    private var reading = Reading.head(since: .now(), firstByte: nil)
    /// Whether no request head has arrived yet: the header timeout then runs from accept.
    private var isFirstRequest = true
    /// Requests whose head was read and whose response has not ended.
    private var unanswered = 0
    private var lastRead = NIODeadline.now()
    /// Whether the server has asked the socket for more bytes since it last read some (as NIO's
    /// own `readPending`: set by a read request, cleared as bytes are read). `false`
    /// while the server holds a body back (its handler waits before reading it, for instance for
    /// its upload's lock): the client cannot send then, so the body's clocks do not run.
    private var readDemanded = false
    /// Since when the server has held the current body back, as the checks saw it: at most twice
    /// the idle timeout (long enough for a retried chunk to outwait the connection its first
    /// attempt left behind), so that a body parked behind another (a second chunk to one upload,
    /// waiting for its lock) holds its connection, and what the kernel buffers for it, no longer.
    private var heldBackSince: NIODeadline?
    private var pendingWrites = 0
    /// Whether the guard is closing the connection itself (a limit or a timeout it enforces): a
    /// close that must not wait for the answer's bytes, unlike others (``RawTraffic``).
    private var closingItself = false
    /// When the oldest pending write last made progress (was issued, or a write completed).
    private var writeProgress = NIODeadline.now()
    private var admitted = false
    private var check: RepeatedTask?
    /// Whether the request being read asked for the connection to close after its answer
    /// (`Connection: close`, as Hummingbird reads it): Hummingbird then reads nothing more.
    private var closesAfterAnswer = false
    /// Since when the answer that ends the connection (``responseCloses``) has been written, its
    /// request's body perhaps still arriving. What the client still sends is
    /// read and dropped, for at most the header timeout: a client that writes its whole body
    /// before it reads (urllib, curl without `Expect`) would otherwise block on a full socket,
    /// never reading its refusal, and a close with its bytes unread would reset the answer away.
    private var drainingSince: NIODeadline?
    /// Whether nothing more the client sends is handed on (``HTTP1Framing``): ``RawTraffic``
    /// counts what still arrives, for the timeouts, and drops it.
    fileprivate var inputEnded = false
    /// Whether the response being written ends the connection: it says `Connection: close` (an
    /// event stream's, a refusal's), or answers a request that asked to close. The connection
    /// ends once it is written, whatever the client sent after it.
    private var responseCloses = false
    /// Whether the request being read sent `Expect: 100-continue` and has had no answer yet, not
    /// even the interim one (``InterimContinue``).
    private var expectsContinue = false

    /// The event ``InterimContinue`` sends down the pipeline when a handler first reads a body.
    struct SendContinue {}

    /// `TCP_NOTSENT_LOWAT` (Linux, `netinet/tcp.h`), which Glibc's Swift overlay does not name.
    static let tcpNotSentLowWatermark: Int32 = 25
    static let unsentBytesLimit = 128 * 1024

    init(
        limits: ConnectionLimits, connections: CappedCount, connectionsByAddress: ConnectionsByAddress, answers: ByteBudget?, logger: Logger,
        metrics: ServiceMetrics
    ) {
        self.limits = limits
        self.answers = answers
        self.connections = connections
        self.connectionsByAddress = connectionsByAddress
        self.logger = logger
        self.metrics = metrics
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard connections.take(1) else {
            close(context, .connectionLimit)
            return
        }
        let key = ConnectionsByAddress.key(of: context.channel.remoteAddress)
        if let key, !connectionsByAddress.take(key) {
            connections.give(1)
            close(context, .addressLimit)
            return
        }
        addressKey = key
        admitted = true
        // The kernel grows a socket's send buffer to megabytes, and takes writes into it whether
        // or not the client reads: a reader that stopped would look busy until that filled. Past
        // this much unsent data the socket takes no more, so a stalled reader is seen at once, and
        // costs the kernel little. (Data in flight is not counted: throughput is unaffected.)
        try? context.channel.syncOptions?.setOption(
            ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: Self.tcpNotSentLowWatermark)),
            value: Self.unsentBytesLimit)
        do {
            // Where the request's HTTP version is still known: before the conversion to HTTP types.
            let conversion = try context.pipeline.syncOperations.handler(type: HTTP1ToHTTPServerCodec.self)
            let framing = HTTP1Framing(refused: { [weak self] in self?.ends(.framingRefused) }, inputEnded: { [weak self] in self?.inputEnded = true })
            try context.pipeline.syncOperations.addHandler(framing, position: .before(conversion))
        } catch {
            // Without it, framing the server must refuse would be acted on: serve nothing instead.
            logger.error("connection closed: its HTTP/1 framing rules could not be installed", metadata: ["error": "\(error)"])
            assertionFailure("HTTP1Framing could not be installed: \(error)")
            close(context, .internalError)
            return
        }
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
        if admitted {
            connections.give(1)
            if let addressKey { connectionsByAddress.give(addressKey) }
        }
        admitted = false
        addressKey = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = NIODeadline.now()
        guard drainingSince == nil else { return }  // after the last answer: dropped
        switch unwrapInboundIn(data) {
        case .head(let head):
            closesAfterAnswer = HTTP1Framing.saysClose(head.headerFields[values: .connection])
            expectsContinue = head.headerFields[.expect].map { $0.lowercased() == "100-continue" } ?? false
            isFirstRequest = false
            unanswered += 1
            reading = .body(windowStart: now, windowBytes: 0)
            heldBackSince = nil
        case .body(let buffer):
            if case .body(let start, let bytes) = reading { reading = .body(windowStart: start, windowBytes: bytes + buffer.readableBytes) }
        case .end:
            reading = .head(since: now, firstByte: nil)
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if drainingSince != nil {
            context.read()  // nothing past this handler asks for more while it drains
        } else {
            context.fireChannelReadComplete()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var data = data
        if case .head(var response) = unwrapOutboundIn(data) {
            if unanswered <= 1 {  // the answer to the request being read, not to one pipelined before it
                if expectsContinue || response.status == .contentTooLarge, case .body = reading {
                    // Refused before its body was asked for: the client need not send it (RFC 9110
                    // §10.1.1), so the connection cannot carry another request after this answer.
                    // Too large, by its declared length: reading all of it only to drop it would
                    // keep taking whatever the client sends, for as long as it sends.
                    response.headerFields[.connection] = "close"
                    data = wrapOutboundOut(.head(response))
                }
                expectsContinue = false  // answered: a 100 after the final status would be a stray answer
            }
            // A request that asked to close (HTTP/1.0 without keep-alive too: HTTP1Framing hands
            // it on as asking) is answered `Connection: close` by HTTP1Framing, past this handler.
            responseCloses = HTTP1Framing.saysClose(response.headerFields[values: .connection]) || (closesAfterAnswer && unanswered <= 1)
        }
        if case .end = unwrapOutboundIn(data), responseCloses {
            // Closed once the end is written, not while a slow reader still has it to take.
            let written = context.eventLoop.makePromise(of: Void.self)
            if let promise { written.futureResult.cascade(to: promise) }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            written.futureResult.whenComplete { _ in
                let (guardian, context) = loopBound.value
                guard context.channel.isActive else { return }
                // Half-closed, and what still arrives read and dropped (for at most the header
                // timeout): a body still arriving (a refusal Hummingbird wrote, of a request it
                // could not parse), or a request the client sent before it read this answer, would
                // otherwise meet a full close with a reset, which can take the answer with it.
                guardian.drainingSince = .now()
                context.close(mode: .output, promise: nil)
                context.read()
            }
            context.writeAndFlush(data, promise: written)
            return
        }
        if case .end = unwrapOutboundIn(data) {
            unanswered = max(0, unanswered - 1)
            let now = NIODeadline.now()
            switch reading {
            case .head(_, let firstByte) where unanswered == 0:
                // A client waits for an answer before its next request: the wait starts now,
                // and so does the head's clock if its first byte came while the server was busy.
                reading = .head(since: now, firstByte: firstByte.map { _ in now })
            case .body where unanswered == 1:
                // A pipelined body the server held back is now the one it reads: judge it from now.
                reading = .body(windowStart: now, windowBytes: 0)
                lastRead = now
            default:
                break
            }
        }
        context.write(data, promise: promise)
    }

    /// Writes `100 Continue` for ``InterimContinue``: only for the request being answered (not one
    /// pipelined behind it), only while its body is still to come, and once.
    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is SendContinue else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        promise?.succeed()
        guard expectsContinue, unanswered == 1, case .body = reading, drainingSince == nil else { return }
        expectsContinue = false
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
    }

    // Called by RawTraffic.
    fileprivate func bytesRead(at now: NIODeadline) {
        lastRead = now
        readDemanded = false  // that request is spent; the next comes before this event-loop tick ends
        heldBackSince = nil  // bytes flow: whatever the ticks saw, the body is not parked
        if case .head(let since, nil) = reading { reading = .head(since: since, firstByte: now) }
    }

    fileprivate func readRequested() { readDemanded = true }

    fileprivate func writeStarted(at now: NIODeadline) {
        if pendingWrites == 0 { writeProgress = now }
        pendingWrites += 1
    }

    fileprivate func writeEnded(at now: NIODeadline) {
        pendingWrites -= 1
        writeProgress = now
        // The idle time between requests runs from when the answer went out, not from when it was
        // handed down (a slow reader's whole answer is queued long before it has read it).
        if pendingWrites == 0, unanswered == 0, case .head(_, nil) = reading { reading = .head(since: now, firstByte: nil) }
    }

    /// Why the connection must close now, or `nil`.
    private func overdue(at now: NIODeadline) -> CloseReason? {
        let header = TimeAmount(limits.headerTimeout), idle = TimeAmount(limits.idleTimeout)
        if let drainingSince, now - drainingSince > header { return .notClosedAfterLastAnswer }
        if pendingWrites > 0, now - writeProgress > idle { return .responseUnread }
        switch reading {
        case .head(let since, let firstByte):
            // The server is answering, or its answer is still going out (``CloseReason/responseUnread`` judges that).
            guard unanswered == 0, pendingWrites == 0 else { return nil }
            if isFirstRequest, now - since > header { return .headerTimeout }
            if let firstByte, now - firstByte > header { return .headerTimeout }
            if firstByte == nil, now - since > idle { return .idleTimeout }
        case .body(let windowStart, let windowBytes):
            // A pipelined body waits while the server answers the requests before it.
            guard unanswered <= 1 else { return nil }
            // A client that sent `Expect: 100-continue` sends its body once the server asks for it
            // (``InterimContinue``): until then the server holds the body back, whether or not
            // reads are asked for (a chunk waiting its turn at its upload's lock is answered 429
            // at twice the idle timeout less a second, not closed as idle at one).
            guard readDemanded, !expectsContinue else {
                // The server holds the body back: judge it from when the server reads again.
                let since = heldBackSince ?? now
                heldBackSince = since
                if now - since > idle * 2 { return .bodyHeldBack }
                reading = .body(windowStart: now, windowBytes: 0)
                lastRead = now
                return nil
            }
            heldBackSince = nil
            if now - lastRead > idle { return .bodyIdle }
            let window = now - windowStart
            if window >= TimeAmount(limits.bodyRateWindow) {
                if Double(windowBytes) < Double(limits.minimumBodyBytesPerSecond) * Double(window.nanoseconds) / 1e9 {
                    return .bodyTooSlow
                }
                reading = .body(windowStart: now, windowBytes: 0)  // each window must keep the rate
            }
        }
        return nil
    }

    /// Counts why the server ends this connection, once: a connection whose refusal has ended it
    /// (`framing_refused`), and which the checks then close after its drain, is counted as refused.
    private func ends(_ reason: CloseReason) {
        guard !endCounted else { return }
        endCounted = true
        metrics.countConnectionClosed(reason)
    }

    private func close(_ context: ChannelHandlerContext, _ reason: CloseReason) {
        check?.cancel()
        check = nil
        ends(reason)
        logger.debug("connection closed", metadata: ["reason": "\(reason.explanation)", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
        closingItself = true
        context.close(promise: nil)
    }

    /// The byte-level twin: reports reads, the pipeline's demand for them, and completed writes to
    /// its guard.
    final class RawTraffic: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        typealias OutboundIn = IOData
        typealias OutboundOut = IOData

        private let guardian: ConnectionGuard
        /// Bytes queued for the client, until the socket takes them (or the writes fail with the
        /// connection): held, so counted with the answers held (``AnswerHolding``).
        private var queued = 0
        /// What of `queued` the budget holds: whole multiples of ``countedUnit``, so that the
        /// shared count (a lock) is touched only by connections that queue more than a piece,
        /// not by every small answer; a connection holds at most one unit uncounted.
        private var counted = 0
        /// The address `counted` is counted under: the one the connection had when it was counted.
        private var countedAddress: [UInt8]?
        static let countedUnit = ECRPublicService.pieceBytes

        init(_ guardian: ConnectionGuard) { self.guardian = guardian }

        /// Brings the budget's count of this connection's queued bytes to `queued`, in whole units.
        private func recount() {
            guard let answers = guardian.answers else { return }
            let units = queued / Self.countedUnit * Self.countedUnit
            guard units != counted else { return }
            if counted == 0 { countedAddress = guardian.addressKey }
            if units > counted { answers.add(units - counted, from: countedAddress) } else { answers.give(counted - units, from: countedAddress) }
            counted = units
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guardian.bytesRead(at: .now())
            // Past the last request nothing is handed on: dropped here, since NIO's decoder keeps
            // what it no longer parses (after a `CONNECT` or an upgrade), without bound.
            guard !guardian.inputEnded else { return }
            context.fireChannelRead(data)
        }

        // The socket's reads: asked for by the pipeline (with `autoRead`, again at once after
        // each read completes, in the same event-loop tick; not while a handler holds them back).
        func read(context: ChannelHandlerContext) {
            guardian.readRequested()
            context.read()
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            let completion = promise ?? context.eventLoop.makePromise()
            guardian.writeStarted(at: .now())
            let bytes = unwrapOutboundIn(data).readableBytes
            queued += bytes
            recount()
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            completion.futureResult.whenComplete { _ in
                let (traffic, context) = loopBound.value
                traffic.queued -= bytes
                traffic.recount()
                traffic.guardian.writeEnded(at: .now())
                if traffic.guardian.pendingWrites == 0, let held = traffic.closeWhenWritten {
                    traffic.closeWhenWritten = nil
                    context.close(mode: held.mode, promise: held.promise)
                }
            }
            context.write(data, promise: completion)
        }

        /// A close asked for while bytes written to the connection still wait for the socket.
        private var closeWhenWritten: (mode: CloseMode, promise: EventLoopPromise<Void>?)?

        /// Holds a close until what was written before it has gone to the socket: NIO fails the
        /// writes still queued when a channel closes, and Hummingbird closes a connection as soon
        /// as it has queued the answer that ends it when the server is stopping, so a live feed's
        /// reader that was behind got its last slice cut mid-line, its end never sent. The
        /// guard's own closes (a reader that takes nothing, `responseUnread`) are not held, and
        /// they, with `--shutdown-timeout`, bound how long a held one waits.
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            guard mode == .all, guardian.pendingWrites > 0, !guardian.closingItself else {
                context.close(mode: mode, promise: promise)
                return
            }
            // A second close held as well completes the first's promise with its own.
            var promise = promise
            if let earlier = closeWhenWritten?.promise {
                if let promise { promise.futureResult.cascade(to: earlier) } else { promise = earlier }
            }
            closeWhenWritten = (mode, promise)
            context.flush()
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with every connection held to `limits`; `metrics` counts the connections open and
    /// those the server ended itself, by reason. The bytes queued for each connection count in
    /// `answers`: the budget ``ECRPublicService`` holds its answers in.
    public static func guardedHTTP1(
        limits: ConnectionLimits, answers: ByteBudget? = nil, logger: Logger, metrics: ServiceMetrics = ServiceMetrics()
    ) -> HTTPServerBuilder {
        let connections = CappedCount(limit: limits.maximumConnections)
        metrics.watchOpenConnections(connections)
        if let answers { metrics.watchAnswersHeld(answers) }
        let byAddress = ConnectionsByAddress(limit: limits.maximumConnectionsPerAddress)
        return .http1(configuration: .init(additionalChannelHandlers: [
            ConnectionGuard(
                limits: limits, connections: connections, connectionsByAddress: byAddress, answers: answers, logger: logger, metrics: metrics),
        ]))
    }
}
