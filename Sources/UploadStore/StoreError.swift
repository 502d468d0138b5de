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
        /// LMDB or the file system failed; nothing of the failed batch was committed.
        case io
        /// Too many commands are queued for the writer; try again shortly.
        case overloaded
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
