/// A statement parameter, sent in PostgreSQL's binary format with its type named, so that the
/// server never parses bytes as text.
public enum PostgresValue: Sendable, Equatable {
    case int64(Int64)
    case int32(Int32)
    case bytes([UInt8])
    case text(String)
    case bool(Bool)
    case null

    /// The type's OID (`pg_type`): int8, int4, bytea, text, bool; unknown (0) for NULL.
    var typeOID: UInt32 {
        switch self {
        case .int64: 20
        case .int32: 23
        case .bytes: 17
        case .text: 25
        case .bool: 16
        case .null: 0
        }
    }

    /// The binary encoding: integers big-endian, text as UTF-8, bytea as itself.
    var encoded: [UInt8]? {
        switch self {
        case .int64(let v): (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: v) >> (56 - 8 * UInt64($0))) }
        case .int32(let v): (0..<4).map { UInt8(truncatingIfNeeded: UInt32(bitPattern: v) >> (24 - 8 * UInt32($0))) }
        case .bytes(let b): b
        case .text(let s): Array(s.utf8)
        case .bool(let b): [b ? 1 : 0]
        case .null: nil
        }
    }

    /// A log position or count, which PostgreSQL keeps as a signed `bigint`.
    public static func position(_ value: UInt64) -> PostgresValue { .int64(Int64(bitPattern: value)) }
}

/// The rows a statement returned, in PostgreSQL's binary format, copied out of libpq's result.
public struct PostgresRows: Sendable {
    /// Each row's columns; `nil` for NULL.
    public let rows: [[[UInt8]?]]

    public var count: Int { rows.count }
    public var isEmpty: Bool { rows.isEmpty }

    /// Column `column` of row `row` as raw bytes (bytea, text); empty for NULL.
    public func bytes(_ row: Int, _ column: Int) -> [UInt8] { rows[row][column] ?? [] }

    public func isNull(_ row: Int, _ column: Int) -> Bool { rows[row][column] == nil }

    /// Column `column` of row `row` as an integer: int8, int4 or int2, big-endian.
    public func int64(_ row: Int, _ column: Int) throws -> Int64 {
        guard let bytes = rows[row][column], [2, 4, 8].contains(bytes.count) else {
            throw PostgresError(sqlState: PostgresError.unexpectedResult, message: "column \(column) is not an integer", operation: "read row \(row)")
        }
        let unsigned = bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let shift = UInt64(64 - 8 * bytes.count)
        return Int64(bitPattern: unsigned << shift) >> Int64(shift)  // sign-extended
    }

    /// A `bigint` log position or count, which is never negative.
    public func position(_ row: Int, _ column: Int) throws -> UInt64 {
        let value = try int64(row, column)
        guard value >= 0 else {
            throw PostgresError(sqlState: PostgresError.unexpectedResult, message: "column \(column) holds \(value), not a position", operation: "read row \(row)")
        }
        return UInt64(value)
    }

    public func text(_ row: Int, _ column: Int) -> String { String(decoding: bytes(row, column), as: UTF8.self) }
}
