/// A failure of the store itself rather than a refused command. The API answers these with
/// `ServerException`; the CLI prints them under that name.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// The store was closed before the command could be written.
        case closed
        /// The log or the projections contradict themselves; the store refuses to guess.
        case corrupt
        /// The store needs migrations, or was written by a newer binary.
        case migration
        /// LMDB, PostgreSQL or the file system failed. With LMDB nothing of the failed batch was
        /// committed; with PostgreSQL a batch whose commit's answer was lost may have been (the
        /// message says so), and an SDK retry with the same invocation id gets its answer.
        case io
        /// Too many commands are queued for the writer; try again shortly.
        case overloaded
        /// The views a read answers from are behind the log (a write between its two commits, or
        /// their commit failed after the log's): the read is refused until they catch up, which
        /// the store asks for itself. A server fault, passing: retry (``Store/readAnswering(_:)``).
        case viewsBehind
    }

    public let code: Code
    /// For the operator and the log: it may name files, folders and the store's inner state.
    public let message: String
    /// Whether ``message`` is written for whoever made the request (advice such as "retry with
    /// the same invocation id"), and names nothing of the server's. See ``messageForCallers``.
    public let isForCallers: Bool
    /// Whether the database could not be reached (refused, cut, shutting down: a restart or a
    /// failover), so that a retry soon should succeed. The registry answers it 503 with
    /// `Retry-After`, as distribution does; the AWS API's `ServerException` is retried by SDKs
    /// whatever its cause.
    public let isOutage: Bool

    public init(_ code: Code, _ message: String, isForCallers: Bool = false, isOutage: Bool = false) {
        self.code = code
        self.message = message
        self.isForCallers = isForCallers
        self.isOutage = isOutage
    }

    /// What an answer may tell its caller: the message of a refusal that passes, or of one
    /// written for callers; `nil` for a fault, whose answer says only that the server failed
    /// (its log keeps the message, which may name the server's files).
    public var messageForCallers: String? {
        switch code {
        case .overloaded, .viewsBehind: message
        case .closed: "The server is stopping; try again"
        case .io, .corrupt, .migration: isForCallers ? message : nil
        }
    }

    public var description: String { message }
}
