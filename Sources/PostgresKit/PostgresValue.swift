/// The types a parameter is sent as (`pg_type`'s OIDs, and their arrays').
public enum PostgresType: UInt32, Sendable {
    case bool = 16, bytea = 17, int8 = 20, int2 = 21, int4 = 23, text = 25

    /// The name a statement casts to (`$1::int8[]`).
    public var name: String {
        switch self {
        case .bool: "bool"
        case .bytea: "bytea"
        case .int8: "int8"
        case .int2: "int2"
        case .int4: "int4"
        case .text: "text"
        }
    }

    /// The OID of an array of this type.
    var arrayOID: UInt32 {
        switch self {
        case .bool: 1000
        case .bytea: 1001
        case .int8: 1016
        case .int2: 1005
        case .int4: 1007
        case .text: 1009
        }
    }
}

/// A statement parameter, sent in PostgreSQL's binary format with its type named, so that the
/// server never parses bytes as text.
public enum PostgresValue: Sendable, Equatable {
    case int64(Int64)
    case int32(Int32)
    case int16(Int16)
    case bytes([UInt8])
    case text(String)
    case bool(Bool)
    case array(PostgresArray)
    case null

    /// The type's OID (`pg_type`); unknown (0) for NULL.
    var typeOID: UInt32 {
        switch self {
        case .int64: PostgresType.int8.rawValue
        case .int32: PostgresType.int4.rawValue
        case .int16: PostgresType.int2.rawValue
        case .bytes: PostgresType.bytea.rawValue
        case .text: PostgresType.text.rawValue
        case .bool: PostgresType.bool.rawValue
        case .array(let array): array.elementType.arrayOID
        case .null: 0
        }
    }

    /// The binary encoding: integers big-endian, text as UTF-8, bytea as itself.
    var encoded: [UInt8]? {
        switch self {
        case .int64(let v): BigEndianBytes.of(UInt64(bitPattern: v))
        case .int32(let v): BigEndianBytes.of(UInt32(bitPattern: v))
        case .int16(let v): BigEndianBytes.of(UInt16(bitPattern: v))
        case .bytes(let b): b
        case .text(let s): Array(s.utf8)
        case .bool(let b): [b ? 1 : 0]
        case .array(let array): array.encoded
        case .null: nil
        }
    }

    /// A log position or count, which PostgreSQL keeps as a signed `bigint`.
    public static func position(_ value: UInt64) -> PostgresValue { .int64(Int64(bitPattern: value)) }
}

/// A one-dimensional array without NULLs, in PostgreSQL's binary format: a column of a batch's
/// rows in one parameter (``PostgresRowBatch``, `= ANY($2::bytea[])`), so that a statement's text
/// does not grow with the batch and is parsed and planned once per connection.
public struct PostgresArray: Sendable, Equatable {
    public let elementType: PostgresType
    public private(set) var count: Int32 = 0
    /// The elements as the format lays them out: each one's length, then its bytes.
    private var elements: [UInt8] = []

    public init(of elementType: PostgresType) { self.elementType = elementType }

    /// The bytes of its elements as sent (each one's length and its bytes).
    public var byteCount: Int { elements.count }

    public init(of elementType: PostgresType, _ values: some Sequence<PostgresValue>) {
        self.init(of: elementType)
        for value in values { append(value) }
    }

    /// Appends `value`, which must be of ``elementType`` (not NULL, not an array).
    public mutating func append(_ value: PostgresValue) {
        precondition(value.typeOID == elementType.rawValue, "a \(elementType.name)[] holds \(elementType.name) values only")
        let bytes = value.encoded!
        elements += BigEndianBytes.of(UInt32(bytes.count))
        elements += bytes
        count += 1
    }

    /// The dimensions, the element type, then the elements; an empty array has no dimension.
    var encoded: [UInt8] {
        var bytes = BigEndianBytes.of(UInt32(count == 0 ? 0 : 1)) + BigEndianBytes.of(UInt32(0)) + BigEndianBytes.of(elementType.rawValue)
        if count > 0 { bytes += BigEndianBytes.of(UInt32(count)) + BigEndianBytes.of(UInt32(1)) }  // length, lower bound
        return bytes + elements
    }
}

enum BigEndianBytes {
    static func of<I: FixedWidthInteger & UnsignedInteger>(_ value: I) -> [UInt8] {
        (0..<I.bitWidth / 8).map { UInt8(truncatingIfNeeded: value >> (I.bitWidth - 8 - 8 * $0)) }
    }
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
