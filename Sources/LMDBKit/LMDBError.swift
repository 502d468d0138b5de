internal import CLMDB
import Foundation

/// A failed LMDB call: the C return code, the operation that returned it, and LMDB's own text.
///
/// Codes are a struct over `Int32` with named constants (GRDB's `ResultCode` shape), never an
/// exhaustive enum: LMDB returns `errno` values too.
public struct LMDBError: Error, CustomStringConvertible, Sendable {
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let keyExists = Code(rawValue: MDB_KEYEXIST)
        public static let notFound = Code(rawValue: MDB_NOTFOUND)
        public static let mapFull = Code(rawValue: MDB_MAP_FULL)
        public static let readersFull = Code(rawValue: MDB_READERS_FULL)
        public static let mapResized = Code(rawValue: MDB_MAP_RESIZED)
        public static let badValueSize = Code(rawValue: MDB_BAD_VALSIZE)
        public static let invalid = Code(rawValue: MDB_INVALID)
        public static let versionMismatch = Code(rawValue: MDB_VERSION_MISMATCH)
        /// `EIO`: how LMDB reports, among other failures, pages it could not write to a full disk.
        public static let ioError = Code(rawValue: EIO)
        /// `ENOSPC`: no room left on the disk.
        public static let noSpace = Code(rawValue: ENOSPC)
    }

    public let code: Code
    /// The LMDB function or wrapper operation that failed, e.g. `mdb_put(events)`.
    public let operation: String

    public init(code: Int32, operation: String) {
        self.code = Code(rawValue: code)
        self.operation = operation
    }

    public var message: String { String(cString: mdb_strerror(code.rawValue)) }
    public var description: String { "\(operation): \(message) (\(code.rawValue))" }
}

@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if rc != 0 { throw LMDBError(code: rc, operation: operation()) }
}
