/// The canonical binary encoding of events and projection records.
///
/// A record is a sequence of fields. Each field starts with a varint key `tag << 3 | wireType`;
/// wire type 0 carries a varint, wire type 2 a varint length and that many bytes (a string, or a
/// nested record). This is the protobuf wire format restricted to two wire types.
///
/// Canonical form, which the reader enforces so that one value has exactly one encoding (and so
/// equal digests mean equal values): tags strictly increase, varints are minimal, a record has no
/// unknown tags and no trailing bytes, strings are valid UTF-8. Optional fields are left out when absent.
public struct FieldWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    private var lastTag: UInt64 = 0

    /// Empties the writer for another record, keeping its buffer (one writer for many records).
    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        lastTag = 0
    }

    private mutating func key(_ tag: UInt64, _ wireType: UInt64) {
        precondition(tag > lastTag, "field tags must be written in increasing order")
        lastTag = tag
        varint(tag << 3 | wireType)
    }

    private mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func uint(_ tag: UInt64, _ value: UInt64) {
        key(tag, 0)
        varint(value)
    }

    public mutating func bool(_ tag: UInt64, _ value: Bool) { uint(tag, value ? 1 : 0) }

    public mutating func bytes(_ tag: UInt64, _ value: some Collection<UInt8>) {
        key(tag, 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func string(_ tag: UInt64, _ value: String) { bytes(tag, value.utf8) }

    public mutating func record(_ tag: UInt64, _ value: FieldWriter) { bytes(tag, value.bytes) }

    public mutating func optionalString(_ tag: UInt64, _ value: String?) {
        if let value { string(tag, value) }
    }
}

/// Reads a record written by ``FieldWriter``, rejecting anything not in canonical form.
public struct FieldReader {
    public enum Value {
        case varint(UInt64)
        case bytes(ArraySlice<UInt8>)
    }

    private let buffer: ArraySlice<UInt8>
    private var cursor: FieldCursor

    public init(_ bytes: ArraySlice<UInt8>) {
        self.buffer = bytes
        self.cursor = FieldCursor(from: bytes.startIndex, to: bytes.endIndex)
    }

    public init(_ bytes: [UInt8]) { self.init(bytes[...]) }

    /// The next field, or `nil` at the end of the record.
    public mutating func next() throws(CodecError) -> (tag: UInt64, value: Value)? {
        var cursor = self.cursor
        defer { self.cursor = cursor }
        guard let (tag, value) = try cursor.next({ buffer[$0] }) else { return nil }
        switch value {
        case .varint(let n): return (tag, .varint(n))
        case .bytes(let range): return (tag, .bytes(buffer[range]))
        }
    }
}

/// A record's fields read straight from memory, each bytes field as a range of offsets into it: no
/// slice, so no reference count, per field. Replay's flat decoder reads the log's records this way.
public struct RawFieldReader {
    private let bytes: UnsafeRawBufferPointer
    private var cursor: FieldCursor

    /// Reads `range` of `bytes`, which must stay valid while this reader is used.
    public init(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        self.bytes = bytes
        self.cursor = FieldCursor(from: range.lowerBound, to: range.upperBound)
    }

    /// The next field, or `nil` at the end of the record.
    public mutating func next() throws(CodecError) -> (tag: UInt64, value: FieldCursor.Value)? {
        try cursor.next { bytes[$0] }
    }
}

/// The wire format's rules, in one place, over bytes at integer positions: ``FieldReader`` and
/// ``RawFieldReader`` both read through it.
public struct FieldCursor {
    public enum Value {
        case varint(UInt64)
        case bytes(Range<Int>)
    }

    private var index: Int
    private let end: Int
    private var lastTag: UInt64 = 0

    init(from start: Int, to end: Int) {
        self.index = start
        self.end = end
    }

    /// The next field, reading each byte through `byte`; `nil` at the end of the record.
    @inline(__always)
    mutating func next(_ byte: (Int) -> UInt8) throws(CodecError) -> (tag: UInt64, value: Value)? {
        guard index < end else { return nil }
        let key = try readVarint(byte)
        let tag = key >> 3
        guard tag > lastTag else { throw CodecError("field \(tag) out of order") }
        lastTag = tag
        switch key & 7 {
        case 0:
            return (tag, .varint(try readVarint(byte)))
        case 2:
            let length = try readVarint(byte)
            guard length <= UInt64(end - index) else { throw CodecError("field \(tag) overruns the record") }
            let start = index
            index += Int(length)
            return (tag, .bytes(start..<index))
        default:
            throw CodecError("field \(tag) has unknown wire type \(key & 7)")
        }
    }

    @inline(__always)
    private mutating func readVarint(_ read: (Int) -> UInt8) throws(CodecError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < end else { throw CodecError("truncated varint") }
            let byte = read(index)
            index += 1
            guard shift < 64, shift < 63 || byte <= 1 else { throw CodecError("varint overflows 64 bits") }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 {
                guard byte != 0 || shift == 0 else { throw CodecError("varint not minimal") }
                return result
            }
            shift += 7
        }
    }
}

extension FieldReader.Value {
    public func uint(_ field: String) throws(CodecError) -> UInt64 {
        guard case .varint(let v) = self else { throw CodecError("\(field) is not a number") }
        return v
    }

    public func int64(_ field: String) throws(CodecError) -> Int64 {
        let v = try uint(field)
        guard v <= UInt64(Int64.max) else { throw CodecError("\(field) out of range") }
        return Int64(v)
    }

    public func bool(_ field: String) throws(CodecError) -> Bool {
        switch try uint(field) {
        case 0: return false
        case 1: return true
        default: throw CodecError("\(field) is not a boolean")
        }
    }

    public func string(_ field: String) throws(CodecError) -> String {
        guard case .bytes(let b) = self, let s = Self.validUTF8(b) else {
            throw CodecError("\(field) is not UTF-8 text")
        }
        return s
    }

    /// The bytes as text, or `nil` when they are not UTF-8. Decoding with repair and checking that
    /// nothing was repaired takes the standard library's fast path; `String(validating:)` over a
    /// slice measured twice as slow, and every string of every record comes through here.
    static func validUTF8(_ bytes: ArraySlice<UInt8>) -> String? {
        bytes.withUnsafeBufferPointer { raw in
            var text = String(decoding: raw, as: UTF8.self)
            let unrepaired = text.withUTF8 { ExactBytes.equal(UnsafeRawBufferPointer($0), UnsafeRawBufferPointer(raw)) }
            return unrepaired ? text : nil
        }
    }

    public func bytes(_ field: String) throws(CodecError) -> ArraySlice<UInt8> {
        guard case .bytes(let b) = self else { throw CodecError("\(field) is not bytes") }
        return b
    }
}

/// A record that is not in canonical form, or not a record this binary knows.
public struct CodecError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    public static func unknownTag(_ tag: UInt64, in record: String) -> CodecError {
        CodecError("\(record) has unknown field \(tag)")
    }

    public static func missing(_ field: String, in record: String) -> CodecError {
        CodecError("\(record) lacks \(field)")
    }
}

/// Unwraps a required field after a decode loop.
@inline(__always)
func required<T>(_ value: T?, _ field: String, in record: String) throws(CodecError) -> T {
    guard let value else { throw CodecError.missing(field, in: record) }
    return value
}

/// 8-byte big-endian encoding, used for log positions so that byte order is numeric order.
public enum BigEndian {
    public static func bytes(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    /// Inlinable, as every log scan reads a key with it: called across modules unspecialized, it
    /// was 9 % of a verify's CPU.
    @inlinable
    public static func uint64(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        return UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self))
    }

    @inlinable
    public static func uint64(_ bytes: some Collection<UInt8>) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
}

extension FieldWriter {
    public mutating func timestamp(_ tag: UInt64, _ value: Timestamp) { uint(tag, UInt64(value.millisecondsSinceEpoch)) }

    /// A list of strings as one nested record, items at tags 1…n (omitted when empty).
    public mutating func strings(_ tag: UInt64, _ values: [String]) {
        guard !values.isEmpty else { return }
        var list = FieldWriter()
        for (i, value) in values.enumerated() { list.string(UInt64(i + 1), value) }
        record(tag, list)
    }
}
