/// Generates a ``FieldRecord``'s canonical encoding, its decoding and its JSON from its stored
/// properties and the `FieldTag` enum that numbers them:
///
/// ```swift
/// @FieldRecord
/// public struct TagRecord {
///     public var imageDigest: String
///     public var createdAt: Timestamp
///     enum FieldTag: UInt64 { case imageDigest = 1, createdAt }
/// }
/// ```
///
/// Every stored property needs a tag, and tags increase in the enum's order; the macro refuses a
/// record otherwise. See the "Adding an event" article.
@attached(extension, conformances: FieldRecord, names: named(encode(into:)), named(init(decoding:)), named(json))
public macro FieldRecord() = #externalMacro(module: "FieldRecordMacros", type: "FieldRecordMacro")

/// A value type stored in canonical field form (events, projection records, request metadata),
/// declared once with ``FieldRecord()``: its bytes, its decoding and its JSON all follow from its
/// stored properties and their tags. A field may hold any ``FieldValue``; an optional one is left
/// out when `nil`.
public protocol FieldRecord: Sendable, Equatable {
    /// The record's name in decoding errors.
    static var recordName: String { get }
    /// Rules beyond the field types (a byte range that is not empty), checked after decoding.
    func validate() throws(CodecError)
    /// Appends the record's fields to `writer`, in tag order.
    func encode(into writer: inout FieldWriter)
    /// Decodes a record, refusing anything not in canonical form, unknown fields and missing ones.
    init(decoding reader: FieldReader) throws(CodecError)
    /// The record as a JSON object with sorted members, named as its properties; `nil` fields left out.
    var json: JSONValue { get }
}

extension FieldRecord {
    public static var recordName: String { String(describing: Self.self) }
    public func validate() throws(CodecError) {}

    /// The record's canonical bytes.
    public func encoded() -> [UInt8] {
        var writer = FieldWriter()
        encode(into: &writer)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) { try self.init(decoding: FieldReader(bytes)) }
    public init(decoding bytes: ArraySlice<UInt8>) throws(CodecError) { try self.init(decoding: FieldReader(bytes)) }
}

/// What ``FieldRecord()``'s generated code calls for each field. Each has an overload for an
/// optional property, which the compiler picks from the property's type: an absent optional field
/// is `nil` and is not written; an absent required one is ``FieldValue/whenAbsent`` or an error.
/// The record's type, not its name, is passed: a default ``FieldRecord/recordName`` is made by
/// reflection, which is for error messages only (made per field, it cost replay a third of its speed).
public enum FieldCoding {
    @inline(__always)
    public static func write<Value: FieldValue>(_ tag: UInt64, _ value: Value, to writer: inout FieldWriter) {
        value.write(tag, to: &writer)
    }

    @inline(__always)
    public static func write<Value: FieldValue>(_ tag: UInt64, _ value: Value?, to writer: inout FieldWriter) {
        if let value { value.write(tag, to: &writer) }
    }

    @inline(__always)
    public static func read<Value: FieldValue, Record: FieldRecord>(
        _ field: FieldReader.Value?, _ name: String, in record: Record.Type
    ) throws(CodecError) -> Value {
        guard let field else {
            guard let absent = Value.whenAbsent else { throw .missing(name, in: Record.recordName) }
            return absent
        }
        return try Value(field: field, name: name)
    }

    @inline(__always)
    public static func read<Value: FieldValue, Record: FieldRecord>(
        _ field: FieldReader.Value?, _ name: String, in record: Record.Type
    ) throws(CodecError) -> Value? {
        guard let field else { return nil }
        return try Value(field: field, name: name)
    }

    public static func json<Value: FieldValue>(_ value: Value) -> JSONValue? { value.json }
    public static func json<Value: FieldValue>(_ value: Value?) -> JSONValue? { value?.json }
}

/// What one field of a ``FieldRecord`` can hold: how it is written, read and shown as JSON.
public protocol FieldValue {
    func write(_ tag: UInt64, to writer: inout FieldWriter)
    init(field: FieldReader.Value, name: String) throws(CodecError)
    var json: JSONValue { get }
    /// What an absent field reads as; `nil` makes the field required.
    static var whenAbsent: Self? { get }
}

extension FieldValue {
    public static var whenAbsent: Self? { nil }
}

extension String: FieldValue {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.string(tag, self) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) { self = try field.string(name) }
    public var json: JSONValue { .string(self) }
}

extension UInt64: FieldValue {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.uint(tag, self) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) { self = try field.uint(name) }
    public var json: JSONValue { .uint(self) }
}

extension Bool: FieldValue {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.bool(tag, self) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) { self = try field.bool(name) }
    public var json: JSONValue { .bool(self) }
}

/// Milliseconds since the epoch as a varint; ISO 8601 in JSON.
extension Timestamp: FieldValue {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.timestamp(tag, self) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) {
        self.init(millisecondsSinceEpoch: try field.int64(name))
    }
    public var json: JSONValue { .string(iso8601) }
}

/// A list of strings: one nested record holding the items at tags 1…n, left out when empty.
extension Array: FieldValue where Element == String {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.strings(tag, self) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) {
        var reader = FieldReader(try field.bytes(name))
        var items: [String] = []
        // Only the writer's one encoding: items at tags 1…n, and no list record for an empty list.
        while let (tag, item) = try reader.next() {
            guard tag == UInt64(items.count + 1) else { throw CodecError("\(name) has an item at tag \(tag), not \(items.count + 1)") }
            items.append(try item.string(name))
        }
        guard !items.isEmpty else { throw CodecError("\(name) is an empty list, which is left out") }
        self = items
    }
    public var json: JSONValue { .array(map(JSONValue.string)) }
    public static var whenAbsent: [String]? { [] }
}

/// A closed set of names, stored as the name. Conform a `String`-backed enum to use it as a field.
public protocol FieldEnumeration: RawRepresentable<String>, FieldValue, Sendable {}

extension FieldEnumeration {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.string(tag, rawValue) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) {
        let raw = try field.string(name)
        guard let known = Self(rawValue: raw) else { throw CodecError("unknown \(name) '\(raw)'") }
        self = known
    }
    public var json: JSONValue { .string(rawValue) }
}
