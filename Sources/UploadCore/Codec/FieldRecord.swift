/// A value type stored in canonical field form (events, projection records, request metadata),
/// declared once: its stored properties, in tag order, and `CodingKeys` whose raw values are the
/// tags. Its bytes, its decoding and its JSON all follow from that declaration:
///
/// ```swift
/// public struct TagRecord: FieldRecord {
///     public var imageDigest: String
///     public var createdAt: Timestamp
///     enum CodingKeys: Int, CodingKey { case imageDigest = 1, createdAt }
/// }
/// ```
///
/// Declare the properties in tag order (the writer refuses tags out of order). A field may hold
/// any ``FieldValue``; an optional one is left out when `nil`. See the "Adding an event" article.
public protocol FieldRecord: Codable, Sendable, Equatable {
    /// The record's name in decoding errors.
    static var recordName: String { get }
    /// Rules beyond the field types (a byte range that is not empty), checked after decoding.
    func validate() throws(CodecError)
}

extension FieldRecord {
    public static var recordName: String { String(describing: Self.self) }
    public func validate() throws(CodecError) {}

    /// Appends the record's fields to `writer`.
    public func encode(into writer: inout FieldWriter) {
        let encoder = FieldEncoder(writer)
        do { try encode(to: encoder) } catch { preconditionFailure("\(Self.self) is not a field record: \(error)") }
        writer = encoder.writer
    }

    /// The record's canonical bytes.
    public func encoded() -> [UInt8] {
        var writer = FieldWriter()
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes a record, refusing anything not in canonical form, unknown fields and missing ones.
    public init(decoding reader: FieldReader) throws(CodecError) {
        let decoder = try FieldDecoder(reader, record: Self.self)
        do { self = try Self(from: decoder) } catch let error as CodecError { throw error } catch {
            throw CodecError("\(Self.recordName): \(error)")
        }
        try decoder.checkAllFieldsRead()
        try validate()
    }

    public init(decoding bytes: [UInt8]) throws(CodecError) { try self.init(decoding: FieldReader(bytes)) }
    public init(decoding bytes: ArraySlice<UInt8>) throws(CodecError) { try self.init(decoding: FieldReader(bytes)) }

    /// The record as a JSON object with sorted members, named as its properties; `nil` fields left out.
    public var json: JSONValue {
        let encoder = JSONFieldEncoder()
        do { try encode(to: encoder) } catch { preconditionFailure("\(Self.self) is not a field record: \(error)") }
        return .object(sorting: encoder.members)
    }
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
extension Timestamp: FieldValue, Codable {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.timestamp(tag, self) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) {
        self.init(millisecondsSinceEpoch: try field.int64(name))
    }
    public var json: JSONValue { .string(iso8601) }
    public init(from decoder: any Decoder) throws {
        self.init(millisecondsSinceEpoch: try decoder.singleValueContainer().decode(Int64.self))
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(millisecondsSinceEpoch)
    }
}

/// A list of strings: one nested record holding the items at tags 1…n, left out when empty.
extension Array: FieldValue where Element == String {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.strings(tag, self) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) {
        var reader = FieldReader(try field.bytes(name))
        var items: [String] = []
        while let (_, item) = try reader.next() { items.append(try item.string(name)) }
        self = items
    }
    public var json: JSONValue { .array(map(JSONValue.string)) }
    public static var whenAbsent: [String]? { [] }
}

/// A closed set of names, stored as the name. Conform a `String`-backed enum to use it as a field.
public protocol FieldEnumeration: RawRepresentable<String>, FieldValue, Codable, Sendable {}

extension FieldEnumeration {
    public func write(_ tag: UInt64, to writer: inout FieldWriter) { writer.string(tag, rawValue) }
    public init(field: FieldReader.Value, name: String) throws(CodecError) {
        let raw = try field.string(name)
        guard let known = Self(rawValue: raw) else { throw CodecError("unknown \(name) '\(raw)'") }
        self = known
    }
    public var json: JSONValue { .string(rawValue) }
}
