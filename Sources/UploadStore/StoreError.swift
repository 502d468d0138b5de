import Foundation

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
    /// Set for a fault that passes by itself, so that a retry soon should succeed: the database
    /// unreachable (refused, cut, shutting down: a restart or a failover), the process out of file
    /// descriptors. What a caller may be told of it, naming nothing of the server's. The registry
    /// answers it 503 with `Retry-After`, as distribution does; the AWS API's `ServerException`
    /// is retried by SDKs whatever its cause.
    public let passing: String?

    public init(_ code: Code, _ message: String, isForCallers: Bool = false, passing: String? = nil) {
        self.code = code
        self.message = message
        self.isForCallers = isForCallers
        self.passing = passing
    }

    /// What ``passing`` says of a file system call's failure `code` that passes: descriptors run
    /// out (`EMFILE`, `ENFILE`: connections and streams hold them, and give them back).
    public static func passing(errno code: Int32) -> String? {
        code == EMFILE || code == ENFILE ? "The server has too many files open now" : nil
    }

    /// What ``passing`` says of a database that cannot be reached (or answers only as a standby
    /// would, read-only, as around a failover).
    public static let databaseUnreachable = "The database cannot be reached now"

    /// What ``passing`` says of a write the database's fault cut off: it may have been kept, and a
    /// retry finds out (a registry chunk sent again is refused 416 with the `Range` kept).
    public static let databaseUnreachableDuringAWrite = "The database could not be reached during the write, which may or may not have been kept"

    /// What an answer may tell its caller: the message of a refusal that passes, or of one
    /// written for callers; `nil` for a fault, whose answer says only that the server failed
    /// (its log keeps the message, which may name the server's files).
    public var messageForCallers: String? {
        switch code {
        case .overloaded, .viewsBehind: message
        case .closed: "The server is stopping; try again"
        case .io, .corrupt, .migration: isForCallers ? message : passing
        }
    }

    public var description: String { message }
}
