import NIOCore
import NIOHTTP1

/// The rules of HTTP/1 framing and connection handling (RFC 9112) that NIO's decoder and
/// Hummingbird leave to the server. It sits between NIO's HTTP/1 codec and the conversion to
/// HTTP types, the last place that sees a request's version, and hands on heads that say what
/// the rest of the server reads:
///
/// - A request whose connection ends after its answer (`Connection: close` in any case, HTTP/1.0
///   without `keep-alive`, or one asking to upgrade, which is not served) is handed on saying
///   `connection: close`, the one spelling Hummingbird looks for, and its answer says it too.
///   Nothing the client sent after it is handed on (§9.6: "MUST NOT process any further requests"). An HTTP/1.0
///   request always ends its connection here: its answer is framed by the close, never chunked,
///   which an HTTP/1.0 client cannot read (§7.1).
/// - An HTTP/1.0 request's `Expect` is dropped: a server must ignore it (RFC 9110 §10.1.1), and a
///   `100 Continue` would be a status an HTTP/1.0 client does not know.
/// - A request the server must not act on is refused before anything past this handler sees it:
///   an HTTP/1.1 request without `Host` (400, §3.2), `CONNECT` (501), an HTTP/1.0 request with
///   `Transfer-Encoding` (400, §6.1: its framing is faulty), transfer codings that do not end with `chunked` (400,
///   §6.3: the body's length is unknown), and any other coding before `chunked` (501, §6.1: the
///   body would be read still encoded). Its refusal is written once the requests before
///   it are answered (unless one of their answers ended the connection), says `Connection:
///   close`, and ends the stream; whatever the client still sends is dropped. So is a request
///   past ``deepestPipeline`` unanswered ones (429).
final class HTTP1Framing: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A request handed on whose answer has not ended, in order.
    private struct Unanswered {
        let version: HTTPVersion
        let closes: Bool
    }

    /// Where the request being read stands.
    private enum Reading {
        /// Requests are handed on.
        case handingOn
        /// The request that ends the connection is handed on; nothing after its end is.
        case handingOnTheLast
        /// Past the last request (or at a refused one): whatever arrives is dropped.
        case done
    }

    /// Told when a refusal is written, which ends the connection: for the operator's count of
    /// connections ended by their framing. On the channel's event loop.
    private let refused: () -> Void
    /// Told once nothing more the client sends will be handed on (``Reading/done``): the bytes
    /// can then be dropped before NIO's decoder, which after a `CONNECT` or an upgrade parses
    /// nothing more and would keep every byte that arrives. On the channel's event loop.
    private let inputEnded: () -> Void

    init(refused: @escaping () -> Void = {}, inputEnded: @escaping () -> Void = {}) {
        self.refused = refused
        self.inputEnded = inputEnded
    }

    private var reading = Reading.handingOn {
        didSet { if case .done = reading { inputEnded() } }
    }
    private var unanswered: [Unanswered] = []
    /// The refusal to write once every request before it is answered; `nil` once written.
    private var refusal: HTTPResponseHead?
    /// Whether an answer said the connection ends after it: no request after it is handed on, and
    /// no refusal follows it (the connection closes once it is written).
    private var answerEndsConnection = false
    /// Whether the last request handed on is still being read (its end not yet arrived).
    private var readingBody = false
    /// Whether a second answer to the request being read is being dropped (``write(context:data:promise:)``).
    private var droppingStrayAnswer = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch (reading, part) {
        case (.done, _):
            return
        case (.handingOnTheLast, .end):
            reading = .done
            readingBody = false
            context.fireChannelRead(data)
        case (_, .head(var head)):
            if answerEndsConnection {
                reading = .done  // not acted on (RFC 9112 §9.6)
                return
            }
            // Each request handed on waits, parsed, until the ones before it are answered: a
            // client that sends thousands without reading an answer (1 MB of small GETs is
            // 20,000 of them) would have the server hold all of them.
            if let status = unanswered.count >= Self.deepestPipeline ? .tooManyRequests : Self.refusal(of: head) {
                reading = .done
                var fields = HTTPHeaders()
                fields.add(name: "Connection", value: "close")
                fields.add(name: "Content-Length", value: "0")
                refusal = HTTPResponseHead(version: Self.answerVersion(to: head.version), status: status, headers: fields)
                if unanswered.isEmpty { writeRefusal(context) }
                return
            }
            // NIO's own reading of `Connection` misses `close` with whitespace after it (a tab).
            let closes = !head.isKeepAlive || Self.saysClose(head.headers["Connection"]) || Self.isHTTP10(head.version) || Self.asksToUpgrade(head)
            if closes {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
                reading = .handingOnTheLast
            }
            if Self.isHTTP10(head.version) { head.headers.remove(name: "Expect") }
            // An absolute-form target (`GET http://host/path`, as sent to a proxy) names the host
            // a server must take, not `Host` (RFC 9112 §3.2.2; one at most, refused above); NIO's
            // conversion keeps `Host` and drops the target's, so every check after this one (the
            // loopback guard under `--allow-anonymous`, the token realm) would judge a host the
            // request did not name.
            if let authority = Self.authority(ofAbsoluteTarget: head.uri) { head.headers.replaceOrAdd(name: "Host", value: authority) }
            unanswered.append(Unanswered(version: head.version, closes: closes))
            readingBody = true
            context.fireChannelRead(wrapInboundOut(.head(head)))
        case (_, .end):
            readingBody = false
            context.fireChannelRead(data)
        default:
            context.fireChannelRead(data)
        }
    }

    /// A body that fails to parse after the last request, or in a refused one, is not answered
    /// again: Hummingbird would write a second answer after the refusal, or (for the bytes the
    /// decoder refuses after its first error) close the connection outright, resetting the
    /// refusal away while the client still sends. What still arrives is dropped. So for a body
    /// that fails to parse after its request was answered (a 401 or 405 given before the body was
    /// read): one request, one final answer (RFC 9112); a second would be read as the answer to
    /// the client's next request. The connection ends, as after a refusal.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A client gone part way through a body (`invalidEOFState`) is no framing refused.
        let unparsable = (error is HTTPParserError && (error as? HTTPParserError) != .invalidEOFState) || error is ByteToMessageDecoderError
        if case .done = reading, unparsable { return }
        if unparsable, readingBody, unanswered.isEmpty, !answerEndsConnection {
            reading = .done
            refused()
            context.close(mode: .output, promise: nil)
            return
        }
        // Hummingbird answers it 400 and closes: a connection ended by its framing too (and when
        // the request was answered meanwhile, `write` drops that second answer).
        if unparsable { refused() }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        // A second answer to the request whose body is being read: Hummingbird's 400 for a body
        // that failed to parse after the request was answered (the error raced the answer's end).
        // One request, one final answer: it is dropped, and the connection ends. (A request the
        // parser refuses outright was never handed on: its 400 is its one answer.)
        if case .head(let response) = part, response.status.code >= 200, unanswered.isEmpty, readingBody, refusal == nil { droppingStrayAnswer = true }
        if droppingStrayAnswer {
            promise?.succeed(())
            if case .end = part {
                droppingStrayAnswer = false
                reading = .done
                context.close(mode: .output, promise: nil)
            }
            return
        }
        switch part {
        case .head(var response) where response.status.code >= 200:
            if Self.saysClose(response.headers["Connection"]) {
                answerEndsConnection = true
                refusal = nil
            }
            guard let answering = unanswered.first else { break }
            response.version = Self.answerVersion(to: answering.version)
            if answering.closes { response.headers.replaceOrAdd(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(response)), promise: promise)
            return
        case .end:
            context.write(data, promise: promise)
            if !unanswered.isEmpty { unanswered.removeFirst() }
            if unanswered.isEmpty { writeRefusal(context) }
            return
        default:
            break
        }
        context.write(data, promise: promise)
    }

    private func writeRefusal(_ context: ChannelHandlerContext) {
        guard let refusal else { return }
        self.refusal = nil
        refused()
        context.write(wrapOutboundOut(.head(refusal)), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        written.futureResult.whenSuccess {
            // Half-closed, not closed: a close with the client's bytes still unread would reset
            // the connection, and the refusal with it. The client reads the refusal and the end
            // of the stream; what it still sends is dropped until it closes (or the
            // ConnectionGuard's header timeout passes).
            loopBound.value.close(mode: .output, promise: nil)
        }
    }

    /// The most requests a connection may have handed on and not yet answered: the next is
    /// refused (429) once they are, and the connection ends. Clients that pipeline at all send a
    /// few at a time.
    static let deepestPipeline = 100

    /// The status a request is refused with before it is handed on, or `nil` to hand it on.
    static func refusal(of head: HTTPRequestHead) -> HTTPResponseStatus? {
        let codings = head.headers["Transfer-Encoding"]
        if !codings.isEmpty {
            if isHTTP10(head.version) { return .badRequest }
            let tokens = codings.flatMap { $0.split(separator: ",") }.map { trimmed($0).lowercased() }
            // A body not chunked last has no length a server can trust (§6.3): 400. Chunked last
            // with another coding before it is framed, but encoded in a way not served: 501.
            if tokens.last != "chunked" { return .badRequest }
            if tokens != ["chunked"] { return .notImplemented }
        }
        if !isHTTP10(head.version), head.headers["Host"].isEmpty { return .badRequest }
        // A tunnel is a proxy's to make (RFC 9110 §9.3.6), not served (501: a 405 must name the
        // methods allowed); NIO's decoder stops reading the connection after one, and its encoder
        // frames no answer to it.
        if head.method == .CONNECT { return .notImplemented }
        // Two `Host` lines (RFC 9112 §3.2): a proxy in front that routes by the second would send
        // this server what it judged by the first (the loopback guard, a signature).
        if head.headers["Host"].count > 1 { return .badRequest }
        return nil
    }

    /// Whether the request asks to switch protocols (`Upgrade`, named in `Connection`: `curl
    /// --http2` sends `h2c` on every request). No upgrade is served, which RFC 9110 §7.8 allows,
    /// but NIO's decoder reads nothing after such a request: its answer ends the connection,
    /// saying so, rather than leave the client's next request on it unanswered.
    static func asksToUpgrade(_ head: HTTPRequestHead) -> Bool {
        !head.headers["Upgrade"].isEmpty
            && head.headers["Connection"].contains { $0.split(separator: ",").contains { trimmed($0).lowercased() == "upgrade" } }
    }

    /// The authority of an absolute-form request target (`http://host:port/path`); `nil` for the
    /// origin form (`/path`) clients send to a server.
    static func authority(ofAbsoluteTarget target: String) -> String? {
        guard !target.hasPrefix("/"), let scheme = target.firstRange(of: "://") else { return nil }
        return String(target[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" })
    }

    /// The version an answer states: HTTP/1.1, but HTTP/1.0 to an HTTP/1.0 request, so that NIO's
    /// encoder frames a body of unknown length by the close rather than chunked (§7.1).
    static func answerVersion(to request: HTTPVersion) -> HTTPVersion {
        isHTTP10(request) ? .http1_0 : .http1_1
    }

    private static func isHTTP10(_ version: HTTPVersion) -> Bool {
        version.major < 1 || (version.major == 1 && version.minor == 0)
    }

    /// Whether `Connection` field values name the `close` option: a token, in any case, in a list.
    static func saysClose(_ values: some Sequence<some StringProtocol>) -> Bool {
        values.contains { String($0).split(separator: ",").contains { trimmed($0).lowercased() == "close" } }
    }

    private static func trimmed(_ token: Substring) -> Substring {
        var token = token
        while token.first == " " || token.first == "\t" { token.removeFirst() }
        while token.last == " " || token.last == "\t" { token.removeLast() }
        return token
    }
}
