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
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
