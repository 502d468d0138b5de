import Hummingbird
import NIOCore
import Synchronization
import UploadStore

/// Answers held in memory while slow readers take them, within a ``ByteBudget``.
///
/// An answer (a manifest, a listing, a page: up to about 4 MiB) is made whole, then written in
/// pieces as its client reads (``ECRPublicService/piecewise(_:)``), and held until its last piece is
/// in the kernel: a reader taking 128 KiB a minute, which the idle timeout lets through, holds a
/// 4 MiB manifest for half an hour. Without a budget, slow readers could hold `--max-connections`
/// of them (4 GiB at the default), any client may be one, and pulls need no credentials.
///
/// Two things count, by the client's address (``ConnectionsByAddress/key(of:)``):
/// - an answer of more than one piece, for as long as the body that holds it lives (until written,
///   or dropped with its connection). Every request runs with a holding (``Middleware``); when the
///   share of its address, or the whole budget, cannot take the answer, it is not counted and the
///   holding is marked, and an endpoint that reads sends its "try again" instead (``checkHeld()``:
///   ThrottlingException, the registry's 429 `TOOMANYREQUESTS`, a 503 page), dropping the answer;
/// - what is queued for a connection, until the socket takes it (``ConnectionGuard``), in whole
///   pieces of 16 KiB (a connection's last 16 KiB queued are not counted, so that small answers
///   touch no shared count), whatever wrote it: answers of one piece, blobs' and feeds' pieces,
///   an answer whose pieces the connection queued before it pushed back. These are held already,
///   so they are counted past the budget, never refused; they make the next large reads refused.
///
/// Never refused, so counted only when they fit: an answer that reports a write (its client must
/// learn that the write happened, and writers are authenticated), and the open endpoints' (a log
/// tile or proof is at most 8 KiB; `/metrics` must answer while the budget is spent, to show it).
/// An answer streamed a slice at a time holds each slice as an answer while it is written, and
/// ends where the budget cannot take one (``HeldSlice``). A feed's slice is about 1 MiB of records
/// and one more, as JSON lines in which a DEL or C1 control is six bytes (`\u007f`): up to about
/// 30 MiB; an entry bundle's, 4 MiB of entries and one more: up to 8 MiB. Both stay under the
/// least share an address is given (``ByteBudget/smallestAnswerBudget``), so that no consumer is
/// refused the same slice for good.
final class AnswerHolding: Sendable {
    /// The holding of the request this task answers (a task-local value, so that the places that
    /// make answers need no parameter for it). `nil` outside a request: nothing is counted.
    @TaskLocal static var current: AnswerHolding?

    private let budget: ByteBudget
    /// The client's address, made the budget's key (``ConnectionsByAddress/key(of:)``, text
    /// parsed) only for an answer held: most answers are one piece.
    private let client: SocketAddress?
    private let refused = Atomic<Bool>(false)

    init(budget: ByteBudget, client: SocketAddress?) {
        self.budget = budget
        self.client = client
    }

    /// Counts an answer of `bytes` as held until the returned token goes; `nil` (and the holding
    /// marked) when the budget cannot take it.
    func hold(_ bytes: Int) -> HeldAnswer? {
        let address = ConnectionsByAddress.key(of: client)
        guard budget.take(bytes, from: address) else {
            refused.store(true, ordering: .relaxed)
            return nil
        }
        return HeldAnswer(budget: budget, bytes: bytes, address: address)
    }

    /// Called where an endpoint has made its answer, before sending it.
    /// - Throws: ``AnswerBudgetSpent`` when the request's answer could not be held.
    static func checkHeld() throws {
        guard let current, current.refused.load(ordering: .relaxed) else { return }
        throw AnswerBudgetSpent()
    }

    /// Runs each request with a holding of its own.
    struct Middleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
        let budget: ByteBudget

        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            let holding = AnswerHolding(budget: budget, client: context.remoteAddress)
            return try await AnswerHolding.$current.withValue(holding) { try await next(request, context) }
        }
    }
}

extension ByteBudget {
    /// All clients' answers together may hold this much, by default (`--max-answer-bytes`).
    public static let defaultAnswerBytes = 512 << 20

    /// The least `--max-answer-bytes` and its share per address may be: more than any one answer
    /// counted (a 4 MiB manifest or listing; a PutImage answer, a manifest of 4 MiB with each byte
    /// escaped, is about 25 MB), so that no answer is refused on an idle server.
    public static let smallestAnswerBudget = 32 << 20

    /// A budget of answer bytes (``AnswerHolding``), each address's share at least ``smallestAnswerBudget``.
    public static func answers(limit: Int = defaultAnswerBytes, limitPerAddress: Int? = nil) -> ByteBudget {
        ByteBudget(limit: limit, limitPerAddress: limitPerAddress, smallestShare: smallestAnswerBudget)
    }
}

/// An answer's bytes counted in its budget: given back when the body that captured it goes.
final class HeldAnswer: Sendable {
    private let budget: ByteBudget
    private let bytes: Int
    private let address: [UInt8]?

    init(budget: ByteBudget, bytes: Int, address: [UInt8]?) {
        self.budget = budget
        self.bytes = bytes
        self.address = address
    }

    deinit { budget.give(bytes, from: address) }
}

/// An answer the budget of answers held for slow readers could not take (``AnswerHolding``).
struct AnswerBudgetSpent: Error, CustomStringConvertible {
    var description: String {
        "Too many answers are held for clients that have not read them; read those, or retry shortly"
    }
}

/// A slice of an answer streamed a slice at a time, counted as an answer held (``AnswerHolding``)
/// while its reader takes it, when it is more than one piece.
struct HeldSlice: Sendable {
    private let answer: HeldAnswer?

    /// `nil` when the budget cannot take `bytes` (the holding is marked: ``AnswerHolding/checkHeld()``).
    static func taking(_ bytes: Int, from holding: AnswerHolding?) -> HeldSlice? {
        guard bytes > ECRPublicService.pieceBytes, let holding else { return HeldSlice(answer: nil) }
        return holding.hold(bytes).map { HeldSlice(answer: $0) }
    }
}

extension ECRPublicService {
    /// Writes a slice of a streamed answer (``write(_:to:)``), held while it is written.
    /// - Parameter holding: the request's (``AnswerHolding/current``, taken before the body runs:
    ///   the body is written after the request's holding is no longer the task's).
    /// - Returns: `false`, having written nothing, when the budget cannot take it: the answer ends there.
    static func writeSlice(_ slice: ByteBuffer, holding: AnswerHolding?, to writer: inout any ResponseBodyWriter) async throws -> Bool {
        guard let held = HeldSlice.taking(slice.readableBytes, from: holding) else { return false }
        try await write(slice, to: &writer)
        withExtendedLifetime(held) {}
        return true
    }

    /// A streamed answer's first slice, held before the answer starts (``AnswerBudgetSpent`` when
    /// the budget cannot take it: the endpoint's "try again"), and given to the answer's body
    /// once: a body lives as long as its answer (a stream's, for hours), and would otherwise keep
    /// the slice, and its count, for all of it.
    final class OpeningSlice: Sendable {
        private let unwritten: Locked<(slice: ByteBuffer, held: HeldSlice)?>

        init(_ slice: ByteBuffer, holding: AnswerHolding?) throws {
            guard let held = HeldSlice.taking(slice.readableBytes, from: holding) else { throw AnswerBudgetSpent() }
            unwritten = Locked((slice, held))
        }

        /// Writes the slice, the first time only, and lets it go.
        func write(to writer: inout any ResponseBodyWriter) async throws {
            guard let (slice, held) = unwritten.withLock({ value in defer { value = nil }; return value }) else { return }
            try await ECRPublicService.write(slice, to: &writer)
            withExtendedLifetime(held) {}
        }
    }
}
