import Hummingbird
import NIOCore

/// The request's body stream failed: the client closed the connection part way, or sent bytes
/// that are not HTTP, or the connection guard closed it (a body held back too long). The client's
/// doing, not the server's: answered as a client error (if anyone is left to read it) and logged
/// at debug, so that clients that go away mid-body, or an attacker, can neither count as server
/// errors nor write an error line each.
struct RequestBodyEnded: Error {
    let underlying: any Error
}

/// A request body whose stream's failures are ``RequestBodyEnded``.
struct ClientBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let base: RequestBody

    init(base: RequestBody) { self.base = base }

    /// `request`'s body, of at most `limit` bytes: one whose `Content-Length` says it is longer is
    /// refused at once (413), before a byte of it is read or spooled.
    init(_ request: Request, limit: Int) throws {
        if let declared = request.headers[.contentLength], (Int(declared).map { $0 > limit } ?? true) {
            throw HTTPError(.contentTooLarge)
        }
        base = request.body
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: RequestBody.AsyncIterator

        mutating func next() async throws -> ByteBuffer? {
            do { return try await base.next() } catch is CancellationError { throw CancellationError() } catch {
                throw RequestBodyEnded(underlying: error)
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        InterimContinue.ofThisRequest?.send()  // the body is about to be read
        return AsyncIterator(base: base.makeAsyncIterator())
    }

    /// The whole body, at most `limit` bytes (Hummingbird's `collect(upTo:)`, its 413 included).
    func collect(upTo limit: Int) async throws -> ByteBuffer {
        InterimContinue.ofThisRequest?.send()
        do { return try await base.collect(upTo: limit) } catch let error as any HTTPResponseError { throw error } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw RequestBodyEnded(underlying: error)
        }
    }
}
